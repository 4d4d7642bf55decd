"""The shared Lambda layer as staged for its asset: lambdas/common and slack_sdk at the pinned version, nothing else."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cdk_constructs.python_lambda import _stage, layer_parts
from tests.infra.conftest import resources_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def layer() -> Path:
    return Path(_stage(layer_parts(), prefix="layer"))


def test_layer_holds_slack_sdk_at_the_pinned_version(layer: Path) -> None:
    shipped = re.search(r'__version__ = "([^"]+)"', (layer / "python/slack_sdk/version.py").read_text())
    pinned = re.search(r"^slack-sdk==([\w.]+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert shipped is not None
    assert pinned is not None
    assert shipped[1] == importlib.metadata.version("slack-sdk") == pinned[1]
    assert _sources(layer / "python/slack_sdk") == _sources(layer_parts()["python/slack_sdk"])  # the whole package


def _sources(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_layer_holds_the_common_package(layer: Path) -> None:
    common = layer / "python/lambdas/common"
    assert sorted(p.name for p in common.glob("*.py")) == sorted(p.name for p in (ROOT / "lambdas/common").glob("*.py"))


def test_layer_has_no_bytecode_and_a_stable_path(layer: Path) -> None:
    assert [p for p in layer.rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"] == []
    # Content-addressed: staging the same files again lands on the same directory (and the same asset hash).
    assert Path(_stage(layer_parts(), prefix="layer")) == layer


def test_slack_module_imports_from_the_layer_alone(layer: Path) -> None:
    """Without site-packages (-S), so slack_sdk must come from the layer and need nothing else; no bytecode written
    (-B), since the staged directory is the asset."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import slack_sdk, lambdas.common.slack as slack;"
        " print(slack_sdk.__file__); print(slack.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-B", "-c", script, str(layer / "python")],
        cwd=layer,  # not the repository, whose own lambdas package would otherwise be on the path
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(Path(line).is_relative_to(layer) for line in result.stdout.splitlines())


def test_every_function_logs_to_an_encrypted_group_with_a_retention(templates: dict[str, dict[str, Any]]) -> None:
    # Including aws-cdk-lib's own functions: a group Lambda creates at the first run would be unencrypted and kept
    # forever (cdk_constructs/logs_key.py, EncryptedFunctionLogs).
    missing = []
    for stack, body in templates.items():
        resources = body["Resources"]
        for logical_id, function in resources_of(body, "AWS::Lambda::Function").items():
            via_config = function["Properties"].get("LoggingConfig", {}).get("LogGroup", {}).get("Ref")
            named = [
                group_id
                for group_id, group in resources_of(body, "AWS::Logs::LogGroup").items()
                if group["Properties"].get("LogGroupName") == {"Fn::Join": ["", ["/aws/lambda/", {"Ref": logical_id}]]}
            ]
            group_id = via_config or (named[0] if named else None)
            group = resources.get(group_id, {}).get("Properties", {}) if group_id else {}
            if not ("KmsKeyId" in group and "RetentionInDays" in group):
                missing.append(f"{stack}/{logical_id}")
    assert templates
    assert not missing, f"functions without an encrypted, expiring log group: {missing}"
