"""Credentials for a research role whose sessions must name the person (AWS CLI `credential_process`).

`mlbase-ResearchDeveloper` admits a session only when its source identity is the caller's own production user name
(research policies compare it with machines' `Owner` tags). The CLI's `role_arn`/`source_profile` profiles cannot
set a source identity, so this prints what `credential_process` expects after an AssumeRole that does:

    # ~/.aws/config
    [profile research]
    region = ap-northeast-1
    credential_process = python3 -m tools.research_credentials --source-profile prod
        --role-arn arn:aws:iam::222222222222:role/mlbase-ResearchDeveloper
        --mfa-serial arn:aws:iam::111111111111:mfa/taro

(one line; run from a checkout of this repository, or with its directory on PYTHONPATH). The user name is read from
the production credentials (sts:GetCallerIdentity), never typed. The MFA code is asked on the terminal. Credentials
are cached under ~/.cache/mlbase/ until five minutes before they expire, so the code is asked once per session.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import boto3

CACHE_DIR = Path.home() / ".cache" / "mlbase"
EARLY = dt.timedelta(minutes=5)


class UsageError(Exception):
    """Something the person has to fix; printed as one line."""


def user_name(caller_arn: str) -> str:
    """`arn:aws:iam::111111111111:user/mlbase/people/taro` -> `taro`; anything but an IAM user is refused."""
    parts = caller_arn.split(":", 5)
    if len(parts) != 6 or not parts[5].startswith("user/"):
        raise UsageError(f"{caller_arn} is not an IAM user: use your production user's credentials (--source-profile)")
    return parts[5].rsplit("/", 1)[-1]


def process_output(credentials: dict[str, Any]) -> dict[str, Any]:
    """The JSON document `credential_process` must print (Version 1)."""
    expiration = credentials["Expiration"]
    if isinstance(expiration, dt.datetime):
        expiration = expiration.astimezone(dt.UTC).isoformat()
    return {
        "Version": 1,
        "AccessKeyId": credentials["AccessKeyId"],
        "SecretAccessKey": credentials["SecretAccessKey"],
        "SessionToken": credentials["SessionToken"],
        "Expiration": expiration,
    }


def cached(path: Path, now: dt.datetime) -> dict[str, Any] | None:
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if dt.datetime.fromisoformat(document["Expiration"]) - EARLY > now:
            return document
    except (OSError, ValueError, KeyError):
        return None
    return None


def credentials(
    session: Any,
    *,
    role_arn: str,
    mfa_serial: str | None,
    duration_seconds: int,
    read_code: Callable[[str], str],
    cache_dir: Path,
    now: dt.datetime,
) -> dict[str, Any]:
    """Assume `role_arn` as the caller, naming the session and its source identity after the caller's user."""
    sts = session.client("sts")
    name = user_name(sts.get_caller_identity()["Arn"])
    key = hashlib.sha256(f"{name}|{role_arn}".encode()).hexdigest()[:16]
    path = cache_dir / f"{key}.json"
    found = cached(path, now)
    if found is not None:
        return found
    request: dict[str, Any] = {
        "RoleArn": role_arn,
        "RoleSessionName": name,
        "SourceIdentity": name,
        "DurationSeconds": duration_seconds,
    }
    if mfa_serial:
        request |= {"SerialNumber": mfa_serial, "TokenCode": read_code(f"MFA code for {mfa_serial}: ").strip()}
    answer = process_output(sts.assume_role(**request)["Credentials"])
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(json.dumps(answer), encoding="utf-8")
    path.chmod(0o600)
    return answer


def read_code_from_terminal(prompt: str) -> str:
    # credential_process captures stdout; the prompt and the answer go through the terminal itself.
    with open("/dev/tty", "r+", encoding="utf-8") as tty:
        tty.write(prompt)
        tty.flush()
        return tty.readline()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.research_credentials", description=__doc__.split("\n")[0])
    parser.add_argument("--role-arn", required=True)
    parser.add_argument("--source-profile", required=True, help="the AWS CLI profile of your production user")
    parser.add_argument("--mfa-serial", help="your MFA device's ARN (the research roles require MFA)")
    parser.add_argument("--duration-seconds", type=int, default=3600)
    parser.add_argument("--endpoint-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        session = boto3.Session(profile_name=args.source_profile)
        if args.endpoint_url:
            session = _EndpointSession(session, args.endpoint_url)
        answer = credentials(
            session,
            role_arn=args.role_arn,
            mfa_serial=args.mfa_serial,
            duration_seconds=args.duration_seconds,
            read_code=read_code_from_terminal,
            cache_dir=CACHE_DIR,
            now=dt.datetime.now(dt.UTC),
        )
    except UsageError as err:
        print(f"research_credentials: {err}", file=sys.stderr)
        return 2
    print(json.dumps(answer))
    return 0


class _EndpointSession:
    """A session whose clients go to one endpoint (a local AWS double in tests)."""

    def __init__(self, session: Any, endpoint_url: str) -> None:
        self._session, self._endpoint_url = session, endpoint_url

    def client(self, service: str) -> Any:
        return self._session.client(service, endpoint_url=self._endpoint_url)


if __name__ == "__main__":
    sys.exit(main())
