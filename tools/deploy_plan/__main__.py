"""`python -m tools.deploy_plan readme [--check]`: write (or check) the README's deploy steps from the plan."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stacks.config import ConfigError, load_platform
from tools.deploy_plan.plan import deploy_plan
from tools.deploy_plan.readme import README, with_steps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.deploy_plan", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    readme = sub.add_parser("readme", help="render the deploy steps of the example config into README.md")
    readme.add_argument("--check", action="store_true", help="fail if README.md differs instead of writing it")
    args = parser.parse_args(argv)
    try:
        # The README documents the example config; another config's plan differs only in names and IDs.
        plan = deploy_plan(load_platform())
    except ConfigError as err:
        print(f"config error: {err.line()}", file=sys.stderr)
        return 2
    text = README.read_text(encoding="utf-8")
    try:
        wanted = with_steps(text, plan)
    except ValueError as err:
        print(f"{README.name}: {err}", file=sys.stderr)
        return 2
    if args.check:
        if wanted != text:
            print(f"{README.name}: the deploy steps differ from the plan; run python -m tools.deploy_plan readme",
                  file=sys.stderr)  # fmt: skip
            return 1
        print(f"{README.name}: deploy steps match the plan")
        return 0
    if wanted != text:
        README.write_text(wanted, encoding="utf-8")
        print(f"{README.name}: deploy steps rewritten")
    else:
        print(f"{README.name}: deploy steps already match the plan")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
