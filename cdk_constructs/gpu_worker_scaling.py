"""SLA-driven scaling of a GPU queue worker's service and hosts: the policy `derive_policy` computed, unchanged.

Split from `gpu_queue_worker.py` (see its docstring for the formula's summary); the resources are children of the
`GpuQueueWorker` construct, so their construct paths and logical IDs are the same as when they were built there.

The service's DesiredCount is an Application Auto Scaling scalable target (target tracking and step policies). With
ECS managed scaling off (`policy.hosts.managed` false) the host group gets EC2 Auto Scaling step scaling policies,
all ExactCapacity: one more action on the service's wake and idle alarms (a CloudWatch alarm may invoke several
Auto Scaling policies), and the group's own follow, trim and release alarms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions

from cdk_constructs.sla_model import MetricQuery, MetricSpec, ScalingPolicy, Step, StepPolicy, referenced_ids

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
    if query.resource == "group":
        return {"AutoScalingGroupName": worker.auto_scaling_group.auto_scaling_group_name}
    return {"ClusterName": worker.cluster.cluster_name, "ServiceName": worker.service.service_name}


def _math(worker: GpuQueueWorker, spec: MetricSpec) -> cloudwatch.MathExpression:
    """The spec's expression over its queries and its named parts (each part its own expression in the alarm)."""
    period = Duration.seconds(spec.period_seconds)
    scope: dict[str, cloudwatch.IMetric] = {
        q.id: cloudwatch.Metric(
            namespace=q.namespace,
            metric_name=q.metric_name,
            dimensions_map=_dimensions(worker, q),
            statistic=q.statistic,
            period=period,
        )
        for q in spec.queries
    }

    def using(expression: str) -> dict[str, cloudwatch.IMetric]:
        used = referenced_ids(expression)
        return {name: metric for name, metric in scope.items() if name in used}

    for name, expression in spec.parts:
        scope[name] = cloudwatch.MathExpression(expression=expression, period=period, using_metrics=using(expression))
    return cloudwatch.MathExpression(
        expression=spec.expression, label=spec.label, period=period, using_metrics=using(spec.expression)
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
    if policy.hosts.managed:
        return
    for host_policy in policy.hosts.policies:
        alarm = _alarm(worker, host_policy)
        alarm.add_alarm_action(cw_actions.AutoScalingAction(_host_action(worker, host_policy, host_policy.steps)))
        worker.step_alarms[host_policy.name] = alarm


def _cid(p: StepPolicy) -> str:
    return "".join(part.title() for part in p.name.split("-"))


def _host_action(worker: GpuQueueWorker, p: StepPolicy, steps: tuple[Step, ...]) -> autoscaling.StepScalingAction:
    """An EC2 Auto Scaling step scaling policy on the host group for the alarm of `p`: host steps are always
    ExactCapacity (no cooldown applies to step policies; the group takes the largest capacity asked at once)."""
    action = autoscaling.StepScalingAction(
        worker,
        f"{_cid(p)}Hosts" if p.host_steps else f"{_cid(p)}Action",
        auto_scaling_group=worker.auto_scaling_group,
        adjustment_type=autoscaling.AdjustmentType.EXACT_CAPACITY,
        metric_aggregation_type=autoscaling.MetricAggregationType.MAXIMUM,
    )
    _add_steps(action, steps, p.threshold)
    return action


def _add_steps(
    action: appscaling.StepScalingAction | autoscaling.StepScalingAction, steps: tuple[Step, ...], threshold: float
) -> None:
    """Both services take step bounds as offsets from the alarm threshold; `Step` holds absolute metric values."""
    for step in steps:
        action.add_adjustment(
            adjustment=step.adjustment,
            lower_bound=None if step.lower is None else step.lower - threshold,
            upper_bound=None if step.upper is None else step.upper - threshold,
        )


def _alarm(worker: GpuQueueWorker, p: StepPolicy) -> cloudwatch.Alarm:
    return cloudwatch.Alarm(
        worker,
        f"{_cid(p)}Alarm",
        alarm_description=f"{worker.spec.name}: {p.name} scaling ({p.metric.label})",
        metric=_math(worker, p.metric),
        threshold=p.threshold,
        comparison_operator=_COMPARISON[p.comparison],
        evaluation_periods=p.evaluation_periods,
        datapoints_to_alarm=p.datapoints_to_alarm,
        treat_missing_data=cloudwatch.TreatMissingData.IGNORE,
    )


def _step_policy(worker: GpuQueueWorker, p: StepPolicy) -> None:
    cid = _cid(p)
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
    _add_steps(action, p.steps, p.threshold)
    alarm = _alarm(worker, p)
    alarm.add_alarm_action(cw_actions.ApplicationScalingAction(action))
    if p.host_steps and not worker.policy.hosts.managed:
        alarm.add_alarm_action(cw_actions.AutoScalingAction(_host_action(worker, p, p.host_steps)))
    worker.step_alarms[p.name] = alarm
