"""Access stack (research account): roles assumable from production with MFA.

Role names and the production users' path are deterministic, so that both sides of the cross-account trust can be
written without a lookup: the production `Identity` stack allows its groups to assume these role ARNs, and these
roles' trust policies name the production users allowed in. Which group reaches which role is `ROLES_BY_GROUP`.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import CfnOutput, Duration, Stack, Stage
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk_constructs.account_audit import TRAIL_LOG_GROUP_NAME
from cdk_constructs.nag import acknowledge
from cdk_constructs.research_boundary import ResearchBoundary
from stacks.config import Platform, PlatformConfig

RESEARCH_DEVELOPER = "ResearchDeveloper"
RESEARCH_READ_ONLY = "ResearchReadOnly"
PLATFORM_ADMIN = "PlatformAdmin"
RESEARCH_ROLES = (RESEARCH_DEVELOPER, RESEARCH_READ_ONLY, PLATFORM_ADMIN)

# The research roles each production group may assume; the trust policies are derived from the same table.
ROLES_BY_GROUP: dict[str, tuple[str, ...]] = {
    "PlatformAdmins": (PLATFORM_ADMIN, RESEARCH_DEVELOPER, RESEARCH_READ_ONLY),
    "Researchers": (RESEARCH_DEVELOPER, RESEARCH_READ_ONLY),
    "ReadOnly": (RESEARCH_READ_ONLY,),
}


def role_name(cfg: PlatformConfig, role: str) -> str:
    """Physical name of a research role, e.g. `mlbase-ResearchDeveloper`."""
    return f"{cfg.project}-{role}"


def role_arn(cfg: PlatformConfig, role: str) -> str:
    return f"arn:aws:iam::{cfg.accounts.research.account_id}:role/{role_name(cfg, role)}"


def switch_role_url(cfg: PlatformConfig, role: str) -> str:
    """The console's switch-role link for a research role."""
    return (
        "https://signin.aws.amazon.com/switchrole"
        f"?roleName={role_name(cfg, role)}&account={cfg.accounts.research.account_id}&displayName={role}"
    )


def user_path(cfg: PlatformConfig) -> str:
    """IAM path of the people's users in production: trust policies and the SCPs can name them by it."""
    return f"/{cfg.project}/people/"


def user_arn(cfg: PlatformConfig, name: str) -> str:
    return f"arn:aws:iam::{cfg.accounts.production.account_id}:user{user_path(cfg)}{name}"


def boundary_name(cfg: PlatformConfig) -> str:
    return f"{cfg.project}-ResearchBoundary"


def members_allowed(cfg: PlatformConfig, role: str) -> tuple[str, ...]:
    """Names of the people whose groups may assume `role`, in config order."""
    return tuple(p.name for p in cfg.people if any(role in ROLES_BY_GROUP[g] for g in p.groups))


def mfa_conditions(max_age_seconds: int) -> dict[str, dict[str, str]]:
    """Trust conditions: the caller signed in with MFA, no longer ago than `max_age_seconds`."""
    return {
        "Bool": {"aws:MultiFactorAuthPresent": "true"},
        "NumericLessThan": {"aws:MultiFactorAuthAge": str(max_age_seconds)},
    }


# Roles whose sessions must name the person: research policies compare `aws:SourceIdentity` with `Owner` tags.
NAMED_SESSIONS = (RESEARCH_DEVELOPER,)


def protected_role_patterns(cfg: PlatformConfig, *, stack_prefix: str) -> tuple[str, ...]:
    """Role names (IAM wildcards allowed) that researchers may neither create, change, pass nor assume.

    `stack_prefix` is the stage's stack-name prefix: CloudFormation names generated roles `<stack>-<id>-<suffix>`.
    """
    return (
        f"{cfg.project}-*",
        "cdk-*",
        f"{stack_prefix}*",
        "OrganizationAccountAccessRole",
        "AWSControlTower*",
        cfg.network.peering.accepter_role_name,
        cfg.audit.break_glass_role_name,
    )


class AccessStack(Stack):
    """ResearchDeveloper, ResearchReadOnly and PlatformAdmin roles with MFA-conditioned trust.

    Each role trusts only the production users whose groups may use it (`ROLES_BY_GROUP`), with MFA present and no
    older than `access.mfa_max_age_seconds`; sessions last at most `access.max_session_hours`. A role that nobody
    in `people` may use is not created (a trust policy needs a principal). ResearchDeveloper carries the
    `ResearchBoundary` permission boundary.
    """

    def __init__(self, scope: Construct, id_: str, *, platform: Platform) -> None:
        super().__init__(scope, id_, description="mlbase access: roles assumable from production with MFA")
        self.platform = platform
        cfg = platform.config
        account = cfg.accounts.research.account_id
        stage = Stage.of(self)
        # CloudFormation names the stage's stacks `<stage>-<stack>`, and their generated resources after the stack.
        stack_prefix = f"{stage.stage_name}-" if stage is not None else f"{self.stack_name}-"
        self.boundary = ResearchBoundary(
            self,
            "Boundary",
            policy_name=boundary_name(cfg),
            account=account,
            project=cfg.project,
            protected_roles=protected_role_patterns(cfg, stack_prefix=stack_prefix),
            protected_stack_prefix=stack_prefix,
            log_groups=[TRAIL_LOG_GROUP_NAME],
            instance_types=cfg.workbench.researcher_instance_types,
            regions=[cfg.accounts.research.region],
        )
        self.roles: dict[str, iam.Role] = {}
        managed = {
            RESEARCH_DEVELOPER: ["PowerUserAccess"],
            RESEARCH_READ_ONLY: ["ReadOnlyAccess"],
            PLATFORM_ADMIN: ["AdministratorAccess"],
        }
        descriptions = {
            RESEARCH_DEVELOPER: "Researchers: broad rights in R&D, bounded by the research permission boundary",
            RESEARCH_READ_ONLY: "Read-only view of the R&D account",
            PLATFORM_ADMIN: "Platform team: administers the R&D account",
        }
        for role in RESEARCH_ROLES:
            members = members_allowed(cfg, role)
            if not members:
                continue
            self.roles[role] = self._role(
                role,
                cfg=cfg,
                members=members,
                description=descriptions[role],
                managed=managed[role],
                boundary=self.boundary.policy if role == RESEARCH_DEVELOPER else None,
            )
        for role in self.roles:
            CfnOutput(
                self,
                f"{role}SwitchRoleUrl",
                description=f"Console link that switches a signed-in production user to {role_name(cfg, role)}",
                value=switch_role_url(cfg, role),
            )
        developer = self.roles.get(RESEARCH_DEVELOPER)
        if developer is not None:
            self._delegate_iam(developer, cfg, account=account)

    def _role(
        self,
        role: str,
        *,
        cfg: PlatformConfig,
        members: Sequence[str],
        description: str,
        managed: Sequence[str],
        boundary: iam.IManagedPolicy | None,
    ) -> iam.Role:
        conditions = mfa_conditions(cfg.access.mfa_max_age_seconds)
        named = role in NAMED_SESSIONS
        created = iam.Role(
            self,
            role,
            role_name=role_name(cfg, role),
            description=description,
            assumed_by=iam.ArnPrincipal(user_arn(cfg, members[0])),
            max_session_duration=Duration.hours(cfg.access.max_session_hours),
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(name) for name in managed],
            permissions_boundary=boundary,
        )
        # One statement per person: a named session must carry that person's own name as its source identity, so
        # research policies can say "only your own" (CDK's principals cannot add sts:SetSourceIdentity).
        trust_doc = iam.PolicyDocument(
            statements=[
                iam.PolicyStatement(
                    actions=["sts:AssumeRole", "sts:SetSourceIdentity"] if named else ["sts:AssumeRole"],
                    principals=[iam.ArnPrincipal(user_arn(cfg, name))],
                    conditions=({**conditions, "StringEquals": {"sts:SourceIdentity": name}} if named else conditions),
                )
                for name in members
            ]
        )
        cfn_role = created.node.default_child
        assert isinstance(cfn_role, iam.CfnRole)
        cfn_role.assume_role_policy_document = trust_doc
        for name in managed:
            acknowledge(
                created,
                (
                    f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{name}]",
                    f"{name} is the AWS-maintained job-function policy this role exists to grant; people reach it"
                    " only from named production users with fresh MFA.",
                ),
            )
        return created

    def _delegate_iam(self, developer: iam.Role, cfg: PlatformConfig, *, account: str) -> None:
        """PowerUserAccess has no IAM: let researchers manage roles for their own workloads, inside the boundary."""
        policy = iam.ManagedPolicy(
            self,
            "DeveloperIam",
            managed_policy_name=f"{cfg.project}-ResearchDeveloperIam",
            description="Role and policy management for research workloads; the permission boundary limits it",
            roles=[developer],
            statements=[
                iam.PolicyStatement(
                    sid="ManageWorkloadRoles",
                    actions=[
                        "iam:CreateRole",
                        "iam:DeleteRole",
                        "iam:UpdateRole",
                        "iam:UpdateAssumeRolePolicy",
                        "iam:TagRole",
                        "iam:UntagRole",
                        "iam:AttachRolePolicy",
                        "iam:DetachRolePolicy",
                        "iam:PutRolePolicy",
                        "iam:DeleteRolePolicy",
                        "iam:PutRolePermissionsBoundary",
                        "iam:PassRole",
                        "iam:CreateInstanceProfile",
                        "iam:DeleteInstanceProfile",
                        "iam:AddRoleToInstanceProfile",
                        "iam:RemoveRoleFromInstanceProfile",
                    ],
                    resources=[
                        f"arn:aws:iam::{account}:role/*",
                        f"arn:aws:iam::{account}:instance-profile/*",
                    ],
                ),
                iam.PolicyStatement(
                    sid="ManageWorkloadPolicies",
                    actions=[
                        "iam:CreatePolicy",
                        "iam:CreatePolicyVersion",
                        "iam:DeletePolicy",
                        "iam:DeletePolicyVersion",
                        "iam:SetDefaultPolicyVersion",
                    ],
                    resources=[f"arn:aws:iam::{account}:policy/*"],
                ),
            ],
        )
        acknowledge(
            policy,
            (
                f"AwsSolutions-IAM5[Resource::arn:aws:iam::{account}:role/*]",
                "Researchers create roles for their own workloads; the permission boundary denies every change to"
                " protected roles and any role created without the boundary.",
            ),
            (
                f"AwsSolutions-IAM5[Resource::arn:aws:iam::{account}:instance-profile/*]",
                "Instance profiles for researchers' own roles; roles inside them carry the boundary.",
            ),
            (
                f"AwsSolutions-IAM5[Resource::arn:aws:iam::{account}:policy/*]",
                "Policies for researchers' own roles; the boundary protects itself and caps what any policy grants.",
            ),
        )
