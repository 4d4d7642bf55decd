"""Synthesize the whole app once per test session; tests read templates from that one cloud assembly."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk.assertions import Template

from stacks.config import DEFAULT_CONFIG, load_platform
from stacks.stages import build_app
from tools.synth_summary import stacks_in


def synth_templates(config: Path | None, outdir: Path) -> dict[str, dict[str, Any]]:
    """Synthesize the app for `config` (default config when None) into `outdir`; templates by stack name."""
    build_app(load_platform(config), outdir=str(outdir)).synth()
    return {name: template for _, name, template in stacks_in(outdir)}


def synth_variant(root: Path, edit: Callable[[dict[str, Any]], None]) -> dict[str, dict[str, Any]]:
    """Synthesize the example config after `edit` changes it (written under `root`, beside a copy of `workers/`)."""
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    edit(data)
    config = root / "config" / "platform.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    # The loader reads worker definitions beside the platform file.
    shutil.copytree(DEFAULT_CONFIG.parent / "workers", config.parent / "workers")
    return synth_templates(config, root / "cdk.out")


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
