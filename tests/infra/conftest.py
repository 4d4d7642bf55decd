"""Synthesize the whole app once per test session; tests read templates from that one cloud assembly."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk.assertions import Template

from stacks.config import load_platform
from stacks.stages import build_app
from tools.synth_summary import stacks_in


def synth_templates(config: Path | None, outdir: Path) -> dict[str, dict[str, Any]]:
    """Synthesize the app for `config` (default config when None) into `outdir`; templates by stack name."""
    build_app(load_platform(config), outdir=str(outdir)).synth()
    return {name: template for _, name, template in stacks_in(outdir)}


@pytest.fixture(scope="session")
def templates(cloud_assembly: Path) -> dict[str, dict[str, Any]]:
    return {name: template for _, name, template in stacks_in(cloud_assembly)}


@pytest.fixture(scope="session")
def template(templates: dict[str, dict[str, Any]]) -> Callable[[str], Template]:
    """`template("Production-Audit")` -> an assertions.Template of that stack."""
    cache: dict[str, Template] = {}

    def get(name: str) -> Template:
        if name not in cache:
            cache[name] = Template.from_json(templates[name])
        return cache[name]

    return get


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """Logical ID -> resource, for every resource of CloudFormation type `kind`."""
    return {lid: r for lid, r in template.get("Resources", {}).items() if r["Type"] == kind}
