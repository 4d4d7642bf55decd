"""``python -m tools.diagram ASSEMBLY PREFIX``: draw the platform from a synthesized cloud assembly.

Writes ``PREFIX.png`` and ``PREFIX.svg`` with graphviz's ``dot`` (``--dot`` prints the DOT source instead, which
needs no graphviz). This checkout's own ``cdk.out`` is refused when a source of the app is newer than it (the picture
would show an old synth). Exit code 2 when the assembly is missing or stale, or graphviz is not installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.diagram.dot import render, to_dot
from tools.diagram.graph import build_graph
from tools.diagram.simplify import simplify
from tools.review.assembly import REPO_ROOT, load_assembly

# What a synth is made of: a newer file here means cdk.out no longer shows the code.
SYNTH_SOURCES = ("app.py", "cdk.json", "stacks", "cdk_constructs", "config", "lambdas")
_SOURCE_SUFFIXES = {".py", ".json", ".yaml", ".yml"}


def stale_source(assembly: Path, root: Path = REPO_ROOT) -> Path | None:
    """The newest source of the app under ``root`` if it is newer than ``assembly``'s manifest, else None."""
    manifest = assembly / "manifest.json"
    if not manifest.is_file():
        return None
    built = manifest.stat().st_mtime
    newest: tuple[float, Path] | None = None
    for name in SYNTH_SOURCES:
        top = root / name
        files = [top] if top.is_file() else [f for f in top.rglob("*") if f.suffix in _SOURCE_SUFFIXES]
        for path in files:
            if "__pycache__" not in path.parts and path.is_file():
                mtime = path.stat().st_mtime
                if newest is None or mtime > newest[0]:
                    newest = (mtime, path)
    return newest[1] if newest is not None and newest[0] > built else None


TITLE = "mlbase: accounts, networks and data flow\n(drawn from the synthesized templates)"


def run(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m tools.diagram", description=__doc__.splitlines()[0])
    parser.add_argument("assembly", type=Path, help="cloud assembly directory (cdk.out)")
    parser.add_argument("prefix", type=Path, nargs="?", help="output path without extension (docs/architecture)")
    parser.add_argument("--dot", action="store_true", help="print the DOT source and render nothing")
    args = parser.parse_args(argv)
    try:
        if args.assembly.resolve() == (REPO_ROOT / "cdk.out").resolve():
            newer = stale_source(args.assembly, REPO_ROOT)
            if newer is not None:
                shown = newer.relative_to(REPO_ROOT)
                print(f"diagram: {args.assembly} is older than {shown}: run `make synth` first", file=sys.stderr)
                return 2
        picture = simplify(build_graph(load_assembly(args.assembly)))
        source = to_dot(picture.graph, title=TITLE, parked=picture.parked)
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
