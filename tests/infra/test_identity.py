"""Production identity: groups, users, the MFA self-service policy and each group's research roles."""

from __future__ import annotations

from typing import Any

import pytest

from cdk_constructs.mfa_policy import WITHOUT_MFA
from tests.infra.conftest import resources_of

PROD, RESEARCH = "111111111111", "222222222222"


@pytest.fixture(scope="module")
def identity(templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return templates["Production-Identity"]


def managed_policy(t: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [
        p["Properties"] for p in resources_of(t, "AWS::IAM::ManagedPolicy").values()
        if p["Properties"]["ManagedPolicyName"] == name
    ]  # fmt: skip
    result: dict[str, Any] = found
    return result


def group_logical_ids(t: dict[str, Any]) -> dict[str, str]:
    return {r["Properties"]["GroupName"]: lid for lid, r in resources_of(t, "AWS::IAM::Group").items()}


def test_three_groups(identity: dict[str, Any]) -> None:
    assert sorted(group_logical_ids(identity)) == ["PlatformAdmins", "ReadOnly", "Researchers"]


def test_one_user_per_person_under_the_people_path_in_their_groups(identity: dict[str, Any]) -> None:
    groups = {lid: name for name, lid in group_logical_ids(identity).items()}
    users = {u["Properties"]["UserName"]: u["Properties"] for u in resources_of(identity, "AWS::IAM::User").values()}
    assert sorted(users) == ["hanako", "taro", "yuki"]
    assert all(u["Path"] == "/mlbase/people/" for u in users.values())
    assert [groups[g["Ref"]] for g in users["hanako"]["Groups"]] == ["PlatformAdmins"]
    assert [groups[g["Ref"]] for g in users["taro"]["Groups"]] == ["Researchers"]


def test_users_have_no_password_or_key_in_the_template(identity: dict[str, Any]) -> None:
    for user in resources_of(identity, "AWS::IAM::User").values():
        assert "LoginProfile" not in user["Properties"]
    assert not resources_of(identity, "AWS::IAM::AccessKey")


def test_mfa_policy_denies_everything_but_mfa_setup_without_mfa(identity: dict[str, Any]) -> None:
    policy = managed_policy(identity, "mlbase-RequireMfa")
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    deny = statements["DenyAllExceptListedIfNoMFA"]
    assert deny["Effect"] == "Deny"
    assert deny["Resource"] == "*"
    assert deny["Condition"] == {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}
    assert sorted(deny["NotAction"]) == sorted(WITHOUT_MFA)
    assert "sts:AssumeRole" not in deny["NotAction"]
    assert {"iam:CreateVirtualMFADevice", "iam:EnableMFADevice", "iam:ChangePassword"} <= set(deny["NotAction"])


def test_mfa_policy_lets_users_manage_only_their_own_device_and_password(identity: dict[str, Any]) -> None:
    statements = {s["Sid"]: s for s in managed_policy(identity, "mlbase-RequireMfa")["PolicyDocument"]["Statement"]}
    own_user = f"arn:aws:iam::{PROD}:user/mlbase/people/${{aws:username}}"
    assert statements["AllowManageOwnUserMFA"]["Resource"] == own_user
    assert statements["AllowManageOwnPasswordAndKeys"]["Resource"] == own_user
    assert statements["AllowManageOwnVirtualMFADevice"]["Resource"] == f"arn:aws:iam::{PROD}:mfa/*"


def test_mfa_policy_is_attached_to_every_group(identity: dict[str, Any]) -> None:
    attached = {g["Ref"] for g in managed_policy(identity, "mlbase-RequireMfa")["Groups"]}
    assert attached == set(group_logical_ids(identity).values())


@pytest.mark.parametrize(
    ("group", "roles"),
    [
        ("PlatformAdmins", ["PlatformAdmin", "ResearchDeveloper", "ResearchReadOnly"]),
        ("Researchers", ["ResearchDeveloper", "ResearchReadOnly"]),
        ("ReadOnly", ["ResearchReadOnly"]),
    ],
)
def test_each_group_may_assume_exactly_its_research_roles_with_mfa(
    identity: dict[str, Any], group: str, roles: list[str]
) -> None:
    policy = managed_policy(identity, f"mlbase-{group}ResearchAccess")
    assert [g["Ref"] for g in policy["Groups"]] == [group_logical_ids(identity)[group]]
    statement, naming = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    assert naming["Action"] == "sts:SetSourceIdentity"
    assert naming["Condition"] == {"StringEquals": {"sts:SourceIdentity": "${aws:username}"}}
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    assert sorted(resources) == [f"arn:aws:iam::{RESEARCH}:role/mlbase-{r}" for r in roles]
    assert statement["Condition"] == {"Bool": {"aws:MultiFactorAuthPresent": "true"}}


def test_researchers_have_no_production_policy_but_their_research_access(identity: dict[str, Any]) -> None:
    researchers = resources_of(identity, "AWS::IAM::Group")[group_logical_ids(identity)["Researchers"]]
    assert "ManagedPolicyArns" not in researchers["Properties"]
    assert "Policies" not in researchers["Properties"]
