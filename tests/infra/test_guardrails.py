"""Guardrails of both accounts: notifications to Slack and e-mail, SG Config rules, budgets, SCPs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from cdk_constructs.scps import GLOBAL_SERVICE_ACTIONS
from tests.infra.conftest import resources_of, synth_variant

PROD, RESEARCH = "111111111111", "222222222222"
STACKS = ("Production-Guardrails", "Research-Guardrails")
SG_RULES = (
    "mlbase-restricted-ssh",
    "mlbase-restricted-common-ports",
    "mlbase-sg-open-only-to-authorized-ports",
    "mlbase-default-security-group-closed",
    "mlbase-sg-open-world",
)


EXCEPTION = {"group_id": "sg-0123456789abcdef0", "ports": [8443], "reason": "partner webhook, PLAT-42"}


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The app synthesized with SCPs, account creation and auto-remediation switched on."""

    def edit(raw: dict[str, Any]) -> None:
        raw["organization"] = {
            "manage_scps": True,
            "create_research_account": True,
            "research_account_email": "aws-research@example.com",
        }
        raw["security_groups"]["auto_remediate"] = True
        raw["security_groups"]["world_ingress_exceptions"] = [EXCEPTION]

    return synth_variant(tmp_path_factory.mktemp("guardrails-variant"), edit)


def by_type(t: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in resources_of(t, kind).values()]


def notifier(t: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (lid, r["Properties"]) for lid, r in resources_of(t, "AWS::Lambda::Function").items()
        if r["Properties"]["Handler"] == "lambdas.slack_notify.handler.handler"
    ]  # fmt: skip
    return found


def topic_id(t: dict[str, Any]) -> str:
    (lid,) = resources_of(t, "AWS::SNS::Topic")
    return lid


def scps(t: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["Name"]: p for p in by_type(t, "AWS::Organizations::Policy")}


# --- notification path ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_topic_is_encrypted_with_a_rotating_key_and_tls_only(template: Callable[[str], Template], stack: str) -> None:
    t = template(stack)
    t.has_resource_properties(
        "AWS::SNS::Topic", {"KmsMasterKeyId": Match.object_like({"Fn::GetAtt": Match.any_value()})}
    )
    t.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )


@pytest.mark.parametrize(("stack", "account"), [("Production-Guardrails", PROD), ("Research-Guardrails", RESEARCH)])
def test_topic_policy_lets_budgets_of_this_account_publish(
    templates: dict[str, dict[str, Any]], stack: str, account: str
) -> None:
    (policy,) = by_type(templates[stack], "AWS::SNS::TopicPolicy")
    (budgets,) = [s for s in policy["PolicyDocument"]["Statement"] if s.get("Sid") == "AllowBudgetsToPublish"]
    assert budgets["Principal"] == {"Service": "budgets.amazonaws.com"}
    assert budgets["Action"] == "sns:Publish"
    assert budgets["Condition"] == {
        "StringEquals": {"aws:SourceAccount": account},
        "ArnLike": {"aws:SourceArn": f"arn:aws:budgets::{account}:*"},
    }


@pytest.mark.parametrize("stack", STACKS)
def test_topic_key_lets_budgets_eventbridge_and_alarms_encrypt(
    templates: dict[str, dict[str, Any]], stack: str
) -> None:
    t = templates[stack]
    (key,) = [k for k in by_type(t, "AWS::KMS::Key") if k["Description"] == "Encrypts the notifications topic"]
    services = {
        s["Principal"]["Service"]: s for s in key["KeyPolicy"]["Statement"] if "Service" in s.get("Principal", {})
    }
    assert set(services) == {"budgets.amazonaws.com", "events.amazonaws.com", "cloudwatch.amazonaws.com"}
    for statement in services.values():
        assert set(statement["Action"]) == {"kms:GenerateDataKey*", "kms:Decrypt"}
    for service in ("budgets.amazonaws.com", "cloudwatch.amazonaws.com"):
        assert set(services[service]["Condition"]["StringEquals"]) == {"aws:SourceAccount"}


@pytest.mark.parametrize("stack", STACKS)
def test_emails_from_config_subscribe_to_the_topic(template: Callable[[str], Template], stack: str) -> None:
    template(stack).has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "platform-team@example.com"}
    )


@pytest.mark.parametrize("stack", STACKS)
def test_slack_notifier_reads_the_secret_by_arn_never_its_value(
    templates: dict[str, dict[str, Any]], stack: str
) -> None:
    t = templates[stack]
    _, fn = notifier(t)
    env = fn["Environment"]["Variables"]
    assert json.dumps(env["MLBASE_SLACK_SECRET_ARN"]).count("secret:mlbase/slack") == 1
    assert env["MLBASE_SLACK_MAX_ATTEMPTS"] == "4"
    assert env["MLBASE_SLACK_MAX_DELAY_SECONDS"] == "8"
    assert not resources_of(t, "AWS::SecretsManager::Secret")
    statements = [s for p in by_type(t, "AWS::IAM::Policy") for s in p["PolicyDocument"]["Statement"]]
    (read,) = [s for s in statements if "secretsmanager:GetSecretValue" in s["Action"]]
    assert "secret:mlbase/slack-??????" in json.dumps(read["Resource"])


@pytest.mark.parametrize("stack", STACKS)
def test_slack_notifier_outlives_its_own_retries(templates: dict[str, dict[str, Any]], stack: str) -> None:
    _, fn = notifier(templates[stack])
    attempts = int(fn["Environment"]["Variables"]["MLBASE_SLACK_MAX_ATTEMPTS"])
    delay = int(fn["Environment"]["Variables"]["MLBASE_SLACK_MAX_DELAY_SECONDS"])
    assert fn["Timeout"] >= 90
    assert fn["Timeout"] > attempts * 10 + (attempts - 1) * delay


@pytest.mark.parametrize("stack", STACKS)
def test_topic_invokes_the_notifier_with_a_dead_letter_queue(templates: dict[str, dict[str, Any]], stack: str) -> None:
    t = templates[stack]
    lid, fn = notifier(t)
    (sub,) = [s for s in by_type(t, "AWS::SNS::Subscription") if s["Protocol"] == "lambda"]
    assert sub["Endpoint"] == {"Fn::GetAtt": [lid, "Arn"]}
    assert sub["TopicArn"] == {"Ref": topic_id(t)}
    dlq = fn["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0]
    assert sub["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]}}
    assert resources_of(t, "AWS::SQS::Queue")[dlq]["Properties"]["SqsManagedSseEnabled"] is True


@pytest.mark.parametrize("stack", STACKS)
def test_failed_notifications_are_retried_then_alarmed(templates: dict[str, dict[str, Any]], stack: str) -> None:
    t = templates[stack]
    lid, fn = notifier(t)
    (invoke,) = [c for c in by_type(t, "AWS::Lambda::EventInvokeConfig") if c["FunctionName"] == {"Ref": lid}]
    assert invoke["MaximumRetryAttempts"] == 2
    dlq = fn["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0]
    dimensions = [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}]
    (alarm,) = [a for a in by_type(t, "AWS::CloudWatch::Alarm") if a.get("Dimensions") == dimensions]
    assert "dead-letter" in alarm["AlarmDescription"]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["AlarmActions"] == [{"Ref": topic_id(t)}]


# --- security-group Config rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_managed_sg_rules_in_both_accounts(templates: dict[str, dict[str, Any]], stack: str) -> None:
    rules = {r["ConfigRuleName"]: r for r in by_type(templates[stack], "AWS::Config::ConfigRule")}
    assert sorted(rules) == sorted(SG_RULES)
    assert rules["mlbase-restricted-ssh"]["Source"]["SourceIdentifier"] == "INCOMING_SSH_DISABLED"
    common = rules["mlbase-restricted-common-ports"]
    assert common["Source"]["SourceIdentifier"] == "RESTRICTED_INCOMING_TRAFFIC"
    assert common["InputParameters"]["blockedPort1"] == "3389"
    authorized = rules["mlbase-sg-open-only-to-authorized-ports"]
    assert authorized["Source"]["SourceIdentifier"] == "VPC_SG_OPEN_ONLY_TO_AUTHORIZED_PORTS"
    assert authorized["InputParameters"] == {"authorizedTcpPorts": "80,443"}
    default = rules["mlbase-default-security-group-closed"]["Source"]["SourceIdentifier"]
    assert default == "VPC_DEFAULT_SECURITY_GROUP_CLOSED"


@pytest.mark.parametrize("stack", STACKS)
def test_custom_rule_runs_the_lambda_on_changes_and_daily(templates: dict[str, dict[str, Any]], stack: str) -> None:
    t = templates[stack]
    (rule,) = [r for r in by_type(t, "AWS::Config::ConfigRule") if r["ConfigRuleName"] == "mlbase-sg-open-world"]
    assert rule["Source"]["Owner"] == "CUSTOM_LAMBDA"
    assert rule["Scope"] == {"ComplianceResourceTypes": ["AWS::EC2::SecurityGroup"]}
    assert rule["InputParameters"] == {"allowedPorts": "80,443", "worldShare": "0.00390625"}
    kinds = {d["MessageType"] for d in rule["Source"]["SourceDetails"]}
    assert kinds == {
        "ConfigurationItemChangeNotification",
        "OversizedConfigurationItemChangeNotification",
        "ScheduledNotification",
    }
    fn_id = rule["Source"]["SourceIdentifier"]["Fn::GetAtt"][0]
    assert t["Resources"][fn_id]["Properties"]["Handler"] == "lambdas.sg_open_world.handler.handler"
    Template.from_json(t).has_resource_properties(
        "AWS::Lambda::Permission",
        {"FunctionName": {"Fn::GetAtt": [fn_id, "Arn"]}, "Principal": "config.amazonaws.com"},
    )


@pytest.mark.parametrize("stack", STACKS)
def test_custom_rule_function_may_describe_groups_and_put_evaluations(
    templates: dict[str, dict[str, Any]], stack: str
) -> None:
    t = templates[stack]
    (rule,) = [r for r in by_type(t, "AWS::Config::ConfigRule") if r["ConfigRuleName"] == "mlbase-sg-open-world"]
    fn = t["Resources"][rule["Source"]["SourceIdentifier"]["Fn::GetAtt"][0]]["Properties"]
    role = t["Resources"][fn["Role"]["Fn::GetAtt"][0]]["Properties"]
    assert "service-role/AWSConfigRulesExecutionRole" in json.dumps(role["ManagedPolicyArns"])
    statements = [
        s for p in by_type(t, "AWS::IAM::Policy") if p["Roles"] == [{"Ref": fn["Role"]["Fn::GetAtt"][0]}]
        for s in p["PolicyDocument"]["Statement"]
    ]  # fmt: skip
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeManagedPrefixLists",
        "ec2:GetManagedPrefixListEntries",
    } <= actions
    assert not any(a.startswith("ec2:Revoke") for a in actions)  # the evaluator only reads


@pytest.mark.parametrize("stack", STACKS)
def test_non_compliance_of_the_sg_rules_goes_to_the_topic(templates: dict[str, dict[str, Any]], stack: str) -> None:
    t = templates[stack]
    (rule,) = [r for r in by_type(t, "AWS::Events::Rule") if r["EventPattern"]["source"] == ["aws.config"]]
    pattern = rule["EventPattern"]
    assert pattern["detail-type"] == ["Config Rules Compliance Change"]
    assert sorted(pattern["detail"]["configRuleName"]) == sorted(SG_RULES)
    assert pattern["detail"]["newEvaluationResult"] == {"complianceType": ["NON_COMPLIANT"]}
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": topic_id(t)}
    # The whole event goes through, as lambdas/slack_notify formats it (group, rule, account, console link).
    assert "InputTransformer" not in target


def guard(t: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (lid, r["Properties"]) for lid, r in resources_of(t, "AWS::Lambda::Function").items()
        if r["Properties"]["Handler"] == "lambdas.sg_open_world.handler.handler"
        and "MLBASE_TOPIC_ARN" in r["Properties"].get("Environment", {}).get("Variables", {})
    ]  # fmt: skip
    return found


def guard_statements(t: dict[str, Any]) -> list[dict[str, Any]]:
    role = guard(t)[1]["Role"]["Fn::GetAtt"][0]
    return [
        s for p in by_type(t, "AWS::IAM::Policy") if p["Roles"] == [{"Ref": role}]
        for s in p["PolicyDocument"]["Statement"]
    ]  # fmt: skip


def actions_of(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


@pytest.mark.parametrize("stack", STACKS)
def test_calls_that_can_open_a_group_go_to_the_guard(templates: dict[str, dict[str, Any]], stack: str) -> None:
    t = templates[stack]
    (rule,) = [r for r in by_type(t, "AWS::Events::Rule") if r["EventPattern"]["source"] == ["aws.ec2"]]
    detail = rule["EventPattern"]["detail"]
    assert sorted(detail["eventName"]) == sorted(
        ["AuthorizeSecurityGroupIngress", "ModifySecurityGroupRules", "ModifyManagedPrefixList",
         "RestoreManagedPrefixListVersion"]
    )  # fmt: skip
    # No CIDR filter in the pattern: the /1 halves or a prefix list would slip past one; the guard decides.
    assert "requestParameters" not in detail
    assert detail["errorCode"] == [{"exists": False}]
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [guard(t)[0], "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    assert "DeadLetterConfig" in target


@pytest.mark.parametrize("stack", STACKS)
def test_guard_and_config_rule_decide_with_the_same_parameters(
    templates: dict[str, dict[str, Any]], stack: str
) -> None:
    t = templates[stack]
    (rule,) = [r for r in by_type(t, "AWS::Config::ConfigRule") if r["ConfigRuleName"] == "mlbase-sg-open-world"]
    env = guard(t)[1]["Environment"]["Variables"]
    assert json.loads(env["MLBASE_RULE_PARAMETERS"]) == rule["InputParameters"]
    evaluator = t["Resources"][rule["Source"]["SourceIdentifier"]["Fn::GetAtt"][0]]["Properties"]
    assert env["MLBASE_WORLD_EXCEPTIONS"] == evaluator["Environment"]["Variables"]["MLBASE_WORLD_EXCEPTIONS"] == "[]"
    assert env["MLBASE_TOPIC_ARN"] == {"Ref": topic_id(t)}


@pytest.mark.parametrize("stack", STACKS)
def test_guard_reads_and_publishes_but_revokes_nothing_by_default(
    templates: dict[str, dict[str, Any]], stack: str
) -> None:
    t = templates[stack]
    assert guard(t)[1]["Environment"]["Variables"]["MLBASE_AUTO_REMEDIATE"] == "false"
    actions = actions_of(guard_statements(t))
    assert {"ec2:DescribeSecurityGroupRules", "ec2:GetManagedPrefixListEntries", "sns:Publish"} <= actions
    assert "ec2:RevokeSecurityGroupIngress" not in actions
    assert not resources_of(t, "AWS::Config::RemediationConfiguration")
    assert not [r for r in by_type(t, "AWS::Events::Rule") if r.get("Description", "").startswith("sg-open-world NON")]


@pytest.mark.parametrize("stack", STACKS)
def test_failed_guard_runs_are_queued_and_alarmed(templates: dict[str, dict[str, Any]], stack: str) -> None:
    t = templates[stack]
    lid, fn = guard(t)
    queue = fn["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0]
    config = [c["Properties"] for c in resources_of(t, "AWS::Lambda::EventInvokeConfig").values()]
    assert [c["MaximumRetryAttempts"] for c in config if c["FunctionName"] == {"Ref": lid}] == [2]
    (alarm,) = [
        a for a in by_type(t, "AWS::CloudWatch::Alarm")
        if {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}} in a.get("Dimensions", [])
    ]  # fmt: skip
    assert alarm["AlarmActions"] == [{"Ref": topic_id(t)}]


def test_auto_remediation_revokes_through_the_guard_when_enabled(variant: dict[str, dict[str, Any]]) -> None:
    for stack in STACKS:
        t = variant[stack]
        assert not resources_of(t, "AWS::Config::RemediationConfiguration")  # no SSM document strips groups
        env = guard(t)[1]["Environment"]["Variables"]
        assert env["MLBASE_AUTO_REMEDIATE"] == "true"
        assert json.loads(env["MLBASE_WORLD_EXCEPTIONS"]) == [EXCEPTION]
        (revoke,) = [s for s in guard_statements(t) if s["Action"] == "ec2:RevokeSecurityGroupIngress"]
        account = PROD if stack.startswith("Production") else RESEARCH
        assert revoke["Resource"] == f"arn:aws:ec2:*:{account}:security-group/*"
        (rule,) = [
            r for r in by_type(t, "AWS::Events::Rule")
            if r["EventPattern"]["source"] == ["aws.config"] and r["Targets"][0]["Arn"] != {"Ref": topic_id(t)}
        ]  # fmt: skip
        assert rule["EventPattern"]["detail"]["configRuleName"] == ["mlbase-sg-open-world"]
        assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": [guard(t)[0], "Arn"]}


# --- budgets ----------------------------------------------------------------------------------------------------


def budgets_of(t: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["Budget"]["BudgetName"]: b for b in by_type(t, "AWS::Budgets::Budget")}


def thresholds(budget: dict[str, Any]) -> list[tuple[str, float]]:
    return [
        (n["Notification"]["NotificationType"], n["Notification"]["Threshold"])
        for n in budget["NotificationsWithSubscribers"]
    ]


@pytest.mark.parametrize(
    ("stack", "name", "amount"),
    [
        ("Production-Guardrails", "mlbase-production-monthly", 20000),
        ("Research-Guardrails", "mlbase-research-monthly", 8000),
    ],
)
def test_monthly_account_budget_with_configured_thresholds(
    templates: dict[str, dict[str, Any]], stack: str, name: str, amount: int
) -> None:
    budget = budgets_of(templates[stack])[name]
    assert budget["Budget"]["BudgetType"] == "COST"
    assert budget["Budget"]["TimeUnit"] == "MONTHLY"
    assert budget["Budget"]["BudgetLimit"] == {"Amount": amount, "Unit": "USD"}
    assert thresholds(budget) == [("ACTUAL", 50), ("ACTUAL", 80), ("ACTUAL", 100), ("FORECASTED", 100)]
    for notification in budget["NotificationsWithSubscribers"]:
        assert notification["Notification"]["ThresholdType"] == "PERCENTAGE"
        assert notification["Notification"]["ComparisonOperator"] == "GREATER_THAN"
        assert notification["Subscribers"] == [
            {"SubscriptionType": "SNS", "Address": {"Ref": topic_id(templates[stack])}}
        ]


def test_payer_budget_counts_only_production_spend(templates: dict[str, dict[str, Any]]) -> None:
    budget = budgets_of(templates["Production-Guardrails"])["mlbase-production-monthly"]
    assert budget["Budget"]["CostFilters"] == {"LinkedAccount": [PROD]}
    assert "CostFilters" not in budgets_of(templates["Research-Guardrails"])["mlbase-research-monthly"]["Budget"]


def test_per_researcher_budget_filters_on_the_owner_tag(templates: dict[str, dict[str, Any]]) -> None:
    budgets = budgets_of(templates["Research-Guardrails"])
    # taro has a workstation budget in config; yuki has a workstation without one, hanako no workstation.
    assert sorted(budgets) == ["mlbase-research-monthly", "mlbase-researcher-taro"]
    taro = budgets["mlbase-researcher-taro"]
    assert taro["Budget"]["BudgetLimit"] == {"Amount": 1500, "Unit": "USD"}
    assert taro["Budget"]["CostFilters"] == {"TagKeyValue": ["user:Owner$taro"]}
    assert thresholds(taro) == [("ACTUAL", 50), ("ACTUAL", 80), ("ACTUAL", 100), ("FORECASTED", 100)]
    assert not [b for b in budgets_of(templates["Production-Guardrails"]) if "researcher" in b]


@pytest.mark.parametrize("stack", STACKS)
def test_budgets_wait_for_the_topic_policy(templates: dict[str, dict[str, Any]], stack: str) -> None:
    t = templates[stack]
    (policy_id,) = resources_of(t, "AWS::SNS::TopicPolicy")
    for resource in resources_of(t, "AWS::Budgets::Budget").values():
        assert policy_id in resource["DependsOn"]


# --- organization -----------------------------------------------------------------------------------------------


def test_no_scps_or_account_by_default(templates: dict[str, dict[str, Any]]) -> None:
    for t in templates.values():
        assert not resources_of(t, "AWS::Organizations::Policy")
        assert not resources_of(t, "AWS::Organizations::Account")


def test_scps_live_only_in_the_management_account(variant: dict[str, dict[str, Any]]) -> None:
    assert len(scps(variant["Production-Guardrails"])) == 3
    assert not scps(variant["Research-Guardrails"])


def test_scps_attach_to_the_created_research_account(variant: dict[str, dict[str, Any]]) -> None:
    t = variant["Production-Guardrails"]
    (account_id,) = resources_of(t, "AWS::Organizations::Account")
    account = t["Resources"][account_id]
    assert account["Properties"]["Email"] == "aws-research@example.com"
    assert account["DeletionPolicy"] == "Retain"
    for policy in scps(t).values():
        assert policy["Type"] == "SERVICE_CONTROL_POLICY"
        assert policy["TargetIds"] == [{"Fn::GetAtt": [account_id, "AccountId"]}]


def test_audit_scp_protects_trail_recorder_and_archive(variant: dict[str, dict[str, Any]]) -> None:
    statements = {
        s["Sid"]: s
        for s in scps(variant["Production-Guardrails"])["mlbase-ResearchAuditProtection"]["Content"]["Statement"]
    }
    trail = statements["DenyTrailChanges"]
    assert {"cloudtrail:StopLogging", "cloudtrail:DeleteTrail"} <= set(trail["Action"])
    assert trail["Resource"] == f"arn:aws:cloudtrail:*:{RESEARCH}:trail/mlbase-trail"
    exempt = {"ArnNotLike": {"aws:PrincipalArn": [f"arn:aws:iam::{RESEARCH}:role/cdk-*-cfn-exec-role-*"]}}
    assert trail["Condition"] == exempt
    recorder = statements["DenyConfigRecorderChanges"]
    assert {
        "config:StopConfigurationRecorder",
        "config:DeleteConfigurationRecorder",
        "config:DeleteDeliveryChannel",
    } <= set(recorder["Action"])
    assert recorder["Condition"] == exempt
    archive = statements["DenyLogArchiveChanges"]
    bucket = f"arn:aws:s3:::mlbase-log-archive-{PROD}-ap-northeast-1"
    assert archive["Resource"] == [bucket, f"{bucket}/*"]
    assert {"s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:DeleteBucket", "s3:DeleteObject"} <= set(
        archive["Action"]
    )
    assert "Condition" not in archive
    assert {s["Effect"] for s in statements.values()} == {"Deny"}


def test_account_scp_denies_leaving_and_iam_users_and_keys(variant: dict[str, dict[str, Any]]) -> None:
    content = scps(variant["Production-Guardrails"])["mlbase-ResearchAccountProtection"]["Content"]
    statements = {s["Sid"]: s for s in content["Statement"]}
    assert statements["DenyLeavingOrganization"]["Action"] == "organizations:LeaveOrganization"
    assert {"iam:CreateUser", "iam:CreateAccessKey"} <= set(statements["DenyIamUsersAndKeys"]["Action"])
    assert {s["Effect"] for s in statements.values()} == {"Deny"}
    assert all("Condition" not in s for s in statements.values())


def test_region_scp_denies_other_regions_except_global_services(variant: dict[str, dict[str, Any]]) -> None:
    content = scps(variant["Production-Guardrails"])["mlbase-ResearchRegionRestriction"]["Content"]
    (statement,) = content["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"StringNotEquals": {"aws:RequestedRegion": ["ap-northeast-1"]}}
    assert statement["NotAction"] == list(GLOBAL_SERVICE_ACTIONS)
    assert {"iam:*", "sts:*", "organizations:*", "budgets:*", "cloudfront:*", "route53:*"} <= set(
        statement["NotAction"]
    )


def test_every_scp_fits_the_size_limit(variant: dict[str, dict[str, Any]]) -> None:
    for policy in scps(variant["Production-Guardrails"]).values():
        assert len(json.dumps(policy["Content"], separators=(",", ":"))) < 5120


def test_notifier_may_look_up_who_changed_a_group(templates: dict[str, Any]) -> None:
    for stack in ("Production-Guardrails", "Research-Guardrails"):
        statements = [
            s
            for p in templates[stack]["Resources"].values()
            if p["Type"] == "AWS::IAM::Policy"
            for s in p["Properties"]["PolicyDocument"]["Statement"]
        ]
        lookups = [s for s in statements if "cloudtrail:LookupEvents" in json.dumps(s["Action"])]
        assert lookups, stack
        assert all(s["Resource"] == "*" and s["Effect"] == "Allow" for s in lookups)
