"""Reserved concurrency for every Lambda of a stage, on or off in one place (`lambdas.reserved_concurrency`).

Each function states the concurrency it should be capped at (PythonLambda's `reserved_concurrency`). Reserving it
takes that much from the account's quota, and Lambda keeps at least 100 unreserved
(https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html): the platform's caps add up to more
than a new account's quota allows, and every function would then fail to create. So the caps are applied only when
the config says the account's quota has room (`make preflight` checks it); otherwise this aspect takes them out.
"""

from __future__ import annotations

import jsii
from aws_cdk import IAspect
from aws_cdk import aws_lambda as lambda_
from constructs import IConstruct

from cdk_constructs.nag import acknowledge

UNRESERVED_REASON = (
    "Reserved concurrency is off (lambdas.reserved_concurrency: false): a new account's concurrency quota cannot"
    " hold the platform's caps beside the 100 executions Lambda keeps unreserved; `make preflight` says when it can."
)


@jsii.implements(IAspect)
class ReservedConcurrency:
    """Keeps (`enabled`) or removes every function's reserved concurrency, acknowledging the finding when removed."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled

    def visit(self, node: IConstruct) -> None:
        if self.enabled or not isinstance(node, lambda_.CfnFunction):
            return
        if node.reserved_concurrent_executions is None:
            return
        node.reserved_concurrent_executions = None
        acknowledge(node, ("NIST.800.53.R5-LambdaConcurrency", UNRESERVED_REASON))
