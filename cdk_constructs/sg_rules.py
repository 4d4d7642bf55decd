"""Security-group checks: AWS Config managed rules, the `sg-open-world` rule with its real-time guard, findings
to a topic."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_config as config
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_constructs.alarms import alarm_on_any
from cdk_constructs.nag import acknowledge
from cdk_constructs.python_lambda import PythonLambda

# The tag that justifies world ingress on an allowed port. One definition, the rule's own: the research permission
# boundary denies ec2:CreateTags and ec2:DeleteTags on this key, so only the platform can write it.
from lambdas.sg_open_world.logic import JUSTIFICATION_TAG_KEY as JUSTIFICATION_TAG_KEY

# Ports the managed restricted-common-ports rule keeps closed to the world: RDP first, then common databases.
BLOCKED_COMMON_PORTS = (3389, 3306, 5432, 1433, 6379)
# CloudTrail calls after which the guard judges the groups they touch: ingress added or changed, a prefix list's
# entries changed (RevokeSecurityGroupIngress and CreateSecurityGroup cannot open anything).
GUARDED_CALLS = (
    "AuthorizeSecurityGroupIngress",
    "ModifySecurityGroupRules",
    "ModifyManagedPrefixList",
    "RestoreManagedPrefixListVersion",
)
# Rule names after the account's prefix; findings of exactly these rules are forwarded.
RULE_SUFFIXES = (
    "restricted-ssh",
    "restricted-common-ports",
    "sg-open-only-to-authorized-ports",
    "default-security-group-closed",
    "sg-open-world",
)


# What the rule's functions read on *: Describe* and prefix-list entries (lists may be shared from other accounts).
EVALUATOR_READS = ("ec2:DescribeSecurityGroups", "ec2:DescribeManagedPrefixLists", "ec2:GetManagedPrefixListEntries")
GUARD_READS = (*EVALUATOR_READS, "ec2:DescribeSecurityGroupRules")


@dataclass(frozen=True)
class WorldIngressException:
    """A reviewed exception: `group_id` may be open to the world on `ports`."""

    group_id: str
    ports: tuple[int, ...]
    reason: str


class SecurityGroupRules(Construct):
    """AWS Config rules on security groups, the real-time guard, and the path of their findings to `topic`.

    Managed rules: SSH closed to the world, restricted common ports (RDP and databases), only `allowed_ports` open
    to the world (`vpc-sg-open-only-to-authorized-ports`), default security groups closed. The custom rule runs
    `lambdas/sg_open_world` (`evaluator`) on every security-group change and daily; "the world" is any set of
    sources covering more than `world_share` of the public address space, prefix lists resolved. Every change to
    NON_COMPLIANT of these rules goes to `topic` as the EventBridge event.

    The guard (`guard`, the same code and decision with its own role) hears the CloudTrail calls that can open a
    group (`GUARDED_CALLS`) and tells `topic` who opened what. With `auto_remediate` it also revokes exactly the
    offending rules, by rule ID, on those calls and on the custom rule's NON_COMPLIANT findings, and the message
    lists each rule revoked. Failed guard runs land in `guard_failures`, whose alarm goes to `topic`.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name_prefix: str,
        allowed_ports: Sequence[int],
        world_share: float,
        exceptions: Sequence[WorldIngressException],
        topic: sns.ITopic,
        auto_remediate: bool,
    ) -> None:
        super().__init__(scope, id_)
        ports = ",".join(str(p) for p in allowed_ports)
        # One object for the Config rule's parameters and the guard's environment: the two paths decide alike.
        rule_parameters = {"allowedPorts": ports, "worldShare": repr(float(world_share))}
        exceptions_json = json.dumps(
            [{"group_id": e.group_id, "ports": list(e.ports), "reason": e.reason} for e in exceptions],
            separators=(",", ":"),
        )
        security_groups = config.RuleScope.from_resources([config.ResourceType.EC2_SECURITY_GROUP])
        self.managed_rules = [
            config.ManagedRule(
                self,
                "RestrictedSsh",
                config_rule_name=f"{name_prefix}restricted-ssh",
                identifier=config.ManagedRuleIdentifiers.EC2_SECURITY_GROUPS_INCOMING_SSH_DISABLED,
                rule_scope=security_groups,
            ),
            config.ManagedRule(
                self,
                "RestrictedCommonPorts",
                config_rule_name=f"{name_prefix}restricted-common-ports",
                identifier=config.ManagedRuleIdentifiers.EC2_SECURITY_GROUPS_RESTRICTED_INCOMING_TRAFFIC,
                input_parameters={f"blockedPort{i}": str(p) for i, p in enumerate(BLOCKED_COMMON_PORTS, start=1)},
                rule_scope=security_groups,
            ),
            config.ManagedRule(
                self,
                "OpenOnlyToAuthorizedPorts",
                config_rule_name=f"{name_prefix}sg-open-only-to-authorized-ports",
                identifier=config.ManagedRuleIdentifiers.VPC_SG_OPEN_ONLY_TO_AUTHORIZED_PORTS,
                input_parameters={"authorizedTcpPorts": ports} if ports else None,
                rule_scope=security_groups,
            ),
            config.ManagedRule(
                self,
                "DefaultSecurityGroupClosed",
                config_rule_name=f"{name_prefix}default-security-group-closed",
                identifier=config.ManagedRuleIdentifiers.VPC_DEFAULT_SECURITY_GROUP_CLOSED,
                rule_scope=security_groups,
            ),
        ]

        evaluator = PythonLambda(
            self,
            "OpenWorldEvaluator",
            name="sg_open_world",
            description="AWS Config rule sg-open-world: flags security groups open to the internet",
            environment={"MLBASE_WORLD_EXCEPTIONS": exceptions_json},
            timeout=Duration.minutes(5),
            reserved_concurrency=2,
            unscoped_actions=EVALUATOR_READS,
            no_dead_letter_reason=(
                "AWS Config invokes it for each evaluation; a failed evaluation shows as the rule's error in Config"
                " and runs again on the next change or periodic run."
            ),
        )
        # Describe* and GetManagedPrefixListEntries on lists other accounts share support no useful scoping.
        reads = list(EVALUATOR_READS)
        evaluator.role.add_to_principal_policy(iam.PolicyStatement(actions=reads, resources=["*"]))
        self.evaluator = evaluator.function
        self.custom_rule = config.CustomRule(
            self,
            "OpenWorld",
            config_rule_name=f"{name_prefix}sg-open-world",
            description="Security groups must not admit the world (any sources covering more than a set share of"
            " the public address space) unless on an allowed port and justified by the platform",
            lambda_function=evaluator.function,
            configuration_changes=True,
            periodic=True,
            maximum_execution_frequency=config.MaximumExecutionFrequency.TWENTY_FOUR_HOURS,
            rule_scope=security_groups,
            input_parameters=rule_parameters,
        )
        # CustomRule attaches the AWS-managed Config rules policy (PutEvaluations, GetResourceConfigHistory).
        acknowledge(
            evaluator.role,
            (
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSConfigRulesExecutionRole]",
                "AWS-maintained policy for a custom Config rule: put evaluations, read configuration history.",
            ),
        )

        self.compliance_rule = events.Rule(
            self,
            "NonCompliant",
            description="Security-group Config rules turning NON_COMPLIANT -> notifications",
            event_pattern=events.EventPattern(
                source=["aws.config"],
                detail_type=["Config Rules Compliance Change"],
                detail={
                    "messageType": ["ComplianceChangeNotification"],
                    "configRuleName": [f"{name_prefix}{suffix}" for suffix in RULE_SUFFIXES],
                    "newEvaluationResult": {"complianceType": ["NON_COMPLIANT"]},
                },
            ),
            targets=[targets.SnsTopic(topic)],
        )
        self._guard(name_prefix, rule_parameters, exceptions_json, topic, auto_remediate)

    def _guard(
        self,
        name_prefix: str,
        rule_parameters: dict[str, str],
        exceptions_json: str,
        topic: sns.ITopic,
        auto_remediate: bool,
    ) -> None:
        self.guard_failures = sqs.Queue(
            self,
            "GuardFailures",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        guard = PythonLambda(
            self,
            "OpenWorldGuard",
            name="sg_open_world",
            description="sg-open-world in real time: reports world-open groups"
            + (" and revokes exactly the offending rules" if auto_remediate else ""),
            environment={
                "MLBASE_RULE_PARAMETERS": json.dumps(rule_parameters, sort_keys=True, separators=(",", ":")),
                "MLBASE_WORLD_EXCEPTIONS": exceptions_json,
                "MLBASE_TOPIC_ARN": topic.topic_arn,
                "MLBASE_AUTO_REMEDIATE": "true" if auto_remediate else "false",
            },
            timeout=Duration.minutes(2),
            reserved_concurrency=2,
            dead_letter_queue=self.guard_failures,
            unscoped_actions=GUARD_READS,
        )
        self.guard = guard.function
        self.guard.configure_async_invoke(retry_attempts=2, max_event_age=Duration.hours(1))
        topic.grant_publish(self.guard)
        acknowledge(
            guard.role,
            (
                "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
                "From topic.grant_publish: data keys of the notifications topic's own key, to publish to it.",
            ),
        )
        # Describe* support no resource scoping; prefix lists may be shared from other accounts.
        self.guard.add_to_role_policy(iam.PolicyStatement(actions=list(GUARD_READS), resources=["*"]))
        account = Stack.of(self).account
        if auto_remediate:
            self.guard.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["ec2:RevokeSecurityGroupIngress"],
                    resources=[f"arn:aws:ec2:*:{account}:security-group/*"],
                )
            )
            acknowledge(
                guard.role,
                (
                    f"AwsSolutions-IAM5[Resource::arn:aws:ec2:*:{account}:security-group/*]",
                    "Any group of this account may be opened; the guard revokes only the rules its decision names.",
                ),
            )
        deliver = targets.LambdaFunction(
            self.guard, retry_attempts=2, max_event_age=Duration.hours(1), dead_letter_queue=self.guard_failures
        )
        self.opened_rule = events.Rule(
            self,
            "OpenedToWorld",
            description="CloudTrail: ingress or a prefix list changed -> sg-open-world guard (reports, remediates)",
            event_pattern=events.EventPattern(
                source=["aws.ec2"],
                detail_type=["AWS API Call via CloudTrail"],
                detail={
                    "eventSource": ["ec2.amazonaws.com"],
                    "eventName": list(GUARDED_CALLS),
                    "errorCode": [{"exists": False}],
                },
            ),
            targets=[deliver],
        )
        self.remediation_rule: events.Rule | None = None
        if auto_remediate:
            self.remediation_rule = events.Rule(
                self,
                "RemediateNonCompliant",
                description="sg-open-world NON_COMPLIANT -> guard revokes the offending rules",
                event_pattern=events.EventPattern(
                    source=["aws.config"],
                    detail_type=["Config Rules Compliance Change"],
                    detail={
                        "messageType": ["ComplianceChangeNotification"],
                        "configRuleName": [f"{name_prefix}sg-open-world"],
                        "newEvaluationResult": {"complianceType": ["NON_COMPLIANT"]},
                    },
                ),
                targets=[deliver],
            )
        alarm_on_any(
            self,
            "GuardFailuresAlarm",
            description="sg-open-world guard runs failed after retries (events in its dead-letter queue)",
            metric=self.guard_failures.metric_approximate_number_of_messages_visible(period=Duration.minutes(5)),
            action=cw_actions.SnsAction(topic),
        )
