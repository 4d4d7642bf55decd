"""``python -m tools.review``: what the synthesized templates change, flagged changes first.

Synthesizes the working tree (or reads ``--assembly``) and compares it with a baseline synthesized in a temporary
git worktree: by default the merge base of HEAD and the upstream branch (the branch a pull request targets), or
``--base REV``; ``--snapshots DIR`` compares with the committed template snapshots instead. Offline: no AWS call.

Exit codes: 0 nothing flagged, 1 flagged changes present (for CI), 2 the comparison could not be made.
"""

from __future__ import annotations

import argparse
import json
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


def _git(repo: Path, *args: str) -> str | None:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def upstream_candidates() -> list[str]:
    """Where the upstream branch may be found, in order: the pull request's target, the tracked branch, origin's."""
    target = os.environ.get("GITHUB_BASE_REF")  # set by GitHub Actions in pull-request jobs
    return [*([f"origin/{target}"] if target else []), "@{upstream}", "origin/HEAD", "origin/main"]


def merge_base(repo: Path) -> tuple[str, str] | None:
    """``(commit, upstream)``: the merge base of HEAD with the first upstream candidate that exists, if any."""
    for candidate in upstream_candidates():
        if _git(repo, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}") is None:
            continue
        commit = _git(repo, "merge-base", "HEAD", candidate)
        if commit:
            return commit, candidate
    return None


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
    parser.add_argument("--base", metavar="REV", help="compare with this git revision (default: the merge base)")
    parser.add_argument(
        "--snapshots",
        type=Path,
        nargs="?",
        const=SNAPSHOT_DIR,
        help=f"compare with the template snapshots in this directory (default: {SNAPSHOT_DIR.relative_to(REPO_ROOT)})",
    )
    parser.add_argument("--assembly", type=Path, help="use this synthesized cloud assembly instead of synthesizing")
    parser.add_argument("--baseline-assembly", type=Path, help="compare with this cloud assembly")
    parser.add_argument("--markdown", action="store_true", help="print Markdown for a pull-request comment")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="the checkout to synthesize (default: this one)")
    parser.add_argument(
        "--cdk-diff", action="store_true", help="append the CDK CLI's own `cdk diff --template` for each changed stack"
    )
    parser.add_argument("--output", type=Path, help="write the report to this file instead of standard output")
    parser.add_argument(
        "--summary", type=Path, help="write a JSON summary (baseline, flags, changed stacks) for CI to this file"
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
        name, baseline = _baseline(args, Path(scratch) / "base")
        result = review(name, baseline, current)
        color = _use_color(args.color) and args.output is None
        text = to_markdown(result) if args.markdown else to_text(result, color=color)
        text = gate_section(gate, markdown=args.markdown) + text
        if args.cdk_diff:
            text += cdk_diff_sections(result, current_dir, Path(scratch) / "cdk-diff", markdown=args.markdown)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if args.summary:
        summary = {
            "baseline": name,
            "flags": len(result.flags) + len(gate),
            "categories": sorted({f.category for f in result.flags} | ({"security-gate"} if gate else set())),
            "changed_stacks": [d.stack for d in result.changed],
        }
        args.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return EXIT_FLAGGED if result.flags or gate else EXIT_CLEAN


def _baseline(args: argparse.Namespace, base_dir: Path) -> tuple[str, list[StackTemplate]]:
    """The templates to compare with, and how the report names them."""
    if args.baseline_assembly:
        return str(args.baseline_assembly), load_assembly(args.baseline_assembly)
    if args.snapshots is not None:
        baseline = load_snapshots(args.snapshots)
        if not baseline:
            raise ReviewError(f"no snapshots in {args.snapshots}; pass --base REV or run `make snapshot-update`")
        return "the committed snapshots", baseline
    if args.base:
        rev, name = args.base, f"revision {args.base}"
    else:
        found = merge_base(args.repo)
        if found is None:
            tried = ", ".join(upstream_candidates())
            raise ReviewError(
                f"no upstream branch to take the merge base with (tried {tried}); pass --base REV or --snapshots"
            )
        rev, name = found[0], f"the merge base with {found[1]} ({found[0][:12]})"
    with worktree(rev, args.repo) as tree:
        synth(tree, base_dir)
    return name, load_assembly(base_dir)


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
