"""`python -m tools.preflight --profile NAME [--config PATH] [--assembly DIR]`: check one account before deploying.

Read-only: every call describes or gets. Prints one line per check (ok, or what is missing and the command that
fixes it) and exits 1 when anything would block the deploy, 2 when the inputs themselves are wrong.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError

from stacks.config import DEFAULT_CONFIG, REPO_ROOT, ConfigError, load_platform
from tools.deploy_plan.assembly import read_assembly
from tools.preflight.run import Account, ReadError, preflight


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.preflight", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="AWS CLI profile of the account to check (default: boto3's own chain)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="platform.yaml the deploy will use")
    parser.add_argument(
        "--assembly", type=Path, default=REPO_ROOT / "cdk.out", help="cloud assembly synthesized from that config"
    )
    # The only place the AWS endpoint is chosen: tests point it at moto on 127.0.0.1.
    parser.add_argument("--endpoint-url", help="send every AWS call to this endpoint instead of AWS")
    args = parser.parse_args(argv)
    try:
        platform = load_platform(args.config)
        assembly = read_assembly(args.assembly)
        session = boto3.Session(profile_name=args.profile)
        results = preflight(Account(session, args.endpoint_url), platform, assembly)
    except ConfigError as err:
        print(f"config error: {err.line()}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, BotoCoreError, ReadError) as err:
        print(f"preflight: {err}", file=sys.stderr)
        return 2
    for result in results:
        print(result.line())
    blocking = [r for r in results if r.blocks]
    if blocking:
        print(f"preflight: {len(blocking)} of {len(results)} checks block the deploy", file=sys.stderr)
        return 1
    print(f"preflight: all {len(results)} checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
