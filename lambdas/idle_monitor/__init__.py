"""Idle monitor: warns owners in Slack about idle GPU instances and, when enabled, stops them."""
