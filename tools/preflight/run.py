"""Read one account (read-only calls) and turn what it holds into preflight results, one per check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from stacks.config import Platform
from tools.deploy_plan.assembly import Assembly
from tools.deploy_plan.plan import AWS_PUBLIC_PARAMETERS, AccountKey, Plan, deploy_plan
from tools.preflight import checks
from tools.preflight.checks import Result
from tools.preflight.needs import (
    GPU_FAMILIES,
    LAMBDA_CONCURRENCY_QUOTA,
    LAMBDA_UNRESERVED_MINIMUM,
    AccountNeeds,
    account_needs,
    vcpus_needed,
)

# Where Powertools publishes the layer ARN of each release (cdk_constructs/python_lambda.py reads it at deploy time).
POWERTOOLS_PARAMETERS = "/aws/service/powertools/"

T = TypeVar("T")
# Error codes that mean "it is not there" rather than "we could not look".
ABSENT = frozenset(
    {
        "ResourceNotFoundException",
        "ParameterNotFound",
        "NoSuchEntity",
        "NoSuchResourceException",
        "AWSOrganizationsNotInUseException",
        "AccountNotFoundException",
    }
)


class ReadError(Exception):
    """A read the preflight could not make (access denied, throttled, not implemented...)."""


class Account:
    """boto3 clients of one profile, all against `endpoint_url` when one is given (a local AWS double in tests)."""

    def __init__(self, session: boto3.Session, endpoint_url: str | None) -> None:
        self.session, self.endpoint_url = session, endpoint_url

    def client(self, service: str, region: str) -> Any:
        return self.session.client(service, region_name=region, endpoint_url=self.endpoint_url)

    def call(
        self, service: str, region: str, operation: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The answer of one read-only call; None when what it asks for does not exist."""
        try:
            answer: dict[str, Any] = getattr(self.client(service, region), operation)(**(params or {}))
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            message = err.response.get("Error", {}).get("Message", "")
            if code in ABSENT or (code == "ValidationError" and "does not exist" in message):
                return None
            raise ReadError(f"{service} {operation}: {code or 'error'}") from None
        except BotoCoreError as err:
            raise ReadError(f"{service} {operation}: {err}") from None
        return answer


def _guarded(check: str, read: Callable[..., T], *args: Any) -> T | Result:
    """`read(*args)`, or an error result naming the check when the account could not be read."""
    try:
        return read(*args)
    except ReadError as err:
        return Result("error", check, f"could not be read ({err})", "check the profile's permissions")


def _command(plan: Plan, key: AccountKey, *fragments: str) -> str:
    """The plan's command, for this account, that contains every fragment (the same one the README shows)."""
    for step in plan.steps:
        if step.account == key:
            for command in step.commands:
                if all(f in command for f in fragments):
                    return " ".join(command.replace("\\\n", " ").split())
    return ""


def preflight(account: Account, platform: Platform, assembly: Assembly) -> list[Result]:
    """Every check for the account the profile's credentials belong to."""
    cfg = platform.config
    ids: dict[AccountKey, str] = {
        "production": cfg.accounts.production.account_id,
        "research": cfg.accounts.research.account_id,
    }
    home = cfg.accounts.production.region
    # Unguarded: without knowing the account there is nothing to check (__main__ prints the one-line reason).
    caller = account.call("sts", home, "get_caller_identity") or {}
    keys = [k for k, v in ids.items() if v == caller.get("Account")]
    if not keys:
        return [
            Result(
                "error",
                "account",
                f"the profile is account {caller.get('Account')}, neither accounts.production ({ids['production']})"
                f" nor accounts.research ({ids['research']}) of {platform.source}",
                "pass the profile of one of those accounts",
            )
        ]
    key = keys[0]
    plan = deploy_plan(platform)
    trusted = ids["production"] if key == "research" else None
    need = account_needs(assembly, plan, key, ids[key], trusted)
    results = [Result("ok", "account", f"{ids[key]} is accounts.{key}")]
    for check in (_bootstrap, _secrets, _parameters, _quotas, _config, _organization):
        results += check(account, need, plan)
    return results


def _read_bootstrap(account: Account, region: str, parameter: str) -> tuple[str | None, str | None]:
    value = account.call("ssm", region, "get_parameter", {"Name": parameter})
    stacks = account.call("cloudformation", region, "describe_stacks", {"StackName": "CDKToolkit"})
    status = stacks["Stacks"][0]["StackStatus"] if stacks and stacks.get("Stacks") else None
    return (value["Parameter"]["Value"] if value else None), status


def _read_trust(account: Account, region: str, name: str) -> dict[str, Any] | None:
    answer = account.call("iam", region, "get_role", {"RoleName": name})
    return answer["Role"].get("AssumeRolePolicyDocument") if answer else None


def _bootstrap(account: Account, need: AccountNeeds, plan: Plan) -> list[Result]:
    out: list[Result] = []
    fix = _command(plan, need.key, "cdk bootstrap")
    for region, (parameter, floor) in sorted(need.bootstrap.items()):
        got = _guarded(f"CDK bootstrap in {region}", _read_bootstrap, account, region, parameter)
        out.append(got if isinstance(got, Result) else checks.bootstrap(region, got[0], floor, got[1], fix))
    for role in need.trusted_roles if need.trusted_account else ():
        name = role.rsplit("/", 1)[-1]
        document = _guarded(f"bootstrap role {name}", _read_trust, account, need.regions[0], name)
        if isinstance(document, Result):
            out.append(document)
        else:
            out.append(checks.bootstrap_trust(role, document, str(need.trusted_account), fix))
    return out


def _secrets(account: Account, need: AccountNeeds, plan: Plan) -> list[Result]:
    out: list[Result] = []
    for item in need.secrets:
        check = f"secret {item.name} in {item.region}"
        found = _guarded(check, account.call, "secretsmanager", item.region, "describe_secret", {"SecretId": item.name})
        if isinstance(found, Result):
            out.append(found)
            continue
        fix = _command(plan, need.key, f"--name {item.name} ")
        out.append(checks.exists(check, found is not None, "exists", "does not exist", fix))
    return out


def _parameters(account: Account, need: AccountNeeds, plan: Plan) -> list[Result]:
    out: list[Result] = []
    for item in need.parameters:
        check = f"SSM parameter {item.name} in {item.region}"
        found = _guarded(check, account.call, "ssm", item.region, "get_parameter", {"Name": item.name})
        if isinstance(found, Result):
            out.append(found)
            continue
        if item.name.startswith(POWERTOOLS_PARAMETERS):
            parent = item.name.rsplit("/", 1)[0]
            fix = (
                f"AWS has not published that Powertools release's layer here; pin one it has (aws ssm"
                f" get-parameters-by-path --path {parent} --region {item.region}): POWERTOOLS_VERSION in"
                " cdk_constructs/python_lambda.py and aws-lambda-powertools in worker/requirements.in, then `make lock`"
            )
        elif item.name.startswith(AWS_PUBLIC_PARAMETERS):
            parent = item.name.rsplit("/", 2)[0]
            fix = (
                f"pin a release that exists (aws ssm get-parameters-by-path --path {parent} --region {item.region})"
                " in config/workers/*.yaml capacity.ami_ssm_parameter"
            )
        else:
            version = item.name.rsplit("/", 1)[-1]
            fix = _command(plan, need.key, f"versions/{version}.pkrvars.hcl") or "build the AMI that writes it"
        value = found["Parameter"]["Value"] if found else None
        out.append(checks.exists(check, found is not None, f"resolves to {value}", "does not resolve", fix))
    return out


def quota_value(account: Account, region: str, service: str, code: str) -> float | None:
    """The applied quota, or AWS's default where none was ever applied; None if neither can be read.

    GetServiceQuota returns nothing for a quota whose applied value is not available (AWS documents this for some
    quotas), so the default stands in. moto implements neither call for ec2 or lambda: there this is None.
    """
    for operation in ("get_service_quota", "get_aws_default_service_quota"):
        try:
            answer = account.call("service-quotas", region, operation, {"ServiceCode": service, "QuotaCode": code})
        except ReadError:
            answer = None
        if answer:
            return float(answer["Quota"]["Value"])
    return None


def _profile(plan: Plan, key: AccountKey) -> str:
    return next(step.profile for step in plan.steps if step.account == key)


def _increase(service: str, code: str, needed: int, region: str, profile: str) -> str:
    return (
        f"aws service-quotas request-service-quota-increase --service-code {service} --quota-code {code}"
        f" --desired-value {needed} --region {region} --profile {profile}"
    )


def _vcpus(account: Account, region: str, types: list[str]) -> dict[str, int]:
    answer = account.call("ec2", region, "describe_instance_types", {"InstanceTypes": types}) or {}
    return {t["InstanceType"]: int(t["VCpuInfo"]["DefaultVCpus"]) for t in answer.get("InstanceTypes", [])}


def _quotas(account: Account, need: AccountNeeds, plan: Plan) -> list[Result]:
    out: list[Result] = []
    profile = _profile(plan, need.key)
    for region in need.regions:
        fleets = need.fleets.get(region, ())
        types = sorted({t for f in fleets for t in f.instance_types})
        vcpus = _guarded(f"GPU instance types in {region}", _vcpus, account, region, types) if types else {}
        if isinstance(vcpus, Result):
            out.append(vcpus)
            continue
        unknown = [t for t in types if t not in vcpus]
        if unknown:
            out.append(
                Result(
                    "error",
                    f"GPU instance types in {region}",
                    f"{', '.join(unknown)} not offered here",
                    "choose instance types this region offers",
                )
            )
            continue
        totals = vcpus_needed(fleets, vcpus)
        sources = ", ".join(sorted({f.source.split("/")[0] for f in fleets}))
        for family, _, on_demand_code, spot_code in GPU_FAMILIES:
            for market, code in (("on-demand", on_demand_code), ("spot", spot_code)):
                needed = totals.get((family, market), 0)
                if needed:
                    value = quota_value(account, region, "ec2", code)
                    why = f"{sources} at full size"
                    fix = _increase("ec2", code, needed, region, profile)
                    out.append(checks.quota(f"{market} {family} vCPUs", code, region, value, needed, why, fix))
        reserved = need.reserved_concurrency.get(region, 0)
        if reserved:
            needed = reserved + LAMBDA_UNRESERVED_MINIMUM
            value = quota_value(account, region, "lambda", LAMBDA_CONCURRENCY_QUOTA)
            why = f"{reserved} reserved + the {LAMBDA_UNRESERVED_MINIMUM} Lambda keeps unreserved"
            fix = _increase("lambda", LAMBDA_CONCURRENCY_QUOTA, needed, region, profile)
            out.append(
                checks.quota("Lambda concurrent executions", LAMBDA_CONCURRENCY_QUOTA, region, value, needed, why, fix)
            )
        else:
            # Unreserved functions share whatever the account has: nothing to check before deploying.
            out.append(
                checks.Result(
                    "ok",
                    f"Lambda concurrency ({LAMBDA_CONCURRENCY_QUOTA}) in {region}",
                    "nothing reserved (lambdas.reserved_concurrency: false), so any quota will do",
                )
            )
    return out


# (what, describe operation, answer field, AWS CLI delete command) for the two Config singletons of a region.
CONFIG_SINGLETONS = (
    (
        "recorder",
        "describe_configuration_recorders",
        "ConfigurationRecorders",
        "delete-configuration-recorder --configuration-recorder-name",
    ),
    (
        "delivery channel",
        "describe_delivery_channels",
        "DeliveryChannels",
        "delete-delivery-channel --delivery-channel-name",
    ),
)


def _read_config(
    account: Account, region: str, operation: str, field: str, creator: str | None
) -> tuple[list[str], list[str]]:
    """The names in the region, and those of them the creating stack already owns (a redeploy, not a conflict)."""
    answer = account.call("config", region, operation) or {}
    names = [str(r["name"]) for r in answer.get(field, [])]
    owned: list[str] = []
    if creator and names:
        stack = account.call("cloudformation", region, "describe_stack_resources", {"StackName": creator})
        owned = [str(r.get("PhysicalResourceId")) for r in (stack or {}).get("StackResources", [])]
    return names, owned


def _config(account: Account, need: AccountNeeds, plan: Plan) -> list[Result]:
    out: list[Result] = []
    profile = _profile(plan, need.key)
    for region in sorted(set(need.config_recorder) | set(need.config_rules)):
        creator = need.config_recorder.get(region)
        for what, operation, field, delete in CONFIG_SINGLETONS:
            got = _guarded(f"Config {what} in {region}", _read_config, account, region, operation, field, creator)
            if isinstance(got, Result):
                out.append(got)
                continue
            if creator:
                fix = (
                    f"keep it (audit.config_recorder.{need.key}: existing) or, if nothing else uses it,"
                    f" aws configservice {delete} {{name}} --region {region} --profile {profile}"
                )
            else:
                fix = f"let the Audit stack create it (audit.config_recorder.{need.key}: create)"
            out.append(checks.config_recorder(region, got[0], got[1], creator, region in need.config_rules, what, fix))
    return out


def _organization(account: Account, need: AccountNeeds, plan: Plan) -> list[Result]:
    if not need.organization:
        return []
    region = need.regions[0]

    def read() -> tuple[str | None, str | None, dict[str, bool]]:
        org = account.call("organizations", region, "describe_organization")
        if org is None:
            return None, None, {}
        roots = account.call("organizations", region, "list_roots") or {}
        types = {t["Type"]: t["Status"] for r in roots.get("Roots", [])[:1] for t in r.get("PolicyTypes", [])}
        members = {
            i.account: account.call("organizations", region, "describe_account", {"AccountId": i.account}) is not None
            for i in need.organization
            if i.kind == "organization-member"
        }
        return str(org["Organization"].get("FeatureSet")), types.get("SERVICE_CONTROL_POLICY"), members

    got = _guarded("AWS Organizations", read)
    if isinstance(got, Result):
        return [got]
    feature_set, scp, members = got
    if feature_set is None:
        members = {i.account: False for i in need.organization if i.kind == "organization-member"}
    return checks.organization(
        feature_set,
        scp,
        members,
        _command(plan, need.key, "organizations create-organization"),
        _command(plan, need.key, "enable-policy-type"),
        _command(plan, need.key, "invite-account-to-organization"),
    )
