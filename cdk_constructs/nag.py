"""cdk-nag acknowledgements: each names one rule (or one finding of it) and a reason a reviewer can check."""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from aws_cdk import custom_resources as cr
from constructs import IConstruct


def acknowledge(construct: IConstruct, *findings: tuple[str, str]) -> None:
    """Acknowledge `(rule_id, reason)` pairs on exactly this construct (and its children), never wider."""
    Validations.of(construct).acknowledge(*(Acknowledgment(id=rule, reason=reason) for rule, reason in findings))


def logical_id(construct: IConstruct) -> str:
    """Logical ID of a construct's main CloudFormation resource, as cdk-nag names it in finding IDs
    (`AwsSolutions-IAM5[Resource::<LogicalId.Arn>/...]`)."""
    child = construct.node.default_child
    assert isinstance(child, CfnElement), f"{construct.node.path} has no CloudFormation resource of its own"
    return str(Stack.of(construct).resolve(child.logical_id))


def acknowledge_sdk_call_provider(stack: Stack, purpose: str) -> None:
    """Acknowledge the findings of a stack's AwsCustomResource provider (one Lambda per stack, library-managed).

    The provider is found through the library's public `PROVIDER_FUNCTION_UUID`, from which aws-cdk-lib derives its
    construct ID. `purpose` says which deploy-time SDK calls it makes in this stack.
    """
    provider = stack.node.try_find_child("AWS" + cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace("-", ""))
    if provider is None:
        return
    reason = (
        "aws-cdk-lib's AwsCustomResource provider: CloudFormation invokes it for this stack's custom resources, only"
        f" during deployment, to {purpose}; a failure fails the deploy."
    )
    for rule in (
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        "NIST.800.53.R5-LambdaConcurrency",
        "NIST.800.53.R5-LambdaDLQ",
        "NIST.800.53.R5-LambdaInsideVPC",
    ):
        acknowledge(provider, (rule, reason))


def acknowledge_sdk_call_policy(resource: cr.AwsCustomResource) -> None:
    acknowledge(
        resource.node.find_child("CustomResourcePolicy"),
        (
            "NIST.800.53.R5-IAMNoInlinePolicy",
            "The AwsCustomResource attaches its SDK-call permissions inline to the library's provider role.",
        ),
    )
