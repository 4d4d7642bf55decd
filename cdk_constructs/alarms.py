"""The platform's "something failed" alarm: the first datapoint at or above one, and silence is fine."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct


def alarm_on_any(
    scope: Construct,
    id_: str,
    *,
    metric: cloudwatch.IMetric,
    description: str,
    action: cloudwatch.IAlarmAction,
    alarm_name: str | None = None,
) -> cloudwatch.Alarm:
    """An alarm on one period of `metric` reaching 1 (a dead letter, a failed run, a CIS filter match) that calls
    `action` on entering ALARM; missing data is not a breach, since quiet periods publish nothing."""
    alarm = cloudwatch.Alarm(
        scope,
        id_,
        alarm_name=alarm_name,
        alarm_description=description,
        metric=metric,
        threshold=1,
        evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    alarm.add_alarm_action(action)
    return alarm
