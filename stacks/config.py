"""Typed configuration: `config/platform.yaml` and `config/workers/*.yaml`, validated once into frozen models.

Every error is reported as one line naming the file, the dotted field path, the bad value and what is allowed, e.g.
`config/platform.yaml: network.research.cidr: '10.20.0.0/16' overlaps network.production.cidr ('10.20.0.0/16'); ...`.
`python -m stacks.config [PATH]` checks a file from the command line.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from stacks.config_fields import REPO_ROOT, ConfigError, M, _display
from stacks.config_platform import GitHub, PlatformConfig
from stacks.config_worker import WorkerConfig

# What the rest of the project imports from here; the models live in stacks/config_{fields,platform,worker}.py.
__all__ = [
    "DEFAULT_CONFIG",
    "REPO_ROOT",
    "ConfigError",
    "GitHub",
    "Platform",
    "PlatformConfig",
    "WorkerConfig",
    "dotted",
    "load_platform",
    "load_worker",
]

DEFAULT_CONFIG = REPO_ROOT / "config" / "platform.yaml"


@dataclass(frozen=True)
class Platform:
    """Everything synth needs: the platform config and the worker definitions, with where they came from."""

    config: PlatformConfig
    source: Path
    workers: tuple[WorkerConfig, ...] = ()


# --- loading ----------------------------------------------------------------------------------------------------


def load_platform(path: Path | str | None = None) -> Platform:
    """Read, validate and cross-check a platform config and the worker files in `workers/` beside it.

    Raises ConfigError with one line on the first problem.
    """
    file = Path(path) if path else DEFAULT_CONFIG
    raw = _read_yaml(file)
    config = _validate(PlatformConfig, raw, file)
    _cross_check(config, file)
    workers = tuple(load_worker(p) for p in sorted((file.parent / "workers").glob("*.yaml")))
    names = [w.name for w in workers]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(file.parent / "workers", "name", name, "each worker file needs a unique name")
    for i, worker in enumerate(workers):
        for other in workers[:i]:
            if worker.input_prefix.startswith(other.input_prefix) or other.input_prefix.startswith(worker.input_prefix):
                raise ConfigError(
                    file.parent / "workers" / f"{worker.name}.yaml",
                    "input_prefix",
                    worker.input_prefix,
                    f"overlaps worker {other.name}'s {other.input_prefix!r}; S3 sends each upload to one queue",
                )
    return Platform(config=config, source=file, workers=workers)


def load_worker(path: Path | str) -> WorkerConfig:
    """Read and validate one worker definition (`config/workers/<name>.yaml`)."""
    file = Path(path)
    worker = _validate(WorkerConfig, _read_yaml(file), file)
    if worker.scaling.min_tasks > worker.scaling.max_tasks:
        raise ConfigError(
            file,
            "scaling.min_tasks",
            worker.scaling.min_tasks,
            f"must not exceed scaling.max_tasks ({worker.scaling.max_tasks})",
        )
    for instance_type in worker.scaling.images_per_second_by_instance_type:
        if instance_type not in worker.capacity.instance_types:
            raise ConfigError(
                file,
                f"scaling.images_per_second_by_instance_type.{instance_type}",
                instance_type,
                f"must be one of capacity.instance_types ({', '.join(worker.capacity.instance_types)})",
            )
    if worker.queue.dead_letter_retention_days < worker.queue.retention_days:
        raise ConfigError(
            file,
            "queue.dead_letter_retention_days",
            worker.queue.dead_letter_retention_days,
            f"must be at least queue.retention_days ({worker.queue.retention_days}) so failed photos outlive the queue",
        )
    from stacks.gpu_versions import driver_supports_cuda, min_driver_for_cuda

    try:
        supported = driver_supports_cuda(worker.capacity.ami_driver_version, worker.cuda)
    except ValueError as err:
        raise ConfigError(file, "cuda", worker.cuda, str(err)) from None
    if not supported:
        raise ConfigError(
            file,
            "capacity.ami_driver_version",
            worker.capacity.ami_driver_version,
            f"is older than CUDA {worker.cuda} needs (>= {min_driver_for_cuda(worker.cuda)}); pin a newer ECS GPU AMI",
        )
    if not (REPO_ROOT / worker.image_dir / "Dockerfile").is_file():
        raise ConfigError(
            file, "image_dir", worker.image_dir, "must be a directory with a Dockerfile, relative to the repository"
        )
    return worker


def _read_yaml(file: Path) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(
            file, "", str(file), f"cannot be read ({err.strerror}); set MLBASE_CONFIG to a file"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "document"
        raise ConfigError(file, where, getattr(err, "problem", str(err)), "is not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(file, "", data, "must be a YAML mapping at the top level")
    return data


def _validate(model: type[M], raw: Any, file: Path) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        loc = tuple(first["loc"])
        path = dotted(loc)
        if first["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            raise ConfigError(file, path, loc[-1], f"unknown key; allowed here: {', '.join(allowed)}") from None
        if first["type"] == "missing":
            raise ConfigError(file, path, None, "is required") from None
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(file, path, first.get("input"), message) from None


def dotted(loc: Sequence[int | str]) -> str:
    """('network', 'vpcs', 0, 'cidr') -> 'network.vpcs[0].cidr'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _allowed_keys(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    return sorted(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _model_in(annotation: Any) -> Any:
    """The BaseModel class inside an annotation such as `Budget`, `tuple[Person, ...]` or `dict[str, Worker]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _cross_check(config: PlatformConfig, file: Path) -> None:
    for name, account in (("production", config.accounts.production), ("research", config.accounts.research)):
        for i, zone in enumerate(account.availability_zones):
            if not re.fullmatch(rf"{re.escape(account.region)}[a-z]", zone):
                raise ConfigError(
                    file,
                    f"accounts.{name}.availability_zones[{i}]",
                    zone,
                    f"must be an availability zone of {account.region} (like {account.region}a)",
                )
        if len(set(account.availability_zones)) != len(account.availability_zones):
            raise ConfigError(
                file, f"accounts.{name}.availability_zones", list(account.availability_zones), "must not repeat a zone"
            )
        if account.region not in config.allowed_regions:
            raise ConfigError(
                file,
                "allowed_regions",
                list(config.allowed_regions),
                f"must include the {name} region {account.region}",
            )
    homes = sorted({config.accounts.production.region, config.accounts.research.region})
    for region in config.allowed_regions:
        if region not in homes:
            raise ConfigError(
                file,
                "allowed_regions",
                list(config.allowed_regions),
                f"{region} has no guardrails (the AWS Config recorder and security-group rules run in the accounts'"
                f" home regions {', '.join(homes)}); list only those (global services such as IAM need no entry)",
            )
    if config.accounts.production.account_id == config.accounts.research.account_id:
        raise ConfigError(
            file, "accounts.research.account_id", config.accounts.research.account_id, "must differ from production's"
        )
    _check_disjoint([(f"network.{name}.cidr", vpc.cidr) for name, vpc in config.network.vpcs().items()], file)
    if config.audit.expiration_days <= config.audit.object_lock_days:
        raise ConfigError(
            file,
            "audit.expiration_days",
            config.audit.expiration_days,
            f"must be longer than audit.object_lock_days ({config.audit.object_lock_days}): locked logs cannot expire",
        )
    _check_people(config, file)
    if config.photo_service.auth == "jwt" and not (
        config.photo_service.jwt_issuer and config.photo_service.jwt_audience
    ):
        raise ConfigError(
            file,
            "photo_service.jwt_issuer",
            config.photo_service.jwt_issuer,
            "auth: jwt needs jwt_issuer (https://...) and jwt_audience (your app's client IDs)",
        )
    if config.audit.transition_days >= config.audit.expiration_days:
        raise ConfigError(
            file, "audit.transition_days", config.audit.transition_days, "must be shorter than audit.expiration_days"
        )


def _check_people(config: PlatformConfig, file: Path) -> None:
    from stacks.gpu_versions import check_cuda_requirement

    names: set[str] = set()
    for i, person in enumerate(config.people):
        if person.name in names:
            raise ConfigError(file, f"people[{i}].name", person.name, "must be unique among people")
        names.add(person.name)
        if person.workstation is None:
            continue
        if person.slack_user_id is None:
            raise ConfigError(
                file, f"people[{i}].slack_user_id", None, "is required for a person with a workstation (idle warnings)"
            )
        try:
            check_cuda_requirement(person.workstation.cuda, person.workstation.ami_version)
        except ValueError as err:
            raise ConfigError(
                file, f"people[{i}].workstation.ami_version", person.workstation.ami_version, str(err)
            ) from None


def _check_disjoint(cidrs: Iterable[tuple[str, str]], file: Path) -> None:
    seen: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    for path, cidr in cidrs:
        net = ipaddress.ip_network(cidr)
        for other_path, other in seen:
            if net.overlaps(other):
                raise ConfigError(
                    file, path, cidr, f"overlaps {other_path} ({other}); VPCs that peer need disjoint CIDR blocks"
                )
        seen.append((path, net))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        platform = load_platform(args[0] if args else None)
    except ConfigError as err:
        print(f"config error: {err.line()}", file=sys.stderr)
        return 2
    print(f"{_display(str(platform.source))}: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
