"""Research access roles: who may assume them, with which MFA conditions, and what the permission boundary denies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.access import ROLES_BY_GROUP, members_allowed, protected_role_patterns, role_arn
from stacks.config import load_platform
from tests.infra.conftest import resources_of

PROD, RESEARCH = "111111111111", "222222222222"
USERS = f"arn:aws:iam::{PROD}:user/mlbase/people/"
BOUNDARY_ARN = f"arn:aws:iam::{RESEARCH}:policy/mlbase-ResearchBoundary"


@pytest.fixture(scope="module")
def access(templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return templates["Research-Access"]


def role(t: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [r for r in resources_of(t, "AWS::IAM::Role").values() if r["Properties"]["RoleName"] == name]
    props: dict[str, Any] = found["Properties"]
    return props


def trust(t: dict[str, Any], name: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = role(t, name)["AssumeRolePolicyDocument"]["Statement"]
    return statements


def principals(statement: dict[str, Any]) -> list[str]:
    value = statement["Principal"]["AWS"]
    return sorted([value] if isinstance(value, str) else value)


def test_three_roles_with_deterministic_names(access: dict[str, Any]) -> None:
    names = sorted(r["Properties"]["RoleName"] for r in resources_of(access, "AWS::IAM::Role").values())
    assert names == ["mlbase-PlatformAdmin", "mlbase-ResearchDeveloper", "mlbase-ResearchReadOnly"]


@pytest.mark.parametrize(
    ("name", "users"),
    [
        ("mlbase-PlatformAdmin", ["hanako"]),
        ("mlbase-ResearchDeveloper", ["hanako", "taro", "yuki"]),
        ("mlbase-ResearchReadOnly", ["hanako", "taro", "yuki"]),
    ],
)
def test_trust_names_the_production_users_of_the_right_groups(
    access: dict[str, Any], name: str, users: list[str]
) -> None:
    statements = trust(access, name)
    assert all(s["Effect"] == "Allow" and "sts:AssumeRole" in s["Action"] for s in statements)
    assert sorted(p for s in statements for p in principals(s)) == [f"{USERS}{u}" for u in users]


def test_trust_never_names_an_account_root(access: dict[str, Any]) -> None:
    for resource in resources_of(access, "AWS::IAM::Role").values():
        for statement in resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
            assert all(":user/" in p for p in principals(statement)), statement


@pytest.mark.parametrize("name", ["mlbase-PlatformAdmin", "mlbase-ResearchDeveloper", "mlbase-ResearchReadOnly"])
def test_trust_requires_mfa_no_older_than_configured(access: dict[str, Any], name: str) -> None:
    for statement in trust(access, name):
        assert statement["Condition"]["Bool"] == {"aws:MultiFactorAuthPresent": "true"}
        assert statement["Condition"]["NumericLessThan"] == {"aws:MultiFactorAuthAge": "3600"}


def test_sessions_are_capped_at_configured_hours(access: dict[str, Any]) -> None:
    for resource in resources_of(access, "AWS::IAM::Role").values():
        assert resource["Properties"]["MaxSessionDuration"] == 4 * 3600


def test_only_research_developer_carries_the_boundary(access: dict[str, Any]) -> None:
    boundary_ref = role(access, "mlbase-ResearchDeveloper")["PermissionsBoundary"]["Ref"]
    assert access["Resources"][boundary_ref]["Properties"]["ManagedPolicyName"] == "mlbase-ResearchBoundary"
    assert "PermissionsBoundary" not in role(access, "mlbase-PlatformAdmin")
    assert "PermissionsBoundary" not in role(access, "mlbase-ResearchReadOnly")


@pytest.mark.parametrize(
    ("name", "policy"),
    [
        ("mlbase-ResearchDeveloper", "PowerUserAccess"),
        ("mlbase-ResearchReadOnly", "ReadOnlyAccess"),
        ("mlbase-PlatformAdmin", "AdministratorAccess"),
    ],
)
def test_each_role_gets_its_job_function_policy(access: dict[str, Any], name: str, policy: str) -> None:
    (arn,) = role(access, name)["ManagedPolicyArns"]
    assert json.dumps(arn).endswith(f':iam::aws:policy/{policy}"]]}}')


# What the boundary denies and allows is judged by the IAM engine: tests/policy/test_research_containment.py.


def test_developer_may_manage_workload_roles_within_the_account(access: dict[str, Any]) -> None:
    (policy,) = [
        p for p in resources_of(access, "AWS::IAM::ManagedPolicy").values()
        if p["Properties"]["ManagedPolicyName"] == "mlbase-ResearchDeveloperIam"
    ]  # fmt: skip
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert "iam:CreateRole" in statements["ManageWorkloadRoles"]["Action"]
    assert f"arn:aws:iam::{RESEARCH}:role/*" in statements["ManageWorkloadRoles"]["Resource"]
    (attached,) = policy["Properties"]["Roles"]
    assert access["Resources"][attached["Ref"]]["Properties"]["RoleName"] == "mlbase-ResearchDeveloper"


def test_group_table_and_trust_agree() -> None:
    cfg = load_platform().config
    assert members_allowed(cfg, "PlatformAdmin") == ("hanako",)
    assert members_allowed(cfg, "ResearchReadOnly") == ("hanako", "taro", "yuki")
    assert all(
        set(roles) <= {"ResearchDeveloper", "ResearchReadOnly", "PlatformAdmin"} for roles in ROLES_BY_GROUP.values()
    )
    assert role_arn(cfg, "PlatformAdmin") == f"arn:aws:iam::{RESEARCH}:role/mlbase-PlatformAdmin"
    assert "Research-*" in protected_role_patterns(cfg, stack_prefix="Research-")


def test_switch_role_links_are_outputs(access: dict[str, Any]) -> None:
    outputs = {k: v["Value"] for k, v in access["Outputs"].items() if k.endswith("SwitchRoleUrl")}
    assert outputs["ResearchDeveloperSwitchRoleUrl"] == (
        "https://signin.aws.amazon.com/switchrole"
        f"?roleName=mlbase-ResearchDeveloper&account={RESEARCH}&displayName=ResearchDeveloper"
    )
    assert len(outputs) == 3
