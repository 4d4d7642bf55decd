"""Delivery stack (one per account): GitHub's OIDC provider and the role the deploy workflow assumes.

The workflow never holds long-lived keys: each job in the account's GitHub environment exchanges its OIDC token
for a session of `DeployRole`, and that session can do nothing but assume the CDK bootstrap roles, which do the
deploying (CloudFormation's execution role) and the reading (`cdk diff`, `make preflight` through the lookup role).
"""

from __future__ import annotations

from typing import Literal

from aws_cdk import DefaultStackSynthesizer, Duration, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.config import GitHub

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
# The audience aws-actions/configure-aws-credentials asks GitHub to put in the token.
STS_AUDIENCE = "sts.amazonaws.com"
# The four roles `cdk bootstrap` creates; the deploy workflow needs nothing else.
BOOTSTRAP_ROLES = ("deploy", "file-publishing", "image-publishing", "lookup")
QUALIFIER_CONTEXT = "@aws-cdk/core:bootstrapQualifier"


def bootstrap_role_name(qualifier: str, kind: str, account: str, region: str) -> str:
    """The name `cdk bootstrap` gives a bootstrap role (`cdk-<qualifier>-<kind>-role-<account>-<region>`)."""
    return f"cdk-{qualifier}-{kind}-role-{account}-{region}"


def github_subject(repository: str, environment: str) -> str:
    """The `sub` claim of a job that runs in `environment` (GitHub's default claim format)."""
    return f"repo:{repository}:environment:{environment}"


class DeliveryStack(Stack):
    """GitHub OIDC federation for one account.

    - `provider`: GitHub's OIDC identity provider, created here or (config `oidc_provider: existing`) the one the
      account already has; IAM holds one per URL and account.
    - `deploy_role`: named `github.deploy_role_name`, assumable with `sts:AssumeRoleWithWebIdentity` only by a
      token whose audience is STS and whose subject is this repository's job in this account's environment (so
      not a pull request, another branch's job without the environment, or another repository); allowed only
      `sts:AssumeRole` on this account's CDK bootstrap roles.
    """

    def __init__(
        self, scope: Construct, id_: str, *, github: GitHub, account: Literal["production", "research"]
    ) -> None:
        super().__init__(scope, id_, description=f"mlbase delivery: GitHub OIDC deploy role ({account})")
        if getattr(github.oidc_provider, account) == "create":
            self.provider: iam.IOidcProvider = iam.OidcProviderNative(
                self, "GitHubOidcProvider", url=f"https://{GITHUB_OIDC_HOST}", client_ids=[STS_AUDIENCE]
            )
        else:
            self.provider = iam.OidcProviderNative.from_oidc_provider_arn(
                self,
                "GitHubOidcProvider",
                self.format_arn(service="iam", region="", resource="oidc-provider", resource_name=GITHUB_OIDC_HOST),
            )
        environment = getattr(github.environments, account)
        self.deploy_role = iam.Role(
            self,
            "DeployRole",
            role_name=github.deploy_role_name,
            description=f"GitHub Actions deploy jobs of {github.repository} in environment {environment}",
            assumed_by=iam.WebIdentityPrincipal(
                self.provider.oidc_provider_arn,
                conditions={
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": STS_AUDIENCE,
                        f"{GITHUB_OIDC_HOST}:sub": github_subject(github.repository, environment),
                    }
                },
            ),
            # A full run deploys several stacks in one job; the session must outlive the slowest of them.
            max_session_duration=Duration.hours(2),
        )
        qualifier = str(self.node.try_get_context(QUALIFIER_CONTEXT) or DefaultStackSynthesizer.DEFAULT_QUALIFIER)
        iam.ManagedPolicy(
            self,
            "AssumeBootstrapRoles",
            description="Only the CDK bootstrap roles of this account: they deploy, publish assets and read",
            statements=[
                iam.PolicyStatement(
                    actions=["sts:AssumeRole"],
                    resources=[
                        self.format_arn(
                            service="iam",
                            region="",
                            resource="role",
                            resource_name=bootstrap_role_name(qualifier, kind, self.account, self.region),
                        )
                        for kind in BOOTSTRAP_ROLES
                    ],
                )
            ],
            roles=[self.deploy_role],
        )
