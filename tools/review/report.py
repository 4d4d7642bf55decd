"""Render a review (flags first, then every change per stage and stack) as terminal text or Markdown."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tools.review.diff import ResourceChange, StackDiff
from tools.review.flags import CATEGORIES, Flag

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]*)`")
_MARK = {"added": "+", "removed": "-", "modified": "~"}


@dataclass(frozen=True)
class Review:
    """The comparison of one baseline with one synth."""

    baseline: str
    diffs: tuple[StackDiff, ...]
    flags: tuple[Flag, ...]
    replacement_source: str

    @property
    def changed(self) -> tuple[StackDiff, ...]:
        return tuple(d for d in self.diffs if not d.empty)


def _change_line(change: ResourceChange) -> str:
    line = f"{_MARK[change.kind]} {change.logical_id} ({change.type})"
    if change.kind == "modified":
        line += ": " + ", ".join(change.changed)
        via = f" with {', '.join(change.carried_from)}" if change.carried_from else ""
        if change.replacement == "yes":
            line += f" [replacement{via}]"
        elif change.replacement == "maybe":
            line += f" [may replace{via}]"
    return line


def _stack_status(diff: StackDiff) -> str:
    if diff.old is None:
        return " (new stack)"
    if diff.new is None:
        return " (stack removed)"
    return ""


def _counts(diff: StackDiff) -> str:
    counts = {k: sum(1 for c in diff.resources if c.kind == k) for k in ("added", "removed", "modified")}
    return ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no resource changes"


def to_markdown(review: Review) -> str:
    """A PR comment: verdict, flag table by category, then one collapsible section per changed stack."""
    lines = [f"## Infrastructure change review (against {review.baseline})", ""]
    if review.flags:
        lines += [f"**{len(review.flags)} change(s) need a reviewer's attention.**", ""]
        for category, title in CATEGORIES.items():
            flags = [f for f in review.flags if f.category == category]
            if not flags:
                continue
            lines += [f"### :warning: {title}", "", "| Stack | Resource | Type | Change |", "|---|---|---|---|"]
            for flag in flags:
                message = flag.message.replace("|", "\\|")
                lines.append(f"| {flag.stack} | `{flag.logical_id}` | {flag.type} | {message} |")
            lines.append("")
    else:
        lines += ["No flagged changes.", ""]
    if not review.changed:
        lines += ["No template changes.", ""]
    stage = None
    for diff in review.changed:
        if diff.stage != stage:
            stage = diff.stage
            lines += [f"### Stage `{stage}`", ""]
        lines += [
            "<details>",
            f"<summary><b>{diff.stack}</b>{_stack_status(diff)}: {_counts(diff)}</summary>",
            "",
            "```diff",
        ]
        lines += [_change_line(c) for c in diff.resources]
        for section, marks in diff.other.items():
            lines += [f"{m[0]} {section}: {m[2:]}" for m in marks]
        lines += ["```", "", "</details>", ""]
    lines.append(
        f"<sub>Replacement knowledge: {review.replacement_source}. Exit code 1 when anything is flagged.</sub>"
    )
    return "\n".join(lines) + "\n"


class _Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def inline(self, text: str) -> str:
        text = _BOLD.sub(lambda m: self(m.group(1), "1"), text)
        return _CODE.sub(lambda m: m.group(1), text)


_KIND_COLOR = {"added": "32", "removed": "31", "modified": "33"}


def to_text(review: Review, *, color: bool = False) -> str:
    """Terminal report; ANSI colors only when ``color`` (a TTY without NO_COLOR)."""
    style = _Style(color)
    out = [style(f"Infrastructure change review (against {review.baseline})", "1"), ""]
    if review.flags:
        out.append(style(f"!! {len(review.flags)} flagged change(s):", "1;31"))
        for category, title in CATEGORIES.items():
            flags = [f for f in review.flags if f.category == category]
            if flags:
                out.append(style(f"  {title}", "1;31"))
                out += [f"    {f.stack} {f.logical_id} ({f.type}): {style.inline(f.message)}" for f in flags]
        out.append("")
    else:
        out += [style("No flagged changes.", "32"), ""]
    if not review.changed:
        out.append("No template changes.")
    stage = None
    for diff in review.changed:
        if diff.stage != stage:
            stage = diff.stage
            out.append(style(f"Stage {stage}", "1;36"))
        out.append(style(f"  {diff.stack}{_stack_status(diff)}: {_counts(diff)}", "1"))
        for change in diff.resources:
            out.append("    " + style(_change_line(change), _KIND_COLOR[change.kind]))
        for section, marks in diff.other.items():
            out += [f"    {m[0]} {section}: {m[2:]}" for m in marks]
    out.append("")
    return "\n".join(out)


def summary_counts(diffs: Sequence[StackDiff]) -> dict[str, int]:
    """Number of added/removed/modified resources over all stacks (for tests and logs)."""
    totals = {"added": 0, "removed": 0, "modified": 0}
    for diff in diffs:
        for change in diff.resources:
            totals[change.kind] += 1
    return totals
