"""Scaling simulator: replays photo traffic against the deployed SLA scaling policy and the alternatives.

See `python -m tools.scaling_sim --help`, `tools/scaling_sim/engine.py` for the model and docs/scaling.md for results.
"""
