"""Read stack templates from a cloud assembly (``cdk.out``) and from the committed syrupy snapshots."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.review.normalize import normalize_template

REPO_ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT_DIR = REPO_ROOT / "tests" / "infra" / "__snapshots__" / "test_snapshots"
_SNAPSHOT_NAME = re.compile(r"^test_template_snapshot\[(?P<stack>.+)\]\.json$")


@dataclass(frozen=True)
class StackTemplate:
    """One stack of one stage, with its normalized template and (for a synth) its account."""

    stage: str
    name: str
    template: dict[str, Any]
    account: str | None = None
    region: str | None = None
    # The construct path the CDK CLI selects stacks by (``Production/Audit``); only known for a synth.
    display_name: str | None = None


def _stage_of(stack_name: str) -> str:
    """Stage from a ``Stage-Stack`` name: the part before the first dash."""
    return stack_name.split("-", 1)[0] if "-" in stack_name else ""


def _environment(artifact: dict[str, Any]) -> tuple[str | None, str | None]:
    env = str(artifact.get("environment", ""))
    match = re.fullmatch(r"aws://([^/]+)/(.+)", env)
    if not match or match.group(1).startswith("unknown"):
        return None, None
    return match.group(1), match.group(2)


def _read_manifest(directory: Path, stage: str) -> list[StackTemplate]:
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    stacks: list[StackTemplate] = []
    for artifact in manifest.get("artifacts", {}).values():
        kind = artifact.get("type")
        props = artifact.get("properties", {})
        if kind == "cdk:cloud-assembly":
            nested_stage = str(props.get("displayName") or props["directoryName"])
            stacks.extend(_read_manifest(directory / props["directoryName"], nested_stage))
        elif kind == "aws:cloudformation:stack":
            name = str(props.get("stackName") or artifact.get("displayName"))
            template = json.loads((directory / props["templateFile"]).read_text(encoding="utf-8"))
            account, region = _environment(artifact)
            stacks.append(
                StackTemplate(
                    stage=stage or _stage_of(name),
                    name=name,
                    template=normalize_template(template),
                    account=account,
                    region=region,
                    display_name=artifact.get("displayName"),
                )
            )
    return stacks


def load_assembly(outdir: Path) -> list[StackTemplate]:
    """Every stack in a cloud assembly, following nested (per-stage) assemblies, in manifest order."""
    if not (outdir / "manifest.json").is_file():
        raise FileNotFoundError(f"{outdir}: no manifest.json (is this a cloud assembly? run `make synth`)")
    return _read_manifest(outdir, "")


def load_snapshots(directory: Path = SNAPSHOT_DIR) -> list[StackTemplate]:
    """Stacks from syrupy snapshot files ``test_template_snapshot[<StackName>].json``, sorted by name."""
    stacks: list[StackTemplate] = []
    if not directory.is_dir():
        return stacks
    for path in sorted(directory.iterdir()):
        match = _SNAPSHOT_NAME.match(path.name)
        if not match:
            continue
        name = match.group("stack")
        template = json.loads(path.read_text(encoding="utf-8"))
        stacks.append(StackTemplate(stage=_stage_of(name), name=name, template=normalize_template(template)))
    return stacks
