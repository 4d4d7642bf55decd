"""SLA-driven scaling of a GPU queue worker's service: the policy `derive_policy` computed, deployed unchanged.

Split from `gpu_queue_worker.py` (see its docstring for the formula's summary); the resources are children of the
`GpuQueueWorker` construct, so their construct paths and logical IDs are the same as when they were built there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions

from cdk_constructs.sla_scaling import MetricQuery, MetricSpec, ScalingPolicy, StepPolicy

if TYPE_CHECKING:
    from cdk_constructs.gpu_queue_worker import GpuQueueWorker

_COMPARISON = {
    "GreaterThanOrEqualToThreshold": cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    "LessThanOrEqualToThreshold": cloudwatch.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
}
_ADJUSTMENT = {
    "ChangeInCapacity": appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
    "ExactCapacity": appscaling.AdjustmentType.EXACT_CAPACITY,
    "PercentChangeInCapacity": appscaling.AdjustmentType.PERCENT_CHANGE_IN_CAPACITY,
}


def _dimensions(worker: GpuQueueWorker, query: MetricQuery) -> dict[str, str]:
    if query.resource == "queue":
        return {"QueueName": worker.queue.queue_name}
    return {"ClusterName": worker.cluster.cluster_name, "ServiceName": worker.service.service_name}


def _math(worker: GpuQueueWorker, spec: MetricSpec) -> cloudwatch.MathExpression:
    period = Duration.seconds(spec.period_seconds)
    return cloudwatch.MathExpression(
        expression=spec.expression,
        label=spec.label,
        period=period,
        using_metrics={
            q.id: cloudwatch.Metric(
                namespace=q.namespace,
                metric_name=q.metric_name,
                dimensions_map=_dimensions(worker, q),
                statistic=q.statistic,
                period=period,
            )
            for q in spec.queries
        },
    )


def add_sla_scaling(worker: GpuQueueWorker, policy: ScalingPolicy) -> None:
    """The service's scalable target, its target-tracking policies and its step policies with their alarms."""
    worker.scalable_target = appscaling.ScalableTarget(
        worker,
        "ScalableTarget",
        service_namespace=appscaling.ServiceNamespace.ECS,
        resource_id=f"service/{worker.cluster.cluster_name}/{worker.service.service_name}",
        scalable_dimension="ecs:service:DesiredCount",
        min_capacity=policy.min_capacity,
        max_capacity=policy.max_capacity,
    )
    for tracking in policy.target_tracking:
        appscaling.CfnScalingPolicy(
            worker,
            f"TargetTracking{tracking.name.title().replace('-', '')}",
            policy_name=f"{worker.spec.name}-{tracking.name}",
            policy_type="TargetTrackingScaling",
            scaling_target_id=worker.scalable_target.scalable_target_id,
            target_tracking_scaling_policy_configuration=appscaling.CfnScalingPolicy.TargetTrackingScalingPolicyConfigurationProperty(
                target_value=tracking.target_value,
                disable_scale_in=tracking.disable_scale_in,
                scale_in_cooldown=tracking.scale_in_cooldown_seconds,
                scale_out_cooldown=tracking.scale_out_cooldown_seconds,
                customized_metric_specification=appscaling.CfnScalingPolicy.CustomizedMetricSpecificationProperty(
                    metrics=[
                        *(
                            appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty(
                                id=q.id,
                                return_data=False,
                                metric_stat=appscaling.CfnScalingPolicy.TargetTrackingMetricStatProperty(
                                    stat=q.statistic,
                                    metric=appscaling.CfnScalingPolicy.TargetTrackingMetricProperty(
                                        namespace=q.namespace,
                                        metric_name=q.metric_name,
                                        dimensions=[
                                            appscaling.CfnScalingPolicy.TargetTrackingMetricDimensionProperty(
                                                name=k, value=v
                                            )
                                            for k, v in _dimensions(worker, q).items()
                                        ],
                                    ),
                                ),
                            )
                            for q in tracking.metric.queries
                        ),
                        appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty(
                            id="backlog",
                            expression=tracking.metric.expression,
                            label=tracking.metric.label,
                            return_data=True,
                        ),
                    ]
                ),
            ),
        )
    worker.step_alarms = {}
    for step_policy in policy.step_policies:
        _step_policy(worker, step_policy)


def _step_policy(worker: GpuQueueWorker, p: StepPolicy) -> None:
    cid = "".join(part.title() for part in p.name.split("-"))
    action = appscaling.StepScalingAction(
        worker,
        f"{cid}Action",
        scaling_target=worker.scalable_target,
        adjustment_type=_ADJUSTMENT[p.adjustment_type],
        cooldown=Duration.seconds(p.cooldown_seconds),
        metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM,
        min_adjustment_magnitude=p.min_adjustment_magnitude,
        policy_name=f"{worker.spec.name}-{p.name}",
    )
    for step in p.steps:
        # Application Auto Scaling step bounds are offsets from the alarm threshold.
        action.add_adjustment(
            adjustment=step.adjustment,
            lower_bound=None if step.lower is None else step.lower - p.threshold,
            upper_bound=None if step.upper is None else step.upper - p.threshold,
        )
    alarm = cloudwatch.Alarm(
        worker,
        f"{cid}Alarm",
        alarm_description=f"{worker.spec.name}: {p.name} scaling ({p.metric.label})",
        metric=_math(worker, p.metric),
        threshold=p.threshold,
        comparison_operator=_COMPARISON[p.comparison],
        evaluation_periods=p.evaluation_periods,
        datapoints_to_alarm=p.datapoints_to_alarm,
        treat_missing_data=cloudwatch.TreatMissingData.IGNORE,
    )
    alarm.add_alarm_action(cw_actions.ApplicationScalingAction(action))
    worker.step_alarms[p.name] = alarm
