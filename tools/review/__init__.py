"""Offline change report for synthesized CloudFormation templates (``python -m tools.review``)."""
