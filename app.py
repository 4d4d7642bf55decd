#!/usr/bin/env python3
"""mlbase CDK app: the only place that reads the environment. `MLBASE_CONFIG` picks another platform.yaml."""

from __future__ import annotations

import os

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
import sys

from stacks.config import ConfigError, load_platform
from stacks.gates import synth_checked
from stacks.stages import build_app


def main() -> int:
    try:
        platform = load_platform(os.environ.get("MLBASE_CONFIG") or None)
    except ConfigError as err:
        print(f"config error: {err.line()}", file=sys.stderr)
        return 2
    failures = synth_checked(build_app(platform, outdir=os.environ.get("CDK_OUTDIR")))
    for line in failures:
        print(f"ERROR {line}", file=sys.stderr)
    if failures:
        print(
            f"synth stopped: {len(failures)} unacknowledged security finding(s); fix each, or acknowledge it on the"
            " narrowest construct with a reason (cdk_constructs/nag.py)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
