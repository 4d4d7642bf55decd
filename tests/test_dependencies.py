"""The dependency sets and their hash locks: each `.in` file is compiled (`make lock`, pip-tools) into the `.txt` next
to it, and everything the Makefile and the worker image install comes from those locks.

- synth: `requirements.in` -> `requirements.txt`, all `make synth` installs (no torch, no test tools);
- worker: `worker/requirements.in` -> `worker/requirements.txt`, what the image installs and the tests run with;
- test: `requirements-dev.in` -> `requirements-dev.txt`, both sets plus the test tools, at the same versions;
- checkov: `tools/checkov/requirements.in` -> `.txt`, its own environment (`.venv-checkov/`).

These tests catch an `.in` edited without `make lock`, a lock entry without hashes, two versions of one package across
the locks, a test environment that is not the lock, and an image whose torch is not the one the tests ran.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cdk_constructs import python_lambda

REPO = Path(__file__).resolve().parent.parent
SYNTH, WORKER, DEV = REPO / "requirements", REPO / "worker" / "requirements", REPO / "requirements-dev"
CHECKOV = REPO / "tools" / "checkov" / "requirements"
SETS = {"synth": SYNTH, "worker": WORKER, "test": DEV, "checkov": CHECKOV}

_LOCK_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")


def lock(base: Path) -> dict[str, tuple[str, int]]:
    """`{canonical name: (version, number of hashes)}` of a pip-compile lock (`base` + ".txt")."""
    entries: dict[str, tuple[str, int]] = {}
    current = ""
    for line in (base.with_suffix(".txt")).read_text().splitlines():
        if match := _LOCK_ENTRY.match(line):
            current = canonicalize_name(match["name"])
            entries[current] = (match["version"], 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, hashes = entries[current]
            entries[current] = (version, hashes + 1)
    return entries


def direct_pins(path: Path) -> dict[str, str]:
    """`{canonical name: version}` of every `name==version` an `.in` file asks for, following its `-r` includes."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins |= direct_pins(path.parent / line.removeprefix("-r ").strip())
        elif line and not line.startswith("-"):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{path.name}: {line!r} must be pinned with =="
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


@pytest.mark.parametrize("name", SETS)
def test_every_lock_entry_is_hash_pinned_and_compiled_from_its_in_file(name: str) -> None:
    base = SETS[name]
    header = base.with_suffix(".txt").read_text().split("\n\n", 1)[0]
    assert "--generate-hashes" in header, header
    assert f"{base.relative_to(REPO)}.in" in header, header
    unhashed = [package for package, (_, hashes) in lock(base).items() if hashes == 0]
    assert not unhashed, f"{base.name}.txt has entries without hashes: {unhashed}; run `make lock`"


@pytest.mark.parametrize("name", SETS)
def test_every_direct_pin_is_in_its_lock_at_the_same_version(name: str) -> None:
    base = SETS[name]
    locked = lock(base)
    stale = {
        package: (version, locked.get(package, ("missing", 0))[0])
        for package, version in direct_pins(base.with_suffix(".in")).items()
        if locked.get(package, ("", 0))[0] != version
    }
    assert not stale, f"{base.name}.in and its lock disagree (asked, locked): {stale}; run `make lock`"


def test_the_test_lock_holds_the_synth_and_worker_sets_at_their_versions() -> None:
    test = lock(DEV)
    for base in (SYNTH, WORKER):
        differing = {
            package: (version, test.get(package, ("missing", 0))[0])
            for package, (version, _) in lock(base).items()
            if test.get(package, ("", 0))[0] != version
        }
        assert not differing, f"requirements-dev.txt differs from {base.relative_to(REPO)}.txt: {differing}"


def test_synth_installs_no_ml_or_test_dependencies() -> None:
    synth = lock(SYNTH)
    assert not {"torch", "torchvision", "numpy", "pillow", "pytest", "moto", "matplotlib"} & synth.keys()


def test_this_environment_is_the_test_lock() -> None:
    # What the tests ran with is what the locks say; a hand-installed package would make the results lie.
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    wrong = {
        package: (version, installed.get(package, "missing"))
        for package, (version, _) in lock(DEV).items()
        if installed.get(package) != version
    }
    assert not wrong, f"installed packages differ from requirements-dev.txt (locked, installed): {wrong}; `make deps`"


def test_the_worker_image_installs_its_lock_on_the_python_the_lock_was_compiled_for() -> None:
    dockerfile = (REPO / "worker" / "Dockerfile").read_text()
    assert "pip install --no-cache-dir --require-hashes -r /app/requirements.txt" in dockerfile
    assert "COPY requirements.txt /app/requirements.txt" in dockerfile
    lock_header = WORKER.with_suffix(".txt").read_text()
    compiled_for = re.search(r"autogenerated by pip-compile with Python (\d+\.\d+)", lock_header)
    base_image = re.search(r"^FROM python:(\d+\.\d+)-slim", dockerfile, re.MULTILINE)
    assert compiled_for, "worker/requirements.txt names no Python version"
    assert base_image, "the worker image is not built on python:<version>-slim"
    assert compiled_for[1] == base_image[1]
    assert compiled_for[1] == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_the_image_torch_is_the_torch_the_worker_is_tested_with() -> None:
    worker = lock(WORKER)
    for package in ("torch", "torchvision", "pillow", "pillow-heif", "numpy", "aws-lambda-powertools"):
        assert importlib.metadata.version(package) == worker[package][0], package
    import torch
    import torchvision

    # The CUDA build the config declares (`cuda` in the worker YAML) is the one installed and shipped.
    assert torch.version.cuda == "13.0"
    assert torchvision.__version__.endswith("+cu130")


def test_the_lambdas_powertools_layer_is_the_release_the_tests_run() -> None:
    # The Lambdas import Powertools from AWS's public layer, the tests from the locked library: the template reads the
    # layer of exactly the pinned release, for the functions' runtime and architecture.
    assert lock(WORKER)["aws-lambda-powertools"][0] == python_lambda.POWERTOOLS_VERSION
    assert (
        f"/aws/service/powertools/python/arm64/{python_lambda.RUNTIME.name}/{python_lambda.POWERTOOLS_VERSION}"
    ) == python_lambda.POWERTOOLS_LAYER_PARAMETER
    assert python_lambda.RUNTIME.name == "python3.13"
