"""What one account needs before its first deploy, derived from the synthesized templates (and the deploy plan).

Nothing here is a fixed list: the bootstrap version and roles come from the cloud assembly's manifests, secrets and
SSM parameters from the stacks' inputs (`tools.deploy_plan.assembly.needs`), GPU instances from the Auto Scaling
groups and instances in the templates, reserved concurrency from the Lambda functions, Config and Organizations from
the resources that need them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from tools.deploy_plan.assembly import Assembly, Stack, needs, produces
from tools.deploy_plan.plan import AccountKey, Item, Plan

# Service Quotas codes, vCPU-based quotas of EC2 (Service Quotas console, EC2: "Running On-Demand G and VT
# instances", "All G and VT Spot Instance Requests", "Running On-Demand P instances", "All P Spot Instance Requests").
GPU_FAMILIES: tuple[tuple[str, str, str, str], ...] = (
    # (family, instance-type pattern, on-demand quota code, spot quota code)
    ("G and VT", r"(g|vt)\d.*", "L-DB2E81BA", "L-3819A6DF"),
    ("P", r"p\d.*", "L-417A185B", "L-7212CCBC"),
)
# Lambda "Concurrent executions"; Lambda keeps 100 of it unreserved, so reserved concurrency must leave that much.
LAMBDA_CONCURRENCY_QUOTA = "L-B99A9384"
LAMBDA_UNRESERVED_MINIMUM = 100
_BOOTSTRAP = re.compile(r"/cdk-bootstrap/([^/]+)/version")


@dataclass(frozen=True)
class Fleet:
    """GPU instances a template may run at its maximum: how many on demand, how many spot, of which types."""

    source: str
    instance_types: tuple[str, ...]
    on_demand: int
    spot: int


@dataclass(frozen=True)
class AccountNeeds:
    key: AccountKey
    account_id: str
    regions: tuple[str, ...]
    # region -> (bootstrap version parameter, the lowest version the templates accept)
    bootstrap: dict[str, tuple[str, int]]
    # CDK roles (deploy, asset publishing) that must trust another account, and which account
    trusted_roles: tuple[str, ...]
    trusted_account: str | None
    secrets: tuple[Item, ...]
    parameters: tuple[Item, ...]
    fleets: dict[str, tuple[Fleet, ...]]
    reserved_concurrency: dict[str, int]
    # region -> stack that creates the Config recorder / delivery channel there ("" when it is kept, not created)
    config_recorder: dict[str, str]
    config_rules: tuple[str, ...]
    organization: tuple[Item, ...]


def _minimum_bootstrap_version(template: dict[str, Any]) -> int:
    """The CDK writes a rule that refuses the versions it cannot use: `Fn::Contains [["1", ..., "5"], version]`."""
    rule = template.get("Rules", {}).get("CheckBootstrapVersion", {})
    refused: list[int] = []
    for assertion in rule.get("Assertions", []):
        condition = assertion.get("Assert", {})
        for contains in condition.get("Fn::Not", []):
            values = contains.get("Fn::Contains", [[]])[0] if isinstance(contains, dict) else []
            refused += [int(v) for v in values if str(v).isdigit()]
    return max(refused, default=0) + 1


def fleets_of(stack: Stack) -> list[Fleet]:
    """The GPU capacity of one stack at its maximum: Auto Scaling groups (their on-demand/spot mix) and instances."""
    found: list[Fleet] = []
    resources = stack.template.get("Resources", {})
    for lid, res in stack.resources("AWS::AutoScaling::AutoScalingGroup"):
        props = res.get("Properties", {})
        size = int(props.get("MaxSize", 0))
        mixed = props.get("MixedInstancesPolicy") or {}
        dist = mixed.get("InstancesDistribution", {})
        types = [o["InstanceType"] for o in mixed.get("LaunchTemplate", {}).get("Overrides", []) if "InstanceType" in o]
        if not types:
            template_id = (
                mixed.get("LaunchTemplate", {}).get("LaunchTemplateSpecification") or props.get("LaunchTemplate") or {}
            ).get("LaunchTemplateId", {})
            target = resources.get(template_id.get("Ref", ""), {}) if isinstance(template_id, dict) else {}
            data = target.get("Properties", {}).get("LaunchTemplateData", {})
            types = [data["InstanceType"]] if isinstance(data.get("InstanceType"), str) else []
        base = min(size, int(dist.get("OnDemandBaseCapacity", 0)))
        share = int(dist.get("OnDemandPercentageAboveBaseCapacity", 100))
        on_demand = base + math.ceil((size - base) * share / 100)
        found.append(Fleet(f"{stack.name}/{lid}", tuple(types), on_demand, size - on_demand))
    for lid, res in stack.resources("AWS::EC2::Instance"):
        kind = res.get("Properties", {}).get("InstanceType")
        if isinstance(kind, str):
            found.append(Fleet(f"{stack.name}/{lid}", (kind,), 1, 0))
    return [f for f in found if any(family_of(t) for t in f.instance_types)]


def family_of(instance_type: str) -> str | None:
    for family, pattern, _, _ in GPU_FAMILIES:
        if re.fullmatch(pattern, instance_type):
            return family
    return None


def vcpus_needed(fleets: tuple[Fleet, ...], vcpus: dict[str, int]) -> dict[tuple[str, str], int]:
    """(family, "on-demand" | "spot") -> vCPUs, each fleet counted as if all its instances were its largest type."""
    totals: dict[tuple[str, str], int] = {}
    for fleet in fleets:
        for family in {f for f in map(family_of, fleet.instance_types) if f}:
            largest = max(vcpus[t] for t in fleet.instance_types if family_of(t) == family)
            for market, count in (("on-demand", fleet.on_demand), ("spot", fleet.spot)):
                if count:
                    totals[(family, market)] = totals.get((family, market), 0) + count * largest
    return totals


def account_needs(
    assembly: Assembly, plan: Plan, key: AccountKey, account_id: str, trusted: str | None
) -> AccountNeeds:
    stacks = [s for s in assembly.stacks if s.account == account_id]
    if not stacks:
        raise ValueError(f"the cloud assembly has no stack in account {account_id} ({key})")
    made: set[Item] = set().union(*(produces(s) for s in assembly.stacks))
    inputs: set[Item] = set().union(*(needs(s, plan.config_fields) for s in stacks))
    regions = tuple(sorted({s.region for s in stacks}))
    bootstrap: dict[str, tuple[str, int]] = {}
    for stack in stacks:
        for param in stack.template.get("Parameters", {}).values():
            if _BOOTSTRAP.fullmatch(str(param.get("Default", ""))):
                floor = max(_minimum_bootstrap_version(stack.template), bootstrap.get(stack.region, ("", 0))[1])
                bootstrap[stack.region] = (str(param["Default"]), floor)
    roles = sorted({r for s in stacks for r in (s.deploy_role, *s.publishing_roles) if r})
    recorder: dict[str, str] = {}
    rules: set[str] = set()
    for stack in stacks:
        for _, res in stack.resources():
            if res["Type"] in ("AWS::Config::ConfigurationRecorder", "AWS::Config::DeliveryChannel"):
                recorder[stack.region] = stack.name
            elif res["Type"] == "AWS::Config::ConfigRule":
                rules.add(stack.region)
    parameters = tuple(
        sorted(
            i
            for i in inputs
            if i.kind == "ssm-parameter"
            and i.account == account_id
            and i not in made
            # The bootstrap has its own check; parameters a stack writes are not prerequisites.
            and not _BOOTSTRAP.fullmatch(i.name)
        )
    )
    return AccountNeeds(
        key=key,
        account_id=account_id,
        regions=regions,
        bootstrap=bootstrap,
        trusted_roles=tuple(roles) if trusted else (),
        trusted_account=trusted,
        secrets=tuple(sorted(i for i in inputs if i.kind == "secret" and i.account == account_id)),
        parameters=parameters,
        fleets={r: tuple(f for s in stacks if s.region == r for f in fleets_of(s)) for r in regions},
        reserved_concurrency={
            r: sum(
                int(res["Properties"].get("ReservedConcurrentExecutions", 0))
                for s in stacks
                if s.region == r
                for _, res in s.resources("AWS::Lambda::Function")
            )
            for r in regions
        },
        config_recorder=recorder,
        config_rules=tuple(sorted(rules)),
        organization=tuple(sorted(i for i in inputs if i.kind.startswith("organization"))),
    )
