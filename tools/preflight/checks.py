"""Preflight decisions as plain functions of what was read from the account: one `Result` line each.

Kept apart from the AWS calls so that each decision is tested directly, including those moto cannot serve
(Service Quotas answers only VPC quotas there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["ok", "missing", "low", "conflict", "error"]


@dataclass(frozen=True)
class Result:
    status: Status
    check: str
    detail: str
    fix: str = ""

    @property
    def blocks(self) -> bool:
        return self.status != "ok"

    def line(self) -> str:
        text = f"{self.status:<8} {self.check}: {self.detail}"
        return f"{text}; fix: {self.fix}" if self.fix and self.blocks else text


def bootstrap(region: str, version: str | None, floor: int, toolkit_status: str | None, fix: str) -> Result:
    """`version` is the value of the bootstrap version parameter (None: absent); `toolkit_status` the CDKToolkit's."""
    check = f"CDK bootstrap in {region}"
    if version is None or toolkit_status is None:
        missing = "CDKToolkit stack" if toolkit_status is None else "bootstrap version parameter"
        return Result("missing", check, f"no {missing}", fix)
    if not toolkit_status.endswith("_COMPLETE") or "ROLLBACK" in toolkit_status:
        return Result("error", check, f"CDKToolkit is {toolkit_status}", fix)
    if not version.isdigit() or int(version) < floor:
        return Result("low", check, f"version {version}, the templates need >= {floor}", fix)
    return Result("ok", check, f"CDKToolkit {toolkit_status}, version {version} (>= {floor})")


def trusts(document: dict[str, Any] | None, account: str) -> bool:
    """Whether a role trust policy lets principals of `account` assume the role."""
    for statement in (document or {}).get("Statement", []):
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if statement.get("Effect") != "Allow" or not {"sts:AssumeRole", "sts:*", "*"} & set(actions):
            continue
        principal = statement.get("Principal", {})
        aws = principal.get("AWS", []) if isinstance(principal, dict) else []
        for p in [aws] if isinstance(aws, str) else aws:
            if p in (account, f"arn:aws:iam::{account}:root"):
                return True
    return False


def bootstrap_trust(role: str, document: dict[str, Any] | None, account: str, fix: str) -> Result:
    check = f"bootstrap role {role.rsplit('/', 1)[-1]}"
    if document is None:
        return Result("missing", check, "role does not exist", fix)
    if not trusts(document, account):
        return Result("missing", check, f"does not trust account {account}", fix)
    return Result("ok", check, f"trusts account {account}")


def exists(check: str, found: bool, detail_ok: str, detail_missing: str, fix: str) -> Result:
    return Result("ok", check, detail_ok) if found else Result("missing", check, detail_missing, fix)


def quota(name: str, code: str, region: str, value: float | None, needed: int, why: str, fix: str) -> Result:
    """`value` None: the quota could not be read, which blocks as well (nothing was verified)."""
    check = f"quota {name} ({code}) in {region}"
    if value is None:
        return Result("error", check, f"could not be read; needs {needed} ({why})", fix)
    if value < needed:
        return Result("low", check, f"{value:g}, needs {needed} ({why})", fix)
    return Result("ok", check, f"{value:g} >= {needed} ({why})")


def config_recorder(
    region: str, existing: Sequence[str], ours: Sequence[str], created_by: str | None, rules: bool, what: str, fix: str
) -> Result:
    """`existing`: the account's recorders (or delivery channels) in `region`; `ours`: those a stack already owns.

    `created_by`: the stack that creates one (None when the config keeps the account's own); `rules`: whether Config
    rules there need a recorder to evaluate anything.
    """
    check = f"Config {what} in {region}"
    foreign = [name for name in existing if name not in ours]
    if created_by and foreign:
        detail = f"{foreign[0]!r} exists and {created_by} would create a second (AWS allows one per region)"
        return Result("conflict", check, detail, fix.format(name=foreign[0]))
    if created_by:
        return Result(
            "ok", check, f"{existing[0]!r} belongs to {created_by}" if existing else f"{created_by} creates it"
        )
    if not existing and rules:
        return Result("missing", check, "none, and the config keeps the account's own for the Config rules", fix)
    return Result("ok", check, f"{existing[0]!r} is kept" if existing else "not needed")


def organization(
    feature_set: str | None,
    scp_status: str | None,
    members: dict[str, bool],
    fix_features: str,
    fix_scp: str,
    fix_member: str,
) -> list[Result]:
    """`feature_set` None: no organization; `scp_status` of the root's SERVICE_CONTROL_POLICY type (None: absent)."""
    results = [
        exists(
            "AWS Organizations",
            feature_set == "ALL",
            "all features",
            "no organization" if feature_set is None else f"feature set {feature_set}, SCPs need ALL",
            fix_features,
        ),
        exists(
            "SCP policy type",
            scp_status == "ENABLED",
            "enabled on the root",
            f"{(scp_status or 'not enabled').lower()} on the root",
            fix_scp,
        ),
    ]
    for account, member in sorted(members.items()):
        results.append(exists(f"account {account}", member, "member of the organization", "not a member", fix_member))
    return results
