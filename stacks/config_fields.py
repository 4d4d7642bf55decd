"""Config building blocks: the one-line `ConfigError`, the field validators and types, and the strict `Model` base
that every section of `config/platform.yaml` and `config/workers/*.yaml` is made of (stacks/config.py loads them)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict

M = TypeVar("M", bound=BaseModel)

REPO_ROOT = Path(__file__).resolve().parent.parent

# Regions mlbase knows; AZ names must be the region name plus one letter.
KNOWN_REGIONS = frozenset(
    {
        "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
        "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1",
        "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2",
        "ap-south-1", "ap-east-1", "me-south-1", "af-south-1",
    }
)  # fmt: skip


class ConfigError(Exception):
    """A configuration problem, rendered as one line: file, dotted path, bad value, what is allowed."""

    def __init__(self, file: Path | str, path: str, value: Any, allowed: str) -> None:
        self.file, self.path, self.value, self.allowed = str(file), path, value, allowed
        super().__init__(self.line())

    def line(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{_display(self.file)}: {where}{self.value!r}: {self.allowed}"


def _display(file: str) -> str:
    try:
        return str(Path(file).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return file


# --- field validators -------------------------------------------------------------------------------------------


def _matching(pattern: str, message: str) -> AfterValidator:
    """A string that must match `pattern` in full; `message` says what it must be (it ends up in the one-line error)."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


def _region(value: str) -> str:
    if value not in KNOWN_REGIONS:
        raise ValueError(f"must be an AWS region name, one of: {', '.join(sorted(KNOWN_REGIONS))}")
    return value


def _cidr(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as err:
        raise ValueError(f"must be an IPv4 CIDR block with no host bits set, like 10.0.0.0/16 ({err})") from None
    if net.version != 4 or not net.is_private:
        raise ValueError("must be a private IPv4 range (10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)")
    if not 16 <= net.prefixlen <= 24:
        raise ValueError("must have a prefix length between /16 and /24 (VPC limits, room for subnets)")
    return value


def _percentage(value: int) -> int:
    if not 1 <= value <= 1000:
        raise ValueError("must be a percentage between 1 and 1000")
    return value


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError("must be a TCP port between 1 and 65535")
    return value


InstanceType = Annotated[
    str,
    _matching(
        r"(g|p)[0-9][a-z0-9-]*\.[0-9]*(x?large|metal)[a-z0-9-]*",
        "must be a GPU instance type of the g or p families, like g5.xlarge",
    ),
]
AccountId = Annotated[str, _matching(r"\d{12}", "must be a 12-digit AWS account ID, quoted as a string")]
Region = Annotated[str, AfterValidator(_region)]
Cidr = Annotated[str, AfterValidator(_cidr)]
Email = Annotated[
    str,
    _matching(
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        "must be an e-mail address like team@example.com",
    ),
]
Percentage = Annotated[int, AfterValidator(_percentage)]
RoleName = Annotated[str, _matching(r"[\w+=,.@-]{1,64}", "must be an IAM role name: 1-64 letters, digits or +=,.@_-")]
Port = Annotated[int, AfterValidator(_port)]


class Model(BaseModel):
    """Base for every config model: immutable, strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)
