"""One snapshot per stack, asset hashes normalized, so a pull request shows every template change."""

from __future__ import annotations

from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from tools.review.normalize import normalize_template

STACKS = [
    "Production-Delivery",
    "Production-Audit",
    "Production-Identity",
    "Production-Guardrails",
    "Production-Network",
    "Production-PhotoService",
    "Research-Delivery",
    "Research-Access",
    "Research-Audit",
    "Research-Guardrails",
    "Research-Network",
    "Research-Workbench",
]


@pytest.fixture
def snapshot_json(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


def test_every_stack_has_a_snapshot(templates: dict[str, dict[str, Any]]) -> None:
    assert sorted(templates) == sorted(STACKS)


@pytest.mark.parametrize("stack", STACKS)
def test_template_snapshot(stack: str, templates: dict[str, dict[str, Any]], snapshot_json: SnapshotAssertion) -> None:
    assert normalize_template(templates[stack]) == snapshot_json
