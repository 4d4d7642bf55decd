"""`python -m tools.delivery env ACCOUNT`: what the deploy workflow needs to reach one account, from the config.

Prints `NAME=value` lines for `$GITHUB_ENV`: the account's region, the deploy role the job assumes with its OIDC
token, the CDK bootstrap lookup role that `make preflight` reads through, and the profile name the README's commands
use. Everything comes from `config/platform.yaml` (or `MLBASE_CONFIG`), so no ARN is pasted into the repository's
settings by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from stacks.config import DEFAULT_CONFIG, REPO_ROOT, ConfigError, load_platform
from stacks.delivery import QUALIFIER_CONTEXT, bootstrap_role_name
from tools.deploy_plan.plan import DEFAULT_QUALIFIER, PROFILES, AccountKey


def account_env(config: Path, account: AccountKey) -> dict[str, str]:
    """The workflow's variables for `account`; ConfigError when the config has no `github` section."""
    cfg = load_platform(config).config
    if cfg.github is None:
        raise ConfigError(str(config), "github", None, "is required for the deploy workflow (see README, CI/CD)")
    target = getattr(cfg.accounts, account)
    context = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8")).get("context", {})
    qualifier = str(context.get(QUALIFIER_CONTEXT, DEFAULT_QUALIFIER))
    lookup = bootstrap_role_name(qualifier, "lookup", target.account_id, target.region)
    return {
        "AWS_REGION": target.region,
        "DEPLOY_ROLE_ARN": f"arn:aws:iam::{target.account_id}:role/{cfg.github.deploy_role_name}",
        "LOOKUP_ROLE_ARN": f"arn:aws:iam::{target.account_id}:role/{lookup}",
        "PROFILE": PROFILES[account],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.delivery", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    env = sub.add_parser("env", help="NAME=value lines for $GITHUB_ENV")
    env.add_argument("account", choices=sorted(PROFILES))
    env.add_argument("--config", type=Path, default=Path(os.environ.get("MLBASE_CONFIG") or DEFAULT_CONFIG))
    args = parser.parse_args(argv)
    try:
        values = account_env(args.config, args.account)
    except ConfigError as err:
        print(f"config error: {err.line()}", file=sys.stderr)
        return 2
    sys.stdout.write("".join(f"{key}={value}\n" for key, value in values.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
