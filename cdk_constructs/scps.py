"""Service control policies the management account attaches to the research account."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import aws_organizations as organizations
from constructs import Construct

# Global services (or global calls) that must not be caught by the region deny: they run in us-east-1 whatever the
# region in use. The list AWS documents for region-restricting SCPs, plus the account and billing consoles.
GLOBAL_SERVICE_ACTIONS = (
    "a4b:*", "account:*", "acm:*", "aws-marketplace-management:*", "aws-marketplace:*", "aws-portal:*",
    "billing:*", "budgets:*", "ce:*", "chime:*", "cloudfront:*", "config:*", "cur:*", "directconnect:*",
    "ec2:DescribeRegions", "ec2:DescribeTransitGateways", "ec2:DescribeVpnGateways", "fms:*",
    "globalaccelerator:*", "health:*", "iam:*", "importexport:*", "kms:*", "mobileanalytics:*",
    "networkmanager:*", "organizations:*", "pricing:*", "route53:*", "route53domains:*",
    "route53-recovery-cluster:*", "route53-recovery-control-config:*", "route53-recovery-readiness:*",
    "s3:GetAccountPublic*", "s3:ListAllMyBuckets", "s3:ListMultiRegionAccessPoints", "s3:PutAccountPublic*",
    "shield:*", "sts:*", "support:*", "trustedadvisor:*", "waf-regional:*", "waf:*", "wafv2:*",
    "wellarchitected:*",
)  # fmt: skip
TRAIL_ACTIONS = (
    "cloudtrail:DeleteTrail",
    "cloudtrail:PutEventSelectors",
    "cloudtrail:StopLogging",
    "cloudtrail:UpdateTrail",
)
CONFIG_ACTIONS = (
    "config:DeleteConfigurationRecorder",
    "config:DeleteDeliveryChannel",
    "config:DeleteRetentionConfiguration",
    "config:PutConfigurationRecorder",
    "config:PutDeliveryChannel",
    "config:PutRetentionConfiguration",
    "config:StopConfigurationRecorder",
)
ARCHIVE_ACTIONS = (
    "s3:DeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:PutBucketAcl",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketPolicy",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutObjectRetention",
    "s3:BypassGovernanceRetention",
)


def audit_protection(*, trail_arn: str, archive_bucket_arn: str, exempt_roles: Sequence[str]) -> dict[str, Any]:
    """Deny stopping or changing the trail and the Config recorder, and touching the log archive.

    `exempt_roles` (ARN patterns) may still change the trail and recorder: the CloudFormation execution role that
    deploys the Audit stack. The archive has no exemption from the research account: it belongs to production.
    """
    exempt = {"ArnNotLike": {"aws:PrincipalArn": list(exempt_roles)}}
    return _document(
        {
            "Sid": "DenyTrailChanges",
            "Effect": "Deny",
            "Action": list(TRAIL_ACTIONS),
            "Resource": trail_arn,
            "Condition": exempt,
        },
        {
            "Sid": "DenyConfigRecorderChanges",
            "Effect": "Deny",
            "Action": list(CONFIG_ACTIONS),
            "Resource": "*",
            "Condition": exempt,
        },
        {
            "Sid": "DenyLogArchiveChanges",
            "Effect": "Deny",
            "Action": list(ARCHIVE_ACTIONS),
            "Resource": [archive_bucket_arn, f"{archive_bucket_arn}/*"],
        },
    )


def account_protection() -> dict[str, Any]:
    """Deny leaving the organization, and creating IAM users or access keys (people come from production)."""
    return _document(
        {
            "Sid": "DenyLeavingOrganization",
            "Effect": "Deny",
            "Action": "organizations:LeaveOrganization",
            "Resource": "*",
        },
        {
            "Sid": "DenyIamUsersAndKeys",
            "Effect": "Deny",
            "Action": ["iam:CreateUser", "iam:CreateAccessKey", "iam:CreateLoginProfile"],
            "Resource": "*",
        },
    )


def region_restriction(allowed_regions: Sequence[str]) -> dict[str, Any]:
    """Deny everything outside `allowed_regions`, except the global services (`GLOBAL_SERVICE_ACTIONS`)."""
    return _document(
        {
            "Sid": "DenyUnapprovedRegions",
            "Effect": "Deny",
            "NotAction": list(GLOBAL_SERVICE_ACTIONS),
            "Resource": "*",
            "Condition": {"StringNotEquals": {"aws:RequestedRegion": list(allowed_regions)}},
        }
    )


def _document(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


class ResearchScps(Construct):
    """Three SCPs (audit protection, account protection, region restriction) attached to `target_id`.

    Split in three so that each stays far below the 5,120-character SCP limit and can be detached on its own while
    investigating a denied call. Organizations allows five SCPs per target, FullAWSAccess included.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name_prefix: str,
        target_id: str,
        allowed_regions: Sequence[str],
        trail_arn: str,
        archive_bucket_arn: str,
        exempt_roles: Sequence[str],
    ) -> None:
        super().__init__(scope, id_)
        documents = {
            "AuditProtection": (
                "Research: the trail, the Config recorder and the log archive are off limits",
                audit_protection(trail_arn=trail_arn, archive_bucket_arn=archive_bucket_arn, exempt_roles=exempt_roles),
            ),
            "AccountProtection": (
                "Research: stay in the organization; no IAM users or access keys",
                account_protection(),
            ),
            "RegionRestriction": (
                f"Research: only {', '.join(allowed_regions)} (global services excepted)",
                region_restriction(allowed_regions),
            ),
        }
        self.policies = {
            name: organizations.CfnPolicy(
                self,
                name,
                name=f"{name_prefix}{name}",
                description=description,
                type="SERVICE_CONTROL_POLICY",
                content=content,
                target_ids=[target_id],
            )
            for name, (description, content) in documents.items()
        }
