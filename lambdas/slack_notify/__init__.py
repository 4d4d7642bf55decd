"""SNS to Slack notifier."""
