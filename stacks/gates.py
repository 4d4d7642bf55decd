"""The security gate at the end of synth: any failed validation plugin (cdk-nag packs, annotations) stops it.

aws-cdk-lib throws on a failed validation only when it believes it runs in-process; under the CDK CLI it writes
`validation-report.json` into the cloud assembly and leaves the verdict to the caller. Reading that report here makes
`make synth` (through the CLI), `python app.py` and the tests fail the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the review tool reads reports without starting the CDK's JavaScript runtime
    from aws_cdk import App

REPORT = "validation-report.json"


def validation_failures(assembly_dir: Path | str) -> list[str]:
    """One line per violation of every failed plugin in the assembly's validation report (none: empty list)."""
    path = Path(assembly_dir) / REPORT
    if not path.is_file():
        return []
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    lines: list[str] = []
    for plugin in report.get("pluginReports", []):
        if plugin.get("conclusion") != "failure":
            continue
        for violation in plugin.get("violations", []):
            rule = violation.get("ruleName", "?")
            description = " ".join(str(violation.get("description", "")).split())
            for construct in violation.get("violatingConstructs", []) or [{}]:
                where = construct.get("constructPath", "?")
                lines.append(f"{where}: {rule}: {description}")
    return lines


def synth_checked(app: App) -> list[str]:
    """Synthesize `app` and return its validation failures (an empty list: the gate passed)."""
    try:
        directory = app.synth().directory
    except RuntimeError as err:
        # Run in-process (tests, plain `python app.py`) the library throws; the report is written all the same.
        if "ValidationFailed" not in str(err):
            raise
        directory = app.outdir
    return validation_failures(directory)
