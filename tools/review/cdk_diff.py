"""The CDK CLI's own per-stack diff (``cdk diff --template``), appended to the report on request.

``cdk diff --method template --template FILE`` runs offline against a cloud assembly, and its IAM statement and
security-group tables are the form reviewers know from ``cdk deploy``. It compares the assembly's templates as they
are, so a copy with normalized templates is diffed, or every asset hash would show as a change; both sides also
drop the CDK's bookkeeping metadata (construct paths, asset paths, the analytics resource), which a snapshot lacks
and a CLI synth has, so that only real changes are shown.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tools.review.assembly import REPO_ROOT, StackTemplate, load_assembly
from tools.review.diff import comparable_template
from tools.review.normalize import normalize_template
from tools.review.report import Review

CDK_CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"


def normalized_copy(assembly: Path, target: Path) -> Path:
    """Copy manifests and templates of ``assembly`` (not the asset folders) with normalized, comparable templates."""
    shutil.copytree(assembly, target, ignore=shutil.ignore_patterns("asset.*"))
    for path in target.rglob("*.template.json"):
        template = comparable_template(normalize_template(json.loads(path.read_text(encoding="utf-8"))))
        path.write_text(json.dumps(template, indent=1), encoding="utf-8")
    return target


def cdk_diff_stack(assembly: Path, stack: StackTemplate, baseline: dict[str, object], workdir: Path) -> str:
    """Text of ``cdk diff`` for one stack of ``assembly`` against the ``baseline`` template."""
    workdir.mkdir(parents=True, exist_ok=True)
    template_file = workdir / f"{stack.name}.baseline.json"
    template_file.write_text(json.dumps(baseline), encoding="utf-8")
    selector = stack.display_name or stack.name
    cmd = [str(CDK_CLI), "diff", "--app", str(assembly), "--method", "template", "--exclusively", "--no-notices"]
    cmd += ["--template", str(template_file), selector]
    env = dict(os.environ, JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION="1", CDK_DISABLE_CLI_TELEMETRY="true")
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    # The CLI first replays the synth's construct annotations; they are not part of the diff.
    start = next((i for i, line in enumerate(lines) if line.startswith("Stack ")), 0)
    return "\n".join(lines[start:]).strip()


def cdk_diff_sections(review: Review, assembly: Path, workdir: Path, *, markdown: bool) -> str:
    """One ``cdk diff`` section per stack that exists on both sides and changed."""
    if not CDK_CLI.exists():
        return "\n(cdk diff skipped: node_modules/.bin/cdk is missing; run `make deps`)\n"
    copy = normalized_copy(assembly, workdir / "assembly")
    stacks = {s.name: s for s in load_assembly(copy)}
    parts = []
    for diff in review.changed:
        if diff.old is None or diff.new is None or diff.stack not in stacks:
            continue
        text = cdk_diff_stack(copy, stacks[diff.stack], comparable_template(diff.old), workdir)
        if markdown:
            parts.append(f"<details><summary>cdk diff {diff.stack}</summary>\n\n```\n{text}\n```\n\n</details>\n")
        else:
            parts.append(f"--- cdk diff {diff.stack} ---\n{text}\n")
    return "\n" + "\n".join(parts)
