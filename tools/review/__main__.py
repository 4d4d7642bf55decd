"""``python -m tools.review``: what the synthesized templates change, flagged changes first.

Synthesizes the working tree (or reads ``--assembly``) and compares it with the committed template snapshots, or
with another git revision synthesized in a temporary worktree (``--base REV``). Offline: no AWS call is made.

Exit codes: 0 nothing flagged, 1 flagged changes present (for CI), 2 the comparison could not be made.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from stacks.gates import validation_failures
from tools.review.assembly import REPO_ROOT, SNAPSHOT_DIR, StackTemplate, load_assembly, load_snapshots
from tools.review.cdk_diff import cdk_diff_sections
from tools.review.diff import StackDiff, diff_templates
from tools.review.flags import flag_stack
from tools.review.report import Review, to_markdown, to_text
from tools.review.spec import spec_source

EXIT_CLEAN, EXIT_FLAGGED, EXIT_ERROR = 0, 1, 2


class ReviewError(Exception):
    """The comparison could not be made (synth failed, unknown revision, no baseline)."""


def _cdk_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "CDK_DISABLE_CLI_TELEMETRY": "true",
        }
    )
    return env


def synth(tree: Path, outdir: Path) -> list[str]:
    """``cdk synth`` of the app in ``tree`` (its cdk.json decides the app command and context) into ``outdir``.

    Returns the security gate's findings when that is all that stopped the synth: the templates are written before
    the gate runs, so the change can still be reviewed, with the findings at the top.
    """
    cli = tree / "node_modules" / ".bin" / "cdk"
    if not cli.exists():
        cli = REPO_ROOT / "node_modules" / ".bin" / "cdk"
    cmd = [str(cli), "synth", "--quiet", "--no-notices", "--output", str(outdir)]
    proc = subprocess.run(cmd, cwd=tree, env=_cdk_env(), capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return []
    findings = validation_failures(outdir) if (outdir / "manifest.json").is_file() else []
    if findings:
        return findings
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
    raise ReviewError(f"cdk synth failed in {tree} (exit {proc.returncode}):\n{tail}")


@contextmanager
def worktree(rev: str, repo: Path = REPO_ROOT) -> Iterator[Path]:
    """A temporary git worktree of ``repo`` at ``rev`` sharing its .venv and node_modules; removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="mlbase-review-"))
    path = parent / "tree"
    git = ["git", "-C", str(repo)]
    proc = subprocess.run([*git, "worktree", "add", "--detach", str(path), rev], capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(parent, ignore_errors=True)
        raise ReviewError(f"cannot check out {rev!r}: {proc.stderr.strip()}")
    try:
        for shared in (".venv", "node_modules"):
            if (repo / shared).exists() and not (path / shared).exists():
                (path / shared).symlink_to(repo / shared)
        yield path
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(path)], capture_output=True, check=False)
        shutil.rmtree(parent, ignore_errors=True)


def compare(baseline: Sequence[StackTemplate], current: Sequence[StackTemplate]) -> list[StackDiff]:
    """One diff per stack name present on either side, in the current synth's order, removed stacks last."""
    old = {s.name: s for s in baseline}
    new = {s.name: s for s in current}
    names = [s.name for s in current] + [s.name for s in baseline if s.name not in new]
    diffs = []
    for name in names:
        before, after = old.get(name), new.get(name)
        stage = (after or before).stage  # type: ignore[union-attr]
        diffs.append(
            diff_templates(stage, name, before.template if before else None, after.template if after else None)
        )
    return diffs


def review(baseline_name: str, baseline: Sequence[StackTemplate], current: Sequence[StackTemplate]) -> Review:
    """Diff and flag every stack."""
    diffs = compare(baseline, current)
    flags = tuple(flag for diff in diffs for flag in flag_stack(diff))
    return Review(baseline_name, tuple(diffs), flags, spec_source())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.review", description=__doc__.splitlines()[0])
    parser.add_argument("--base", metavar="REV", help="compare with this git revision instead of the snapshots")
    parser.add_argument(
        "--snapshots", type=Path, default=SNAPSHOT_DIR, help="snapshot directory (default: %(default)s)"
    )
    parser.add_argument("--assembly", type=Path, help="use this synthesized cloud assembly instead of synthesizing")
    parser.add_argument("--baseline-assembly", type=Path, help="compare with this cloud assembly")
    parser.add_argument("--markdown", action="store_true", help="print Markdown for a pull-request comment")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="the checkout to synthesize (default: this one)")
    parser.add_argument(
        "--cdk-diff", action="store_true", help="append the CDK CLI's own `cdk diff --template` for each changed stack"
    )
    return parser


def _use_color(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def run(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mlbase-review-") as scratch:
        current_dir = args.assembly
        gate: list[str] = []
        if current_dir is None:
            current_dir = Path(scratch) / "current"
            gate = synth(args.repo, current_dir)
        current = load_assembly(current_dir)
        if args.baseline_assembly:
            name, baseline = str(args.baseline_assembly), load_assembly(args.baseline_assembly)
        elif args.base:
            base_dir = Path(scratch) / "base"
            with worktree(args.base, args.repo) as tree:
                synth(tree, base_dir)
            name, baseline = f"revision {args.base}", load_assembly(base_dir)
        else:
            name, baseline = "the committed snapshots", load_snapshots(args.snapshots)
            if not baseline:
                raise ReviewError(f"no snapshots in {args.snapshots}; pass --base REV or run `make snapshot-update`")
        result = review(name, baseline, current)
        text = to_markdown(result) if args.markdown else to_text(result, color=_use_color(args.color))
        text = gate_section(gate, markdown=args.markdown) + text
        if args.cdk_diff:
            text += cdk_diff_sections(result, current_dir, Path(scratch) / "cdk-diff", markdown=args.markdown)
    sys.stdout.write(text)
    return EXIT_FLAGGED if result.flags or gate else EXIT_CLEAN


def gate_section(findings: Sequence[str], *, markdown: bool) -> str:
    """The security gate's unacknowledged findings, first of all: `make synth` fails until each is dealt with."""
    if not findings:
        return ""
    head = f"{len(findings)} unacknowledged security finding(s): `make synth` fails until each is fixed or acknowledged"
    if markdown:
        return "\n".join([f"> [!CAUTION]\n> {head}", "", *(f"- `{line}`" for line in findings), "", ""])
    return "\n".join([f"!! {head}", *(f"  {line}" for line in findings), "", ""])


def main() -> None:
    try:
        code = run()
    except (ReviewError, FileNotFoundError) as err:
        print(f"review: {err}", file=sys.stderr)
        code = EXIT_ERROR
    sys.exit(code)


if __name__ == "__main__":
    main()
