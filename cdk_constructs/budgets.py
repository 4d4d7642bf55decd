"""Monthly AWS cost budgets that notify an SNS topic at percentages of actual and forecast spend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_sns as sns
from constructs import Construct


def notifications(
    topic_arn: str, *, actual_percentages: Sequence[int], forecast_percentages: Sequence[int]
) -> list[budgets.CfnBudget.NotificationWithSubscribersProperty]:
    """One notification per threshold, each to the topic (whose subscribers include the e-mail addresses)."""
    subscriber = budgets.CfnBudget.SubscriberProperty(subscription_type="SNS", address=topic_arn)
    kinds = [("ACTUAL", p) for p in actual_percentages] + [("FORECASTED", p) for p in forecast_percentages]
    return [
        budgets.CfnBudget.NotificationWithSubscribersProperty(
            notification=budgets.CfnBudget.NotificationProperty(
                notification_type=kind,
                comparison_operator="GREATER_THAN",
                threshold=percentage,
                threshold_type="PERCENTAGE",
            ),
            subscribers=[subscriber],
        )
        for kind, percentage in kinds
    ]


class CostBudget(Construct):
    """A monthly USD cost budget named `budget_name`, notifying `topic` at the given percentages.

    `cost_filters` narrows what counts, in the Budgets API's terms: `{"LinkedAccount": [id]}` keeps a payer
    account's budget to its own spend; `{"TagKeyValue": ["user:Owner$alice"]}` counts one researcher's resources
    (the `Owner` tag must be activated as a cost allocation tag in the payer account).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        budget_name: str,
        monthly_usd: float,
        topic: sns.ITopic,
        actual_percentages: Sequence[int],
        forecast_percentages: Sequence[int],
        cost_filters: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.budget = budgets.CfnBudget(
            self,
            "Budget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=budget_name,
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=monthly_usd, unit="USD"),
                cost_filters={key: list(values) for key, values in (cost_filters or {}).items()} or None,
            ),
            notifications_with_subscribers=notifications(
                topic.topic_arn,
                actual_percentages=actual_percentages,
                forecast_percentages=forecast_percentages,
            ),
        )
        # Budgets checks at creation that it may publish: the topic's policy must exist first.
        self.budget.node.add_dependency(topic)
