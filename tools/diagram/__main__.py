"""``python -m tools.diagram ASSEMBLY PREFIX``: draw the platform from a synthesized cloud assembly.

Writes ``PREFIX.png`` and ``PREFIX.svg`` with graphviz's ``dot`` (``--dot`` prints the DOT source instead, which
needs no graphviz). Exit code 2 when the assembly is missing or graphviz is not installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.diagram.dot import render, to_dot
from tools.diagram.graph import build_graph
from tools.review.assembly import load_assembly


def run(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m tools.diagram", description=__doc__.splitlines()[0])
    parser.add_argument("assembly", type=Path, help="cloud assembly directory (cdk.out)")
    parser.add_argument("prefix", type=Path, nargs="?", help="output path without extension (docs/architecture)")
    parser.add_argument("--dot", action="store_true", help="print the DOT source and render nothing")
    args = parser.parse_args(argv)
    try:
        graph = build_graph(load_assembly(args.assembly))
        source = to_dot(graph, title="mlbase: accounts, networks and data flow (from the synthesized templates)")
        if args.dot or args.prefix is None:
            sys.stdout.write(source)
            return 0
        for path in render(source, args.prefix):
            print(f"wrote {path}")
    except FileNotFoundError as err:
        print(f"diagram: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run())
