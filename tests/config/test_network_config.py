"""Network section of config/platform.yaml: the way in is never world-open, peering values are checked at load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stacks.config import load_platform
from tests.config.helpers import base, error_for, write


def load(tmp_path: Path, data: dict[str, Any]) -> Any:
    return load_platform(write(tmp_path, data)).config


@pytest.mark.parametrize("world", ["0.0.0.0/0", "::/0"])
def test_world_open_ssh_cidr_is_refused(tmp_path: Path, world: str) -> None:
    data = base()
    data["network"]["bastion"]["ssh_allowed_cidrs"] = ["198.51.100.0/24", world]
    line = error_for(tmp_path, data)
    assert f"network.bastion.ssh_allowed_cidrs[1]: '{world}': must not be open to the whole internet" in line
    assert "name your office or VPN range" in line


def test_ssh_cidr_with_host_bits_is_refused(tmp_path: Path) -> None:
    data = base()
    data["network"]["bastion"]["ssh_allowed_cidrs"] = ["198.51.100.7/24"]
    line = error_for(tmp_path, data)
    assert "network.bastion.ssh_allowed_cidrs[0]: '198.51.100.7/24': must be a CIDR block with no host bits set" in line


def test_named_ssh_ranges_are_accepted(tmp_path: Path) -> None:
    data = base()
    data["network"]["bastion"]["ssh_allowed_cidrs"] = ["198.51.100.0/24", "2001:db8::/32"]
    cfg = load(tmp_path, data)
    assert cfg.network.bastion.ssh_allowed_cidrs == ("198.51.100.0/24", "2001:db8::/32")


def test_ssh_is_closed_by_default(tmp_path: Path) -> None:
    data = base()
    del data["network"]["bastion"]
    assert load(tmp_path, data).network.bastion.ssh_allowed_cidrs == ()


@pytest.mark.parametrize("bad", ["vpc-123", "VPC-0123456789abcdef0", "subnet-0123456789abcdef0", "vpc-01234567zz"])
def test_research_vpc_id_must_look_like_a_vpc_id(tmp_path: Path, bad: str) -> None:
    data = base()
    data["network"]["peering"]["research_vpc_id"] = bad
    line = error_for(tmp_path, data)
    assert f"network.peering.research_vpc_id: '{bad}': must be a VPC ID like vpc-0123456789abcdef0" in line
    assert "Research-Network stack's outputs" in line


@pytest.mark.parametrize("good", ["vpc-0123456789abcdef0", "vpc-01234567"])
def test_research_vpc_id_accepts_short_and_long_ids(tmp_path: Path, good: str) -> None:
    data = base()
    data["network"]["peering"]["research_vpc_id"] = good
    assert load(tmp_path, data).network.peering.research_vpc_id == good


def test_research_vpc_id_defaults_to_not_yet_deployed() -> None:
    assert load_platform().config.network.peering.research_vpc_id is None


def test_accepter_role_name_must_be_an_iam_name(tmp_path: Path) -> None:
    data = base()
    data["network"]["peering"]["accepter_role_name"] = "peering accepter"
    line = error_for(tmp_path, data)
    assert "network.peering.accepter_role_name: 'peering accepter': must be an IAM role name" in line


@pytest.mark.parametrize(("bad", "allowed"), [(0, "greater than or equal to 1"), (5, "less than or equal to 4")])
def test_nat_gateways_between_1_and_4(tmp_path: Path, bad: int, allowed: str) -> None:
    data = base()
    data["network"]["nat_gateways"] = bad
    line = error_for(tmp_path, data)
    assert f"network.nat_gateways: {bad}: Input should be {allowed}" in line


def test_flow_log_destination_is_cloudwatch_or_s3(tmp_path: Path) -> None:
    data = base()
    data["network"]["flow_logs"]["destination"] = "kinesis"
    line = error_for(tmp_path, data)
    assert "network.flow_logs.destination: 'kinesis':" in line
    assert "'cloudwatch' or 's3'" in line


def test_management_cidr_must_not_overlap_research(tmp_path: Path) -> None:
    data = base()
    data["network"]["management"]["cidr"] = "10.30.0.0/20"
    line = error_for(tmp_path, data)
    assert "network.research.cidr: '10.30.0.0/16': overlaps network.management.cidr (10.30.0.0/20)" in line


@pytest.mark.parametrize("bad", [0, 65536])
def test_admitted_ports_are_tcp_ports(tmp_path: Path, bad: int) -> None:
    data = base()
    data["network"]["peering"]["admitted_ports"] = [22, bad]
    line = error_for(tmp_path, data)
    assert f"network.peering.admitted_ports[1]: {bad}: must be a TCP port between 1 and 65535" in line


def test_allowed_world_ports_are_tcp_ports(tmp_path: Path) -> None:
    data = base()
    data["security_groups"]["allowed_world_ports"] = [443, 70000]
    line = error_for(tmp_path, data)
    assert "security_groups.allowed_world_ports[1]: 70000: must be a TCP port between 1 and 65535" in line
