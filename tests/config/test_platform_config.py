"""Every validation rule of config/platform.yaml: each bad value gives one line naming file, field and value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stacks.config import REPO_ROOT, ConfigError, dotted, load_platform
from tests.config.helpers import base, error_for, write


def test_example_config_loads() -> None:
    platform = load_platform()
    assert platform.config.accounts.production.account_id == "111111111111"
    assert platform.config.accounts.research.region == "ap-northeast-1"
    assert [w.name for w in platform.workers] == ["food-photo"]


def test_models_are_frozen() -> None:
    cfg = load_platform().config
    with pytest.raises(ValueError, match="frozen"):
        cfg.accounts.production.account_id = "333333333333"  # type: ignore[misc]


def test_dotted_paths() -> None:
    assert dotted(("network", "vpcs", 0, "cidr")) == "network.vpcs[0].cidr"


@pytest.mark.parametrize("bad", ["11111111111", "1111111111111", "abcdefghijkl"])
def test_account_id_must_have_12_digits(tmp_path: Path, bad: str) -> None:
    data = base()
    data["accounts"]["production"]["account_id"] = bad
    line = error_for(tmp_path, data)
    assert f"accounts.production.account_id: '{bad}': must be a 12-digit AWS account ID" in line


def test_accounts_must_differ(tmp_path: Path) -> None:
    data = base()
    data["accounts"]["research"]["account_id"] = data["accounts"]["production"]["account_id"]
    assert "accounts.research.account_id: '111111111111': must differ from production's" in error_for(tmp_path, data)


def test_region_must_be_known(tmp_path: Path) -> None:
    data = base()
    data["accounts"]["research"]["region"] = "ap-northeast-9"
    assert "accounts.research.region: 'ap-northeast-9': must be an AWS region name" in error_for(tmp_path, data)


def test_availability_zone_must_belong_to_region(tmp_path: Path) -> None:
    data = base()
    data["accounts"]["production"]["availability_zones"] = ["ap-northeast-1a", "us-east-1b"]
    line = error_for(tmp_path, data)
    assert (
        "accounts.production.availability_zones[1]: 'us-east-1b': must be an availability zone of ap-northeast-1"
        in line
    )


def test_availability_zones_must_not_repeat(tmp_path: Path) -> None:
    data = base()
    data["accounts"]["production"]["availability_zones"] = ["ap-northeast-1a", "ap-northeast-1a"]
    assert "must not repeat a zone" in error_for(tmp_path, data)


def test_allowed_regions_must_cover_the_accounts(tmp_path: Path) -> None:
    data = base()
    data["allowed_regions"] = ["us-east-1"]
    assert "allowed_regions: ['us-east-1']: must include the production region ap-northeast-1" in error_for(
        tmp_path, data
    )


def test_allowed_regions_are_only_where_guardrails_run(tmp_path: Path) -> None:
    data = base()
    data["allowed_regions"] = ["ap-northeast-1", "us-east-1"]
    assert error_for(tmp_path, data) == (
        f"{tmp_path}/platform.yaml: allowed_regions: ['ap-northeast-1', 'us-east-1']: us-east-1 has no guardrails"
        " (the AWS Config recorder and security-group rules run in the accounts' home regions ap-northeast-1);"
        " list only those (global services such as IAM need no entry)"
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("10.0.0.0/33", "must be an IPv4 CIDR block"),
        ("10.0.0.1/16", "must be an IPv4 CIDR block with no host bits set"),
        ("not-a-cidr", "must be an IPv4 CIDR block"),
        ("8.8.0.0/16", "must be a private IPv4 range"),
        ("10.0.0.0/8", "must have a prefix length between /16 and /24"),
    ],
)
def test_cidr_must_be_valid_and_private(tmp_path: Path, bad: str, message: str) -> None:
    data = base()
    data["network"]["production"]["cidr"] = bad
    line = error_for(tmp_path, data)
    assert f"network.production.cidr: '{bad}': {message}" in line


def test_vpcs_must_not_overlap(tmp_path: Path) -> None:
    data = base()
    data["network"]["research"]["cidr"] = "10.20.128.0/17"
    line = error_for(tmp_path, data)
    assert "network.research.cidr: '10.20.128.0/17': overlaps network.production.cidr (10.20.0.0/16)" in line


def test_unknown_key_is_refused_with_the_allowed_keys(tmp_path: Path) -> None:
    data = base()
    data["network"]["nat_gateway"] = 1
    line = error_for(tmp_path, data)
    assert (
        "network.nat_gateway: 'nat_gateway': unknown key; allowed here: bastion, flow_logs, management, nat_gateways,"
        in line
    )


def test_unknown_top_level_key(tmp_path: Path) -> None:
    data = base()
    data["acounts"] = {}
    assert "acounts: 'acounts': unknown key; allowed here: access, accounts, allowed_regions, audit," in error_for(
        tmp_path, data
    )


def test_missing_section_is_named(tmp_path: Path) -> None:
    data = base()
    del data["network"]
    assert "network: None: is required" in error_for(tmp_path, data)


@pytest.mark.parametrize("bad", ["team", "team@", "@example.com", "team@example"])
def test_emails_must_be_addresses(tmp_path: Path, bad: str) -> None:
    data = base()
    data["notifications"]["emails"] = ["ok@example.com", bad]
    assert f"notifications.emails[1]: '{bad}': must be an e-mail address" in error_for(tmp_path, data)


@pytest.mark.parametrize("bad", [0, 1001, -5])
def test_budget_percentages_must_be_1_to_1000(tmp_path: Path, bad: int) -> None:
    data = base()
    data["budgets"]["research"]["actual_percentages"] = [50, bad]
    line = error_for(tmp_path, data)
    assert f"budgets.research.actual_percentages[1]: {bad}: must be a percentage between 1 and 1000" in line


def test_object_lock_mode_is_an_enum(tmp_path: Path) -> None:
    data = base()
    data["audit"]["object_lock_mode"] = "FOREVER"
    assert "audit.object_lock_mode: 'FOREVER': Input should be 'COMPLIANCE' or 'GOVERNANCE'" in error_for(
        tmp_path, data
    )


def test_archive_cannot_expire_before_its_lock(tmp_path: Path) -> None:
    data = base()
    data["audit"]["expiration_days"] = 300
    assert "audit.expiration_days: 300: must be longer than audit.object_lock_days (365)" in error_for(tmp_path, data)


def test_log_retention_must_be_a_cloudwatch_value(tmp_path: Path) -> None:
    data = base()
    data["audit"]["trail_log_retention_days"] = 366
    assert "audit.trail_log_retention_days: 366: Input should be 1, 3, 5" in error_for(tmp_path, data)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text("project: mlbase\naccounts: [\n")
    with pytest.raises(ConfigError, match=r"line \d+: .*is not valid YAML"):
        load_platform(path)


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot be read .*set MLBASE_CONFIG"):
        load_platform(tmp_path / "nope.yaml")


def test_app_prints_one_line_and_exits_non_zero_without_traceback(tmp_path: Path) -> None:
    data = base()
    data["accounts"]["production"]["account_id"] = "11111111111"
    path = write(tmp_path, data)
    env = {**os.environ, "MLBASE_CONFIG": str(path), "CDK_OUTDIR": str(tmp_path / "out")}
    proc = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"config error: {path}: accounts.production.account_id: '11111111111': must be a 12-digit AWS account ID,"
        " quoted as a string"
    ]
    assert "Traceback" not in proc.stderr


def test_security_baseline_is_all_on_by_default(tmp_path: Path) -> None:
    data = base()
    data.pop("security_baseline", None)
    baseline = load_platform(write(tmp_path, data)).config.security_baseline
    assert set(baseline.model_dump().values()) == {True}
    assert len(baseline.model_dump()) == 7


def test_security_baseline_piece_can_be_switched_off(tmp_path: Path) -> None:
    data = base()
    data["security_baseline"] = {"guardduty": False}
    baseline = load_platform(write(tmp_path, data)).config.security_baseline
    assert (baseline.guardduty, baseline.security_hub, baseline.cis_alarms) == (False, True, True)


def test_security_baseline_switch_must_be_a_boolean(tmp_path: Path) -> None:
    data = base()
    data["security_baseline"] = {"security_hub": "sometimes"}
    line = error_for(tmp_path, data)
    assert "security_baseline.security_hub: 'sometimes': Input should be a valid boolean" in line


def test_security_baseline_unknown_piece_lists_the_known_ones(tmp_path: Path) -> None:
    data = base()
    data["security_baseline"] = {"macie": True}
    line = error_for(tmp_path, data)
    assert (
        "security_baseline.macie: 'macie': unknown key; allowed here: access_analyzer, cis_alarms,"
        " ebs_encryption_by_default, guardduty, password_policy, s3_block_public_access, security_hub"
    ) in line


# --- security_groups: what "the world" is, and the reviewed exceptions -----------------------------------------

EXCEPTION = {"group_id": "sg-0123456789abcdef0", "ports": [8443], "reason": "partner webhook, PLAT-42"}


def test_world_share_and_exceptions_load(tmp_path: Path) -> None:
    data = base()
    data["security_groups"].update(world_share=0.001, world_ingress_exceptions=[EXCEPTION])
    rules = load_platform(write(tmp_path, data)).config.security_groups
    assert rules.world_share == 0.001
    [entry] = rules.world_ingress_exceptions
    assert (entry.group_id, entry.ports, entry.reason) == ("sg-0123456789abcdef0", (8443,), "partner webhook, PLAT-42")


def test_world_share_defaults_to_1_in_256(tmp_path: Path) -> None:
    data = base()
    data["security_groups"].pop("world_share")
    assert load_platform(write(tmp_path, data)).config.security_groups.world_share == 1 / 256


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (0, "security_groups.world_share: 0: Input should be greater than 0"),
        (0.5, "security_groups.world_share: 0.5: Input should be less than 0.5"),
        ("some", "security_groups.world_share: 'some': Input should be a valid number"),
    ],
)
def test_world_share_must_be_between_0_and_a_half(tmp_path: Path, bad: Any, message: str) -> None:
    data = base()
    data["security_groups"]["world_share"] = bad
    assert message in error_for(tmp_path, data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"group_id": "web-frontend"},
            "security_groups.world_ingress_exceptions[0].group_id: 'web-frontend': must be a security group ID",
        ),
        ({"ports": []}, "security_groups.world_ingress_exceptions[0].ports: []: Tuple should have at least 1 item"),
        ({"ports": [0]}, "security_groups.world_ingress_exceptions[0].ports[0]: 0: must be a TCP port"),
        ({"reason": "demo"}, "security_groups.world_ingress_exceptions[0].reason: 'demo': String should have at least"),
        ({"reason": None}, "security_groups.world_ingress_exceptions[0].reason: None: Input should be a valid string"),
    ],
)
def test_world_ingress_exception_fields_are_checked(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    data = base()
    data["security_groups"]["world_ingress_exceptions"] = [EXCEPTION | change]
    assert message in error_for(tmp_path, data)


def test_world_ingress_exception_names_a_group_once(tmp_path: Path) -> None:
    data = base()
    data["security_groups"]["world_ingress_exceptions"] = [EXCEPTION, EXCEPTION | {"ports": [443]}]
    line = error_for(tmp_path, data)
    assert "security_groups.world_ingress_exceptions: " in line
    assert "lists sg-0123456789abcdef0 more than once; give each group one entry with all of its ports" in line


def test_world_ingress_exceptions_are_at_most_20(tmp_path: Path) -> None:
    data = base()
    data["security_groups"]["world_ingress_exceptions"] = [EXCEPTION | {"group_id": f"sg-{i:017x}"} for i in range(21)]
    assert "security_groups.world_ingress_exceptions: " in error_for(tmp_path, data)
    assert "should have at most 20 items" in error_for(tmp_path, data)
