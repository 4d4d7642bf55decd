"""Faults that only a real first deploy would show: each one stated against the synthesized templates.

Alarm delivery to the topics is in test_notification_contracts.py, the Config key ARN and an existing Config
recorder in test_audit_contracts.py, the deploy order in tests/infra/test_deploy_plan.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lambdas.session_preferences.logic import DOCUMENT_NAME
from tests.infra.conftest import synth_variant
from tests.policy.assembly import Assembly
from tests.policy.engine import Case, Verdict, arn, at, check, role_session

LAMBDA_QUOTAS = "https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html"
SPOT_DRAINING = "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/spot-instance-draining.html"
SESSION_LOGGING = "https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-logging-cwl.html"
# A new account's concurrency quota can be as low as 10; 1,000 is the default of an established one.
ESTABLISHED_ACCOUNT_QUOTA = 1000
UNRESERVED_MINIMUM = 100


def reserved(templates: dict[str, dict[str, Any]], stage: str) -> dict[str, int]:
    return {
        f"{name}/{lid}": int(r["Properties"]["ReservedConcurrentExecutions"])
        for name, t in templates.items()
        if name.startswith(stage)
        for lid, r in t["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function" and "ReservedConcurrentExecutions" in r.get("Properties", {})
    }


@pytest.fixture(scope="module")
def templates(assembly: Assembly) -> dict[str, dict[str, Any]]:
    return {name: info.template for name, info in assembly.stacks.items()}


def test_no_function_reserves_concurrency_by_default(templates: dict[str, dict[str, Any]]) -> None:
    """A new account's quota cannot hold the caps beside the 100 Lambda keeps unreserved (LAMBDA_QUOTAS)."""
    assert reserved(templates, "Production") == {}
    assert reserved(templates, "Research") == {}


def test_reserved_concurrency_when_turned_on_fits_an_established_account(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["lambdas"] = {"reserved_concurrency": True}

    templates = synth_variant(tmp_path, edit)
    for stage in ("Production", "Research"):
        caps = reserved(templates, stage)
        assert caps, stage
        assert sum(caps.values()) + UNRESERVED_MINIMUM <= ESTABLISHED_ACCOUNT_QUOTA, (stage, sum(caps.values()))


def test_session_preferences_are_adopted_not_created_by_name(assembly: Assembly) -> None:
    """The console creates SSM-SessionManagerRunShell on first use; a template that creates it by name then fails
    with DocumentAlreadyExists, so each account applies it through the adopting custom resource."""
    named = [d for d in assembly.of_type("AWS::SSM::Document") if d.props.get("Name") == DOCUMENT_NAME]
    assert named == []
    for stack in ("Production-Network", "Research-Network"):
        (resource,) = assembly.of_type("Custom::SessionPreferences", stack=stack)
        assert resource.props["Name"] == DOCUMENT_NAME


@pytest.mark.parametrize("stack", ["Production-Network", "Research-Network"])
def test_session_preferences_encrypt_log_and_time_out(assembly: Assembly, stack: str) -> None:
    (resource,) = assembly.of_type("Custom::SessionPreferences", stack=stack)
    content = json.loads(assembly.resolve(resource.stack, resource.props["Content"]))
    inputs = content["inputs"]
    assert inputs["cloudWatchEncryptionEnabled"] is True
    assert inputs["cloudWatchStreamingEnabled"] is True
    assert inputs["kmsKeyId"]
    assert int(inputs["idleSessionTimeout"]) <= 20
    log_groups = {assembly.physical_name(g): g for g in assembly.of_type("AWS::Logs::LogGroup", stack=stack)}
    group = log_groups[inputs["cloudWatchLogGroupName"]]
    assert "KmsKeyId" in group.props, "Session Manager streams encrypted only to an encrypted log group"


def cases() -> list[Case]:
    host = role_session("Production/PhotoService/FoodPhoto/HostRole", "i-0123456789abcdef0")
    workstation = role_session("Research/Workbench/Yuki/Role", "i-0fedcba9876543210")

    def container_instance(asm: Assembly) -> str:
        cluster = asm.at("Production/PhotoService/FoodPhoto/Cluster")
        s = cluster.stack
        return f"arn:aws:ecs:{s.region}:{s.account}:container-instance/{asm.physical_name(cluster)}/abc123"

    return [
        Case("gpu-host-drains-itself-on-spot-notice", host, "ecs:UpdateContainerInstancesState",
             arn(container_instance, "Production/PhotoService"), "allow",
             "ECS_ENABLE_SPOT_INSTANCE_DRAINING: the agent sets its own host DRAINING", SPOT_DRAINING),
        Case("workstation-decrypts-its-sessions", workstation, "kms:Decrypt",
             at("Research/Network/SessionKey"), "allow", "the SSM agent decrypts the session's data key",
             SESSION_LOGGING, {}, {}),
        Case("workstation-streams-session-logs", workstation, "logs:PutLogEvents",
             at("Research/Network/SessionLogGroup"), "allow", "the SSM agent streams the session to the log group",
             SESSION_LOGGING),
    ]  # fmt: skip


CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_first_deploy_grant(case: Case, verdicts: dict[str, Verdict]) -> None:
    check(case, verdicts[case.id])
