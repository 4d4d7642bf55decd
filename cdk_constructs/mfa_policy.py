"""The MFA self-service policy for IAM users: without an MFA sign-in, only setting up MFA is possible.

Follows the policy AWS documents as "Allows MFA-authenticated IAM users to manage their own credentials", scoped to
one account: users may manage their own password, MFA device and access keys, and everything else (assuming roles
included) is denied until they signed in with MFA.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam

# What a user may still do before signing in with MFA: enough to enrol a device and change a first password.
WITHOUT_MFA = (
    "iam:ChangePassword",
    "iam:CreateVirtualMFADevice",
    "iam:EnableMFADevice",
    "iam:GetAccountPasswordPolicy",
    "iam:GetMFADevice",
    "iam:GetUser",
    "iam:ListMFADevices",
    "iam:ListVirtualMFADevices",
    "iam:ResyncMFADevice",
    "sts:GetSessionToken",
)


def require_mfa_statements(account: str, *, user_path: str = "/") -> list[iam.PolicyStatement]:
    """The statements of the self-service policy, for users of `account` under the IAM path `user_path`."""
    own_user = f"arn:aws:iam::{account}:user{user_path}${{aws:username}}"
    return [
        iam.PolicyStatement(
            sid="AllowViewAccountInfo",
            actions=["iam:GetAccountPasswordPolicy", "iam:ListVirtualMFADevices"],
            resources=["*"],
        ),
        iam.PolicyStatement(
            sid="AllowManageOwnPasswordAndKeys",
            actions=[
                "iam:ChangePassword",
                "iam:GetUser",
                "iam:GetLoginProfile",
                "iam:CreateAccessKey",
                "iam:DeleteAccessKey",
                "iam:ListAccessKeys",
                "iam:UpdateAccessKey",
                "iam:GetAccessKeyLastUsed",
            ],
            resources=[own_user],
        ),
        iam.PolicyStatement(
            sid="AllowManageOwnVirtualMFADevice",
            actions=["iam:CreateVirtualMFADevice"],
            resources=[f"arn:aws:iam::{account}:mfa/*"],
        ),
        iam.PolicyStatement(
            sid="AllowManageOwnUserMFA",
            actions=[
                "iam:DeactivateMFADevice",
                "iam:EnableMFADevice",
                "iam:GetMFADevice",
                "iam:ListMFADevices",
                "iam:ResyncMFADevice",
            ],
            resources=[own_user],
        ),
        iam.PolicyStatement(
            sid="DenyAllExceptListedIfNoMFA",
            effect=iam.Effect.DENY,
            not_actions=list(WITHOUT_MFA),
            resources=["*"],
            conditions={"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}},
        ),
    ]
