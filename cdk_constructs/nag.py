"""cdk-nag acknowledgements: each names one rule (or one finding of it) and a reason a reviewer can check."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(construct: IConstruct, *findings: tuple[str, str]) -> None:
    """Acknowledge `(rule_id, reason)` pairs on exactly this construct (and its children), never wider."""
    Validations.of(construct).acknowledge(*(Acknowledgment(id=rule, reason=reason) for rule, reason in findings))
