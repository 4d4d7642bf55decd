"""A resource policy that closes a hand-made secret to everyone but the functions that read it and the admins."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk_constructs.log_archive import cfn_exec_role_arn


def restrict_secret(
    scope: Construct, id_: str, *, secret_name: str, readers: Sequence[iam.IRole], admin_role_arns: Sequence[str]
) -> secretsmanager.CfnResourcePolicy:
    """Attach to the secret named `secret_name` a policy denying every Secrets Manager action to all principals but
    `readers`, `admin_role_arns` and the CDK bootstrap's CloudFormation execution role (which applies this policy).

    The secret itself is created by hand (its value never appears in a template); CloudFormation accepts a secret's
    name as `SecretId`. An identity policy that allows `secretsmanager:*` elsewhere in the account cannot get past
    this deny, so the secret's protection does not hang on every role's policies alone.
    """
    stack = Stack.of(scope)
    exempt = [*(role.role_arn for role in readers), *admin_role_arns, cfn_exec_role_arn(stack.account, stack.region)]
    document = iam.PolicyDocument(
        statements=[
            iam.PolicyStatement(
                sid="OnlyItsReadersAndAdmins",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["secretsmanager:*"],
                resources=["*"],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": exempt}},
            )
        ]
    )
    return secretsmanager.CfnResourcePolicy(
        scope, id_, secret_id=secret_name, resource_policy=document.to_json(), block_public_policy=True
    )
