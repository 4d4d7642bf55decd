"""`wake: sla`: let the worker send its own fleet back to zero (worker/release.py), as `ScalingPolicy.release` says.

The worker learns its cluster and service from the ECS task metadata endpoint; the construct passes the host group
and the thresholds as environment variables, and grants exactly the three calls the release makes, on this
worker's service and host group only. The grant is a policy of its own: the service depends on the task role's
default policy (CDK makes tasks wait for their permissions), so a statement naming the service there would be a
dependency cycle, while this policy can name the service and be created after it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import aws_iam as iam

from cdk_constructs.gpu_worker_hosts import host_group_arn
from cdk_constructs.nag import acknowledge
from cdk_constructs.sla_model import ScalingPolicy

if TYPE_CHECKING:
    from cdk_constructs.gpu_queue_worker import GpuQueueWorker


def add_fleet_release(worker: GpuQueueWorker, policy: ScalingPolicy) -> None:
    """Environment and permissions for the worker's release; nothing when the policy has none (`wake: immediate`
    or a minimum fleet)."""
    rule = policy.release
    if rule is None:
        return
    group_arn, group_finding = host_group_arn(worker)
    for name, value in {
        "MLBASE_RELEASE_HOST_GROUP": worker.auto_scaling_group.auto_scaling_group_name,
        "MLBASE_RELEASE_CAUGHT_UP_MESSAGES": str(rule.caught_up_messages),
        "MLBASE_RELEASE_MAX_AGE_S": str(rule.max_age_seconds),
        "MLBASE_RELEASE_SLOW_PER_MINUTE": str(rule.slow_arrivals_per_minute),
        # The empty check is one whole long poll of this length (the SQS maximum).
        "MLBASE_WAIT_TIME_S": str(rule.empty_wait_seconds),
    }.items():
        worker.container.add_environment(name, value)
    grant = iam.Policy(
        worker,
        "ReleasePolicy",
        roles=[worker.task_definition.task_role],
        statements=[
            # Service Authorization Reference, Amazon ECS: DescribeServices and UpdateService take the service ARN.
            iam.PolicyStatement(
                actions=["ecs:DescribeServices", "ecs:UpdateService"], resources=[worker.service.service_arn]
            ),
            # Service Authorization Reference, Amazon EC2 Auto Scaling: SetDesiredCapacity takes the group ARN.
            iam.PolicyStatement(actions=["autoscaling:SetDesiredCapacity"], resources=[group_arn]),
        ],
    )
    acknowledge(
        grant,
        (group_finding, "The group's UUID is only known after creation; the name pins this worker's host group."),
        (
            "NIST.800.53.R5-IAMNoInlinePolicy",
            "A policy of its own so it can name the service, which depends on the task role's default policy.",
        ),
    )
