"""Alarms and dashboard of a GPU queue worker: DLQ depth, SLA age, throughput, per-stage latency, errors, GPU use.

Split from `gpu_queue_worker.py`; the resources are children of the `GpuQueueWorker` construct, so their construct
paths and logical IDs are the same as when they were built there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns

if TYPE_CHECKING:
    from cdk_constructs.gpu_queue_worker import GpuQueueWorker, WorkerSpec


def add_alarms(worker: GpuQueueWorker, spec: WorkerSpec, topic: sns.ITopic) -> None:
    """Photos in the dead-letter queue, and the oldest photo at 75 % of the SLA; both notify `topic` (and recover)."""
    minute = Duration.minutes(1)
    worker.dlq_alarm = cloudwatch.Alarm(
        worker,
        "DeadLetterAlarm",
        alarm_description=f"{spec.name}: photos in the dead-letter queue (failed {spec.max_receive_count} times)",
        metric=worker.dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=minute, statistic="Maximum"
        ),
        threshold=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluation_periods=1,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    worker.sla_alarm = cloudwatch.Alarm(
        worker,
        "SlaAlarm",
        alarm_description=f"{spec.name}: oldest photo has waited 75% of the {int(spec.sla.to_minutes())}-minute SLA",
        metric=worker.queue.metric_approximate_age_of_oldest_message(period=minute, statistic="Maximum"),
        threshold=int(spec.sla.to_seconds() * 0.75),
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluation_periods=2,
        datapoints_to_alarm=2,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    for alarm in (worker.dlq_alarm, worker.sla_alarm):
        alarm.add_alarm_action(cw_actions.SnsAction(topic))
        alarm.add_ok_action(cw_actions.SnsAction(topic))


def add_dashboard(worker: GpuQueueWorker, spec: WorkerSpec) -> None:
    """One dashboard per worker: queue age and backlog, tasks, throughput, fleet-wide latency p90, errors, GPU use."""
    minute = Duration.minutes(1)

    def worker_metric(name: str, stat: str = "Average") -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="mlbase/worker",
            metric_name=name,
            dimensions_map={"Worker": spec.name},
            statistic=stat,
            period=minute,
        )

    service_dims = {"ClusterName": worker.cluster.cluster_name, "ServiceName": worker.service.service_name}

    def insights(name: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="ECS/ContainerInsights",
            metric_name=name,
            dimensions_map=service_dims,
            statistic="Average",
            period=minute,
        )

    sla_seconds = spec.sla.to_seconds()
    worker.dashboard = cloudwatch.Dashboard(worker, "Dashboard", dashboard_name=f"mlbase-{spec.name}")
    worker.dashboard.add_widgets(
        cloudwatch.GraphWidget(
            title="Age of oldest photo vs SLA",
            left=[worker.queue.metric_approximate_age_of_oldest_message(period=minute, statistic="Maximum")],
            left_annotations=[
                cloudwatch.HorizontalAnnotation(value=sla_seconds, label="SLA", color="#d62728"),
                cloudwatch.HorizontalAnnotation(value=sla_seconds * 0.75, label="alarm (75%)", color="#ff7f0e"),
            ],
            width=12,
        ),
        cloudwatch.GraphWidget(
            title="Backlog and in flight",
            left=[
                worker.queue.metric_approximate_number_of_messages_visible(period=minute, statistic="Maximum"),
                worker.queue.metric_approximate_number_of_messages_not_visible(period=minute, statistic="Maximum"),
            ],
            width=12,
        ),
    )
    worker.dashboard.add_widgets(
        cloudwatch.GraphWidget(
            title="Tasks: running and desired",
            left=[insights("RunningTaskCount"), insights("DesiredTaskCount")],
            width=8,
        ),
        cloudwatch.GraphWidget(
            title="Images per second",
            left=[worker_metric("ImagesPerSecond", "Sum"), worker_metric("Images", "Sum")],
            width=8,
        ),
        cloudwatch.GraphWidget(
            title="Per-stage latency p90 (ms)",
            # The workers publish every photo's value, so p90 here is the fleet's, not an average of tasks'.
            left=[worker_metric(name, "p90") for name in ("DownloadMs", "DecodeMs", "InferMs")],
            width=8,
        ),
    )
    worker.dashboard.add_widgets(
        cloudwatch.GraphWidget(
            title="Errors by kind",
            left=[
                cloudwatch.MathExpression(
                    expression=(
                        f'SEARCH(\'{{mlbase/worker,ErrorKind,Worker}} Worker="{spec.name}" '
                        "MetricName=\"Errors\"', 'Sum', 60)"
                    ),
                    label="errors",
                    period=minute,
                )
            ],
            width=8,
        ),
        cloudwatch.GraphWidget(
            title="Dead-letter queue depth",
            left=[
                worker.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=minute, statistic="Maximum"
                )
            ],
            width=8,
        ),
        cloudwatch.GraphWidget(
            title="GPU utilization (%)",
            left=[
                cloudwatch.MathExpression(
                    expression=(
                        'SEARCH(\'{CWAgent,AutoScalingGroupName} MetricName="nvidia_smi_utilization_gpu" '
                        f"AutoScalingGroupName=\"{worker.auto_scaling_group.auto_scaling_group_name}\"', 'Average', 60)"
                    ),
                    label="GPU",
                    period=minute,
                )
            ],
            width=8,
        ),
    )
