"""The CIS CloudWatch metric filters and alarms on a CloudTrail log group, one row per monitored change.

Patterns are copied exactly from AWS's Security Hub CloudWatch controls
(https://docs.aws.amazon.com/securityhub/latest/userguide/cloudwatch-controls.html, CloudWatch.1 to CloudWatch.14):
Security Hub fails a control whose filter adds or changes a term. AWS Organizations changes have no Security Hub
control; that row uses the pattern of CIS AWS Foundations Benchmark v3.0.0 recommendation 4.15.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk_constructs.alarms import alarm_on_any

# The namespace the AWS remediation steps use; one namespace keeps every CIS metric together.
CIS_METRIC_NAMESPACE = "LogMetrics"


@dataclass(frozen=True)
class CisCheck:
    """One monitored change: construct ID and metric name, the control it satisfies, what it means, the pattern."""

    name: str
    control: str
    title: str
    pattern: str


CIS_CHECKS: tuple[CisCheck, ...] = (
    CisCheck(
        "RootUsage",
        "CloudWatch.1",
        "the root user was used",
        '{$.userIdentity.type="Root" && $.userIdentity.invokedBy NOT EXISTS && $.eventType !="AwsServiceEvent"}',
    ),
    CisCheck(
        "UnauthorizedApiCalls",
        "CloudWatch.2",
        "API calls were refused (unauthorized)",
        '{($.errorCode="*UnauthorizedOperation") || ($.errorCode="AccessDenied*")}',
    ),
    CisCheck(
        "ConsoleSignInWithoutMfa",
        "CloudWatch.3",
        "an IAM user signed in to the console without MFA",
        '{ ($.eventName = "ConsoleLogin") && ($.additionalEventData.MFAUsed != "Yes") && '
        '($.userIdentity.type = "IAMUser") && ($.responseElements.ConsoleLogin = "Success") }',
    ),
    CisCheck(
        "IamPolicyChanges",
        "CloudWatch.4",
        "IAM policies changed",
        "{($.eventName=DeleteGroupPolicy) || ($.eventName=DeleteRolePolicy) || ($.eventName=DeleteUserPolicy) || "
        "($.eventName=PutGroupPolicy) || ($.eventName=PutRolePolicy) || ($.eventName=PutUserPolicy) || "
        "($.eventName=CreatePolicy) || ($.eventName=DeletePolicy) || ($.eventName=CreatePolicyVersion) || "
        "($.eventName=DeletePolicyVersion) || ($.eventName=AttachRolePolicy) || ($.eventName=DetachRolePolicy) || "
        "($.eventName=AttachUserPolicy) || ($.eventName=DetachUserPolicy) || ($.eventName=AttachGroupPolicy) || "
        "($.eventName=DetachGroupPolicy)}",
    ),
    CisCheck(
        "CloudTrailChanges",
        "CloudWatch.5",
        "a CloudTrail trail was changed or stopped",
        "{($.eventName=CreateTrail) || ($.eventName=UpdateTrail) || ($.eventName=DeleteTrail) || "
        "($.eventName=StartLogging) || ($.eventName=StopLogging)}",
    ),
    CisCheck(
        "ConsoleAuthenticationFailures",
        "CloudWatch.6",
        "console sign-ins failed",
        '{($.eventName=ConsoleLogin) && ($.errorMessage="Failed authentication")}',
    ),
    CisCheck(
        "KmsKeyDisabledOrDeleted",
        "CloudWatch.7",
        "a customer managed KMS key was disabled or scheduled for deletion",
        "{($.eventSource=kms.amazonaws.com) && (($.eventName=DisableKey) || ($.eventName=ScheduleKeyDeletion))}",
    ),
    CisCheck(
        "S3BucketPolicyChanges",
        "CloudWatch.8",
        "an S3 bucket policy, ACL, CORS, lifecycle or replication setting changed",
        "{($.eventSource=s3.amazonaws.com) && (($.eventName=PutBucketAcl) || ($.eventName=PutBucketPolicy) || "
        "($.eventName=PutBucketCors) || ($.eventName=PutBucketLifecycle) || ($.eventName=PutBucketReplication) || "
        "($.eventName=DeleteBucketPolicy) || ($.eventName=DeleteBucketCors) || ($.eventName=DeleteBucketLifecycle) || "
        "($.eventName=DeleteBucketReplication))}",
    ),
    CisCheck(
        "ConfigChanges",
        "CloudWatch.9",
        "AWS Config recording or delivery changed",
        "{($.eventSource=config.amazonaws.com) && (($.eventName=StopConfigurationRecorder) || "
        "($.eventName=DeleteDeliveryChannel) || ($.eventName=PutDeliveryChannel) || "
        "($.eventName=PutConfigurationRecorder))}",
    ),
    CisCheck(
        "SecurityGroupChanges",
        "CloudWatch.10",
        "security groups changed",
        "{($.eventName=AuthorizeSecurityGroupIngress) || ($.eventName=AuthorizeSecurityGroupEgress) || "
        "($.eventName=RevokeSecurityGroupIngress) || ($.eventName=RevokeSecurityGroupEgress) || "
        "($.eventName=CreateSecurityGroup) || ($.eventName=DeleteSecurityGroup)}",
    ),
    CisCheck(
        "NetworkAclChanges",
        "CloudWatch.11",
        "network ACLs changed",
        "{($.eventName=CreateNetworkAcl) || ($.eventName=CreateNetworkAclEntry) || ($.eventName=DeleteNetworkAcl) || "
        "($.eventName=DeleteNetworkAclEntry) || ($.eventName=ReplaceNetworkAclEntry) || "
        "($.eventName=ReplaceNetworkAclAssociation)}",
    ),
    CisCheck(
        "NetworkGatewayChanges",
        "CloudWatch.12",
        "internet or customer gateways changed",
        "{($.eventName=CreateCustomerGateway) || ($.eventName=DeleteCustomerGateway) || "
        "($.eventName=AttachInternetGateway) || ($.eventName=CreateInternetGateway) || "
        "($.eventName=DeleteInternetGateway) || ($.eventName=DetachInternetGateway)}",
    ),
    CisCheck(
        "RouteTableChanges",
        "CloudWatch.13",
        "route tables changed",
        "{($.eventName=CreateRoute) || ($.eventName=CreateRouteTable) || ($.eventName=ReplaceRoute) || "
        "($.eventName=ReplaceRouteTableAssociation) || ($.eventName=DeleteRouteTable) || ($.eventName=DeleteRoute) || "
        "($.eventName=DisassociateRouteTable)}",
    ),
    CisCheck(
        "VpcChanges",
        "CloudWatch.14",
        "VPCs or VPC peering changed",
        "{($.eventName=CreateVpc) || ($.eventName=DeleteVpc) || ($.eventName=ModifyVpcAttribute) || "
        "($.eventName=AcceptVpcPeeringConnection) || ($.eventName=CreateVpcPeeringConnection) || "
        "($.eventName=DeleteVpcPeeringConnection) || ($.eventName=RejectVpcPeeringConnection) || "
        "($.eventName=AttachClassicLinkVpc) || ($.eventName=DetachClassicLinkVpc) || "
        "($.eventName=DisableVpcClassicLink) || ($.eventName=EnableVpcClassicLink)}",
    ),
    CisCheck(
        "OrganizationsChanges",
        "CIS 4.15",
        "AWS Organizations changed (accounts, OUs, policies, handshakes)",
        '{ ($.eventSource = organizations.amazonaws.com) && (($.eventName = "AcceptHandshake") || '
        '($.eventName = "AttachPolicy") || ($.eventName = "CreateAccount") || '
        '($.eventName = "CreateOrganizationalUnit") || ($.eventName = "CreatePolicy") || '
        '($.eventName = "DeclineHandshake") || ($.eventName = "DeleteOrganization") || '
        '($.eventName = "DeleteOrganizationalUnit") || ($.eventName = "DeletePolicy") || '
        '($.eventName = "DetachPolicy") || ($.eventName = "DisablePolicyType") || '
        '($.eventName = "EnablePolicyType") || ($.eventName = "InviteAccountToOrganization") || '
        '($.eventName = "LeaveOrganization") || ($.eventName = "MoveAccount") || '
        '($.eventName = "RemoveAccountFromOrganization") || ($.eventName = "UpdatePolicy") || '
        '($.eventName = "UpdateOrganizationalUnit")) }',
    ),
)


def alarm_description(check: CisCheck) -> str:
    """What the Slack message says under the headline (the notifier reads the control back from its first word)."""
    return f"{check.control}: {check.title}. See the trail's events in CloudTrail event history or its log group."


class CisAlarms(Construct):
    """A metric filter on `log_group` and an alarm (sum >= 1 in 5 minutes) for each row of `CIS_CHECKS`.

    `filters` and `alarms` map the row name to its resources. Each alarm calls `action` on entering ALARM (Security
    Hub's controls want an action on that state); quiet periods are not breaches, so no data means OK.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        log_group: logs.ILogGroup,
        alarm_prefix: str,
        action: cloudwatch.IAlarmAction,
    ) -> None:
        super().__init__(scope, id_)
        self.filters: dict[str, logs.MetricFilter] = {}
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for check in CIS_CHECKS:
            metric_filter = logs.MetricFilter(
                self,
                f"{check.name}Filter",
                log_group=log_group,
                filter_pattern=logs.FilterPattern.literal(check.pattern),
                metric_namespace=CIS_METRIC_NAMESPACE,
                metric_name=check.name,
                metric_value="1",
            )
            alarm = alarm_on_any(
                self,
                f"{check.name}Alarm",
                # Named: people read the name in Slack and find the alarm by it.
                alarm_name=f"{alarm_prefix}{check.name}",
                description=alarm_description(check),
                metric=metric_filter.metric(statistic="Sum", period=Duration.minutes(5)),
                action=action,
            )
            self.filters[check.name] = metric_filter
            self.alarms[check.name] = alarm
