"""Identity stack (production account): IAM groups for people; MFA required for everything but setting up MFA."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk_constructs.mfa_policy import require_mfa_statements
from cdk_constructs.nag import acknowledge
from stacks.access import ROLES_BY_GROUP, role_arn, user_path
from stacks.config import Platform

# What each group may do in production itself (AWS-managed job-function policies); research access is by role.
PRODUCTION_POLICIES: dict[str, tuple[str, ...]] = {
    "PlatformAdmins": ("AdministratorAccess",),
    "Researchers": (),
    "ReadOnly": ("job-function/ViewOnlyAccess",),
}


class IdentityStack(Stack):
    """Groups and users of the production account, and their right to assume research roles.

    - One group per name in `ROLES_BY_GROUP` (`PlatformAdmins`, `Researchers`, `ReadOnly`), one user per person
      (path `/<project>/people/`, no password or key in the template: the platform team sets a one-time password).
    - Every group carries the MFA self-service policy: without an MFA sign-in, a user can only set up MFA and
      change their password.
    - Each group may assume exactly its research roles (`ROLES_BY_GROUP`), with MFA.
    """

    def __init__(self, scope: Construct, id_: str, *, platform: Platform) -> None:
        super().__init__(scope, id_, description="mlbase identity: groups, users, MFA policy")
        self.platform = platform
        cfg = platform.config
        account = cfg.accounts.production.account_id
        self.groups: dict[str, iam.Group] = {}
        for name, policies in PRODUCTION_POLICIES.items():
            group = iam.Group(
                self,
                name,
                group_name=name,
                managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(p) for p in policies],
            )
            for policy in policies:
                acknowledge(
                    group,
                    (
                        f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{policy}]",
                        f"{policy} is the AWS-maintained job-function policy of this group; it applies only after an"
                        " MFA sign-in (RequireMfa policy).",
                    ),
                )
            self.groups[name] = group

        self.mfa_policy = iam.ManagedPolicy(
            self,
            "RequireMfa",
            managed_policy_name=f"{cfg.project}-RequireMfa",
            description="Without MFA, a user may only set up MFA and change their password",
            statements=require_mfa_statements(account, user_path=user_path(cfg)),
            groups=list(self.groups.values()),
        )
        acknowledge(
            self.mfa_policy,
            (
                f"AwsSolutions-IAM5[Resource::arn:aws:iam::{account}:mfa/*]",
                "A user names their own virtual MFA device at creation; the device ARN is not known beforehand.",
            ),
            (
                "AwsSolutions-IAM5[Resource::*]",
                "iam:ListVirtualMFADevices and iam:GetAccountPasswordPolicy support no resource scoping.",
            ),
        )

        for name, roles in ROLES_BY_GROUP.items():
            iam.ManagedPolicy(
                self,
                f"{name}ResearchAccess",
                managed_policy_name=f"{cfg.project}-{name}ResearchAccess",
                description=f"Lets {name} switch to their research roles, with MFA",
                groups=[self.groups[name]],
                statements=[
                    iam.PolicyStatement(
                        sid="AssumeResearchRoles",
                        actions=["sts:AssumeRole"],
                        resources=[role_arn(cfg, role) for role in roles],
                        conditions={"Bool": {"aws:MultiFactorAuthPresent": "true"}},
                    ),
                    # A session names the person: each user may set only their own name as its source identity.
                    iam.PolicyStatement(
                        sid="NameResearchSessionsAfterOneself",
                        actions=["sts:SetSourceIdentity"],
                        resources=[role_arn(cfg, role) for role in roles],
                        conditions={"StringEquals": {"sts:SourceIdentity": "${aws:username}"}},
                    ),
                ],
            )

        self.users: dict[str, iam.User] = {}
        for person in cfg.people:
            self.users[person.name] = iam.User(
                self,
                f"User{_pascal(person.name)}",
                user_name=person.name,
                path=user_path(cfg),
                groups=[self.groups[g] for g in person.groups],
            )


def _pascal(name: str) -> str:
    """`hanako.s-x` -> `HanakoSX`: a stable construct ID from a person's name."""
    parts = name.replace(".", "-").split("-")
    return "".join(part[:1].upper() + part[1:] for part in parts)
