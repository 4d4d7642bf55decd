"""The driver/CUDA table, the versions-file loader and the synth-time CUDA gate."""

from __future__ import annotations

from pathlib import Path

import hcl2
import pytest

from stacks.gpu_versions import (
    MIN_DRIVER_FOR_CUDA,
    VERSION_VARIABLES,
    VERSIONS_DIR,
    AmiVersion,
    check_cuda_requirement,
    driver_supports_cuda,
    load_ami_versions,
    min_driver_for_cuda,
    parse_pkrvars,
    version_key,
)

V535 = AmiVersion("workstation", "driver535-cuda12.2-v1", "535.247.01", "12.2", "8.9.7.29")
V550 = AmiVersion("workstation", "driver550-cuda12.4-v1", "550.163.01", "12.4", "9.1.1.17")
V570 = AmiVersion("workstation", "driver570-cuda12.8-v1", "570.172.08", "12.8", "9.8.0.87")
VERSIONS = {v.name: v for v in (V535, V550, V570)}


def write_versions_file(directory: Path, name: str, **overrides: str) -> Path:
    values = {
        "flavour": "workstation",
        "ami_version": name,
        "nvidia_driver_version": "550.163.01",
        "cuda_version": "12.4",
        "cudnn_version": "9.1.1.17",
    } | overrides
    path = directory / f"{name}.pkrvars.hcl"
    path.write_text("".join(f'{key} = "{value}"\n' for key, value in values.items()), encoding="utf-8")
    return path


def test_table_covers_every_cuda_release_from_11_8_to_13_0() -> None:
    expected = ["11.8", "12.0", "12.1", "12.2", "12.3", "12.4", "12.5", "12.6", "12.8", "12.9", "13.0"]
    assert list(MIN_DRIVER_FOR_CUDA) == expected
    assert MIN_DRIVER_FOR_CUDA["12.4"] == "550.54.14"
    assert MIN_DRIVER_FOR_CUDA["12.8"] == "570.26"


def test_minimum_drivers_rise_with_cuda() -> None:
    keys = [version_key(driver) for driver in MIN_DRIVER_FOR_CUDA.values()]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


def test_table_cannot_be_mutated() -> None:
    with pytest.raises(TypeError):
        MIN_DRIVER_FOR_CUDA["12.7"] = "565.0"  # type: ignore[index]


def test_version_key_compares_numerically_not_as_text() -> None:
    assert version_key("570.26") > version_key("550.163.01")
    assert version_key("535.9") < version_key("535.54.03")
    with pytest.raises(ValueError, match=r"not a numeric dotted version: '12\.x'"):
        version_key("12.x")


def test_driver_supports_cuda_at_and_around_the_boundary() -> None:
    assert driver_supports_cuda("570.26", "12.8")
    assert driver_supports_cuda("570.172.08", "12.8")
    assert not driver_supports_cuda("570.25.99", "12.8")
    assert driver_supports_cuda("580.65.06", "11.8")


def test_unknown_cuda_release_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"CUDA '12.7' is not a known CUDA release; known: 11.8, 12.0, .*, 13.0"):
        min_driver_for_cuda("12.7")


def test_committed_versions_load_into_frozen_dataclasses() -> None:
    versions = load_ami_versions()
    assert versions["driver550-cuda12.4-v1"] == AmiVersion(
        "workstation", "driver550-cuda12.4-v1", "550.163.01", "12.4", "9.1.1.17"
    )
    assert versions["driver570-cuda12.8-v1"].driver_version == "570.172.08"
    assert versions["driver570-cuda12.8-v1"].ssm_parameter_name == "/mlbase/ami/workstation/driver570-cuda12.8-v1"
    with pytest.raises(AttributeError):
        versions["driver550-cuda12.4-v1"].driver_version = "1"  # type: ignore[misc]


def test_own_parser_agrees_with_python_hcl2_on_committed_files() -> None:
    options = hcl2.SerializationOptions(strip_string_quotes=True, with_comments=False)
    for path in sorted(VERSIONS_DIR.glob("*.pkrvars.hcl")):
        text = path.read_text(encoding="utf-8")
        assert parse_pkrvars(text, str(path)) == hcl2.loads(text, serialization_options=options), path
        assert set(parse_pkrvars(text, str(path))) == set(VERSION_VARIABLES)


def test_parser_allows_comments_and_blank_lines() -> None:
    assert parse_pkrvars('# a comment\n\nflavour = "workstation"\n', "f") == {"flavour": "workstation"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("flavour = workstation\n", r"f:1: expected name = \"value\", got 'flavour = workstation'"),
        ('a = "x"\na = "y"\n', "f:2: a is set twice"),
        ('a = "${var.b}"\n', "f:1: expected name"),
    ],
)
def test_parser_rejects_anything_but_plain_strings(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_pkrvars(text, "f")


def test_loader_rejects_missing_and_extra_variables(tmp_path: Path) -> None:
    path = tmp_path / "driver550-cuda12.4-v1.pkrvars.hcl"
    path.write_text('flavour = "workstation"\nami_version = "driver550-cuda12.4-v1"\nregion = "x"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"must set exactly .*missing \['nvidia_driver_version', .*extra \['region'\]"):
        load_ami_versions(tmp_path)


def test_loader_rejects_a_file_not_named_after_its_version(tmp_path: Path) -> None:
    write_versions_file(tmp_path, "driver550-cuda12.4-v1").rename(tmp_path / "latest.pkrvars.hcl")
    with pytest.raises(ValueError, match=r"file name must be driver550-cuda12.4-v1.pkrvars.hcl"):
        load_ami_versions(tmp_path)


def test_loader_rejects_a_name_that_disagrees_with_the_versions(tmp_path: Path) -> None:
    write_versions_file(tmp_path, "driver550-cuda12.6-v1")
    with pytest.raises(ValueError, match=r"does not match driver 550.163.01 and CUDA 12.4"):
        load_ami_versions(tmp_path)


def test_loader_rejects_a_driver_too_old_for_its_own_toolkit(tmp_path: Path) -> None:
    write_versions_file(tmp_path, "driver550-cuda12.8-v1", cuda_version="12.8")
    with pytest.raises(ValueError, match=r"driver 550.163.01 is older than CUDA 12.8 needs \(>= 570.26\)"):
        load_ami_versions(tmp_path)


def test_loader_rejects_an_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no \*\.pkrvars\.hcl versions files"):
        load_ami_versions(tmp_path)


def test_loader_reads_a_directory_of_its_own(tmp_path: Path) -> None:
    write_versions_file(tmp_path, "driver550-cuda12.4-v1")
    write_versions_file(tmp_path, "driver535-cuda12.2-v1", nvidia_driver_version="535.247.01", cuda_version="12.2")
    assert list(load_ami_versions(tmp_path)) == ["driver535-cuda12.2-v1", "driver550-cuda12.4-v1"]


def test_gate_passes_when_the_driver_is_new_enough() -> None:
    check_cuda_requirement("12.4", "driver550-cuda12.4-v1", VERSIONS)
    check_cuda_requirement("12.2", "driver570-cuda12.8-v1", VERSIONS)
    check_cuda_requirement("12.8", "driver570-cuda12.8-v1")  # the committed versions


def test_gate_fails_with_one_line_naming_driver_requirement_and_choices() -> None:
    with pytest.raises(ValueError, match=r"^AMI version driver535") as raised:
        check_cuda_requirement("12.8", "driver535-cuda12.2-v1", VERSIONS)
    assert str(raised.value) == (
        "AMI version driver535-cuda12.2-v1 has driver 535.247.01; CUDA 12.8 needs driver >= 570.26; "
        "choose one of: driver570-cuda12.8-v1"
    )


def test_gate_lists_every_suitable_version() -> None:
    with pytest.raises(ValueError, match=r"choose one of: driver550-cuda12.4-v1, driver570-cuda12.8-v1$"):
        check_cuda_requirement("12.3", "driver535-cuda12.2-v1", VERSIONS)


def test_gate_says_when_no_version_is_new_enough() -> None:
    with pytest.raises(ValueError, match=r"needs driver >= 580.65.06; choose one of: none yet \(add a packer/versions"):
        check_cuda_requirement("13.0", "driver570-cuda12.8-v1", VERSIONS)


def test_gate_rejects_an_unknown_ami_version() -> None:
    with pytest.raises(ValueError, match=r"unknown AMI version 'driver999' for CUDA 12.4; choose one of: driver550"):
        check_cuda_requirement("12.4", "driver999", VERSIONS)


def test_gate_rejects_an_unknown_cuda_release() -> None:
    with pytest.raises(ValueError, match=r"CUDA '12\.7' is not a known CUDA release"):
        check_cuda_requirement("12.7", "driver570-cuda12.8-v1", VERSIONS)
