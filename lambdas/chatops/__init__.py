"""Slack `/gpu` command: list, inspect, start, stop and keep research GPU workstations from Slack."""
