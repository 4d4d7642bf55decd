"""checkov over every synthesized template: each failed check is fixed, or judged in `checkov_skips.yaml`.

checkov runs once, offline, from its own virtual environment (`.venv-checkov`, installed from
tools/checkov/requirements.txt: its dependencies clash with the project's pins).
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
SKIPS_FILE = Path(__file__).with_name("checkov_skips.yaml")
# No platform download (policies, guideline mappings) and no PyPI version check: with these, checkov opens no
# network connection at all. Without an API key it runs every built-in check.
OFFLINE = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE"}


@dataclass(frozen=True)
class Finding:
    check: str
    title: str
    guideline: str | None
    template: str
    stack: str
    logical_id: str
    path: str

    @property
    def resource(self) -> str:
        return f"{self.stack}/{self.logical_id}"

    def describe(self) -> str:
        guide = f" ({self.guideline})" if self.guideline else ""
        return f"{self.check} {self.resource} ({self.template}, {self.path}): {self.title}{guide}"

    def skip_line(self) -> str:
        return f'- {{checks: [{self.check}], resources: ["{self.resource}"], reason: "<why this is acceptable>"}}'


@dataclass(frozen=True)
class Skip:
    checks: tuple[str, ...]
    resources: tuple[str, ...]
    reason: str

    def covers(self, finding: Finding) -> bool:
        return finding.check in self.checks and any(fnmatch.fnmatchcase(finding.resource, p) for p in self.resources)


def load_skips(path: Path) -> list[Skip]:
    """The skip list; an entry without checks, resources or a reason is an error naming its position."""
    skips = []
    for number, entry in enumerate(yaml.safe_load(path.read_text(encoding="utf-8")), start=1):
        checks, resources, reason = entry.get("checks"), entry.get("resources"), entry.get("reason")
        if not (_strings(checks) and _strings(resources) and isinstance(reason, str) and reason.strip()):
            raise ValueError(f"{path.name}: entry {number} needs checks, resources and a reason: {entry}")
        skips.append(Skip(tuple(checks), tuple(resources), reason))
    return skips


def _strings(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


def stack_templates(assembly: Path) -> dict[Path, str]:
    """Template file -> stack name, for every stack of every stage."""
    found = {}
    for manifest in sorted(assembly.glob("assembly-*/manifest.json")):
        for artifact in json.loads(manifest.read_text(encoding="utf-8"))["artifacts"].values():
            if artifact["type"] == "aws:cloudformation:stack":
                properties = artifact["properties"]
                found[manifest.parent / properties["templateFile"]] = properties["stackName"]
    return found


def failed_checks(report: Any, stacks: dict[Path, str]) -> list[Finding]:
    """The failed checks of checkov's JSON report (one object per framework, or a list of them)."""
    findings = []
    templates: dict[Path, dict[str, Any]] = {}
    for part in report if isinstance(report, list) else [report]:
        assert part.get("summary", part).get("parsing_errors", 0) == 0, part
        for failure in part.get("results", {}).get("failed_checks", []):
            file = Path(failure["file_abs_path"])
            template = templates.setdefault(file, json.loads(file.read_text(encoding="utf-8")))
            logical_id = failure["resource"].rpartition(".")[2]
            metadata = template["Resources"][logical_id].get("Metadata", {})
            findings.append(
                Finding(
                    check=failure["check_id"],
                    title=failure["check_name"],
                    guideline=failure.get("guideline"),
                    template=file.name,
                    stack=stacks[file],
                    logical_id=logical_id,
                    path=metadata.get("aws:cdk:path", "?"),
                )
            )
    return findings


@pytest.fixture(scope="session")
def checkov_findings(cloud_assembly: Path) -> list[Finding]:
    if not CHECKOV.is_file():
        pytest.fail(f"{CHECKOV.relative_to(ROOT)} is missing: run `make deps` to create it", pytrace=False)
    stacks = stack_templates(cloud_assembly)
    assert len(stacks) >= 10, stacks
    env = {k: v for k, v in os.environ.items() if not k.startswith("BC_")} | OFFLINE
    files = [arg for file in stacks for arg in ("--file", str(file))]
    options = ["--framework", "cloudformation", "--skip-download", "--output", "json", "--quiet", "--compact"]
    proc = subprocess.run(
        [str(CHECKOV), *options, *files], capture_output=True, text=True, env=env, check=False, timeout=300
    )
    # 0: every check passed, 1: some failed; anything else is checkov itself failing.
    assert proc.returncode in (0, 1), proc.stderr
    return failed_checks(json.loads(proc.stdout), stacks)


@pytest.fixture(scope="module")
def skips() -> list[Skip]:
    return load_skips(SKIPS_FILE)


def test_every_failed_check_is_judged(checkov_findings: list[Finding], skips: list[Skip]) -> None:
    unexplained = [f for f in checkov_findings if not any(s.covers(f) for s in skips)]
    advice = f"fix it, or if it is justified add to {SKIPS_FILE.name}:"
    report = "\n".join(f"{f.describe()}\n    {advice}\n    {f.skip_line()}" for f in unexplained)
    assert not unexplained, f"{len(unexplained)} checkov finding(s) neither fixed nor judged:\n{report}"


def test_every_skip_covers_a_failed_check(checkov_findings: list[Finding], skips: list[Skip]) -> None:
    # Each check of an entry, with each of its patterns, must still match a failure.
    dead = [
        f"{check} {pattern}"
        for s in skips
        for check in s.checks
        for pattern in s.resources
        if not any(Skip((check,), (pattern,), s.reason).covers(f) for f in checkov_findings)
    ]
    listing = "\n".join(dead)
    assert not dead, f"{SKIPS_FILE.name}: these skips cover no failed check (fixed, renamed or gone):\n{listing}"


def test_a_skip_entry_without_a_reason_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "skips.yaml"
    bad.write_text('- {checks: [CKV_AWS_21], resources: ["Production-PhotoService/UploadsBucket*"], reason: " "}\n')
    with pytest.raises(ValueError, match="entry 1 needs checks, resources and a reason"):
        load_skips(bad)
