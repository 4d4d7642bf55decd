"""Every publisher the templates wire to a topic may publish to it, and use its key.

The publishers are read from the templates, not listed by hand: each alarm's alarm and OK actions, each EventBridge
rule's topic targets and each budget's SNS subscribers become a case, with the source ARN and account the service
sends. A topic policy replaces SNS's default policy, so a publisher the policy does not name is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.policy.assembly import Assembly, Res
from tests.policy.engine import Case, Target, Verdict, check, judge, resource_policy, service

ALARMS = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/US_SetupSNS.html"
EVENTS = "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-sns-permissions"
BUDGETS = "https://docs.aws.amazon.com/cost-management/latest/userguide/budgets-sns-policy.html"
SNS_KMS = "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services"


def topics_by_arn(asm: Assembly) -> dict[str, Res]:
    return {asm.ref(t): t for t in asm.of_type("AWS::SNS::Topic")}


def publishers(asm: Assembly) -> Iterator[tuple[str, str, str, Res, str]]:
    """(case id, service principal, source ARN, topic, doc) for every topic a template wires a service to."""
    topics = topics_by_arn(asm)
    for alarm in asm.of_type("AWS::CloudWatch::Alarm"):
        for field in ("AlarmActions", "OKActions", "InsufficientDataActions"):
            for action in asm.resolve(alarm.stack, alarm.props.get(field, [])):
                if action in topics:
                    yield (f"{alarm.stack.name}/{alarm.lid}/{field}", "cloudwatch.amazonaws.com",
                           asm.arn(alarm), topics[action], ALARMS)  # fmt: skip
    for rule in asm.of_type("AWS::Events::Rule"):
        for target in asm.resolve(rule.stack, rule.props.get("Targets", [])):
            if target["Arn"] in topics:
                yield (
                    f"{rule.stack.name}/{rule.lid}",
                    "events.amazonaws.com",
                    asm.arn(rule),
                    topics[target["Arn"]],
                    EVENTS,
                )
    for budget in asm.of_type("AWS::Budgets::Budget"):
        for notification in asm.resolve(budget.stack, budget.props.get("NotificationsWithSubscribers", [])):
            for subscriber in notification["Subscribers"]:
                if subscriber["SubscriptionType"] == "SNS" and subscriber["Address"] in topics:
                    source = f"arn:aws:budgets::{budget.stack.account}:budget/x"
                    yield (f"{budget.stack.name}/{budget.lid}", "budgets.amazonaws.com", source,
                           topics[subscriber["Address"]], BUDGETS)  # fmt: skip


def topic_target(topic: Res) -> Any:
    def build(asm: Assembly) -> Target:
        return Target(asm.ref(topic), topic.stack.account, resource_policy(asm, topic))

    return build


def key_target(topic: Res) -> Any:
    def build(asm: Assembly) -> Target:
        key_arn = str(asm.resolve(topic.stack, topic.props["KmsMasterKeyId"]))
        (key,) = [k for k in asm.of_type("AWS::KMS::Key") if asm.arn(k) == key_arn]
        return Target(key_arn, key.stack.account, resource_policy(asm, key))

    return build


@pytest.fixture(scope="module")
def cases(assembly: Assembly) -> list[Case]:
    found: list[Case] = []
    seen: set[str] = set()
    for case_id, principal, source_arn, topic, doc in publishers(assembly):
        if case_id in seen:
            continue
        seen.add(case_id)
        context = {"aws:SourceArn": source_arn, "aws:SourceAccount": topic.stack.account}
        found.append(Case(f"{case_id}-publish", service(principal), "sns:Publish", topic_target(topic), "allow",
                          f"{principal} publishes to the topic it is wired to", doc, context))  # fmt: skip
        if "KmsMasterKeyId" in topic.props:
            # No statement here conditions on the encryption context: none is claimed.
            found.append(Case(f"{case_id}-key", service(principal), "kms:GenerateDataKey", key_target(topic),
                              "allow", "an encrypted topic needs its publishers on the key", SNS_KMS, context,
                              {}))  # fmt: skip
    return found


def test_the_templates_wire_every_kind_of_publisher(cases: list[Case]) -> None:
    """Alarms of every stack that has one, rules and budgets: the derivation found them all."""
    ids = " ".join(c.id for c in cases)
    for stack in ("Production-Guardrails", "Production-PhotoService", "Research-Guardrails", "Research-Workbench"):
        assert f"{stack}/" in ids, f"no publisher found in {stack}"
    for principal in ("cloudwatch.amazonaws.com", "events.amazonaws.com", "budgets.amazonaws.com"):
        assert principal in " ".join(c.reason for c in cases)


def test_every_publisher_can_deliver(assembly: Assembly, cases: list[Case]) -> None:
    verdicts: dict[str, Verdict] = judge(assembly, cases)
    failures = []
    for case in cases:
        try:
            check(case, verdicts[case.id])
        except AssertionError as err:
            failures.append(str(err))
    assert not failures, "\n".join(failures)


def test_a_foreign_alarm_cannot_publish(assembly: Assembly) -> None:
    topic = next(iter(topics_by_arn(assembly).values()))
    foreign = "333333333333"
    case = Case("foreign-alarm", service("cloudwatch.amazonaws.com"), "sns:Publish", topic_target(topic), "deny",
                "another account's alarm cannot use the topic (confused deputy)", ALARMS,
                {"aws:SourceArn": f"arn:aws:cloudwatch:ap-northeast-1:{foreign}:alarm:x",
                 "aws:SourceAccount": foreign})  # fmt: skip
    check(case, judge(assembly, [case])[case.id])
