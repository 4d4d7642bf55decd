"""Resource-level difference between two CloudFormation templates of one stack."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from tools.review.spec import Replacement, property_replacement

ChangeKind = Literal["added", "removed", "modified"]

# CDK bookkeeping that differs between CLI and in-process synths and says nothing about the infrastructure.
_IGNORED_TYPES = {"AWS::CDK::Metadata"}
# Resource attributes outside Properties that matter to a reviewer.
_ATTRIBUTES = ("DeletionPolicy", "UpdateReplacePolicy", "DependsOn", "Condition", "UpdatePolicy", "CreationPolicy")

_ORDER: dict[Replacement, int] = {"no": 0, "maybe": 1, "yes": 2}
_SUB_VAR = re.compile(r"\$\{(?!AWS::)([A-Za-z0-9.]+)\}")


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
    # Replaced resources this one references through a property that replaces it: it is replaced with them.
    carried_from: tuple[str, ...] = ()

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


def comparable_template(template: dict[str, Any]) -> dict[str, Any]:
    """``template`` without CDK bookkeeping (CLI-only metadata, the ``AWS::CDK::Metadata`` resource), for diffing."""
    result = dict(template)
    result["Resources"] = _resources(template)
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


# Top-level keys holding a single value rather than named entries.
_SCALAR_SECTIONS = ("Description", "Transform", "AWSTemplateFormatVersion")


def _section_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, tuple[str, ...]]:
    other: dict[str, tuple[str, ...]] = {}
    if old is not None and new is not None:
        for key in _SCALAR_SECTIONS:
            if old.get(key) != new.get(key):
                other[key] = (f"~ {_scalar(old.get(key))} -> {_scalar(new.get(key))}",)
    for section in ("Parameters", "Outputs", "Conditions", "Mappings", "Rules"):
        before = (old or {}).get(section) or {}
        after = (new or {}).get(section) or {}
        marks = [f"+ {k}" for k in after if k not in before]
        marks += [f"- {k}" for k in before if k not in after]
        marks += [f"~ {k}" for k in after if k in before and before[k] != after[k]]
        if marks:
            other[section] = tuple(marks)
    return other


def _scalar(value: Any) -> str:
    return "(none)" if value is None else repr(value) if isinstance(value, str) else str(value)


def references(value: Any) -> set[str]:
    """Logical IDs that ``value`` refers to through ``Ref``, ``Fn::GetAtt`` or ``${...}`` in ``Fn::Sub``."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                target = item[0] if isinstance(item, list) else str(item).split(".", 1)[0]
                found.add(str(target))
            elif key == "Fn::Sub":
                text = item[0] if isinstance(item, list) else item
                bound = set(item[1]) if isinstance(item, list) and len(item) > 1 else set()
                if isinstance(text, str):
                    found |= {m.split(".", 1)[0] for m in _SUB_VAR.findall(text)} - bound
                if isinstance(item, list) and len(item) > 1:
                    found |= references(item[1])
            else:
                found |= references(item)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return found


def carry_replacements(changes: list[ResourceChange], after: dict[str, dict[str, Any]]) -> list[ResourceChange]:
    """Add the resources replaced because a resource they reference is replaced (to a fixed point).

    A replacement gives the resource a new physical ID and new attributes; a resource that references it through a
    property whose change replaces it is replaced in turn (``yes`` only when both steps are certain, else
    ``maybe``). The template text of that resource does not change, so a plain diff never shows it.
    """
    by_id = {c.logical_id: c for c in changes}
    while True:
        replaced = {
            c.logical_id: c.replacement for c in by_id.values() if c.kind == "modified" and c.replacement != "no"
        }
        grew = False
        for logical_id, res in after.items():
            current = by_id.get(logical_id)
            if current is not None and current.kind != "modified":
                continue
            props = res.get("Properties") or {}
            causes: dict[str, Replacement] = {}
            carried: set[str] = set()
            for prop, value in props.items():
                verdict = property_replacement(str(res.get("Type")), prop)
                if verdict == "no":
                    continue
                for target in references(value) & replaced.keys():
                    if target == logical_id:
                        continue
                    step: Replacement = "yes" if verdict == "yes" and replaced[target] == "yes" else "maybe"
                    if _ORDER[step] > _ORDER[causes.get(prop, "no")]:
                        causes[prop] = step
                    carried.add(target)
            if not carried:
                continue
            verdict = max(causes.values(), key=_ORDER.__getitem__)
            if current is None:
                by_id[logical_id] = ResourceChange(
                    logical_id, str(res.get("Type")), "modified", res, res, tuple(sorted(causes)), verdict,
                    tuple(sorted(carried)),
                )  # fmt: skip
                grew = True
            elif _ORDER[verdict] > _ORDER[current.replacement] or not carried <= set(current.carried_from):
                by_id[logical_id] = replace(
                    current,
                    replacement=max(verdict, current.replacement, key=_ORDER.__getitem__),
                    carried_from=tuple(sorted(carried | set(current.carried_from))),
                    changed=tuple(dict.fromkeys((*current.changed, *sorted(causes)))),
                )
                grew = True
        if not grew:
            return list(by_id.values())


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
    changes = carry_replacements(changes, after)
    changes.sort(key=lambda c: ({"removed": 0, "modified": 1, "added": 2}[c.kind], c.logical_id))
    # Stack-level metadata holds stack-wide cdk-nag acknowledgements.
    other = _section_changes(old, new)
    if (old or {}).get("Metadata") != (new or {}).get("Metadata") and old is not None and new is not None:
        other["Metadata"] = ("~ stack metadata",)
    return StackDiff(stage, stack, old, new, tuple(changes), other)
