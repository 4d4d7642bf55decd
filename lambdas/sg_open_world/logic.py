"""Decision logic of the `sg-open-world` rule: pure functions over a security group's ingress, one for every path.

The AWS Config rule (a configuration item), the real-time CloudTrail path and the remediation (the group as EC2
describes it, rule by rule) all turn the group into `Grant`s and call `decide`, so they cannot disagree.

Rule name: sg-open-world
Description: a security group must not accept ingress from the world unless the exposure is on an allowed port and
    the platform justified it.
Trigger: configuration changes of ``AWS::EC2::SecurityGroup`` and a periodic sweep (Config); CloudTrail calls that
    change ingress or a prefix list (EventBridge).
Rule parameters (all optional, strings, as AWS Config passes them; any other key is refused):
    sensitivePorts  comma list of ports that must never be world-open unless also allowed
                    (default ``22,3389,3306,5432,1433,1521,6379,9200,27017,2049,445,23,21``)
    allowedPorts    comma list of ports that may be world-open when justified (default ``80,443``)
    worldShare      share of the public address space above which sources are "the world" (default ``1/256`` as
                    ``0.00390625``; more than 0, less than 0.5)

What "the world" is: for every protocol and port, the union of the public address space of every source that may
reach it (CIDRs and prefix-list entries, from all of the group's rules together), measured by
:mod:`lambdas.sg_open_world.space`. Above `worldShare` of the public IPv4 or IPv6 space, that port is world-open:
``0.0.0.0/1`` plus ``128.0.0.0/1``, or ``::/1`` plus ``8000::/1``, are as open as ``/0``.

Decisions that are not obvious, and why:
- Prefix lists are resolved: a customer-managed list counts by its entries (read with GetManagedPrefixListEntries);
  an AWS-managed list (owner ``AWS``) is judged by name: the lists in `AWS_MANAGED_ALLOWED` hold the addresses of
  one AWS service that connects to customers (CloudFront origin fetches, Route 53 health checkers, EC2 Instance
  Connect, VPC Lattice) and count as no public space; any other AWS-managed list, and any list that cannot be read,
  counts as the whole address space (nothing is guessed in the researcher's favour).
- A justification counts only when researchers cannot write it: the tag `JUSTIFICATION_TAG_KEY` (the research
  permission boundary denies ec2:CreateTags and ec2:DeleteTags on that key), or an entry for the group in
  ``security_groups.world_ingress_exceptions`` of ``config/platform.yaml`` (reviewed in a pull request). The older
  key ``mlbase:allow-world-ingress`` was writable by researchers and justifies nothing any more.
- Any world ingress needs a justification, not only ingress on sensitive ports: a port that is neither sensitive
  nor allowed (say 8080) is NON_COMPLIANT even when tagged. A config exception lists its own ports, which count
  as allowed for that group only.
- A sensitive port is NON_COMPLIANT even when tagged, unless allowed (``allowedPorts`` or the group's exception).
- A port range is judged by every port it covers: ``80-443`` covers 81..442, which are not allowed.
- ICMP (``icmp``/``1``, ``icmpv6``/``58``) reaches no service port and path-MTU discovery needs it from anywhere,
  so it is ignored. Other port-less protocols (GRE, ESP...) opened to the world cannot be allow-listed by port.
- Remediation revokes, for each unjustified world-open exposure, the grants that add the most public space until
  what remains is under the share: a small office range next to ``0.0.0.0/0`` stays.

Scenarios (the number is carried in each annotation as ``[S<n>]``):
  Scenario 1
    Given a configuration item of another resource type
     Then NOT_APPLICABLE
  Scenario 2
    Given a security group that has been deleted (or left the rule's scope)
     Then NOT_APPLICABLE
  Scenario 3
    Given a security group whose sources nowhere cover more than worldShare of the public space (none at all,
          egress only, private ranges, small public ranges, other groups, allow-listed AWS-managed prefix lists,
          world-open ICMP only)
     Then COMPLIANT
  Scenario 4
    Given world ingress on all protocols (``-1``)
     Then NON_COMPLIANT, justified or not (all ports include the sensitive ones)
  Scenario 5
    Given world ingress whose port range covers a sensitive port that is not allowed
     Then NON_COMPLIANT, justified or not
  Scenario 6
    Given world ingress on a port range with a port that is neither sensitive nor allowed
     Then NON_COMPLIANT, justified or not
  Scenario 7
    Given world ingress on a port-less protocol other than ICMP (GRE, ESP, ...)
     Then NON_COMPLIANT, justified or not
  Scenario 8
    Given world ingress only on allowed ports
     And neither the platform tag (with at least 10 characters) nor a config exception justifies it (a tag a
         researcher can write does not)
     Then NON_COMPLIANT
  Scenario 9
    Given world ingress only on allowed ports
     And the group carries the platform tag with a justification of at least 10 characters
     Then COMPLIANT
  Scenario 10
    Given rule parameters that do not parse (a port that is not a number in 0..65535, a share out of range, an
          unknown key)
     Then the evaluation fails with InvalidParametersError (Config shows the rule in error; nothing is guessed)
  Scenario 11
    Given world ingress only on ports that the group's entry in ``world_ingress_exceptions`` lists
     Then COMPLIANT
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lambdas.sg_open_world.grants import ALL_PORTS, RESOURCE_TYPE, Grant, configuration, grants_from_config, tags_of
from lambdas.sg_open_world.space import Network, public_share

Compliance = Literal["COMPLIANT", "NON_COMPLIANT", "NOT_APPLICABLE"]

DEFAULT_SENSITIVE_PORTS = "22,3389,3306,5432,1433,1521,6379,9200,27017,2049,445,23,21"
DEFAULT_ALLOWED_PORTS = "80,443"
# 1/256 of the public space: a little less than one public /8 of IPv4 (about 14.5 million addresses), a /11 of
# global unicast IPv6. Larger than any partner, office or cloud-region range a group needs, small enough that no
# split of the internet into a few blocks gets under it.
DEFAULT_WORLD_SHARE = 1 / 256
# Only the platform may write this key (the research boundary denies tag changes on it).
JUSTIFICATION_TAG_KEY = "mlbase:world-ingress-justification"
MIN_JUSTIFICATION_CHARS = 10
ANNOTATION_LIMIT = 256
DELETED_STATUSES = frozenset({"ResourceDeleted", "ResourceDeletedNotRecorded"})
PARAMETER_KEYS = frozenset({"sensitivePorts", "allowedPorts", "worldShare"})
# AWS-managed prefix lists whose addresses are one AWS service connecting to customers' resources
# (https://docs.aws.amazon.com/vpc/latest/userguide/working-with-aws-managed-prefix-lists.html). Service
# endpoints that never open connections (S3, DynamoDB) are deliberately absent: ingress from them means a mistake.
AWS_MANAGED_ALLOWED = (
    re.compile(r"com\.amazonaws\.global\.(ipv6\.)?cloudfront\.origin-facing"),
    re.compile(r"com\.amazonaws\.[a-z0-9-]+\.(ipv6\.)?route53-healthchecks"),
    re.compile(r"com\.amazonaws\.[a-z0-9-]+\.(ipv6\.)?ec2-instance-connect"),
    re.compile(r"com\.amazonaws\.[a-z0-9-]+\.(ipv6\.)?vpc-lattice"),
)
_EVERYWHERE: tuple[Network, ...] = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


class InvalidParametersError(ValueError):
    """The rule's parameters are malformed (scenario 10)."""


@dataclass(frozen=True)
class RuleParameters:
    sensitive_ports: frozenset[int]
    allowed_ports: frozenset[int]
    world_share: float = DEFAULT_WORLD_SHARE


@dataclass(frozen=True)
class WorldException:
    """A reviewed exception from ``config/platform.yaml``: this group may be world-open on these ports."""

    ports: frozenset[int]
    reason: str


@dataclass(frozen=True)
class PrefixList:
    """A managed prefix list as EC2 describes it; `cidrs` is read only for customer-managed lists."""

    prefix_list_id: str
    name: str
    aws_managed: bool
    cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Exposure:
    """A protocol and port range that the world reaches, and the grants that together make it so."""

    protocol: str
    from_port: int | None
    to_port: int | None
    grants: tuple[Grant, ...]

    def describe(self, labels: Mapping[Grant, str]) -> str:
        head = Grant(self.protocol, self.from_port, self.to_port, "", "cidr").ports()
        sources = ", ".join(dict.fromkeys(labels[g] for g in self.grants))
        return f"{head} from {sources}"


@dataclass(frozen=True)
class Decision:
    compliance: Compliance
    annotation: str
    scenario: int
    # Grants to revoke so that nothing unjustified stays world-open (empty unless NON_COMPLIANT).
    offending: tuple[Grant, ...] = field(default=())


def parse_rule_parameters(raw: Mapping[str, Any] | str | None) -> RuleParameters:
    """Rule parameters from the event (a JSON string) or a dict; blanks fall back to the defaults."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise InvalidParametersError(f"ruleParameters is not JSON: {exc}") from exc
    params: Mapping[str, Any] = raw or {}
    if not isinstance(params, Mapping):
        raise InvalidParametersError("ruleParameters must be a JSON object")
    unknown = sorted(set(params) - PARAMETER_KEYS)
    if unknown:
        raise InvalidParametersError(
            f"unknown rule parameter {unknown[0]!r}; allowed: {', '.join(sorted(PARAMETER_KEYS))}"
        )
    return RuleParameters(
        sensitive_ports=_ports(params.get("sensitivePorts"), DEFAULT_SENSITIVE_PORTS, "sensitivePorts"),
        allowed_ports=_ports(params.get("allowedPorts"), DEFAULT_ALLOWED_PORTS, "allowedPorts"),
        world_share=_share_parameter(params.get("worldShare")),
    )


def parse_exceptions(raw: str | None) -> dict[str, WorldException]:
    """``MLBASE_WORLD_EXCEPTIONS``: JSON list of {"group_id", "ports", "reason"}, written by the stack from config."""
    if not raw or not raw.strip():
        return {}
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"MLBASE_WORLD_EXCEPTIONS is not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ValueError('MLBASE_WORLD_EXCEPTIONS must be a JSON list like [{"group_id": "sg-...", "ports": [443]}]')
    found: dict[str, WorldException] = {}
    for i, entry in enumerate(entries):
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("group_id"), str)
            and str(entry["group_id"]).startswith("sg-")
            and isinstance(entry.get("ports"), list)
            and entry["ports"]
            and all(isinstance(p, int) and 0 < p < 65536 for p in entry["ports"])
        )
        if not ok:
            raise ValueError(
                f"MLBASE_WORLD_EXCEPTIONS[{i}] needs a group_id (sg-...) and a list of ports, got {entry!r}"
            )
        found[entry["group_id"]] = WorldException(frozenset(entry["ports"]), str(entry.get("reason", "")))
    return found


def evaluate(
    configuration_item: Mapping[str, Any],
    rule_parameters: Mapping[str, Any] | str | None,
    *,
    prefix_lists: Mapping[str, PrefixList] | None = None,
    exceptions: Mapping[str, WorldException] | None = None,
) -> tuple[Compliance, str]:
    """Decide one configuration item: (compliance, annotation with its scenario number)."""
    params = parse_rule_parameters(rule_parameters)  # scenario 10 raises here
    if configuration_item.get("resourceType") != RESOURCE_TYPE:
        return "NOT_APPLICABLE", "[S1] not a security group"
    if configuration_item.get("configurationItemStatus") in DELETED_STATUSES:
        return "NOT_APPLICABLE", "[S2] security group deleted"
    config = configuration(configuration_item)
    group_id = str(config.get("groupId") or configuration_item.get("resourceId") or "")
    decision = decide(
        grants_from_config(config.get("ipPermissions") or []),
        tags_of(configuration_item),
        params,
        prefix_lists=prefix_lists or {},
        exception=(exceptions or {}).get(group_id),
    )
    return decision.compliance, decision.annotation


def decide(
    grants: Sequence[Grant],
    tags: Mapping[str, str],
    params: RuleParameters,
    *,
    prefix_lists: Mapping[str, PrefixList],
    exception: WorldException | None,
) -> Decision:
    """The one decision over a group's ingress grants (scenarios 3 to 9 and 11)."""
    reach = {grant: _reach(grant, prefix_lists) for grant in grants}
    labels = {grant: _label(grant, prefix_lists) for grant in grants}
    exposures = world_exposures(grants, reach, params.world_share)
    if not exposures:
        return Decision("COMPLIANT", "[S3] no port open to the world", 3)

    excused = exception.ports if exception else frozenset()
    allowed = params.allowed_ports | excused
    hard: list[tuple[int, str, Exposure]] = []  # violations no justification can excuse
    needs_tag: list[Exposure] = []
    by_config: list[Exposure] = []
    for exposure in exposures:
        text = exposure.describe(labels)
        if exposure.protocol == "all":
            hard.append((4, f"{text} (all protocols)", exposure))
            continue
        if exposure.from_port is None or exposure.to_port is None:
            hard.append((7, f"{text} (port-less protocol)", exposure))
            continue
        low, high = exposure.from_port, exposure.to_port
        sensitive = sorted(p for p in params.sensitive_ports - allowed if low <= p <= high)
        if sensitive:
            hard.append((5, f"{text} exposes sensitive port {','.join(map(str, sensitive[:5]))}", exposure))
        elif high - low + 1 > len(allowed) or any(p not in allowed for p in range(low, high + 1)):
            hard.append((6, f"{text} includes ports not in allowedPorts", exposure))
        elif all(p in excused for p in range(low, high + 1)):
            by_config.append(exposure)
        else:
            needs_tag.append(exposure)

    if hard:
        hard.sort(key=lambda finding: finding[0])
        # Allowed-port exposures go too unless the tag justifies them; config-excused ones stay.
        unjustified = [] if _justified(tags) else needs_tag
        offending = _to_revoke([e for _, _, e in hard] + unjustified, reach, params)
        return Decision("NON_COMPLIANT", _annotation(hard[0][0], [text for _, text, _ in hard]), hard[0][0], offending)

    opened = ", ".join(e.describe(labels) for e in needs_tag)
    if needs_tag and not _justified(tags):
        written = tags.get(JUSTIFICATION_TAG_KEY, "").strip()
        why = "no" if not written else "a too short"
        return Decision(
            "NON_COMPLIANT",
            _annotation(
                8, [f"allowed port open to the world with {why} justification in tag {JUSTIFICATION_TAG_KEY}: {opened}"]
            ),
            8,
            _to_revoke(needs_tag, reach, params),
        )
    if needs_tag:
        return Decision("COMPLIANT", _annotation(9, [f"justified world ingress ({_justification(tags)}): {opened}"]), 9)
    assert exception is not None  # by_config is non-empty only with an exception
    listed = ", ".join(e.describe(labels) for e in by_config)
    return Decision("COMPLIANT", _annotation(11, [f"config exception ({exception.reason}): {listed}"]), 11)


def world_exposures(
    grants: Sequence[Grant], reach: Mapping[Grant, tuple[Network, ...]], world_share: float
) -> list[Exposure]:
    """Every protocol and port range whose sources, all rules together, cover more than `world_share`."""
    exposures: list[Exposure] = []
    everything = [g for g in grants if g.protocol == "all" and reach[g]]
    if everything and _share(everything, reach) > world_share:
        exposures.append(Exposure("all", None, None, tuple(everything)))
    for protocol in ("tcp", "udp"):
        exposures.extend(_port_exposures(protocol, grants, reach, world_share, everything))
    for protocol in sorted({g.protocol for g in grants} - {"all", "tcp", "udp"}):
        sources = [g for g in grants if g.protocol == protocol and reach[g]] + everything
        if sources and _share(sources, reach) > world_share:
            exposures.append(Exposure(protocol, None, None, tuple(sources)))
    if exposures and exposures[0].protocol == "all":
        # Already reported as all traffic: a port exposure made only of all-traffic grants says nothing new.
        all_grants = set(everything)
        exposures = exposures[:1] + [e for e in exposures[1:] if not set(e.grants) <= all_grants]
    return exposures


def is_allowed_aws_list(name: str) -> bool:
    return any(pattern.fullmatch(name) for pattern in AWS_MANAGED_ALLOWED)


# --- internals ----------------------------------------------------------------------------------------------------


def _port_exposures(
    protocol: str,
    grants: Sequence[Grant],
    reach: Mapping[Grant, tuple[Network, ...]],
    world_share: float,
    everything: Sequence[Grant],
) -> list[Exposure]:
    """World-open ranges of one port protocol: the ports are cut where any grant starts or ends."""
    candidates = [g for g in grants if g.protocol == protocol and reach[g]]
    spans = [(g, g.from_port or 0, ALL_PORTS[1] if g.to_port is None else g.to_port) for g in candidates]
    spans += [(g, *ALL_PORTS) for g in everything]
    if not spans:
        return []
    cuts = sorted({low for _, low, _ in spans} | {high + 1 for _, _, high in spans})
    found: list[Exposure] = []
    for low, next_low in itertools.pairwise(cuts):
        sources = tuple(g for g, g_low, g_high in spans if g_low <= low and next_low - 1 <= g_high)
        if not sources or _share(sources, reach) <= world_share:
            continue
        last = found[-1] if found else None
        if last and last.grants == sources and last.to_port == low - 1:
            found[-1] = Exposure(protocol, last.from_port, next_low - 1, sources)
        else:
            found.append(Exposure(protocol, low, next_low - 1, sources))
    return found


def _to_revoke(
    exposures: Sequence[Exposure], reach: Mapping[Grant, tuple[Network, ...]], params: RuleParameters
) -> tuple[Grant, ...]:
    """For each exposure, the grants adding the most public space, until what remains is at most the share."""
    revoked: list[Grant] = []
    for exposure in exposures:
        remaining = [g for g in exposure.grants if g not in revoked]
        remaining.sort(key=lambda g: (-_share([g], reach), g.describe()))
        while remaining and _share(remaining, reach) > params.world_share:
            revoked.append(remaining.pop(0))
    return tuple(revoked)


def _share(grants: Iterable[Grant], reach: Mapping[Grant, tuple[Network, ...]]) -> float:
    return public_share(n for g in grants for n in reach[g])


def _reach(grant: Grant, prefix_lists: Mapping[str, PrefixList]) -> tuple[Network, ...]:
    """The addresses a grant admits, as far as the world is concerned (see the module docstring on prefix lists)."""
    if grant.kind == "group":
        return ()
    if grant.kind == "cidr":
        try:
            return (ipaddress.ip_network(grant.source, strict=False),)
        except ValueError:
            return ()
    found = prefix_lists.get(grant.source)
    if found is None:
        return _EVERYWHERE
    if found.aws_managed:
        return () if is_allowed_aws_list(found.name) else _EVERYWHERE
    nets: list[Network] = []
    for cidr in found.cidrs:
        try:
            nets.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            return _EVERYWHERE
    return tuple(nets)


def _label(grant: Grant, prefix_lists: Mapping[str, PrefixList]) -> str:
    if grant.kind != "prefix_list":
        return grant.source
    found = prefix_lists.get(grant.source)
    if found is None:
        return f"{grant.source} (unreadable prefix list)"
    if found.aws_managed:
        return f"{grant.source} ({found.name}, AWS-managed, not allow-listed)"
    return f"{grant.source} ({found.name})"


def _justification(tags: Mapping[str, str]) -> str:
    return tags.get(JUSTIFICATION_TAG_KEY, "").strip()


def _justified(tags: Mapping[str, str]) -> bool:
    return len(_justification(tags)) >= MIN_JUSTIFICATION_CHARS


def _annotation(scenario: int, findings: list[str]) -> str:
    text = f"[S{scenario}] " + "; ".join(findings)
    return text if len(text) <= ANNOTATION_LIMIT else text[: ANNOTATION_LIMIT - 1] + "…"


def _ports(raw: Any, default: str, name: str) -> frozenset[int]:
    text = default if raw is None or str(raw).strip() == "" else str(raw)
    ports: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 0 <= int(part) <= 65535:
            raise InvalidParametersError(f"{name}: {part!r} is not a port number (0..65535)")
        ports.add(int(part))
    return frozenset(ports)


def _share_parameter(raw: Any) -> float:
    if raw is None or str(raw).strip() == "":
        return DEFAULT_WORLD_SHARE
    try:
        share = float(str(raw))
    except ValueError:
        raise InvalidParametersError(f"worldShare: {raw!r} is not a number") from None
    if not 0 < share < 0.5:
        raise InvalidParametersError(f"worldShare: {raw!r} must be more than 0 and less than 0.5")
    return share
