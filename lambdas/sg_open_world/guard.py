"""Real-time path of `sg-open-world`: judge a group the moment it changes, tell the topic, revoke what is unjustified.

Events handled (EventBridge):
- ``AWS API Call via CloudTrail`` for calls that widen ingress (AuthorizeSecurityGroupIngress,
  ModifySecurityGroupRules) or change what a prefix list admits (ModifyManagedPrefixList,
  RestoreManagedPrefixListVersion): the groups named anywhere in the call, or the groups whose rules use the
  changed list, are judged.
- ``Config Rules Compliance Change`` of `sg-open-world` turning NON_COMPLIANT (only routed here with
  auto-remediation on; the topic already hears of it): the group is judged again as it is now.

Each group is read from EC2 rule by rule (DescribeSecurityGroupRules, with the rule IDs) and decided by
:func:`lambdas.sg_open_world.logic.decide`, the same function the Config rule uses. A NON_COMPLIANT group is
reported to the notifications topic with who made the change; with auto-remediation on, exactly the offending rules
are revoked by ID (RevokeSecurityGroupIngress with SecurityGroupRuleIds) and the message lists each one.

Environment variables:
    MLBASE_RULE_PARAMETERS   JSON of the Config rule's parameters (the stack writes the same object to both)
    MLBASE_WORLD_EXCEPTIONS  JSON list of reviewed exceptions (see logic.parse_exceptions)
    MLBASE_TOPIC_ARN         required; the notifications topic
    MLBASE_AUTO_REMEDIATE    "true" to revoke; anything else reports only
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from lambdas.common.aws import client
from lambdas.sg_open_world.grants import grants_from_rules, prefix_list_ids
from lambdas.sg_open_world.logic import (
    Decision,
    RuleParameters,
    WorldException,
    decide,
    parse_exceptions,
    parse_rule_parameters,
)
from lambdas.sg_open_world.lookups import group_rules, groups_using_prefix_lists, prefix_lists

logger = Logger(service="sg-open-world", child=True)

CLOUDTRAIL = "AWS API Call via CloudTrail"
COMPLIANCE_CHANGE = "Config Rules Compliance Change"
GROUP_CALLS = frozenset({"AuthorizeSecurityGroupIngress", "ModifySecurityGroupRules"})
PREFIX_LIST_CALLS = frozenset({"ModifyManagedPrefixList", "RestoreManagedPrefixListVersion"})
SUBJECT_LIMIT = 100  # SNS subject length


@dataclass(frozen=True)
class GuardSettings:
    params: RuleParameters
    exceptions: Mapping[str, WorldException]
    topic_arn: str
    remediate: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GuardSettings:
        topic = env.get("MLBASE_TOPIC_ARN", "")
        if not topic:
            raise ValueError("MLBASE_TOPIC_ARN must be set (the notifications topic)")
        return cls(
            params=parse_rule_parameters(env.get("MLBASE_RULE_PARAMETERS")),
            exceptions=parse_exceptions(env.get("MLBASE_WORLD_EXCEPTIONS")),
            topic_arn=topic,
            remediate=env.get("MLBASE_AUTO_REMEDIATE", "").strip().lower() == "true",
        )


@dataclass(frozen=True)
class Cause:
    """What made us look: shown in the message so people know whom to ask."""

    who: str | None
    what: str
    when: str | None


def handle(event: Mapping[str, Any], settings: GuardSettings) -> dict[str, Any]:
    detail: Mapping[str, Any] = event.get("detail") or {}
    kind = event.get("detail-type")
    if kind == CLOUDTRAIL:
        if detail.get("errorCode"):
            return {"groups": [], "skipped": f"call failed: {detail['errorCode']}"}
        name = str(detail.get("eventName", ""))
        cause = Cause(_who(detail), name, detail.get("eventTime"))
        if name in PREFIX_LIST_CALLS:
            group_ids = groups_using_prefix_lists(_find(detail.get("requestParameters"), "prefixlistid", "pl-"))
        elif name in GROUP_CALLS:
            call = [detail.get("requestParameters"), detail.get("responseElements")]
            group_ids = sorted(set(_find(call, "groupid", "sg-")))
        else:
            raise ValueError(f"unexpected CloudTrail event {name!r}")
    elif kind == COMPLIANCE_CHANGE:
        group_ids = [str(detail["resourceId"])]
        cause = Cause(None, f"Config rule {detail.get('configRuleName')} found it NON_COMPLIANT", event.get("time"))
    else:
        raise ValueError(f"unexpected event {kind!r}")
    results = [guard_group(group_id, settings, cause) for group_id in group_ids]
    return {"groups": results}


def guard_group(group_id: str, settings: GuardSettings, cause: Cause) -> dict[str, Any]:
    """Decide one group as EC2 has it now; report and (optionally) revoke when it is NON_COMPLIANT."""
    try:
        group = client("ec2").describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "InvalidGroup.NotFound":
            return {"group_id": group_id, "compliance": "NOT_APPLICABLE"}
        raise
    grants = grants_from_rules(group_rules(group_id))
    tags = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
    decision = decide(
        grants,
        tags,
        settings.params,
        prefix_lists=prefix_lists(prefix_list_ids(grants)),
        exception=settings.exceptions.get(group_id),
    )
    result: dict[str, Any] = {"group_id": group_id, "compliance": decision.compliance, "revoked": []}
    logger.info("judged", extra={"group_id": group_id, "annotation": decision.annotation})
    if decision.compliance != "NON_COMPLIANT":
        return result

    revoked: list[str] = []
    failure: str | None = None
    if settings.remediate:
        ids = [g.rule_id for g in decision.offending if g.rule_id]
        try:
            if ids:
                client("ec2").revoke_security_group_ingress(GroupId=group_id, SecurityGroupRuleIds=ids)
            revoked = ids
        except ClientError as error:
            failure = f"{error.response.get('Error', {}).get('Code')}: {error.response.get('Error', {}).get('Message')}"
    _publish(
        settings.topic_arn, group, decision, cause, revoked=settings.remediate and failure is None, failure=failure
    )
    result["revoked"] = revoked
    if failure:
        # Fail the invocation, so Lambda retries it and, after that, the event lands in the dead-letter queue.
        raise RuntimeError(f"could not revoke world ingress on {group_id}: {failure}")
    return result


def message(group: Mapping[str, Any], decision: Decision, cause: Cause, *, revoked: bool, failure: str | None) -> str:
    """The text people read in Slack and e-mail: the group, the finding, who, and each rule revoked (or to revoke)."""
    name = group.get("GroupName")
    lines = [
        f"Security group {group['GroupId']}{f' ({name})' if name else ''} in VPC {group.get('VpcId', '?')} is open "
        f"to the world: {decision.annotation}",
        f"Cause: {cause.what}"
        + (f" by {cause.who}" if cause.who else "")
        + (f" at {cause.when}" if cause.when else ""),
    ]
    rules = [f"• {g.rule_id or 'rule'}: {g.describe()}" for g in decision.offending]
    if revoked:
        lines.append(
            f"Revoked {len(rules)} ingress rule{'s' if len(rules) != 1 else ''}; every other rule is untouched:"
        )
    elif failure:
        lines.append(f"Revoking failed ({failure}); these rules are still in place:")
    else:
        lines.append("Auto-remediation is off, nothing was revoked. Rules to revoke or justify:")
    lines.extend(rules)
    return "\n".join(lines)


def _publish(
    topic_arn: str, group: Mapping[str, Any], decision: Decision, cause: Cause, *, revoked: bool, failure: str | None
) -> None:
    verb = "revoked world ingress on" if revoked else "world-open security group"
    subject = f"mlbase: {verb} {group['GroupId']}"[:SUBJECT_LIMIT]
    client("sns").publish(
        TopicArn=topic_arn,
        Subject=subject,
        Message=message(group, decision, cause, revoked=revoked, failure=failure),
    )


def _who(detail: Mapping[str, Any]) -> str | None:
    identity = detail.get("userIdentity") or {}
    arn = identity.get("arn") if isinstance(identity, Mapping) else None
    return str(arn) if arn else None


def _find(value: Any, key: str, prefix: str) -> Iterable[str]:
    """Every string value under a key named `key` (any case) that starts with `prefix`, anywhere in a CloudTrail
    record: the request and response shapes differ by call (groupId, GroupId, securityGroupRuleSet.items[].groupId)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if str(k).lower() == key and isinstance(v, str) and v.startswith(prefix):
                yield v
            else:
                yield from _find(v, key, prefix)
    elif isinstance(value, list):
        for item in value:
            yield from _find(item, key, prefix)
