"""The permission boundary of researchers in the R&D account: almost anything, except escaping the guardrails."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk_constructs.nag import acknowledge

BOUNDARY_REASON = "A permission boundary grants nothing by itself; its allow-all is narrowed by the denies after it."
# IAM changes that would alter a role's rights or trust; denied on protected roles.
ROLE_CHANGES = (
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:DeleteRolePermissionsBoundary",
    "iam:UpdateAssumeRolePolicy",
    "iam:UpdateRole",
    "iam:UpdateRoleDescription",
    "iam:DeleteRole",
    "iam:TagRole",
    "iam:UntagRole",
)
AUDIT_CHANGES = (
    "cloudtrail:StopLogging",
    "cloudtrail:DeleteTrail",
    "cloudtrail:UpdateTrail",
    "cloudtrail:PutEventSelectors",
    "config:StopConfigurationRecorder",
    "config:DeleteConfigurationRecorder",
    "config:PutConfigurationRecorder",
    "config:DeleteDeliveryChannel",
    "config:PutDeliveryChannel",
    "config:DeleteConfigRule",
    "config:PutConfigRule",
    "config:DeleteEvaluationResults",
    "config:DeleteRemediationConfiguration",
    "config:PutRemediationConfigurations",
    "config:DeleteAggregationAuthorization",
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
    "ec2:AuthorizeSecurityGroupIngress",
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
    "ec2:RevokeSecurityGroupIngress",
    "kms:DisableKey",
    "kms:PutKeyPolicy",
    "kms:ScheduleKeyDeletion",
)
# Changes to the platform's own resources outside CloudFormation (functions, topics, queues, rules, log groups).
PLATFORM_RESOURCE_CHANGES = (
    "cloudformation:CreateChangeSet",
    "cloudformation:DeleteStack",
    "cloudformation:ExecuteChangeSet",
    "cloudformation:SetStackPolicy",
    "cloudformation:UpdateStack",
    "cloudformation:UpdateTerminationProtection",
    "lambda:AddPermission",
    "lambda:DeleteFunction",
    "lambda:PutFunctionConcurrency",
    "lambda:RemovePermission",
    "lambda:UpdateFunctionCode",
    "lambda:UpdateFunctionConfiguration",
    "sns:DeleteTopic",
    "sns:RemovePermission",
    "sns:SetTopicAttributes",
    "sns:Subscribe",
    "sns:Unsubscribe",
    "sqs:DeleteQueue",
    "sqs:PurgeQueue",
    "sqs:SetQueueAttributes",
    "events:DeleteRule",
    "events:DisableRule",
    "events:PutRule",
    "events:PutTargets",
    "events:RemoveTargets",
    "logs:DeleteLogGroup",
    "logs:DeleteRetentionPolicy",
    "logs:PutRetentionPolicy",
    "logs:DisassociateKmsKey",
)


class ResearchBoundary(Construct):
    """A customer-managed policy (`policy`) used as the permission boundary of ResearchDeveloper.

    It allows everything, then denies, whatever the identity policy says:
    - editing or deleting this boundary policy or any policy named `<policy_prefix>*` (the platform's);
    - creating a role or user, or setting a boundary, unless the boundary is this policy; removing a boundary;
    - changing, passing or assuming protected roles (`protected_roles`: the guardrail, deploy, peering and
      break-glass roles, as IAM name patterns);
    - stopping or changing the trail and AWS Config (recorder, delivery, rules, remediation);
    - any change to VPC peering connections, and to the routes, network ACLs, security groups, gateways, flow logs
      and KMS keys that the platform's stacks created;
    - changing the platform's stacks and their resources (names starting with `protected_stack_prefix`), and the
      platform's budgets (names starting with `budget_prefix`).
    Roles created inside the boundary inherit it, so privilege cannot be laundered through a new role.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        policy_name: str,
        account: str,
        protected_roles: Sequence[str],
        protected_stack_prefix: str,
        policy_prefix: str,
        budget_prefix: str,
    ) -> None:
        super().__init__(scope, id_)
        self.policy_arn = f"arn:aws:iam::{account}:policy/{policy_name}"
        roles = [f"arn:aws:iam::{account}:role/{name}" for name in protected_roles]
        prefix = protected_stack_prefix
        statements = [
            iam.PolicyStatement(sid="AllowWithinBoundary", actions=["*"], resources=["*"]),
            iam.PolicyStatement(
                sid="DenyBoundaryChanges",
                effect=iam.Effect.DENY,
                actions=[
                    "iam:CreatePolicyVersion",
                    "iam:DeletePolicy",
                    "iam:DeletePolicyVersion",
                    "iam:SetDefaultPolicyVersion",
                ],
                resources=[self.policy_arn, f"arn:aws:iam::{account}:policy/{policy_prefix}*"],
            ),
            iam.PolicyStatement(
                sid="DenyPrincipalsWithoutBoundary",
                effect=iam.Effect.DENY,
                actions=[
                    "iam:CreateRole",
                    "iam:CreateUser",
                    "iam:PutRolePermissionsBoundary",
                    "iam:PutUserPermissionsBoundary",
                ],
                resources=["*"],
                conditions={"StringNotEquals": {"iam:PermissionsBoundary": self.policy_arn}},
            ),
            iam.PolicyStatement(
                sid="DenyBoundaryRemoval",
                effect=iam.Effect.DENY,
                actions=["iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary"],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="DenyProtectedRoles",
                effect=iam.Effect.DENY,
                actions=[*ROLE_CHANGES, "iam:PassRole", "sts:AssumeRole"],
                resources=roles,
            ),
            iam.PolicyStatement(
                sid="DenyAuditChanges",
                effect=iam.Effect.DENY,
                actions=list(AUDIT_CHANGES),
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="DenyPeeringChanges",
                effect=iam.Effect.DENY,
                actions=list(PEERING_CHANGES),
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="DenyPlatformStackResourceChanges",
                effect=iam.Effect.DENY,
                actions=list(STACK_RESOURCE_CHANGES),
                resources=["*"],
                conditions={"StringLike": {"aws:ResourceTag/aws:cloudformation:stack-name": f"{prefix}*"}},
            ),
            iam.PolicyStatement(
                sid="DenyPlatformResourceChanges",
                effect=iam.Effect.DENY,
                actions=list(PLATFORM_RESOURCE_CHANGES),
                resources=[
                    f"arn:aws:cloudformation:*:{account}:stack/{prefix}*/*",
                    f"arn:aws:cloudformation:*:{account}:stack/CDKToolkit/*",
                    f"arn:aws:lambda:*:{account}:function:{prefix}*",
                    f"arn:aws:sns:*:{account}:{prefix}*",
                    f"arn:aws:sqs:*:{account}:{prefix}*",
                    f"arn:aws:events:*:{account}:rule/{prefix}*",
                    f"arn:aws:logs:*:{account}:log-group:{prefix}*",
                ],
            ),
            iam.PolicyStatement(
                sid="DenyPlatformBudgetChanges",
                effect=iam.Effect.DENY,
                actions=["budgets:ModifyBudget", "budgets:DeleteBudgetAction", "budgets:UpdateBudgetAction"],
                resources=[f"arn:aws:budgets::{account}:budget/{budget_prefix}*"],
            ),
        ]
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
                "A permission boundary caps rights; its allow-all is narrowed by the denies.",
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
