"""The GPU queue worker of the photo service (`python -m worker`); runs on CPU with the same code path."""
