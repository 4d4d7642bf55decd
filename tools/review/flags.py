"""The changes a reviewer must not miss, found in a :class:`~tools.review.diff.StackDiff`.

Each rule is a pure function from one stack's diff to a list of :class:`Flag`; :func:`flag_stack` runs them all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tools.review.diff import ResourceChange, StackDiff
from tools.review.spec import property_replacement, replacing_properties

CATEGORIES: dict[str, str] = {
    "replacement-fails": "Replacement that fails (fixed physical name)",
    "stateful": "Stateful resource replaced or removed",
    "data-protection": "Data protection weakened",
    "iam": "IAM permissions widened",
    "security-group": "Security group rules widened",
    "resource-policy": "Bucket or key policy changed",
    "encryption-logging": "Encryption or logging removed",
    "nag": "cdk-nag acknowledgement added",
}

STATEFUL_TYPES = frozenset(
    {
        "AWS::S3::Bucket",
        "AWS::DynamoDB::Table",
        "AWS::DynamoDB::GlobalTable",
        "AWS::SQS::Queue",
        "AWS::KMS::Key",
        "AWS::Logs::LogGroup",
        "AWS::EFS::FileSystem",
        "AWS::RDS::DBInstance",
        "AWS::RDS::DBCluster",
        "AWS::ECR::Repository",
        "AWS::Backup::BackupVault",
        "AWS::SecretsManager::Secret",
        "AWS::EC2::Volume",
    }
)
# Resources whose removal stops an audit trail even though they hold no data themselves.
LOGGING_TYPES = frozenset(
    {
        "AWS::CloudTrail::Trail",
        "AWS::Config::ConfigurationRecorder",
        "AWS::Config::DeliveryChannel",
        "AWS::EC2::FlowLog",
    }
)
RESOURCE_POLICY_TYPES = frozenset({"AWS::S3::BucketPolicy"})
WORLD = frozenset({"0.0.0.0/0", "::/0"})

_PROTECTIVE_KEY = re.compile(r"encrypt|kms|sse|logging|logfile|accesslog|logdestination|logconfig", re.IGNORECASE)


@dataclass(frozen=True)
class Flag:
    """One must-not-miss change."""

    category: str
    stage: str
    stack: str
    logical_id: str
    type: str
    message: str


def render(value: Any) -> str:
    """Compact, readable form of a template value: ``Ref``/``GetAtt``/``Join``/``Sub`` as ``${...}`` text."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return f"${{{arg}}}"
        if fn == "Fn::GetAtt":
            return "${" + (".".join(arg) if isinstance(arg, list) else str(arg)) + "}"
        if fn == "Fn::Join" and isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list):
            return str(arg[0]).join(render(part) for part in arg[1])
        if fn == "Fn::Sub":
            return render(arg[0]) if isinstance(arg, list) else render(arg)
        if fn == "Fn::ImportValue":
            return f"import({render(arg)})"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# --- IAM ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Grant:
    """One action on one resource for one principal under one condition: the unit of widening."""

    document: str
    effect: str
    action: str
    resource: str
    principal: str
    condition: str


def _documents(value: Any, path: str = "") -> Iterable[tuple[str, dict[str, Any]]]:
    """Every policy document (a dict with a ``Statement``) inside a resource's properties, with its path."""
    if isinstance(value, str) and value.lstrip().startswith("{") and "Statement" in value:
        try:
            value = json.loads(value)
        except ValueError:
            return
    if isinstance(value, dict):
        if "Statement" in value:
            yield path or "PolicyDocument", value
            return
        for key, item in value.items():
            yield from _documents(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _documents(item, f"{path}[{index}]")


def _principals(statement: dict[str, Any], attached_to: list[str]) -> list[str]:
    for key in ("Principal", "NotPrincipal"):
        if key in statement:
            raw = statement[key]
            if raw == "*":
                return ["*" if key == "Principal" else "NOT *"]
            prefix = "NOT " if key == "NotPrincipal" else ""
            return [f"{prefix}{kind}:{render(p)}" for kind, items in raw.items() for p in _as_list(items)]
    return attached_to or ["(attached identity)"]


def _attachments(resource: dict[str, Any]) -> list[str]:
    """Who an identity policy applies to: its Roles/Users/Groups, or the role itself for inline policies."""
    props = resource.get("Properties") or {}
    targets = [f"{key[:-1].lower()}:{render(t)}" for key in ("Roles", "Users", "Groups") for t in props.get(key) or []]
    return targets or ["(this identity)"]


def grants(resource: dict[str, Any] | None) -> set[Grant]:
    """All grants of every policy document in one resource, including a Lambda permission's principal."""
    if not resource:
        return set()
    props = resource.get("Properties") or {}
    found: set[Grant] = set()
    if resource.get("Type") == "AWS::Lambda::Permission":
        condition = render({k: props[k] for k in ("SourceArn", "SourceAccount") if k in props})
        found.add(
            Grant(
                "Permission",
                "Allow",
                render(props.get("Action")),
                render(props.get("FunctionName")),
                f"Service:{render(props.get('Principal'))}",
                condition,
            )
        )
        return found
    attached = _attachments(resource)
    for path, document in _documents(props):
        for statement in _as_list(document.get("Statement")):
            effect = str(statement.get("Effect", "Allow"))
            actions = [render(a) for a in _as_list(statement.get("Action"))]
            actions += [f"NOT {render(a)}" for a in _as_list(statement.get("NotAction"))]
            resources = [render(r) for r in _as_list(statement.get("Resource"))]
            resources += [f"NOT {render(r)}" for r in _as_list(statement.get("NotResource"))]
            condition = render(statement["Condition"]) if "Condition" in statement else ""
            principals = _principals(statement, attached if "AssumeRole" not in path else [])
            for action in actions or ["-"]:
                for res in resources or ["-"]:
                    for principal in principals:
                        found.add(Grant(path, effect, action, res, principal, condition))
    for arn in props.get("ManagedPolicyArns") or []:
        found.add(Grant("ManagedPolicyArns", "Allow", f"managed policy {render(arn)}", "-", attached[0], ""))
    return found


def _is_wildcard(grant: Grant) -> bool:
    return "*" in grant.action or "*" in grant.resource or "*" in grant.principal.split(":", 1)[-1]


def _short(values: Iterable[str], limit: int = 6) -> str:
    items = sorted(set(values))
    shown = ", ".join(f"`{v}`" for v in items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def iam_flags(diff: StackDiff) -> list[Flag]:
    """Statements that gain actions, resources or principals (any ``*`` called out), and removed Deny statements."""
    flags: list[Flag] = []
    for change in diff.resources:
        before, after = grants(change.old), grants(change.new)
        gained = sorted(g for g in after - before if g.effect == "Allow")
        lost_denies = sorted(g for g in before - after if g.effect == "Deny")
        if gained:
            old_allows = [g for g in before if g.effect == "Allow"]
            parts = []
            for label, attr in (("actions", "action"), ("resources", "resource"), ("principals", "principal")):
                new_values = {getattr(g, attr) for g in gained} - {getattr(g, attr) for g in old_allows} - {"-"}
                if new_values:
                    parts.append(f"gains {label} {_short(new_values)}")
            if not parts:
                parts.append("widens existing statements (new combinations or relaxed conditions)")
            wild = [g for g in gained if _is_wildcard(g)]
            if wild:
                values = [v for g in wild for v in (g.action, g.resource, g.principal) if "*" in v]
                parts.append(f"**wildcard** {_short(values)}")
            flags.append(_flag("iam", diff, change, "; ".join(parts)))
        if lost_denies:
            flags.append(_flag("iam", diff, change, f"Deny removed for {_short(g.action for g in lost_denies)}"))
    return flags


# --- Security groups --------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Rule:
    direction: str
    group: str
    protocol: str
    ports: str
    peer: str

    def __str__(self) -> str:
        arrow = "from" if self.direction == "ingress" else "to"
        return f"{self.direction} {self.protocol} {self.ports} {arrow} {self.peer} on {self.group}"


_PEER_KEYS = (
    "CidrIp",
    "CidrIpv6",
    "SourceSecurityGroupId",
    "DestinationSecurityGroupId",
    "SourcePrefixListId",
    "DestinationPrefixListId",
)


def _rule(direction: str, group: str, spec: dict[str, Any]) -> Rule:
    protocol = render(spec.get("IpProtocol", "-1"))
    protocol = "all" if protocol == "-1" else protocol
    low, high = spec.get("FromPort"), spec.get("ToPort")
    if protocol == "all":
        ports = "traffic"
    elif (low in (None, -1) and high in (None, -1)) or (low == 0 and high == 65535):
        ports = "all ports"
    else:
        ports = f"port {low}" if low == high else f"ports {low}-{high}"
    peer = next((render(spec[k]) for k in _PEER_KEYS if k in spec), "?")
    return Rule(direction, group, protocol, ports, peer)


def security_group_rules(resources: dict[str, dict[str, Any]]) -> set[Rule]:
    """Every ingress/egress rule in a template, inline or standalone."""
    rules: set[Rule] = set()
    for logical_id, res in resources.items():
        props = res.get("Properties") or {}
        kind = res.get("Type")
        if kind == "AWS::EC2::SecurityGroup":
            for direction, key in (("ingress", "SecurityGroupIngress"), ("egress", "SecurityGroupEgress")):
                rules.update(_rule(direction, logical_id, spec) for spec in props.get(key) or [])
        elif kind in ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress"):
            direction = "ingress" if kind.endswith("Ingress") else "egress"
            rules.add(_rule(direction, render(props.get("GroupId")), props))
    return rules


def security_group_flags(diff: StackDiff) -> list[Flag]:
    """New rules; ingress from 0.0.0.0/0 or ::/0 is called out."""
    before = security_group_rules((diff.old or {}).get("Resources") or {})
    after = security_group_rules((diff.new or {}).get("Resources") or {})
    flags = []
    for rule in sorted(after - before):
        world = rule.peer in WORLD
        prefix = "**open to the world**: " if world and rule.direction == "ingress" else ""
        group = rule.group.strip("${}").split(".")[0]
        flags.append(
            Flag("security-group", diff.stage, diff.stack, group, "AWS::EC2::SecurityGroup", prefix + str(rule))
        )
    return flags


# --- Stateful, policies, encryption, nag ------------------------------------------------------------------------


def _flag(category: str, diff: StackDiff, change: ResourceChange, message: str) -> Flag:
    return Flag(category, diff.stage, diff.stack, change.logical_id, change.type, message)


def _is_stateful(change: ResourceChange) -> bool:
    return change.type in STATEFUL_TYPES or "archive" in change.logical_id.lower()


def stateful_flags(diff: StackDiff) -> list[Flag]:
    """Removal or replacement of buckets, tables, queues, keys, log groups and the archive."""
    flags = []
    added_by_type: dict[str, list[str]] = {}
    for change in diff.resources:
        if change.kind == "added":
            added_by_type.setdefault(change.type, []).append(change.logical_id)
    for change in diff.resources:
        if not _is_stateful(change):
            continue
        if change.kind == "removed":
            retained = (change.old or {}).get("DeletionPolicy") in ("Retain", "RetainExceptOnCreate")
            fate = "orphaned (retained in the account, no longer managed)" if retained else "**deleted** with its data"
            message = f"removed: {fate}"
            twins = added_by_type.get(change.type, [])
            if len(twins) == 1:
                message += f"; looks like a logical-ID change to `{twins[0]}` (a new, empty resource is created)"
            flags.append(_flag("stateful", diff, change, message))
        elif change.kind == "modified" and change.replacement != "no":
            flags.append(_flag("stateful", diff, change, replacement_text(change)))
        elif change.kind == "modified" and "DeletionPolicy" in change.changed:
            old_policy = (change.old or {}).get("DeletionPolicy", "Delete")
            new_policy = (change.new or {}).get("DeletionPolicy", "Delete")
            if new_policy == "Delete" and old_policy != "Delete":
                flags.append(_flag("stateful", diff, change, f"DeletionPolicy {old_policy} -> Delete"))
    return flags


def replacement_text(change: ResourceChange) -> str:
    """``**replaced** (changed: KeySchema)``, and for a carried replacement what it is replaced with."""
    verdict = "**replaced**" if change.replacement == "yes" else "may be replaced"
    own = [p for p in change.changed if p == "Type" or property_replacement(change.type, p) != "no"]
    if change.carried_from:
        via = ", ".join(f"`{c}`" for c in change.carried_from)
        return f"{verdict} with {via}, which it references (in {', '.join(own)})"
    return f"{verdict} (changed: {', '.join(own)})"


# CloudFormation creates the replacement before it deletes the old resource, so a name that stays the same is still
# taken: "If you specify a name, you can't perform updates that require replacement of this resource."
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-name.html)
def _name_properties(resource_type: str) -> list[str]:
    return [p for p, v in replacing_properties(resource_type).items() if p.endswith("Name") and v == "yes"]


def replacement_fails_flags(diff: StackDiff) -> list[Flag]:
    """A replacement of a resource whose physical name is fixed in the template and stays the same."""
    flags = []
    for change in diff.resources:
        if change.kind != "modified" or change.replacement == "no":
            continue
        for prop in _name_properties(change.type):
            name = change.new_props.get(prop)
            if name is not None and change.old_props.get(prop) == name:
                message = (
                    f"{'replacement' if change.replacement == 'yes' else 'a possible replacement'} **fails**: "
                    f"{prop} `{render(name)}` is fixed, and the new resource is created before the old one is gone"
                )
                flags.append(_flag("replacement-fails", diff, change, message))
    return flags


def _get(value: Any, *path: str | int) -> Any:
    for key in path:
        if isinstance(key, int):
            value = value[key] if isinstance(value, list) and len(value) > key else None
        else:
            value = value.get(key) if isinstance(value, dict) else None
    return value


def _on(value: Any) -> bool:
    return value is True or value in ("true", "True", "Enabled", "ENABLED")


def _retention_days(rule: Any) -> int | None:
    retention = _get(rule, "DefaultRetention") or {}
    if "Days" in retention:
        return int(retention["Days"])
    if "Years" in retention:
        return int(retention["Years"]) * 365
    return None


def _object_lock(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    lost = []
    old_on = _on(old.get("ObjectLockEnabled")) or _on(_get(old, "ObjectLockConfiguration", "ObjectLockEnabled"))
    new_on = _on(new.get("ObjectLockEnabled")) or _on(_get(new, "ObjectLockConfiguration", "ObjectLockEnabled"))
    if old_on and not new_on:
        return ["Object Lock **turned off**: write-once protection of the objects is lost"]
    if not old_on and new_on:
        lost.append("Object Lock turned on (cannot be turned off again)")
    old_rule, new_rule = _get(old, "ObjectLockConfiguration", "Rule"), _get(new, "ObjectLockConfiguration", "Rule")
    old_mode, new_mode = _get(old_rule, "DefaultRetention", "Mode"), _get(new_rule, "DefaultRetention", "Mode")
    old_days, new_days = _retention_days(old_rule), _retention_days(new_rule)
    if old_days is not None and new_days is None:
        lost.append("Object Lock default retention **removed**: new objects are no longer locked")
    elif old_mode != new_mode and old_mode is not None:
        weaker = old_mode == "COMPLIANCE"
        note = " (privileged users may now shorten or remove locks)" if weaker else ""
        lost.append(f"Object Lock mode {'**' * weaker}{old_mode} -> {new_mode}{'**' * weaker}{note}")
    if old_days is not None and new_days is not None and old_days != new_days:
        shorter = new_days < old_days
        lost.append(
            f"Object Lock retention {'**shortened**' if shorter else 'lengthened'} {old_days} -> {new_days} days"
        )
    if old_days is None and new_days is not None and old_on:
        lost.append(f"Object Lock default retention set to {new_days} days")
    return lost


def _lifecycle_days(props: dict[str, Any]) -> dict[str, tuple[int | None, int | None]]:
    """Per lifecycle rule (by Id, else position): (expiration days, noncurrent-version expiration days)."""
    rules = _get(props, "LifecycleConfiguration", "Rules") or []
    out = {}
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict) or rule.get("Status", "Enabled") != "Enabled":
            continue
        current = rule.get("ExpirationInDays")
        noncurrent = _get(rule, "NoncurrentVersionExpiration", "NoncurrentDays") or rule.get(
            "NoncurrentVersionExpirationInDays"
        )
        out[str(rule.get("Id", index))] = (current, noncurrent)
    return out


def _shortened(label: str, old: int | None, new: int | None) -> str | None:
    """``None`` (kept for ever) is longer than any number of days."""
    if new is not None and (old is None or int(new) < int(old)):
        return f"{label} **shortened** {old if old is not None else 'never expires'} -> {new} days"
    return None


_PUBLIC_ACCESS = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
_DELETION_PROTECTION = re.compile(r"(^|\.)DeletionProtection(Enabled)?$")


def data_protection_flags(diff: StackDiff) -> list[Flag]:
    """Object Lock, versioning, point-in-time recovery, deletion protection, retention, public access block."""
    flags = []
    for change in diff.resources:
        if change.kind != "modified":
            continue
        old, new = change.old_props, change.new_props
        found: list[str] = []
        if change.type == "AWS::S3::Bucket":
            found += _object_lock(old, new)
            old_status = _get(old, "VersioningConfiguration", "Status")
            new_status = _get(new, "VersioningConfiguration", "Status")
            if old_status == "Enabled" and new_status != "Enabled":
                found.append(f"versioning **{'suspended' if new_status else 'removed'}**: overwritten objects are lost")
            old_block, new_block = old.get("PublicAccessBlockConfiguration"), new.get("PublicAccessBlockConfiguration")
            relaxed = [k for k in _PUBLIC_ACCESS if _on(_get(old_block, k)) and not _on(_get(new_block, k))]
            if relaxed:
                found.append(f"public access block **relaxed**: {', '.join(relaxed)} off")
            before, after = _lifecycle_days(old), _lifecycle_days(new)
            for rule, (days, noncurrent) in after.items():
                old_days, old_noncurrent = before.get(rule, (None, None))
                for text in (
                    _shortened(f"lifecycle rule {rule}: expiration", old_days, days),
                    _shortened(f"lifecycle rule {rule}: noncurrent versions' expiration", old_noncurrent, noncurrent),
                ):
                    if text:
                        found.append(text)
        if change.type == "AWS::Logs::LogGroup":
            text = _shortened("log retention", old.get("RetentionInDays"), new.get("RetentionInDays"))
            if text:
                found.append(text)
        if change.type in ("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable"):
            pitr = ("PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled")
            if _on(_get(old, *pitr)) and not _on(_get(new, *pitr)):
                found.append("point-in-time recovery **turned off**")
        before_leaves, after_leaves = _leaves(old), _leaves(new)
        for path, value in before_leaves.items():
            if _DELETION_PROTECTION.search(path) and _on(value) and not _on(after_leaves.get(path)):
                found.append(f"deletion protection **turned off** (`{path}`)")
        if found:
            flags.append(_flag("data-protection", diff, change, "; ".join(found)))
    return flags


def resource_policy_flags(diff: StackDiff) -> list[Flag]:
    """Any change to a bucket policy or a KMS key policy, narrowing included: both guard data directly."""
    flags = []
    for change in diff.resources:
        if change.kind == "modified" and change.old_props == change.new_props:
            continue
        if change.type in RESOURCE_POLICY_TYPES:
            target = render((change.new or change.old or {}).get("Properties", {}).get("Bucket"))
            flags.append(_flag("resource-policy", diff, change, f"bucket policy {change.kind} (bucket {target})"))
        elif change.type == "AWS::KMS::Key" and change.old and change.new and "KeyPolicy" in change.changed:
            flags.append(_flag("resource-policy", diff, change, "key policy modified"))
        elif change.type == "AWS::KMS::Key" and change.kind == "removed":
            flags.append(_flag("resource-policy", diff, change, "key (and its key policy) removed"))
    return flags


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and not (len(value) == 1 and next(iter(value)).startswith(("Ref", "Fn::"))):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_leaves(item, f"{path}.{key}" if path else key))
        return out
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            out.update(_leaves(item, f"{path}[{index}]"))
        return out
    return {path: value}


_OFF = {False, "false", "False", "Disabled", "DISABLED", "disabled"}


def _is_off(value: Any) -> bool:
    """A switched-off setting; intrinsic functions (dicts) are never "off"."""
    return isinstance(value, str | bool) and value in _OFF


def encryption_logging_flags(diff: StackDiff) -> list[Flag]:
    """Encryption/logging settings that disappear or turn off, and removed trails, recorders and flow logs."""
    flags = []
    for change in diff.resources:
        if change.kind == "removed" and change.type in LOGGING_TYPES:
            flags.append(_flag("encryption-logging", diff, change, f"{change.type} removed"))
            continue
        if change.kind != "modified":
            continue
        before, after = _leaves(change.old_props), _leaves(change.new_props)
        lost = []
        for path, value in before.items():
            if not _PROTECTIVE_KEY.search(path):
                continue
            if path not in after:
                lost.append(f"`{path}` removed")
            elif _is_off(after[path]) and not _is_off(value):
                lost.append(f"`{path}` {render(value)} -> {render(after[path])}")
        lost += _weakened_encryption(change)
        if lost:
            flags.append(_flag("encryption-logging", diff, change, "; ".join(lost)))
    return flags


_KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")


def _weakened_encryption(change: ResourceChange) -> list[str]:
    """Encryption that stays on but protects less: SSE-KMS to SSE-S3, a KMS key without rotation."""
    old, new = change.old_props, change.new_props
    found = []
    if change.type == "AWS::S3::Bucket":
        path = ("BucketEncryption", "ServerSideEncryptionConfiguration", 0, "ServerSideEncryptionByDefault")
        before, after = _get(old, *path, "SSEAlgorithm"), _get(new, *path, "SSEAlgorithm")
        if before in _KMS_ALGORITHMS and after is not None and after not in _KMS_ALGORITHMS:
            found.append(f"encryption **weakened** {before} -> {after} (no key policy guards the objects)")
    if change.type == "AWS::KMS::Key" and _on(old.get("EnableKeyRotation")) and not _on(new.get("EnableKeyRotation")):
        found.append("key rotation **turned off**")
    return found


def _acks(metadata: Any) -> set[tuple[str, str, str]]:
    """``(rule id, applies_to, reason)`` of every cdk-nag acknowledgement in a Metadata block."""
    nag = (metadata or {}).get("cdk_nag") or {}
    found = set()
    for rule in nag.get("rules_to_suppress") or []:
        applies = ", ".join(render(a) for a in _as_list(rule.get("applies_to")))
        found.add((str(rule.get("id")), applies, str(rule.get("reason", ""))))
    return found


def nag_flags(diff: StackDiff) -> list[Flag]:
    """cdk-nag acknowledgements that are new, on a resource or stack-wide."""
    flags = []

    def emit(logical_id: str, kind: str, old_meta: Any, new_meta: Any) -> None:
        old_keys = {(i, a) for i, a, _ in _acks(old_meta)}
        for rule_id, applies, reason in sorted(_acks(new_meta)):
            if (rule_id, applies) not in old_keys:
                scope = f" on {applies}" if applies else ""
                flags.append(Flag("nag", diff.stage, diff.stack, logical_id, kind, f"`{rule_id}`{scope}: {reason}"))

    for change in diff.resources:
        emit(change.logical_id, change.type, (change.old or {}).get("Metadata"), (change.new or {}).get("Metadata"))
    emit("(stack)", "stack", (diff.old or {}).get("Metadata"), (diff.new or {}).get("Metadata"))
    return flags


RULES: tuple[Callable[[StackDiff], list[Flag]], ...] = (
    replacement_fails_flags,
    stateful_flags,
    data_protection_flags,
    iam_flags,
    security_group_flags,
    resource_policy_flags,
    encryption_logging_flags,
    nag_flags,
)


def flag_stack(diff: StackDiff) -> list[Flag]:
    """Every flag of one stack, grouped by category in :data:`CATEGORIES` order."""
    flags = [flag for rule in RULES for flag in rule(diff)]
    order = list(CATEGORIES)
    return sorted(flags, key=lambda f: order.index(f.category))
