"""A Python Lambda from `lambdas/<name>/`, with the shared `lambdas/common` layer, Powertools, encrypted logs."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from cdk_constructs.logs_key import stack_logs_key
from cdk_constructs.nag import acknowledge

LAMBDAS_DIR = Path(__file__).resolve().parent.parent / "lambdas"
RUNTIME = lambda_.Runtime.PYTHON_3_13
# Powertools for AWS Lambda (Python) v3, from the public layer AWS publishes per region and release. Layer versions are
# a counter per region, not the release, so the ARN is read at deploy time from the public SSM parameter Powertools
# keeps for each release, `/aws/service/powertools/python/{arch}/{python_version}/{version}` (Powertools docs,
# "Lambda layers"). The release is the library the tests run (worker/requirements.txt; tests/test_dependencies.py).
POWERTOOLS_VERSION = "3.37.0"
POWERTOOLS_LAYER_PARAMETER = f"/aws/service/powertools/python/arm64/{RUNTIME.name}/{POWERTOOLS_VERSION}"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "tests")
_STAGING = Path(tempfile.gettempdir()) / "mlbase-lambda-staging"


def _stage(parts: dict[str, Path], *, prefix: str) -> str:
    """Copy `parts` (destination -> source directory) into a content-addressed directory; return its path.

    The asset hash is computed from file contents, so the staging path does not make templates machine-dependent.
    """
    digest = hashlib.sha256()
    for dest, src in sorted(parts.items()):
        for file in sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(f"{dest}/{file.relative_to(src)}".encode())
            digest.update(file.read_bytes())
    target = _STAGING / f"{prefix}-{digest.hexdigest()[:16]}"
    if not target.exists():
        tmp = Path(tempfile.mkdtemp(dir=_STAGING.parent if _STAGING.exists() else None))
        for dest, src in parts.items():
            shutil.copytree(src, tmp / dest, ignore=_IGNORE)
        _STAGING.mkdir(exist_ok=True)
        try:
            tmp.rename(target)
        except OSError:  # another synth staged the same content first
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def layer_parts() -> dict[str, Path]:
    """What the shared layer holds (destination -> source): `lambdas/common`, and slack_sdk as the synth environment
    installed it from requirements.txt (pure Python, no dependencies, so the same files serve arm64 Lambda)."""
    spec = importlib.util.find_spec("slack_sdk")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("slack_sdk is not installed; the Lambda layer ships it (pip install -r requirements.txt)")
    return {
        "python/lambdas/common": LAMBDAS_DIR / "common",
        "python/slack_sdk": Path(next(iter(spec.submodule_search_locations))),
    }


def _shared(scope: Construct) -> tuple[lambda_.ILayerVersion, lambda_.ILayerVersion, kms.Key]:
    """The per-stack layer (`lambdas/common` and slack_sdk), the Powertools layer and the key for Lambda log groups."""
    stack = Stack.of(scope)
    key = stack_logs_key(stack)
    existing = stack.node.try_find_child("LambdaCommonLayer")
    if isinstance(existing, lambda_.LayerVersion):
        return existing, stack.node.find_child("PowertoolsLayer"), key  # type: ignore[return-value]
    common = lambda_.LayerVersion(
        stack,
        "LambdaCommonLayer",
        code=lambda_.Code.from_asset(_stage(layer_parts(), prefix="layer")),
        compatible_runtimes=[RUNTIME],
        compatible_architectures=[lambda_.Architecture.ARM_64],
        description="mlbase shared Lambda code (lambdas/common) and slack_sdk",
    )
    powertools = lambda_.LayerVersion.from_layer_version_arn(
        stack, "PowertoolsLayer", ssm.StringParameter.value_for_string_parameter(stack, POWERTOOLS_LAYER_PARAMETER)
    )
    return common, powertools, key


class PythonLambda(Construct):
    """One function from `lambdas/<name>/` (handler `lambdas.<name>.handler.handler`), arm64, Powertools layer.

    Logs go to a KMS-encrypted log group with the given retention. Reserved concurrency bounds what a flood of events
    can cost. `dead_letter_queue` catches failed asynchronous invocations; without one, `no_dead_letter_reason` must
    say how the function is invoked and where a failure shows instead. `vpc` places the function in private subnets
    when it must reach VPC resources; `calls_slack` says whether it also reaches Slack (the reason it stays out).
    The role's policy comes from CDK grants on the resources it uses; `unscoped_actions` names the actions the caller
    grants on * (they support no resource-level scoping), so that the acknowledgement of that wildcard says exactly
    what it covers.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name: str,
        description: str,
        environment: dict[str, str] | None = None,
        timeout: Duration | None = None,
        memory_size: int = 256,
        reserved_concurrency: int = 5,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        dead_letter_queue: sqs.IQueue | None = None,
        vpc: ec2.IVpc | None = None,
        function_name: str | None = None,
        unscoped_actions: Sequence[str] = (),
        no_dead_letter_reason: str | None = None,
        calls_slack: bool = False,
    ) -> None:
        super().__init__(scope, id_)
        if (dead_letter_queue is None) == (no_dead_letter_reason is None):
            raise ValueError(f"{id_}: give a dead_letter_queue, or the no_dead_letter_reason why it needs none")
        source = LAMBDAS_DIR / name
        if not (source / "handler.py").is_file():
            raise ValueError(f"{source}/handler.py does not exist; a Lambda lives in lambdas/<name>/handler.py")
        common, powertools, key = _shared(self)
        self.log_group = logs.LogGroup(
            self, "LogGroup", retention=log_retention, encryption_key=key, removal_policy=RemovalPolicy.DESTROY
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=f"lambdas.{name}.handler.handler",
            function_name=function_name,
            code=lambda_.Code.from_asset(_stage({f"lambdas/{name}": source}, prefix=name)),
            layers=[common, powertools],
            description=description,
            environment={"POWERTOOLS_SERVICE_NAME": name, **(environment or {})},
            timeout=timeout or Duration.seconds(30),
            memory_size=memory_size,
            reserved_concurrent_executions=reserved_concurrency,
            log_group=self.log_group,
            dead_letter_queue=dead_letter_queue,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS) if vpc else None,
            tracing=lambda_.Tracing.ACTIVE,
        )
        role = self.function.role
        assert role is not None
        self.role = role
        if vpc is not None:
            acknowledge(
                role,
                (
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AWSLambdaVPCAccessExecutionRole]",
                    "AWS-maintained policy for the network interfaces a function in a VPC needs.",
                ),
            )
        acknowledge(
            role,
            (
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
                "AWS-maintained policy limited to writing this function's logs.",
            ),
            (
                "NIST.800.53.R5-IAMNoInlinePolicy",
                "The role's only inline policy is generated by CDK grants on the resources this function uses.",
            ),
            (
                "AwsSolutions-IAM5[Resource::*]",
                "Granted on * because they support no resource-level scoping: "
                + ", ".join(("xray:PutTraceSegments", "xray:PutTelemetryRecords", *unscoped_actions))
                + ".",
            ),
        )
        acknowledge(
            self.function,
            (
                "AwsSolutions-L1",
                "Pinned to python3.13, the newest runtime the pinned Powertools layer is built for; bumped together.",
            ),
        )
        if vpc is None:
            acknowledge(
                self.function,
                (
                    "NIST.800.53.R5-LambdaInsideVPC",
                    f"Calls only AWS APIs{' and Slack' if calls_slack else ''} over TLS; a VPC would add NAT cost"
                    " and no control.",
                ),
            )
        if no_dead_letter_reason is not None:
            acknowledge(self.function, ("NIST.800.53.R5-LambdaDLQ", no_dead_letter_reason))
