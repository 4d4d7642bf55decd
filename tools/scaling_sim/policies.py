"""The policies compared on the same traffic, all as `ScalingPolicy` objects the same engine runs.

- `age-step`: the original design, step scaling on ApproximateAgeOfOldestMessage alone: +1/+2/+4 tasks when the
  oldest photo reaches 25/50/75% of the SLA (3 of 3 datapoints, 5-minute cooldown), -1 task when it stays under
  10% of the SLA for 15 minutes.
- `backlog-target`: AWS's published guidance for SQS workers, target tracking on backlog per *running* task with
  target = images_per_second * acceptable latency, taking half the SLA as the acceptable latency, the ECS
  default 300 s cooldowns and target tracking's own scale-in; plus +1 task on the first visible message while
  no task runs, without which a fleet at zero never starts.
- `deployed`: whatever `cdk_constructs.sla_scaling.derive_policy` returns for the worker, looked up at call time
  so the simulator runs the construct's code path, never a copy.
- `immediate`: the same with the worker's `scaling.wake` set to `immediate` (wake on the first photo), for
  services that prefer latency to cost.
"""

from __future__ import annotations

from cdk_constructs import sla_scaling
from cdk_constructs.sla_model import RUNNING, VISIBLE, MetricSpec, ScalingPolicy, Step, StepPolicy, TargetTracking
from cdk_constructs.sla_scaling import age_metric, backlog_per_task_metric
from stacks.config import WorkerConfig

POLICY_NAMES = ("deployed", "immediate", "age-step", "backlog-target")


def age_step(worker: WorkerConfig) -> ScalingPolicy:
    sla = worker.sla_minutes * 60
    period = worker.simulation.metric_period_seconds
    out = StepPolicy(
        name="age-out",
        metric=age_metric(period),
        comparison="GreaterThanOrEqualToThreshold",
        threshold=0.25 * sla,
        evaluation_periods=3,
        datapoints_to_alarm=3,
        adjustment_type="ChangeInCapacity",
        steps=(
            Step(lower=0.25 * sla, upper=0.5 * sla, adjustment=1),
            Step(lower=0.5 * sla, upper=0.75 * sla, adjustment=2),
            Step(lower=0.75 * sla, upper=None, adjustment=4),
        ),
        cooldown_seconds=300,
    )
    inward = StepPolicy(
        name="age-in",
        metric=age_metric(period),
        comparison="LessThanOrEqualToThreshold",
        threshold=0.1 * sla,
        evaluation_periods=15,
        datapoints_to_alarm=15,
        adjustment_type="ChangeInCapacity",
        steps=(Step(lower=None, upper=0.1 * sla, adjustment=-1),),
        cooldown_seconds=300,
    )
    return ScalingPolicy(
        min_capacity=worker.scaling.min_tasks,
        max_capacity=worker.scaling.max_tasks,
        metric_period_seconds=period,
        reaction_seconds=0,
        acceptable_latency_seconds=sla,
        target_tracking=(),
        step_policies=(out, inward),
    )


def backlog_target(worker: WorkerConfig) -> ScalingPolicy:
    period = worker.simulation.metric_period_seconds
    acceptable = worker.sla_minutes * 60 // 2
    tracking = TargetTracking(
        name="backlog-running",
        metric=backlog_per_task_metric(period, tasks=RUNNING),
        target_value=worker.scaling.images_per_second_per_task * acceptable,
        scale_out_cooldown_seconds=300,
        scale_in_cooldown_seconds=300,
        disable_scale_in=False,
    )
    wake = StepPolicy(
        name="wake-one",
        metric=MetricSpec("IF(FILL(tasks, 0) < 1, visible, 0)", (VISIBLE, RUNNING), period, "visible, no task"),
        comparison="GreaterThanOrEqualToThreshold",
        threshold=1,
        evaluation_periods=1,
        datapoints_to_alarm=1,
        adjustment_type="ChangeInCapacity",
        steps=(Step(lower=1, upper=None, adjustment=1),),
        cooldown_seconds=300,
    )
    return ScalingPolicy(
        min_capacity=worker.scaling.min_tasks,
        max_capacity=worker.scaling.max_tasks,
        metric_period_seconds=period,
        reaction_seconds=0,
        acceptable_latency_seconds=acceptable,
        target_tracking=(tracking,),
        step_policies=(wake,) if worker.scaling.min_tasks == 0 else (),
    )


def deployed(worker: WorkerConfig) -> ScalingPolicy:
    # Attribute lookup at call time: the construct's function, including any patch a test applies to it.
    return sla_scaling.derive_policy(worker)


def immediate(worker: WorkerConfig) -> ScalingPolicy:
    return deployed(worker.model_copy(update={"scaling": worker.scaling.model_copy(update={"wake": "immediate"})}))


def build(name: str, worker: WorkerConfig) -> ScalingPolicy:
    """The named policy for `worker`."""
    builders = {"age-step": age_step, "backlog-target": backlog_target, "deployed": deployed, "immediate": immediate}
    return builders[name](worker)
