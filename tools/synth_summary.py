"""Print a short table of stages, stacks and resource counts from a synthesized cloud assembly."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def stacks_in(assembly: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(stage, stack name, template) for every stack of every nested assembly, in manifest order."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    manifest = json.loads((assembly / "manifest.json").read_text(encoding="utf-8"))
    for artifact_id, artifact in manifest.get("artifacts", {}).items():
        if artifact.get("type") == "cdk:cloud-assembly":
            stage = artifact.get("displayName", artifact_id).removeprefix("assembly-")
            nested = assembly / artifact["properties"]["directoryName"]
            found += [(stage, name, template) for _, name, template in stacks_in(nested)]
        elif artifact.get("type") == "aws:cloudformation:stack":
            template_file = assembly / artifact["properties"]["templateFile"]
            name = artifact.get("properties", {}).get("stackName") or artifact.get("displayName", artifact_id)
            found.append(("", name, json.loads(template_file.read_text(encoding="utf-8"))))
    return found


def summary(assembly: Path) -> str:
    rows = [("Stage", "Stack", "Resources", "Largest types")]
    total = 0
    for stage, name, template in stacks_in(assembly):
        resources = template.get("Resources", {})
        kinds = Counter(r["Type"].removeprefix("AWS::") for r in resources.values())
        top = ", ".join(f"{k} {n}" for k, n in kinds.most_common(3))
        rows.append((stage or "-", name, str(len(resources)), top))
        total += len(resources)
    rows.append(("", f"{len(rows) - 1} stacks", str(total), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    assembly = Path(argv[0] if argv else "cdk.out")
    if not (assembly / "manifest.json").is_file():
        print(f"{assembly}: no cloud assembly here; run `make synth` first", file=sys.stderr)
        return 1
    print(summary(assembly))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
