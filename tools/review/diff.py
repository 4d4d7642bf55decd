"""Resource-level difference between two CloudFormation templates of one stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tools.review.spec import Replacement, property_replacement

ChangeKind = Literal["added", "removed", "modified"]

# CDK bookkeeping that differs between CLI and in-process synths and says nothing about the infrastructure.
_IGNORED_TYPES = {"AWS::CDK::Metadata"}
# Resource attributes outside Properties that matter to a reviewer.
_ATTRIBUTES = ("DeletionPolicy", "UpdateReplacePolicy", "DependsOn", "Condition", "UpdatePolicy", "CreationPolicy")

_ORDER: dict[Replacement, int] = {"no": 0, "maybe": 1, "yes": 2}


@dataclass(frozen=True)
class ResourceChange:
    """One added, removed or modified resource."""

    logical_id: str
    type: str
    kind: ChangeKind
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    # Top-level property names (and resource attributes such as DeletionPolicy) that differ.
    changed: tuple[str, ...] = ()
    replacement: Replacement = "no"

    @property
    def old_props(self) -> dict[str, Any]:
        return dict((self.old or {}).get("Properties") or {})

    @property
    def new_props(self) -> dict[str, Any]:
        return dict((self.new or {}).get("Properties") or {})


@dataclass(frozen=True)
class StackDiff:
    """All differences in one stack; ``old``/``new`` are ``None`` when the whole stack is added/removed."""

    stage: str
    stack: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    resources: tuple[ResourceChange, ...] = ()
    # Section name (Outputs, Parameters, ...) -> changed keys with a +/-/~ marker.
    other: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.resources and not self.other and self.old is not None and self.new is not None


# Metadata the CLI adds (construct paths, asset locations) that in-process synths such as the snapshot test omit.
_IGNORED_METADATA = ("aws:cdk:path", "aws:asset:")


def _comparable(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without bookkeeping metadata, so a CLI synth and an in-process synth compare equal."""
    metadata = {k: v for k, v in (resource.get("Metadata") or {}).items() if not k.startswith(_IGNORED_METADATA)}
    result = {k: v for k, v in resource.items() if k != "Metadata"}
    if metadata:
        result["Metadata"] = metadata
    return result


def _resources(template: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    res = (template or {}).get("Resources") or {}
    return {k: _comparable(v) for k, v in res.items() if v.get("Type") not in _IGNORED_TYPES}


def _modified(logical_id: str, old: dict[str, Any], new: dict[str, Any]) -> ResourceChange | None:
    if old == new:
        return None
    new_type = str(new.get("Type"))
    if old.get("Type") != new_type:
        return ResourceChange(logical_id, new_type, "modified", old, new, ("Type",), "yes")
    old_props, new_props = old.get("Properties") or {}, new.get("Properties") or {}
    changed = sorted(k for k in set(old_props) | set(new_props) if old_props.get(k) != new_props.get(k))
    changed += [a for a in _ATTRIBUTES if old.get(a) != new.get(a)]
    if old.get("Metadata") != new.get("Metadata"):
        changed.append("Metadata")
    replacement: Replacement = "no"
    for prop in changed:
        verdict = property_replacement(new_type, prop)
        if _ORDER[verdict] > _ORDER[replacement]:
            replacement = verdict
    return ResourceChange(logical_id, new_type, "modified", old, new, tuple(changed), replacement)


def _section_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, tuple[str, ...]]:
    other: dict[str, tuple[str, ...]] = {}
    for section in ("Parameters", "Outputs", "Conditions", "Mappings", "Rules"):
        before = (old or {}).get(section) or {}
        after = (new or {}).get(section) or {}
        marks = [f"+ {k}" for k in after if k not in before]
        marks += [f"- {k}" for k in before if k not in after]
        marks += [f"~ {k}" for k in after if k in before and before[k] != after[k]]
        if marks:
            other[section] = tuple(marks)
    return other


def diff_templates(stage: str, stack: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> StackDiff:
    """Compare two (normalized) templates; either may be ``None`` for a stack that is new or gone."""
    before, after = _resources(old), _resources(new)
    changes: list[ResourceChange] = []
    for logical_id, res in after.items():
        if logical_id not in before:
            changes.append(ResourceChange(logical_id, str(res.get("Type")), "added", None, res))
    for logical_id, res in before.items():
        if logical_id not in after:
            changes.append(ResourceChange(logical_id, str(res.get("Type")), "removed", res, None))
    for logical_id in before.keys() & after.keys():
        change = _modified(logical_id, before[logical_id], after[logical_id])
        if change:
            changes.append(change)
    changes.sort(key=lambda c: ({"removed": 0, "modified": 1, "added": 2}[c.kind], c.logical_id))
    # Stack-level metadata holds stack-wide cdk-nag acknowledgements.
    other = _section_changes(old, new)
    if (old or {}).get("Metadata") != (new or {}).get("Metadata") and old is not None and new is not None:
        other["Metadata"] = ("~ stack metadata",)
    return StackDiff(stage, stack, old, new, tuple(changes), other)
