"""The README's deploy steps, rendered from the plan between two markers; `--check` fails when they drifted."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tools.deploy_plan.plan import Plan

README = Path(__file__).resolve().parent.parent.parent / "README.md"
BEGIN = "<!-- deploy-plan:begin (generated from tools/deploy_plan/plan.py: python -m tools.deploy_plan readme) -->"
END = "<!-- deploy-plan:end -->"
# The README's prose wraps at this width.
WIDTH = 118


def render_steps(plan: Plan) -> str:
    """The numbered list of steps, as Markdown."""
    lines: list[str] = []
    for number, step in enumerate(plan.steps, start=1):
        marker = f"{number}. "
        # List item content (the code block included) starts where the text after the marker does.
        indent = " " * len(marker)
        text = f"**{step.title}** (profile `{step.profile}`). {step.note}".rstrip()
        lines += textwrap.wrap(text, width=WIDTH, initial_indent=marker, subsequent_indent=indent,
                               break_on_hyphens=False, break_long_words=False)  # fmt: skip
        lines.append(f"{indent}```bash")
        for command in step.commands:
            lines += [f"{indent}{line}" for line in command.splitlines()]
        lines.append(f"{indent}```")
    return "\n".join(lines)


def with_steps(text: str, plan: Plan) -> str:
    """`text` (the README) with the section between the markers replaced by the rendered steps."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {BEGIN!r} ... {END!r} markers")
    return text[: start + len(BEGIN)] + "\n" + render_steps(plan) + "\n" + text[end:]
