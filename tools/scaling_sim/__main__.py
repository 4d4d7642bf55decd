"""`python -m tools.scaling_sim`: replay traffic against the scaling policies of a worker; a gate on the SLA.

Runs every built-in traffic profile and RANDOM seeded random days (or `--profile NAME`, repeatable, or `--traffic
FILE.csv` with `minute,arrivals` rows) against the `deployed` policy that `cdk_constructs.sla_scaling.derive_policy`
builds from the worker YAML (default: config/workers/food-photo.yaml), the same with `wake: immediate`, and the
`age-step` and `backlog-target` designs, next to the host-aware oracle (the fewest GPU-hours any schedule can
spend; tools/scaling_sim/oracle.py). The deployed and immediate policies also run with twice the launch time, twice
the image pull, a 300 s metric delay, every other spot host of the fallback instance type, and 0.6x the
throughput of every host with that fallback too (the policy stays the one derived from the YAML).

Prints one Markdown table per profile, or with `--json` a list of objects. `--plot out.png` draws the age of the
oldest photo against the SLA and the billed hosts. `--write-docs` (what `make simulate` runs) rewrites the
tables in docs/scaling.md between its markers and docs/scaling.png.
Exit status: 0; 1 when the deployed or immediate policy leaves a photo over the SLA on any profile, in any case,
with one line on stderr naming each; 2 with one line on stderr for a bad worker file, traffic file or option.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

from stacks.config import ConfigError, WorkerConfig, load_worker
from tools.scaling_sim import engine, policies, report
from tools.scaling_sim.report import ProfileRun
from tools.scaling_sim.traffic import PROFILES, Traffic, TrafficError, random_day, read_csv

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WORKER = REPO_ROOT / "config" / "workers" / "food-photo.yaml"
DOCS = REPO_ROOT / "docs" / "scaling.md"
PLOT = REPO_ROOT / "docs" / "scaling.png"
RANDOM_DAYS = 5
# Policies whose SLA misses fail the run: the ones the construct can deploy. The two reference designs are shown
# for comparison and are known to miss the backfill.
GATED = ("deployed", "immediate")
# What the results depend on besides the standard library and pinned packages: a change here makes docs stale.
INPUTS = (
    *sorted((REPO_ROOT / "tools" / "scaling_sim").glob("*.py")),
    *sorted((REPO_ROOT / "cdk_constructs").glob("sla_*.py")),
    DEFAULT_WORKER,
)


def sensitivity_cases(params: engine.Params) -> dict[str, engine.Params]:
    """The timings and speeds the policy must survive without being re-derived for them."""
    return {
        "2x launch": dataclasses.replace(params, instance_launch_seconds=2 * params.instance_launch_seconds),
        "2x pull": dataclasses.replace(params, image_pull_seconds=2 * params.image_pull_seconds),
        "300 s metric delay": dataclasses.replace(params, metric_delay_seconds=300),
        "spot on the fallback type": dataclasses.replace(params, spot_types_in_turn=True),
        "0.6x throughput": dataclasses.replace(
            params,
            images_per_second=0.6 * params.images_per_second,
            instance_rates=tuple(0.6 * rate for rate in params.rates),
            # The worst of both: slower hosts than calibrated, and the fallback type's share of them too.
            spot_types_in_turn=True,
        ),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.scaling_sim", description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=Path, default=DEFAULT_WORKER, help="worker YAML (default: %(default)s)")
    parser.add_argument("--traffic", type=Path, help="CSV of minute,arrivals rows instead of the built-in profiles")
    parser.add_argument("--profile", action="append", choices=sorted(PROFILES), help="built-in profile (repeatable)")
    parser.add_argument("--random", type=int, default=None, help=f"seeded random days 1..N (default {RANDOM_DAYS})")
    parser.add_argument("--policy", action="append", choices=policies.POLICY_NAMES, help="policy (repeatable)")
    parser.add_argument("--no-sensitivity", action="store_true", help="nominal timings only")
    parser.add_argument("--json", action="store_true", help="print JSON: a list of objects, one per policy and profile")
    parser.add_argument("--plot", type=Path, help="write a PNG of age vs the SLA and billed hosts")
    parser.add_argument("--write-docs", action="store_true", help="rewrite docs/scaling.md tables and docs/scaling.png")
    return parser.parse_args(argv)


def run_profile(
    worker: WorkerConfig, traffic: Traffic, names: Sequence[str], *, sensitivity: bool = True
) -> ProfileRun:
    """Every named policy and the oracle on one traffic profile, and the gated policies' sensitivity cases."""
    params = engine.Params.from_worker(worker)
    max_tasks = worker.scaling.max_tasks
    outcomes = [
        engine.simulate(policies.build(name, worker), traffic.per_minute, params, name=name, profile=traffic.name)
        for name in names
    ]
    outcomes.append(engine.oracle(traffic.per_minute, params, max_tasks, profile=traffic.name))
    cases: list[tuple[str, engine.Outcome, engine.Outcome]] = []
    if sensitivity:
        for case, varied in sensitivity_cases(params).items():
            bound = engine.oracle(traffic.per_minute, varied, max_tasks, profile=traffic.name)
            for name in (n for n in names if n in GATED):
                outcome = engine.simulate(
                    policies.build(name, worker), traffic.per_minute, varied, name=name, profile=traffic.name
                )
                cases.append((case, outcome, bound))
    return ProfileRun(traffic, outcomes, cases)


def sla_misses(runs: Sequence[ProfileRun]) -> list[str]:
    """One entry per gated policy, profile and case that left a photo over the SLA."""
    misses = []
    for run in runs:
        nominal = [("nominal", o) for o in run.outcomes if o.policy in GATED]
        for case, outcome in nominal + [(case, o) for case, o, _ in run.sensitivity]:
            if outcome.over_sla > 0:
                misses.append(f"{run.traffic.name} ({outcome.policy}, {case}: {outcome.over_sla:,} photos)")
    return misses


def fingerprint(paths: Sequence[Path]) -> str:
    """Short SHA-256 over the named files' bytes (names relative to the repository included)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def write_docs(runs: Sequence[ProfileRun], sla_seconds: int) -> None:
    built_in = [run for run in runs if run.traffic.name in PROFILES]
    report.plot(PLOT, built_in, sla_seconds, ("deployed", "immediate", "oracle"))
    stamp = f"inputs {fingerprint(INPUTS)}, plot {fingerprint([PLOT])}"
    body = report.markdown(runs, sla_seconds, stamp)
    DOCS.write_text(report.replace_between_markers(DOCS.read_text(encoding="utf-8"), body), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    custom = args.traffic or args.profile or args.policy or args.worker != DEFAULT_WORKER or args.random is not None
    if args.write_docs and (custom or args.no_sensitivity):
        print("option error: --write-docs runs the default profiles, policies and worker only", file=sys.stderr)
        return 2
    if args.random is not None and not 0 <= args.random <= 100:
        print(f"option error: --random {args.random}: must be 0-100", file=sys.stderr)
        return 2
    try:
        worker = load_worker(args.worker)
        if args.traffic:
            traffics = [read_csv(args.traffic)]
        else:
            traffics = [PROFILES[name]() for name in args.profile or PROFILES]
            seeds = args.random if args.random is not None else (0 if args.profile else RANDOM_DAYS)
            traffics += [random_day(seed) for seed in range(1, seeds + 1)]
    except ConfigError as err:
        print(f"config error: {err.line()}", file=sys.stderr)
        return 2
    except TrafficError as err:
        print(f"traffic error: {err}", file=sys.stderr)
        return 2
    names = args.policy or list(policies.POLICY_NAMES)
    runs = [run_profile(worker, traffic, names, sensitivity=not args.no_sensitivity) for traffic in traffics]
    sla = worker.sla_minutes * 60
    if args.json:
        print(report.to_json(runs))
    else:
        print(report.markdown(runs, sla))
    if args.plot:
        report.plot(args.plot, runs, sla, (*names, "oracle"))
    if args.write_docs:
        write_docs(runs, sla)
    misses = sla_misses(runs)
    if misses:
        print(f"SLA missed: {'; '.join(misses)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
