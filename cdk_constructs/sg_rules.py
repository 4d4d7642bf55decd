"""Security-group checks with AWS Config: managed rules, the `sg-open-world` custom rule, findings to a topic."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, Stack
from aws_cdk import aws_config as config
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk_constructs.nag import acknowledge
from cdk_constructs.python_lambda import PythonLambda

# Ports the managed restricted-common-ports rule keeps closed to the world: RDP first, then common databases.
BLOCKED_COMMON_PORTS = (3389, 3306, 5432, 1433, 6379)
ALLOW_TAG_KEY = "mlbase:allow-world-ingress"
# AWS-owned Automation document: removes every ingress rule of a group that admits 0.0.0.0/0 or ::/0.
REMEDIATION_DOCUMENT = "AWSConfigRemediation-RemoveUnrestrictedSourceIngressRules"
# Rule names after the account's prefix; findings of exactly these rules are forwarded.
RULE_SUFFIXES = (
    "restricted-ssh",
    "restricted-common-ports",
    "sg-open-only-to-authorized-ports",
    "default-security-group-closed",
    "sg-open-world",
)


class SecurityGroupRules(Construct):
    """AWS Config rules on security groups, and the EventBridge path of their findings to `topic`.

    Managed rules: SSH closed to the world, restricted common ports (RDP and databases), only `allowed_ports` open
    to the world (`vpc-sg-open-only-to-authorized-ports`), default security groups closed. The custom rule runs
    `lambdas/sg_open_world` on every security-group change and daily. Every change to NON_COMPLIANT of these rules
    goes to `topic` as the EventBridge event; a second rule forwards the CloudTrail record of any API call that opens
    a group to the world, so the notification also names who made the change. With `auto_remediate`, the custom
    rule's NON_COMPLIANT groups lose their world-open ingress rules (an SSM Automation runs with `remediation_role`).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name_prefix: str,
        allowed_ports: Sequence[int],
        topic: sns.ITopic,
        auto_remediate: bool,
    ) -> None:
        super().__init__(scope, id_)
        ports = ",".join(str(p) for p in allowed_ports)
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
            timeout=Duration.minutes(5),
            reserved_concurrency=2,
        )
        evaluator.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["ec2:DescribeSecurityGroups"], resources=["*"])
        )
        self.custom_rule = config.CustomRule(
            self,
            "OpenWorld",
            config_rule_name=f"{name_prefix}sg-open-world",
            description="Security groups must not admit 0.0.0.0/0 or ::/0 unless on an allowed port and justified",
            lambda_function=evaluator.function,
            configuration_changes=True,
            periodic=True,
            maximum_execution_frequency=config.MaximumExecutionFrequency.TWENTY_FOUR_HOURS,
            rule_scope=security_groups,
            input_parameters={"allowedPorts": ports, "allowTagKey": ALLOW_TAG_KEY},
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
        self.opened_rule = events.Rule(
            self,
            "OpenedToWorld",
            description="CloudTrail: a security group was opened to 0.0.0.0/0 or ::/0 -> notifications, with who",
            event_pattern=events.EventPattern(
                source=["aws.ec2"],
                detail_type=["AWS API Call via CloudTrail"],
                detail={
                    "eventName": ["AuthorizeSecurityGroupIngress"],
                    "requestParameters": {
                        "ipPermissions": {
                            "items": {
                                "$or": [
                                    {"ipRanges": {"items": {"cidrIp": ["0.0.0.0/0"]}}},
                                    {"ipv6Ranges": {"items": {"cidrIpv6": ["::/0"]}}},
                                ]
                            }
                        }
                    },
                },
            ),
            targets=[
                targets.SnsTopic(
                    topic,
                    message=events.RuleTargetInput.from_text(
                        f"Security group {events.EventField.from_path('$.detail.requestParameters.groupId')}"
                        f" was opened to the internet by {events.EventField.from_path('$.detail.userIdentity.arn')}"
                        f" ({events.EventField.from_path('$.detail.eventName')} at"
                        f" {events.EventField.from_path('$.detail.eventTime')}, account {events.EventField.account},"
                        f" region {events.EventField.region}). Config rule {name_prefix}sg-open-world re-evaluates"
                        " it now."
                    ),
                )
            ],
        )

        self.remediation_role: iam.Role | None = None
        if auto_remediate:
            self._remediate()

    def _remediate(self) -> None:
        role = iam.Role(
            self,
            "RemediationRole",
            description="SSM Automation: removes world-open ingress rules that sg-open-world flags",
            assumed_by=iam.ServicePrincipal("ssm.amazonaws.com"),
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ec2:RevokeSecurityGroupIngress"],
                resources=[f"arn:aws:ec2:*:{Stack.of(self).account}:security-group/*"],
            )
        )
        role.add_to_principal_policy(iam.PolicyStatement(actions=["ec2:DescribeSecurityGroups"], resources=["*"]))
        acknowledge(
            role,
            ("NIST.800.53.R5-IAMNoInlinePolicy", "The role's only policy is this remediation's, written beside it."),
            (
                f"AwsSolutions-IAM5[Resource::arn:aws:ec2:*:{Stack.of(self).account}:security-group/*]",
                "Any security group of this account may be flagged; the rule removes only world-open ingress.",
            ),
            ("AwsSolutions-IAM5[Resource::*]", "ec2:DescribeSecurityGroups supports no resource scoping."),
        )
        self.remediation_role = role
        config.CfnRemediationConfiguration(
            self,
            "OpenWorldRemediation",
            config_rule_name=self.custom_rule.config_rule_name,
            target_type="SSM_DOCUMENT",
            target_id=REMEDIATION_DOCUMENT,
            automatic=True,
            maximum_automatic_attempts=3,
            retry_attempt_seconds=60,
            parameters={
                "GroupId": {"ResourceValue": {"Value": "RESOURCE_ID"}},
                "AutomationAssumeRole": {"StaticValue": {"Values": [role.role_arn]}},
            },
        )
