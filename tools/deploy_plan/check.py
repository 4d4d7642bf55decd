"""Walk a deploy plan against synthesized assemblies: every input of every stack exists when its step runs."""

from __future__ import annotations

from collections.abc import Callable

from tools.deploy_plan.assembly import Assembly, needs, produces
from tools.deploy_plan.plan import AWS_PUBLIC_PARAMETERS, Item, Plan

# The assembly synthesized with the given config fields filled (the others unset, as before their manual step).
AssemblyFor = Callable[[frozenset[str]], Assembly]


def _given(item: Item) -> bool:
    """Inputs AWS provides in every account."""
    return item.kind == "ssm-parameter" and item.name.startswith(AWS_PUBLIC_PARAMETERS)


def check_plan(plan: Plan, assembly_for: AssemblyFor, accounts: dict[str, str]) -> list[str]:
    """One line per problem: an input nothing earlier produces, a stack no step deploys, a step in the wrong account.

    `accounts` maps the plan's account keys (production, research) to account IDs.
    """
    problems: list[str] = []
    available: set[Item] = set()
    filled: set[str] = set()
    deployed: set[str] = set()
    for number, step in enumerate(plan.steps, start=1):
        label = f"step {number} ({step.title})"
        if step.manual:
            problems += [f"{label} needs {need}, which no earlier step produces" for need in step.needs
                         if need not in available]  # fmt: skip
            available |= set(step.produces) | {Item("config", "", "", path) for path in step.fills}
            filled |= set(step.fills)
            continue
        assembly = assembly_for(frozenset(filled))
        for pattern in step.stacks:
            chosen = assembly.matching(pattern)
            if not chosen:
                problems.append(f"{label}: {pattern!r} matches no stack")
            for stack in chosen:
                if stack.account != accounts[step.account]:
                    problems.append(f"{label}: {stack.path} is in account {stack.account}, not {step.account}")
                for need in sorted(needs(stack, plan.config_fields)):
                    if need not in available and not _given(need):
                        problems.append(f"{label}: {stack.path} needs {need}, which no earlier step produces")
                available |= produces(stack)
                deployed.add(stack.name)
    final = assembly_for(frozenset(filled))
    problems += [f"{s.path}: no step deploys it" for s in final.stacks if s.name not in deployed]
    return problems
