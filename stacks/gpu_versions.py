"""The driver/CUDA gate: the one table of minimum NVIDIA driver per CUDA release and the committed AMI versions.

`MIN_DRIVER_FOR_CUDA` holds NVIDIA's published minimum Linux x86_64 driver for each CUDA toolkit minor release
(the "Toolkit Driver Version" of its GA release in the CUDA release notes). `load_ami_versions` reads
`packer/versions/*.pkrvars.hcl`, the same files Packer builds from, so the versions a stack can choose are exactly the
versions that were built. `check_cuda_requirement` is what the config loader calls for each worker and researcher:
it raises a one-line `ValueError` when the chosen AMI's driver is too old for the CUDA version the entry needs.

Pure module: no CDK imports and no third-party parser (it runs at synth, where only the synth dependencies exist).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

# Source: NVIDIA CUDA Toolkit release notes, table "CUDA Toolkit and Corresponding Driver Versions", GA rows.
# CUDA 12.7 was never released. A newer driver always runs older CUDA; this is the floor for each release.
MIN_DRIVER_FOR_CUDA: Final[Mapping[str, str]] = MappingProxyType(
    {
        "11.8": "520.61.05",
        "12.0": "525.60.13",
        "12.1": "530.30.02",
        "12.2": "535.54.03",
        "12.3": "545.23.06",
        "12.4": "550.54.14",
        "12.5": "555.42.02",
        "12.6": "560.28.03",
        "12.8": "570.26",
        "12.9": "575.51.03",
        "13.0": "580.65.06",
    }
)

VERSIONS_DIR: Final[Path] = Path(__file__).resolve().parent.parent / "packer" / "versions"

# Exactly the variables each versions file sets; the Packer template declares them without defaults.
VERSION_VARIABLES: Final[tuple[str, ...]] = (
    "flavour",
    "ami_version",
    "nvidia_driver_version",
    "cuda_version",
    "cudnn_version",
)

_ASSIGNMENT = re.compile(r'^(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*"(?P<value>[^"\\$]*)"$')
_NUMERIC_VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_CUDA_VERSION = re.compile(r"^[0-9]+\.[0-9]+$")
_AMI_VERSION = re.compile(r"^driver(?P<major>[0-9]+)-cuda(?P<cuda>[0-9]+\.[0-9]+)-v[0-9]+$")


@dataclass(frozen=True)
class AmiVersion:
    """One built driver/CUDA combination, as committed in `packer/versions/<name>.pkrvars.hcl`."""

    flavour: str
    name: str
    driver_version: str
    cuda_version: str
    cudnn_version: str

    @property
    def ssm_parameter_name(self) -> str:
        """The SSM parameter the Packer build writes the AMI ID to; the CDK resolves it at deploy time."""
        return f"/mlbase/ami/{self.flavour}/{self.name}"


def version_key(version: str) -> tuple[int, ...]:
    """Numeric sort key of a dotted version ("570.26" -> (570, 26)); raises ValueError if it is not numeric."""
    if not _NUMERIC_VERSION.match(version):
        raise ValueError(f"not a numeric dotted version: {version!r}")
    return tuple(int(part) for part in version.split("."))


def min_driver_for_cuda(cuda_version: str) -> str:
    """The minimum driver for a CUDA major.minor release; raises ValueError for a release not in the table."""
    try:
        return MIN_DRIVER_FOR_CUDA[cuda_version]
    except KeyError:
        known = ", ".join(MIN_DRIVER_FOR_CUDA)
        raise ValueError(f"CUDA {cuda_version!r} is not a known CUDA release; known: {known}") from None


def driver_supports_cuda(driver_version: str, cuda_version: str) -> bool:
    """Whether a driver is at least the minimum NVIDIA publishes for a CUDA release."""
    return version_key(driver_version) >= version_key(min_driver_for_cuda(cuda_version))


def parse_pkrvars(text: str, source: str) -> dict[str, str]:
    """Parse a versions file: only `name = "string"` lines, blank lines and `#` comments are allowed.

    Deliberately narrower than HCL: versions are data, and anything cleverer in these files is a mistake.
    """
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ASSIGNMENT.match(line)
        if match is None:
            raise ValueError(f'{source}:{number}: expected name = "value", got {line!r}')
        key = match["key"]
        if key in values:
            raise ValueError(f"{source}:{number}: {key} is set twice")
        values[key] = match["value"]
    return values


def ami_version_from_values(values: Mapping[str, str], source: str) -> AmiVersion:
    """Validate one versions file's values into an AmiVersion; errors name the file, the field and the value."""
    missing = [key for key in VERSION_VARIABLES if key not in values]
    extra = sorted(set(values) - set(VERSION_VARIABLES))
    if missing or extra:
        raise ValueError(f"{source}: must set exactly {', '.join(VERSION_VARIABLES)}; missing {missing}, extra {extra}")
    version = AmiVersion(
        flavour=values["flavour"],
        name=values["ami_version"],
        driver_version=values["nvidia_driver_version"],
        cuda_version=values["cuda_version"],
        cudnn_version=values["cudnn_version"],
    )
    name_match = _AMI_VERSION.match(version.name)
    if name_match is None:
        raise ValueError(f"{source}: ami_version {version.name!r} must look like driver550-cuda12.4-v1")
    for field, value in (("nvidia_driver_version", version.driver_version), ("cudnn_version", version.cudnn_version)):
        if not _NUMERIC_VERSION.match(value):
            raise ValueError(f"{source}: {field} {value!r} must be a dotted numeric version")
    if not _CUDA_VERSION.match(version.cuda_version):
        raise ValueError(f"{source}: cuda_version {version.cuda_version!r} must be major.minor, e.g. 12.4")
    if name_match["major"] != version.driver_version.split(".")[0] or name_match["cuda"] != version.cuda_version:
        raise ValueError(
            f"{source}: ami_version {version.name!r} does not match driver {version.driver_version} "
            f"and CUDA {version.cuda_version}"
        )
    # An AMI whose own toolkit its driver cannot run would pass the gate for older CUDA and fail on the machine.
    if not driver_supports_cuda(version.driver_version, version.cuda_version):
        raise ValueError(
            f"{source}: driver {version.driver_version} is older than CUDA {version.cuda_version} needs "
            f"(>= {min_driver_for_cuda(version.cuda_version)})"
        )
    return version


def load_ami_versions(directory: Path = VERSIONS_DIR) -> dict[str, AmiVersion]:
    """All committed AMI versions by name, sorted by name; each file must be named after its ami_version."""
    versions: dict[str, AmiVersion] = {}
    for path in sorted(directory.glob("*.pkrvars.hcl")):
        version = ami_version_from_values(parse_pkrvars(path.read_text(encoding="utf-8"), str(path)), str(path))
        if path.name != f"{version.name}.pkrvars.hcl":
            raise ValueError(f"{path}: file name must be {version.name}.pkrvars.hcl (its ami_version)")
        versions[version.name] = version
    if not versions:
        raise ValueError(f"{directory}: no *.pkrvars.hcl versions files")
    return versions


def check_cuda_requirement(
    required_cuda: str,
    ami_version: str,
    versions: Mapping[str, AmiVersion] | None = None,
) -> None:
    """Raise a one-line ValueError unless `ami_version` exists and its driver runs CUDA `required_cuda`.

    `versions` defaults to the committed `packer/versions`; tests pass their own. The message lists the AMI versions
    that would satisfy the requirement, so the fix is a copy-paste.
    """
    available = load_ami_versions() if versions is None else versions
    needed = min_driver_for_cuda(required_cuda)
    suitable = sorted(name for name, v in available.items() if driver_supports_cuda(v.driver_version, required_cuda))
    choices = ", ".join(suitable) if suitable else "none yet (add a packer/versions/*.pkrvars.hcl and build it)"
    chosen = available.get(ami_version)
    if chosen is None:
        raise ValueError(f"unknown AMI version {ami_version!r} for CUDA {required_cuda}; choose one of: {choices}")
    if not driver_supports_cuda(chosen.driver_version, required_cuda):
        raise ValueError(
            f"AMI version {ami_version} has driver {chosen.driver_version}; CUDA {required_cuda} needs driver "
            f">= {needed}; choose one of: {choices}"
        )
