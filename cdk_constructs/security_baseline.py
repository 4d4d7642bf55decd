"""One account's security baseline: detection services, account-wide settings, and the CIS alarms on the trail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_accessanalyzer as accessanalyzer
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_guardduty as guardduty
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_securityhub as securityhub
from aws_cdk import aws_sns as sns
from aws_cdk import custom_resources as cr
from constructs import Construct

from cdk_constructs.cis_alarms import CisAlarms
from cdk_constructs.nag import acknowledge, acknowledge_sdk_call_provider

# Security Hub standards, by the ARNs AWS documents for them (securityhub/latest/userguide/standards-reference.html).
SECURITY_HUB_STANDARDS = {
    "FoundationalBestPractices": "standards/aws-foundational-security-best-practices/v/1.0.0",
    "CisFoundationsV3": "standards/cis-aws-foundations-benchmark/v/3.0.0",
}
# Findings at HIGH and above reach Slack. GuardDuty severities: 7.0-8.9 high, 9.0-10.0 critical
# (guardduty/latest/ug/guardduty_findings-severity.html).
GUARDDUTY_HIGH = 7
# Security Hub also imports GuardDuty's and Access Analyzer's own findings; those already have their own rule.
FORWARDED_ELSEWHERE = ("GuardDuty", "IAM Access Analyzer")

# IAM password policy per CIS AWS Foundations v3.0.0 1.8 (length >= 14) and 1.9 (reuse prevention 24), with every
# character class that Security Hub's IAM.7 (Foundational Best Practices) checks. No forced expiry: CIS v3 dropped
# it, following NIST SP 800-63B.
PASSWORD_POLICY: dict[str, Any] = {
    "MinimumPasswordLength": 14,
    "PasswordReusePrevention": 24,
    "RequireUppercaseCharacters": True,
    "RequireLowercaseCharacters": True,
    "RequireNumbers": True,
    "RequireSymbols": True,
    "AllowUsersToChangePassword": True,
}
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}

# Construct ID of the singleton function behind every AwsCustomResource in a stack (fixed by aws-cdk-lib).


@dataclass(frozen=True)
class BaselinePieces:
    """Which pieces to build; the stack maps `security_baseline:` of the platform config onto it."""

    guardduty: bool = True
    security_hub: bool = True
    access_analyzer: bool = True
    s3_block_public_access: bool = True
    ebs_encryption_by_default: bool = True
    password_policy: bool = True
    cis_alarms: bool = True


@dataclass(frozen=True)
class AccountSetting:
    """One account-wide setting that CloudFormation has no resource type for: the SDK call that applies it.

    There is no delete call on purpose: removing the resource (or switching the piece off) leaves the account as it
    is, because undoing any of these would weaken the account (public buckets possible again, unencrypted volumes,
    AWS's default password rules) without anyone asking for that.
    """

    id_: str
    service: str
    action: str
    iam_action: str
    parameters: dict[str, Any]


def account_settings(account: str, pieces: BaselinePieces) -> list[AccountSetting]:
    """The SDK calls for the switched-on account settings (tests replay exactly these against moto)."""
    settings = []
    if pieces.s3_block_public_access:
        settings.append(
            AccountSetting(
                "S3BlockPublicAccess",
                "S3Control",
                "putPublicAccessBlock",
                "s3:PutAccountPublicAccessBlock",
                {"AccountId": account, "PublicAccessBlockConfiguration": PUBLIC_ACCESS_BLOCK},
            )
        )
    if pieces.ebs_encryption_by_default:
        settings.append(
            AccountSetting(
                "EbsEncryptionByDefault", "EC2", "enableEbsEncryptionByDefault", "ec2:EnableEbsEncryptionByDefault", {}
            )
        )
    if pieces.password_policy:
        settings.append(
            AccountSetting(
                "PasswordPolicy",
                "IAM",
                "updateAccountPasswordPolicy",
                "iam:UpdateAccountPasswordPolicy",
                dict(PASSWORD_POLICY),
            )
        )
    return settings


class SecurityBaseline(Construct):
    """What a reviewer expects in every account, each piece optional (`pieces`), all in the stack's region:

    - GuardDuty (`detector`) with S3 Protection; Security Hub (`hub`) with the AWS Foundational Security Best
      Practices v1.0.0 and CIS AWS Foundations Benchmark v3.0.0 standards; an IAM Access Analyzer account analyzer.
    - Account settings without a CloudFormation type, applied by SDK calls at deploy (`AccountSetting`): account-level
      S3 Block Public Access, EBS encryption by default, the CIS password policy. Deleting them changes nothing.
    - The CIS metric filters and alarms on `trail_log_group` (`cis_alarms`, see cdk_constructs/cis_alarms.py).
    - Findings at HIGH and above (GuardDuty severity >= 7, Security Hub HIGH/CRITICAL, every active Access Analyzer
      finding) and every CIS alarm go to `topic`, which the Slack notifier formats per source.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        topic: sns.ITopic,
        trail_log_group: logs.ILogGroup,
        pieces: BaselinePieces,
        name_prefix: str,
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.detector: guardduty.CfnDetector | None = None
        self.hub: securityhub.CfnHub | None = None
        self.cis_alarms: CisAlarms | None = None
        self.finding_rules: dict[str, events.Rule] = {}

        if pieces.guardduty:
            self.detector = guardduty.CfnDetector(
                self,
                "Detector",
                enable=True,
                # `Features` is the current form (DataSources is deprecated and may not be combined with it).
                features=[
                    guardduty.CfnDetector.CFNFeatureConfigurationProperty(name="S3_DATA_EVENTS", status="ENABLED")
                ],
                finding_publishing_frequency="FIFTEEN_MINUTES",
            )
            self._forward(
                "GuardDutyFindings",
                "GuardDuty findings of severity 7 (high) and above",
                topic,
                source=["aws.guardduty"],
                detail_type=["GuardDuty Finding"],
                detail={"severity": [{"numeric": [">=", GUARDDUTY_HIGH]}]},
            )
        if pieces.security_hub:
            # Default standards off: the two standards below are the whole, reviewed set.
            self.hub = securityhub.CfnHub(
                self,
                "Hub",
                enable_default_standards=False,
                auto_enable_controls=True,
                control_finding_generator="SECURITY_CONTROL",
            )
            for name, path in SECURITY_HUB_STANDARDS.items():
                standard = securityhub.CfnStandard(
                    self, name, standards_arn=f"arn:{stack.partition}:securityhub:{stack.region}::{path}"
                )
                standard.node.add_dependency(self.hub)
            self._forward(
                "SecurityHubFindings",
                "Security Hub findings rated HIGH or CRITICAL, new and active",
                topic,
                source=["aws.securityhub"],
                detail_type=["Security Hub Findings - Imported"],
                detail={
                    "findings": {
                        "Severity": {"Label": ["HIGH", "CRITICAL"]},
                        "RecordState": ["ACTIVE"],
                        "Workflow": {"Status": ["NEW"]},
                        "ProductName": [{"anything-but": list(FORWARDED_ELSEWHERE)}],
                    }
                },
            )
        if pieces.access_analyzer:
            accessanalyzer.CfnAnalyzer(self, "AccessAnalyzer", type="ACCOUNT")
            # Every active finding: a resource shared outside the account is worth a look whatever the resource.
            self._forward(
                "AccessAnalyzerFindings",
                "IAM Access Analyzer findings (resources shared outside the account), while active",
                topic,
                source=["aws.access-analyzer"],
                detail_type=["Access Analyzer Finding"],
                # A deleted finding keeps its status and only gets isDeleted (access-analyzer-eventbridge.html).
                detail={"status": ["ACTIVE"], "isDeleted": [False]},
            )

        self.settings = account_settings(stack.account, pieces)
        for setting in self.settings:
            self._apply(setting)
        if self.settings:
            acknowledge_sdk_call_provider(
                stack, "apply the account settings that CloudFormation has no resource type for"
            )

        if pieces.cis_alarms:
            self.cis_alarms = CisAlarms(
                self,
                "Cis",
                log_group=trail_log_group,
                alarm_prefix=f"{name_prefix}cis-",
                action=cw_actions.SnsAction(topic),
            )

    def _forward(self, id_: str, description: str, topic: sns.ITopic, **pattern: Any) -> None:
        # The whole event is forwarded: the notifier formats each source and keeps the rest as plain text.
        self.finding_rules[id_] = events.Rule(
            self,
            id_,
            description=f"{description} -> notifications topic (Slack, e-mail)",
            event_pattern=events.EventPattern(**pattern),
            targets=[targets.SnsTopic(topic)],
        )

    def _apply(self, setting: AccountSetting) -> None:
        call = cr.AwsSdkCall(
            service=setting.service,
            action=setting.action,
            parameters=setting.parameters,
            physical_resource_id=cr.PhysicalResourceId.of(f"{Stack.of(self).account}-{setting.id_}"),
        )
        resource = cr.AwsCustomResource(
            self,
            setting.id_,
            on_create=call,
            on_update=call,
            # No on_delete: see AccountSetting.
            install_latest_aws_sdk=False,
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [iam.PolicyStatement(actions=[setting.iam_action], resources=["*"])]
            ),
        )
        acknowledge(
            resource,
            (
                "AwsSolutions-IAM5[Resource::*]",
                f"{setting.iam_action} is an account-wide action with no resource type (Service Authorization "
                "Reference), so it can only be granted on *; the statement names this one action.",
            ),
            ("NIST.800.53.R5-IAMNoInlinePolicy", "CDK-generated: one account-setting call for this custom resource."),
        )
