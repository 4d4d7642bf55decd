"""`python -m tools.scaling_sim`: replay traffic against the scaling policies of a worker and compare them.

Runs every built-in traffic profile (or `--profile NAME`, repeatable, or `--traffic FILE.csv` with
`minute,arrivals` rows) against `age-step`, `backlog-target` and the `deployed` policy that
`cdk_constructs.sla_scaling.derive_policy` builds from the worker YAML (default: config/workers/food-photo.yaml),
next to the oracle lower bound. Prints one Markdown table per profile, or with `--json` a list of objects, one per
policy and profile. `--plot out.png` draws the age of the oldest photo against the SLA and the running tasks.
Exit status: 0, or 2 with one line on stderr for a bad worker file or traffic file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from stacks.config import ConfigError, WorkerConfig, load_worker
from tools.scaling_sim import engine, policies, report
from tools.scaling_sim.traffic import PROFILES, Traffic, TrafficError, read_csv

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WORKER = REPO_ROOT / "config" / "workers" / "food-photo.yaml"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.scaling_sim", description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=Path, default=DEFAULT_WORKER, help="worker YAML (default: %(default)s)")
    parser.add_argument("--traffic", type=Path, help="CSV of minute,arrivals rows instead of the built-in profiles")
    parser.add_argument("--profile", action="append", choices=sorted(PROFILES), help="built-in profile (repeatable)")
    parser.add_argument("--policy", action="append", choices=policies.POLICY_NAMES, help="policy (repeatable)")
    parser.add_argument("--json", action="store_true", help="print JSON: a list of objects, one per policy and profile")
    parser.add_argument("--plot", type=Path, help="write a PNG of age vs the SLA and running tasks")
    return parser.parse_args(argv)


def run_profile(worker: WorkerConfig, traffic: Traffic, names: Sequence[str]) -> list[engine.Outcome]:
    """Every named policy and the oracle on one traffic profile."""
    params = engine.Params.from_worker(worker)
    outcomes = [
        engine.simulate(policies.build(name, worker), traffic.per_minute, params, name=name, profile=traffic.name)
        for name in names
    ]
    outcomes.append(engine.oracle(traffic.per_minute, params, worker.scaling.max_tasks, profile=traffic.name))
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        worker = load_worker(args.worker)
        traffics = [read_csv(args.traffic)] if args.traffic else [PROFILES[name]() for name in args.profile or PROFILES]
    except ConfigError as err:
        print(f"config error: {err.line()}", file=sys.stderr)
        return 2
    except TrafficError as err:
        print(f"traffic error: {err}", file=sys.stderr)
        return 2
    names = args.policy or list(policies.POLICY_NAMES)
    runs = [(traffic, run_profile(worker, traffic, names)) for traffic in traffics]
    sla = worker.sla_minutes * 60
    if args.json:
        print(report.to_json([outcome for _, outcomes in runs for outcome in outcomes]))
    else:
        for traffic, outcomes in runs:
            print(report.table(traffic.name, traffic.description, outcomes, sla))
            print()
    if args.plot:
        report.plot(args.plot, [(traffic.name, outcomes) for traffic, outcomes in runs], sla)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
