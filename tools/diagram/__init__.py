"""Architecture diagram drawn from the synthesized cloud assembly (``python -m tools.diagram``)."""
