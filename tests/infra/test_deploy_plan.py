"""The deploy plan walked against the synthesized templates: each stack's inputs exist when its step runs.

Each config is synthesized twice, as the platform team deploys it: before `network.peering.research_vpc_id` is
pasted (the plan's steps up to that manual step) and after it (the others). Checked for the example config and for
a variant with workstations, SCPs (`organization.manage_scps`) and flow logs to the S3 archive. The README's deploy
steps must be exactly what the plan renders.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stacks.config import DEFAULT_CONFIG, Platform, load_platform
from tests.infra.conftest import synth_variant
from tools.deploy_plan import __main__ as deploy_plan_cli
from tools.deploy_plan.assembly import Assembly, Stack, needs, produces, read_assembly
from tools.deploy_plan.check import check_plan
from tools.deploy_plan.plan import RESEARCH_VPC_FIELD, Item, Plan, Step, deploy_plan
from tools.deploy_plan.readme import BEGIN, README, with_steps

PROD, RESEARCH, REGION = "111111111111", "222222222222", "ap-northeast-1"
ACCOUNTS = {"production": PROD, "research": RESEARCH}
# Stands in for the ID that Research/Network's output gives the platform team.
RESEARCH_VPC_ID = "vpc-0123456789abcdef0"


@dataclasses.dataclass(frozen=True)
class Deployment:
    """One config and its two syntheses: before the research VPC ID is in the config, and after."""

    platform: Platform
    before: Assembly
    after: Assembly

    def assembly_for(self, filled: frozenset[str]) -> Assembly:
        return self.after if RESEARCH_VPC_FIELD in filled else self.before

    def check(self, plan: Plan | None = None) -> list[str]:
        return check_plan(plan or deploy_plan(self.platform), self.assembly_for, ACCOUNTS)


def _deployment(root: Path, edit: Callable[[dict[str, Any]], None]) -> Deployment:
    def before(data: dict[str, Any]) -> None:
        edit(data)
        data["network"]["peering"]["research_vpc_id"] = None

    def after(data: dict[str, Any]) -> None:
        edit(data)
        data["network"]["peering"]["research_vpc_id"] = RESEARCH_VPC_ID

    synth_variant(root / "before", before)
    synth_variant(root / "after", after)
    return Deployment(
        platform=load_platform(root / "after" / "config" / "platform.yaml"),
        before=read_assembly(root / "before" / "cdk.out"),
        after=read_assembly(root / "after" / "cdk.out"),
    )


@pytest.fixture(scope="module")
def example(cloud_assembly: Path, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """The example config: the session's synthesis is the phase before the VPC ID (the example has none yet)."""
    assert load_platform().config.network.peering.research_vpc_id is None
    root = tmp_path_factory.mktemp("plan-example")

    def after(data: dict[str, Any]) -> None:
        data["network"]["peering"]["research_vpc_id"] = RESEARCH_VPC_ID

    synth_variant(root, after)
    return Deployment(
        platform=load_platform(root / "config" / "platform.yaml"),
        before=read_assembly(cloud_assembly),
        after=read_assembly(root / "cdk.out"),
    )


@pytest.fixture(scope="module")
def everything_on(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    def edit(data: dict[str, Any]) -> None:
        data["organization"]["manage_scps"] = True
        data["network"]["flow_logs"]["destination"] = "s3"

    return _deployment(tmp_path_factory.mktemp("plan-everything"), edit)


def _titled(plan: Plan, title: str) -> Step:
    return next(step for step in plan.steps if step.title == title)


def _without(plan: Plan, title: str) -> Plan:
    return dataclasses.replace(plan, steps=tuple(s for s in plan.steps if s.title != title))


def _moved_after(plan: Plan, title: str, after: str) -> Plan:
    """`plan` with step `title` moved to just after step `after`."""
    moved = _titled(plan, title)
    steps: list[Step] = []
    for step in plan.steps:
        if step is not moved:
            steps.append(step)
        if step.title == after:
            steps.append(moved)
    return dataclasses.replace(plan, steps=tuple(steps))


def test_the_only_config_field_a_step_fills_is_the_research_vpc_id(example: Deployment) -> None:
    # The fixtures synthesize one phase per value of this field; a second field would need more phases.
    plan = deploy_plan(example.platform)
    assert set(plan.config_fields) == {RESEARCH_VPC_FIELD}
    assert [s.fills for s in plan.steps if s.fills] == [(RESEARCH_VPC_FIELD,)]


@pytest.mark.parametrize("stage", ["Production", "Research"])
def test_every_stack_of_the_stage_finds_its_inputs(example: Deployment, stage: str) -> None:
    stacks = [s for s in example.after.stacks if s.path.startswith(f"{stage}/")]
    assert len(stacks) >= 5
    problems = example.check()
    assert [p for p in problems if f" {stage}/" in p or p.startswith(f"{stage}/")] == []


def test_the_example_plan_has_no_problem(example: Deployment) -> None:
    assert example.check() == []


def test_workstations_scps_and_s3_flow_logs_plan_has_no_problem(everything_on: Deployment) -> None:
    plan = deploy_plan(everything_on.platform)
    assert "Enable AWS Organizations with all features and SCPs" in [s.title for s in plan.steps]
    assert everything_on.check(plan) == []


def test_inputs_cover_what_crosses_stacks_and_accounts(everything_on: Deployment) -> None:
    """The walk is only as good as what it sees: pin the inputs that cross a stack or an account boundary."""
    plan = deploy_plan(everything_on.platform)
    by_path = {s.path: needs(s, plan.config_fields) for s in everything_on.after.stacks}
    expected = {
        "Production/Network": {
            Item("config", "", "", RESEARCH_VPC_FIELD),
            Item("iam", RESEARCH, "", "role/MlbasePeeringAccepter"),
            Item("s3-bucket", "", "", f"mlbase-log-archive-{PROD}-{REGION}"),
        },
        "Production/Guardrails": {
            Item("secret", PROD, REGION, "mlbase/slack"),
            Item("organization", PROD, "", "all features with SERVICE_CONTROL_POLICY enabled"),
            Item("organization-member", RESEARCH, "", f"of the organization of {PROD}"),
        },
        "Research/Audit": {
            Item("s3-bucket", "", "", f"mlbase-log-archive-{PROD}-{REGION}"),
            Item("kms-alias", PROD, REGION, "alias/mlbase-log-archive"),
        },
        "Research/Access": {Item("iam", PROD, "", "user/mlbase/people/taro")},
        "Research/Network": {Item("peering", RESEARCH, "", f"from {PROD}, active")},
        "Research/Workbench": {
            Item("ssm-parameter", RESEARCH, REGION, "/mlbase/ami/workstation/driver550-cuda12.4-v1"),
            Item("ssm-parameter", RESEARCH, REGION, "/mlbase/ami/workstation/driver570-cuda12.8-v1"),
            Item("secret", RESEARCH, REGION, "mlbase/slack-signing"),
        },
    }
    for path, items in expected.items():
        assert items <= by_path[path], path
    assert any(i.kind == "stack-output" and i.name.startswith("Production-Network.") for i in by_path[
        "Production/PhotoService"])  # fmt: skip


def test_dynamic_references_imports_and_exports_are_read() -> None:
    """Forms today's templates do not use, read all the same: a later change may bring them in."""
    template = {
        "Parameters": {"Ami": {"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", "Default": "/team/ami"}},
        "Resources": {
            "Db": {
                "Type": "AWS::RDS::DBInstance",
                "Properties": {
                    "MasterUserPassword": "{{resolve:secretsmanager:team/db:SecretString:password}}",
                    "DBName": "{{resolve:ssm:/team/db-name:3}}",
                    "VPCSecurityGroups": [{"Fn::ImportValue": "Shared-DbGroup"}],
                    "Other": {"Fn::Join": ["", [
                        "{{resolve:secretsmanager:arn:aws:secretsmanager:us-east-1:333333333333:secret:key-AbCdEf:",
                        "SecretString:k}}",
                    ]]},
                },
            },
            "Name": {"Type": "AWS::SSM::Parameter", "Properties": {"Name": "/team/db-host", "Value": "x"}},
        },
        "Outputs": {"Host": {"Value": "x", "Export": {"Name": {"Fn::Join": ["-", [{"Ref": "AWS::Region"}, "host"]]}}}},
    }  # fmt: skip
    stack = Stack("Stage/Db", "Stage-Db", RESEARCH, REGION, template, (), None, ())
    assert needs(stack, {}) == {
        Item("ssm-parameter", RESEARCH, REGION, "/team/ami"),
        Item("secret", RESEARCH, REGION, "team/db"),
        Item("ssm-parameter", RESEARCH, REGION, "/team/db-name"),
        Item("export", RESEARCH, REGION, "Shared-DbGroup"),
        Item("secret", "333333333333", "us-east-1", "key-AbCdEf"),
    }
    assert produces(stack) == {
        Item("stack-output", RESEARCH, REGION, "Stage-Db.Host"),
        Item("export", RESEARCH, REGION, f"{REGION}-host"),
        Item("ssm-parameter", RESEARCH, REGION, "/team/db-host"),
    }


def test_the_former_readme_order_fails_on_the_workbench_ami_parameters(example: Deployment) -> None:
    """The README used to build the AMIs after `Research/*`: the workbench cannot be created that way."""
    plan = deploy_plan(example.platform)
    former = _moved_after(plan, "Build the workstation AMIs", "The rest of research")
    assert example.check(former) == [
        f"step 10 (The rest of research): Research/Workbench needs ssm-parameter /mlbase/ami/workstation/{version}"
        f" in {RESEARCH}/{REGION}, which no earlier step produces"
        for version in ("driver550-cuda12.4-v1", "driver570-cuda12.8-v1")
    ]


def test_a_missing_secret_step_is_found(example: Deployment) -> None:
    problems = example.check(_without(deploy_plan(example.platform), "Create the Slack secret in production"))
    assert problems == [
        "step 8 (Production): Production/Guardrails needs secret mlbase/slack in"
        f" {PROD}/{REGION}, which no earlier step produces"
    ]


def test_research_audit_before_the_archive_is_found(example: Deployment) -> None:
    plan = _moved_after(
        deploy_plan(example.platform), "Production audit and identity first", "Research audit and access"
    )
    problems = example.check(plan)
    assert (
        f"step 5 (Research audit and access): Research/Audit needs kms-alias alias/mlbase-log-archive in"
        f" {PROD}/{REGION}, which no earlier step produces"
    ) in problems
    assert any("Research/Access needs iam user/mlbase/people/hanako" in p for p in problems)


def test_production_before_the_vpc_id_leaves_the_accepter_without_a_connection(example: Deployment) -> None:
    plan = _moved_after(deploy_plan(example.platform), "Production", "Research network")
    assert example.check(plan) == [
        f"step 11 (The rest of research): Research/Network needs peering from {PROD}, active in {RESEARCH},"
        " which no earlier step produces"
    ]


def test_a_stack_no_step_deploys_is_found(example: Deployment) -> None:
    plan = _without(deploy_plan(example.platform), "The rest of research")
    assert [p for p in example.check(plan) if "no step deploys it" in p] == [
        f"Research/{name}: no step deploys it" for name in ("Guardrails", "Workbench")
    ]


def test_the_readme_deploy_steps_are_the_rendered_plan() -> None:
    text = README.read_text(encoding="utf-8")
    assert with_steps(text, deploy_plan(load_platform(DEFAULT_CONFIG))) == text, (
        "README.md's deploy steps drifted from tools/deploy_plan/plan.py: run python -m tools.deploy_plan readme"
    )


def test_readme_command_rewrites_a_drifted_section_and_check_fails_until_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "README.md"
    copy.write_text(README.read_text(encoding="utf-8").replace(BEGIN, BEGIN + "\n0. **A step nobody planned**"))
    monkeypatch.setattr(deploy_plan_cli, "README", copy)
    assert deploy_plan_cli.main(["readme", "--check"]) == 1
    assert "differ from the plan" in capsys.readouterr().err
    assert deploy_plan_cli.main(["readme"]) == 0
    assert copy.read_text(encoding="utf-8") == README.read_text(encoding="utf-8")
    assert deploy_plan_cli.main(["readme", "--check"]) == 0
