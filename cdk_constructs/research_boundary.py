"""The permission boundary of researchers in the R&D account: almost anything, except escaping the guardrails."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk_constructs.nag import acknowledge

BOUNDARY_REASON = "A permission boundary grants nothing by itself; its allow-all is narrowed by the denies after it."
# Audit, detection and account-level security settings: denied everywhere (the platform owns them).
AUDIT_CHANGES = (
    "cloudtrail:Delete*",
    "cloudtrail:Put*",
    "cloudtrail:StopLogging",
    "cloudtrail:Update*",
    "config:Delete*",
    "config:Put*",
    "config:Stop*",
    "access-analyzer:*ArchiveRule",
    "access-analyzer:Delete*",
    "access-analyzer:Update*",
    "guardduty:*",
    "securityhub:*",
    "ec2:DisableEbsEncryptionByDefault",
    "ec2:ModifyEbsDefaultKmsKeyId",
    "iam:*AccountPasswordPolicy",
    "s3:PutAccountPublicAccessBlock",
)
# Credentials that would outlive a session or skip production's MFA: none in R&D, for anyone inside the boundary.
LONG_LIVED_CREDENTIALS = (
    "iam:*AccessKey",
    "iam:*LoginProfile",
    "iam:*OpenIDConnectProvider*",
    "iam:*SAMLProvider",
    "iam:*ServiceSpecificCredential",
    "iam:CreateUser",
    "iam:UploadSigningCertificate",
    "iam:UploadSSHPublicKey",
)
PEERING_CHANGES = (
    "ec2:AcceptVpcPeeringConnection",
    "ec2:CreateVpcPeeringConnection",
    "ec2:DeleteVpcPeeringConnection",
    "ec2:ModifyVpcPeeringConnectionOptions",
    "ec2:RejectVpcPeeringConnection",
)
# Changes to network plumbing and keys; denied on what the platform's stacks created (CloudFormation tags each such
# resource with aws:cloudformation:stack-name, and nobody can change an aws: tag).
STACK_RESOURCE_CHANGES = (
    "ec2:AuthorizeSecurityGroup*",
    "ec2:CreateNetworkAclEntry",
    "ec2:CreateRoute",
    "ec2:DeleteFlowLogs",
    "ec2:DeleteInternetGateway",
    "ec2:DeleteNatGateway",
    "ec2:DeleteNetworkAclEntry",
    "ec2:DeleteRoute",
    "ec2:DeleteRouteTable",
    "ec2:DeleteSecurityGroup",
    "ec2:DeleteSubnet",
    "ec2:DeleteVpc",
    "ec2:DetachInternetGateway",
    "ec2:DisassociateRouteTable",
    "ec2:ModifySecurityGroupRules",
    "ec2:ReplaceNetworkAclAssociation",
    "ec2:ReplaceNetworkAclEntry",
    "ec2:ReplaceRoute",
    "ec2:ReplaceRouteTableAssociation",
    "ec2:RevokeSecurityGroup*",
    "kms:DisableKey",
    "kms:PutKeyPolicy",
    "kms:ScheduleKeyDeletion",
)
# What researchers may still do to the platform's own resources (functions, topics, queues, rules, log groups,
# parameters, secrets, stacks, budgets, the Session Manager preferences): read. Everything else is denied on them.
PLATFORM_RESOURCE_READS = (
    "dynamodb:Describe*",
    "ecr:Describe*",
    "cloudformation:Describe*",
    "cloudwatch:Describe*",
    "cloudformation:Get*",
    "cloudformation:List*",
    "events:Describe*",
    "events:List*",
    "lambda:Get*",
    "lambda:List*",
    "logs:Describe*",
    "logs:FilterLogEvents",
    "logs:Get*",
    "sns:Get*",
    "sns:List*",
    "sqs:Get*",
    "sqs:List*",
    "ssm:Describe*",
    "ssm:Get*",
    "ssm:List*",
    # A session is authorized on the preferences document too: starting one must stay open.
    "ssm:StartSession",
    "iam:Get*",
    "iam:List*",
)
# Acts on one researcher's machine: allowed only to the person in its `Owner` tag (ABAC on aws:SourceIdentity).
OWNER_ONLY = (
    "ec2:*IamInstanceProfile*",
    "ec2:AttachVolume",
    "ec2:CreateImage",
    "ec2:CreateSnapshot*",
    "ec2:DeleteSnapshot",
    "ec2:DeleteVolume",
    "ec2:DetachVolume",
    "ec2:GetPasswordData",
    "ec2:ModifyInstance*",
    "ec2:ModifySnapshotAttribute",
    "ec2:ModifyVolume*",
    "ec2:RebootInstances",
    "ec2:StartInstances",
    "ec2:StopInstances",
    "ec2:TerminateInstances",
    "ec2-instance-connect:Send*",
    "ssm:SendCommand",
    "ssm:StartSession",
)
OWNER_TAG = "Owner"
# Tag keys only the platform writes (managed marker, idle bookkeeping, world-ingress justification).
PLATFORM_TAG_KEYS = "mlbase:*"


class ResearchBoundary(Construct):
    """A customer-managed policy (`policy`) used as the permission boundary of ResearchDeveloper.

    It allows everything, then denies, whatever the identity policy says:
    - editing this boundary or any platform policy, even by a new version;
    - creating a role, or setting a boundary, unless the boundary is this policy; removing a boundary;
    - long-lived or external credentials: IAM users, access keys, login profiles, OIDC/SAML providers;
    - creating, changing, passing or assuming protected roles (`protected_roles`, IAM name patterns);
    - the trail, AWS Config, GuardDuty, Security Hub, Access Analyzer and account-level security settings;
    - any change to VPC peering connections, and to the routes, network ACLs, security groups (ingress and egress),
      gateways, flow logs and KMS keys that the platform's stacks created;
    - anything but reading on the platform's functions, topics, queues, rules, alarms, log groups (`log_groups` too),
      `/project/*` parameters and secrets, stacks, budgets and the Session Manager preferences document;
    - on machines, volumes and snapshots: acting on one whose `Owner` tag is not the caller's source identity (the
      production user's name, which the trust policy requires), launching or creating one without the caller's own
      `Owner`, re-tagging anything owned by someone else, or writing `mlbase:` tag keys;
    - launching an instance type outside `instance_types` (IAM wildcards; empty: no restriction);
    - any EC2 call outside `regions`, where no guardrail watches security groups (empty: no restriction).
    Roles created inside the boundary inherit it, so privilege cannot be laundered through a new role.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        policy_name: str,
        account: str,
        project: str,
        protected_roles: Sequence[str],
        protected_stack_prefix: str,
        log_groups: Sequence[str] = (),
        session_document: str = "SSM-SessionManagerRunShell",
        instance_types: Sequence[str] = (),
        regions: Sequence[str] = (),
        cdk_qualifier: str = "hnb659fds",
    ) -> None:
        super().__init__(scope, id_)
        self.policy_arn = f"arn:aws:iam::{account}:policy/{policy_name}"
        a, prefix = account, protected_stack_prefix
        roles = [f"arn:aws:iam::{a}:role/{name}" for name in protected_roles]
        me = "${aws:SourceIdentity}"
        # EC2 acts only within its own account: no account in these ARNs (the policy must stay under 6,144 characters).
        machines = [f"arn:aws:ec2:*:*:{kind}/*" for kind in ("instance", "volume", "snapshot")]
        names = (f"{project}-*", f"{prefix}*")
        # Any account: the names are the platform's, and a deny elsewhere costs nothing (it keeps the policy short).
        platform = [
            *(f"arn:aws:iam::*:policy/{n}" for n in names),
            *(f"arn:aws:lambda:*:*:function:{n}" for n in names),
            *(f"arn:aws:sns:*:*:{n}" for n in names),
            *(f"arn:aws:sqs:*:*:{n}" for n in names),
            *(f"arn:aws:events:*:*:rule/{n}" for n in names),
            # CloudWatch alarms (the CIS alarms, dead-letter and failure alarms): silencing one silences a guardrail.
            *(f"arn:aws:cloudwatch:*:*:alarm:{n}" for n in names),
            *(
                f"arn:aws:logs:*:*:log-group:{n}"
                for n in (*names, f"/aws/lambda/{project}-*", f"/aws/lambda/{prefix}*")
            ),
            *(f"arn:aws:logs:*:*:log-group:{g}*" for g in log_groups),
            f"arn:aws:ssm:*:*:parameter/{project}/*",
            f"arn:aws:ssm:*:*:document/{session_document}",
            f"arn:aws:secretsmanager:*:*:secret:{project}/*",
            f"arn:aws:cloudformation:*:*:stack/{prefix}*/*",
            "arn:aws:cloudformation:*:*:stack/CDKToolkit/*",
            f"arn:aws:budgets::*:budget/{project}-*",
            *(f"arn:aws:dynamodb:*:*:table/{n}" for n in names),
            # The CDK bootstrap's asset bucket and repository: a replaced asset is code the next deploy runs with
            # platform rights. Researchers' own CDK apps bootstrap with a qualifier of their own.
            f"arn:aws:s3:::cdk-{cdk_qualifier}-*",
            f"arn:aws:ecr:*:*:repository/cdk-{cdk_qualifier}-*",
        ]
        # Short statement IDs: IAM counts every character against the 6,144 a managed policy may hold.
        statements = [
            iam.PolicyStatement(sid="AllowAll", actions=["*"], resources=["*"]),
            iam.PolicyStatement(
                sid="Boundary",
                effect=iam.Effect.DENY,
                actions=["iam:CreateRole", "iam:PutRolePermissionsBoundary"],
                resources=["*"],
                conditions={"StringNotEquals": {"iam:PermissionsBoundary": self.policy_arn}},
            ),
            iam.PolicyStatement(
                sid="NoCreds",
                effect=iam.Effect.DENY,
                actions=["iam:DeleteRolePermissionsBoundary", *LONG_LIVED_CREDENTIALS],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="Roles",
                effect=iam.Effect.DENY,
                # Every IAM action on a role (create, change, pass, tag, delete) and every STS action (assume).
                actions=["iam:*Role*", "sts:*"],
                resources=roles,
            ),
            iam.PolicyStatement(
                sid="Audit",
                effect=iam.Effect.DENY,
                actions=[*AUDIT_CHANGES, *PEERING_CHANGES],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="Stacks",
                effect=iam.Effect.DENY,
                actions=list(STACK_RESOURCE_CHANGES),
                resources=["*"],
                conditions={"StringLike": {"aws:ResourceTag/aws:cloudformation:stack-name": f"{prefix}*"}},
            ),
            iam.PolicyStatement(
                sid="Platform",
                effect=iam.Effect.DENY,
                not_actions=list(PLATFORM_RESOURCE_READS),
                resources=platform,
            ),
            iam.PolicyStatement(
                sid="Owner",
                effect=iam.Effect.DENY,
                actions=[*OWNER_ONLY, "ec2:DeleteTags"],
                resources=machines,
                conditions={"StringNotEquals": {f"aws:ResourceTag/{OWNER_TAG}": me}},
            ),
            # A variable naming an absent key makes the statement above not apply: a session without a source
            # identity (a role of an instance or a job) must not act on machines at all.
            iam.PolicyStatement(
                sid="Named",
                effect=iam.Effect.DENY,
                actions=["ec2:*", "ssm:*", "ec2-instance-connect:*"],
                resources=machines,
                conditions={"Null": {"aws:SourceIdentity": "true"}},
            ),
            iam.PolicyStatement(
                sid="Retag",
                effect=iam.Effect.DENY,
                actions=["ec2:CreateTags"],
                resources=machines,
                conditions={
                    "Null": {f"aws:ResourceTag/{OWNER_TAG}": "false"},
                    "StringNotEquals": {f"aws:ResourceTag/{OWNER_TAG}": me},
                },
            ),
            iam.PolicyStatement(
                sid="Create",
                effect=iam.Effect.DENY,
                actions=["ec2:RunInstances", "ec2:CreateVolume"],
                resources=machines[:2],
                conditions={"StringNotEquals": {f"aws:RequestTag/{OWNER_TAG}": me}},
            ),
            iam.PolicyStatement(
                sid="OwnName",
                effect=iam.Effect.DENY,
                actions=["ec2:CreateTags"],
                resources=["*"],
                conditions={
                    "ForAnyValue:StringEquals": {"aws:TagKeys": [OWNER_TAG]},
                    "StringNotEquals": {f"aws:RequestTag/{OWNER_TAG}": me},
                },
            ),
            # The platform's own resources are closed to tagging above; on EC2 (security groups included) the
            # `mlbase:` keys are the platform's word: researchers write none of them, even on their own things.
            iam.PolicyStatement(
                sid="TagKeys",
                effect=iam.Effect.DENY,
                actions=["ec2:CreateTags", "ec2:DeleteTags"],
                resources=["*"],
                conditions={"ForAnyValue:StringLike": {"aws:TagKeys": [PLATFORM_TAG_KEYS]}},
            ),
        ]
        if regions:
            # Guardrails (Config recorder, security-group rules) run in the home regions only: EC2 stays there.
            statements.append(
                iam.PolicyStatement(
                    sid="Regions",
                    effect=iam.Effect.DENY,
                    actions=["ec2:*"],
                    resources=["*"],
                    conditions={"StringNotEquals": {"aws:RequestedRegion": list(regions)}},
                )
            )
        if instance_types:
            statements.append(
                iam.PolicyStatement(
                    sid="Types",
                    effect=iam.Effect.DENY,
                    actions=["ec2:RunInstances"],
                    resources=machines[:1],
                    conditions={"StringNotLike": {"ec2:InstanceType": list(instance_types)}},
                )
            )
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            managed_policy_name=policy_name,
            description="Permission boundary of researchers: no privilege escalation, no change to guardrails",
            statements=statements,
        )
        acknowledge(
            self.policy,
            (
                "AwsSolutions-IAM5[Action::*]",
                "A permission boundary caps rights; its allow-all is narrowed by the denies.",
            ),
            (
                "AwsSolutions-IAM5[Resource::*]",
                "A permission boundary caps rights; its allow-all (* on *) is narrowed by the denies.",
            ),
            (
                "NIST.800.53.R5-IAMPolicyNoStatementsWithAdminAccess",
                BOUNDARY_REASON,
            ),
            (
                "NIST.800.53.R5-IAMPolicyNoStatementsWithFullAccess",
                BOUNDARY_REASON,
            ),
        )
