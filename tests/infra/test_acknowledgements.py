"""The security gate proves its acknowledgements: each one must silence a finding the gate really reports.

The app is synthesized once more with every acknowledgement recorded instead of applied, so the validation report
lists every finding cdk-nag and CloudFormation Validate would raise. An acknowledgement that matches none of them
(same rule, on its construct or below) is dead: it would silently cover whatever the next change adds there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import cdk_constructs.nag as nag
from stacks.config import load_platform
from stacks.stages import build_app

Ack = tuple[str, str, str]  # construct path, rule, reason
Finding = tuple[str, str]  # rule, construct path


class _Recorder:
    """Stands in for aws_cdk.Validations inside cdk_constructs.nag: records acknowledgements, applies none."""

    acks: list[Ack] = []

    @classmethod
    def of(cls, construct: Any) -> Any:
        class Scope:
            def acknowledge(self, *acknowledgements: Any) -> None:
                for ack in acknowledgements:
                    cls.acks.append((construct.node.path, ack.id, ack.reason))

        return Scope()


@pytest.fixture(scope="module")
def unacknowledged_outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("unacknowledged"))


@pytest.fixture(scope="module")
def unacknowledged(unacknowledged_outdir: Path) -> tuple[list[Ack], list[Finding]]:
    outdir = unacknowledged_outdir
    patch = pytest.MonkeyPatch()
    patch.setattr(nag, "Validations", _Recorder)
    _Recorder.acks = []
    try:
        # The gate stops the synth on the findings it now sees; the report is written first.
        with pytest.raises(Exception):  # noqa: B017, PT011 - jsii raises its own error type
            build_app(load_platform(), outdir=str(outdir)).synth()
    finally:
        patch.undo()
    report = json.loads((Path(outdir) / "validation-report.json").read_text(encoding="utf-8"))
    findings = [
        (violation["ruleName"], construct["constructPath"])
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
    ]
    return list(_Recorder.acks), findings


def _covers(ack: Ack, finding: Finding) -> bool:
    path, rule, _ = ack
    found_rule, found_path = finding
    if not (found_path == path or found_path.startswith(f"{path}/")):
        return False
    # cdk-nag names a finding `Pack-Rule[Finding]`; an acknowledgement of the bare rule covers all its findings.
    return found_rule == rule or ("[" not in rule and found_rule.split("[", 1)[0] == rule)


def test_the_gate_reports_findings_without_acknowledgements(unacknowledged: tuple[list[Ack], list[Finding]]) -> None:
    acks, findings = unacknowledged
    assert len(acks) > 100
    assert len(findings) > 100


def test_every_acknowledgement_silences_a_real_finding(unacknowledged: tuple[list[Ack], list[Finding]]) -> None:
    acks, findings = unacknowledged
    dead = sorted({f"{path}: {rule}" for path, rule, reason in acks if not any(_covers((path, rule, reason), f)
                                                                               for f in findings)})  # fmt: skip
    assert not dead, "acknowledgements that match no finding:\n" + "\n".join(dead)


def test_every_acknowledgement_gives_a_reason(unacknowledged: tuple[list[Ack], list[Finding]]) -> None:
    acks, _ = unacknowledged
    assert [a for a in acks if len(a[2].strip()) < 20] == []


def test_wildcard_resource_acknowledgements_name_every_action_they_cover(
    unacknowledged: tuple[list[Ack], list[Finding]], unacknowledged_outdir: Path
) -> None:
    """`AwsSolutions-IAM5[Resource::*]` covers every action granted on * below its construct: the reason names each
    one, so an action added later on * cannot hide behind an old acknowledgement."""
    from tests.policy.assembly import Assembly

    acks, _ = unacknowledged
    assembly = Assembly(unacknowledged_outdir)
    unnamed: list[str] = []
    for path, rule, reason in acks:
        if rule != "AwsSolutions-IAM5[Resource::*]":
            continue
        for info in assembly.stacks.values():
            for construct, logical_id in info.logical_ids.items():
                if not (construct == path or construct.startswith(f"{path}/")):
                    continue
                resource = info.template["Resources"].get(logical_id, {})
                if resource.get("Type") not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                    continue
                for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                    resources = statement.get("Resource", [])
                    if statement.get("Effect") != "Allow" or "*" not in (
                        resources if isinstance(resources, list) else [resources]
                    ):
                        continue
                    actions = statement.get("Action", [])
                    for action in [actions] if isinstance(actions, str) else actions:
                        if action not in reason:
                            unnamed.append(f"{path}: {action}")
    assert not unnamed, "actions on * that their acknowledgement does not name:\n" + "\n".join(sorted(set(unnamed)))


# How a function without a dead-letter queue is invoked, as its acknowledgement states it, and the resource that makes
# that true in the template: a reason naming an invocation the template does not have fails.
_INVOCATIONS = {
    "API Gateway": lambda r, fn: (
        r["Type"] == "AWS::Lambda::Permission"
        and r["Properties"].get("Principal") == "apigateway.amazonaws.com"
        and fn in json.dumps(r["Properties"].get("FunctionName"))
    ),
    "custom resource": lambda r, fn: (
        (r["Type"].startswith("Custom::") or r["Type"] == "AWS::CloudFormation::CustomResource")
        and fn in json.dumps(r["Properties"].get("ServiceToken"))
    ),
    "AWS Config": lambda r, fn: (
        r["Type"] == "AWS::Config::ConfigRule"
        and fn in json.dumps(r["Properties"].get("Source", {}).get("SourceIdentifier"))
    ),
    "on-failure destination": lambda r, fn: (
        r["Type"] == "AWS::Lambda::EventInvokeConfig"
        and fn in json.dumps(r["Properties"].get("FunctionName"))
        and "OnFailure" in r["Properties"].get("DestinationConfig", {})
    ),
}


def test_dead_letter_acknowledgements_name_how_the_function_is_really_invoked(
    unacknowledged: tuple[list[Ack], list[Finding]], unacknowledged_outdir: Path
) -> None:
    from tests.policy.assembly import Assembly

    acks, _ = unacknowledged
    assembly = Assembly(unacknowledged_outdir)
    wrong: list[str] = []
    checked = 0
    for path, rule, reason in acks:
        if rule != "NIST.800.53.R5-LambdaDLQ":
            continue
        named = [invocation for invocation in _INVOCATIONS if invocation in reason]
        if len(named) != 1:
            wrong.append(f"{path}: the reason names {len(named)} known invocations ({reason!r})")
            continue
        for info in assembly.stacks.values():
            function = info.logical_ids.get(f"{path}/Resource")
            if function is None:
                continue
            checked += 1
            resources = info.template["Resources"].values()
            if not any(_INVOCATIONS[named[0]](resource, f'"{function}"') for resource in resources):
                wrong.append(f"{path}: says {named[0]!r}, but no such invocation of {function} is in its template")
    assert checked > 0
    assert not wrong, "\n".join(wrong)
