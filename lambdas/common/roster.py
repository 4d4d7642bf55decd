"""The researcher roster the CDK passes to the workbench Lambdas (`MLBASE_ROSTER`), parsed in one place."""

from __future__ import annotations

import json
from dataclasses import dataclass

ROSTER_KEYS = ("name", "slack_user_id", "instance_type")


@dataclass(frozen=True)
class RosterEntry:
    name: str
    slack_user_id: str
    instance_type: str


def parse_roster(raw: str) -> dict[str, RosterEntry]:
    """`MLBASE_ROSTER`: a JSON list of {"name", "slack_user_id", "instance_type"}, keyed here by name."""
    try:
        items = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"MLBASE_ROSTER is not JSON: {exc}") from None
    if not isinstance(items, list):
        raise ValueError("MLBASE_ROSTER must be a JSON list of {name, slack_user_id, instance_type}")
    roster: dict[str, RosterEntry] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not all(isinstance(item.get(key), str) and item[key] for key in ROSTER_KEYS):
            raise ValueError(f"MLBASE_ROSTER[{index}] needs non-empty strings name, slack_user_id, instance_type")
        if item["name"] in roster:
            raise ValueError(f"MLBASE_ROSTER[{index}].name {item['name']!r} appears twice")
        roster[item["name"]] = RosterEntry(item["name"], item["slack_user_id"], item["instance_type"])
    return roster
