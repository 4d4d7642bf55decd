"""Decision logic of the `sg-open-world` Config rule: pure functions over AWS Config configuration items.

Rule name: sg-open-world
Description: a security group must not accept ingress from the whole internet (``0.0.0.0/0`` or ``::/0``) unless
    the exposure is on an allowed port and the group carries a written justification.
Trigger: configuration changes of ``AWS::EC2::SecurityGroup`` and a periodic sweep.
Rule parameters (all optional, strings, as AWS Config passes them):
    sensitivePorts  comma list of ports that must never be world-open unless also allowed
                    (default ``22,3389,3306,5432,1433,1521,6379,9200,27017,2049,445,23,21``)
    allowedPorts    comma list of ports that may be world-open when the group is tagged (default ``80,443``)
    allowTagKey     tag whose value justifies world ingress (default ``mlbase:allow-world-ingress``); the value
                    must hold at least 10 non-blank characters

Decisions that are not obvious, and why:
- Any world ingress needs a justification, not only ingress on sensitive ports: a port that is neither sensitive
  nor allowed (say 8080) is NON_COMPLIANT even when tagged, because nobody has reviewed it. Opening it means adding
  it to ``allowedPorts`` in the rule (reviewed code), plus tagging the group.
- A sensitive port is NON_COMPLIANT even when tagged, unless the rule's ``allowedPorts`` also lists it.
- A port range is judged by every port it covers: ``80-443`` covers 81..442, which are not allowed.
- ICMP (``icmp``/``1``, ``icmpv6``/``58``) reaches no service port and path-MTU discovery needs it from anywhere,
  so it is ignored. Other port-less protocols (GRE, ESP...) opened to the world cannot be allow-listed by port and
  are NON_COMPLIANT.
- Only ``/0`` ranges count as the world. Prefix lists and references to other groups are never world-open: their
  membership is controlled inside the account.
- The evaluation names the first violating permissions in the annotation (AWS Config keeps 256 characters).

Scenarios (the number is carried in each annotation as ``[S<n>]``):
  Scenario 1
    Given a configuration item of another resource type
     Then NOT_APPLICABLE
  Scenario 2
    Given a security group that has been deleted (or left the rule's scope)
     Then NOT_APPLICABLE
  Scenario 3
    Given a security group with no ingress from ``0.0.0.0/0`` or ``::/0`` (none at all, egress only, private
          CIDRs, prefix lists, other groups, or world-open ICMP only)
     Then COMPLIANT
  Scenario 4
    Given world ingress on all protocols (``-1``)
     Then NON_COMPLIANT, tagged or not (all ports include the sensitive ones)
  Scenario 5
    Given world ingress whose port range covers a sensitive port that is not in allowedPorts
     Then NON_COMPLIANT, tagged or not
  Scenario 6
    Given world ingress on a port range with a port that is neither sensitive nor allowed
     Then NON_COMPLIANT, tagged or not
  Scenario 7
    Given world ingress on a port-less protocol other than ICMP (GRE, ESP, ...)
     Then NON_COMPLIANT, tagged or not
  Scenario 8
    Given world ingress only on allowed ports
     And the group has no allow tag, or its justification is shorter than 10 characters
     Then NON_COMPLIANT
  Scenario 9
    Given world ingress only on allowed ports
     And the group carries the allow tag with a justification of at least 10 characters
     Then COMPLIANT
  Scenario 10
    Given rule parameters that do not parse (a port that is not a number in 0..65535, an empty tag key)
     Then the evaluation fails with InvalidParametersError (Config shows the rule in error; nothing is guessed)
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Compliance = Literal["COMPLIANT", "NON_COMPLIANT", "NOT_APPLICABLE"]

RESOURCE_TYPE = "AWS::EC2::SecurityGroup"
DEFAULT_SENSITIVE_PORTS = "22,3389,3306,5432,1433,1521,6379,9200,27017,2049,445,23,21"
DEFAULT_ALLOWED_PORTS = "80,443"
DEFAULT_ALLOW_TAG_KEY = "mlbase:allow-world-ingress"
MIN_JUSTIFICATION_CHARS = 10
ANNOTATION_LIMIT = 256
DELETED_STATUSES = frozenset({"ResourceDeleted", "ResourceDeletedNotRecorded"})
_ICMP = frozenset({"icmp", "1", "icmpv6", "58"})
_PORT_PROTOCOLS = {"tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp"}
_ALL_PORTS = (0, 65535)


class InvalidParametersError(ValueError):
    """The rule's parameters are malformed (scenario 10)."""


@dataclass(frozen=True)
class RuleParameters:
    sensitive_ports: frozenset[int]
    allowed_ports: frozenset[int]
    allow_tag_key: str


@dataclass(frozen=True)
class WorldRule:
    """One world-open ingress permission, normalized."""

    protocol: str  # "all", "tcp", "udp" or the protocol as given
    from_port: int | None
    to_port: int | None
    cidr: str

    def describe(self) -> str:
        if self.protocol == "all":
            return f"all traffic from {self.cidr}"
        if self.from_port is None:
            return f"protocol {self.protocol} from {self.cidr}"
        ports = str(self.from_port) if self.from_port == self.to_port else f"{self.from_port}-{self.to_port}"
        return f"{self.protocol} {ports} from {self.cidr}"


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
    tag_key = str(params.get("allowTagKey") or DEFAULT_ALLOW_TAG_KEY).strip()
    if not tag_key:
        raise InvalidParametersError("allowTagKey must not be blank")
    return RuleParameters(
        sensitive_ports=_ports(params.get("sensitivePorts"), DEFAULT_SENSITIVE_PORTS, "sensitivePorts"),
        allowed_ports=_ports(params.get("allowedPorts"), DEFAULT_ALLOWED_PORTS, "allowedPorts"),
        allow_tag_key=tag_key,
    )


def evaluate(configuration_item: Mapping[str, Any], rule_parameters: Mapping[str, Any]) -> tuple[Compliance, str]:
    """Decide one configuration item: (compliance, annotation with its scenario number)."""
    params = parse_rule_parameters(rule_parameters)  # scenario 10 raises here
    if configuration_item.get("resourceType") != RESOURCE_TYPE:
        return "NOT_APPLICABLE", "[S1] not a security group"
    if configuration_item.get("configurationItemStatus") in DELETED_STATUSES:
        return "NOT_APPLICABLE", "[S2] security group deleted"
    configuration = _configuration(configuration_item)
    world = list(world_rules(configuration.get("ipPermissions") or []))
    if not world:
        return "COMPLIANT", "[S3] no ingress from 0.0.0.0/0 or ::/0"

    hard: list[tuple[int, str]] = []  # violations a tag cannot excuse
    for rule in world:
        finding = _hard_violation(rule, params)
        if finding:
            hard.append(finding)
    if hard:
        scenario = hard[0][0]
        return "NON_COMPLIANT", _annotation(scenario, [text for _, text in hard])

    justification = _tags(configuration_item).get(params.allow_tag_key, "").strip()
    opened = ", ".join(rule.describe() for rule in world)
    if len(justification) < MIN_JUSTIFICATION_CHARS:
        why = "no" if not justification else "a too short"
        return "NON_COMPLIANT", _annotation(
            8, [f"allowed port open to the world with {why} justification in tag {params.allow_tag_key}: {opened}"]
        )
    return "COMPLIANT", _annotation(9, [f"justified world ingress ({justification}): {opened}"])


def world_rules(permissions: Iterable[Mapping[str, Any]]) -> Iterable[WorldRule]:
    """The world-open (``/0``) ingress permissions, one per CIDR, ICMP left out (see module docstring)."""
    for permission in permissions:
        protocol = str(permission.get("ipProtocol", "-1")).lower()
        if protocol in _ICMP:
            continue
        for cidr in _cidrs(permission):
            if not _is_world(cidr):
                continue
            if protocol == "-1":
                yield WorldRule("all", None, None, cidr)
            elif protocol in _PORT_PROTOCOLS:
                low, high = _port_range(permission)
                yield WorldRule(_PORT_PROTOCOLS[protocol], low, high, cidr)
            else:
                yield WorldRule(protocol, None, None, cidr)


def configuration_item_from_ec2(group: Mapping[str, Any], capture_time: str) -> dict[str, Any]:
    """Shape an EC2 ``DescribeSecurityGroups`` entry like an AWS Config item, for the periodic sweep."""
    permissions = [
        {
            "ipProtocol": p.get("IpProtocol", "-1"),
            "fromPort": p.get("FromPort"),
            "toPort": p.get("ToPort"),
            "ipv4Ranges": [{"cidrIp": r["CidrIp"]} for r in p.get("IpRanges", [])],
            "ipv6Ranges": [{"cidrIpv6": r["CidrIpv6"]} for r in p.get("Ipv6Ranges", [])],
            "prefixListIds": [{"prefixListId": r["PrefixListId"]} for r in p.get("PrefixListIds", [])],
            "userIdGroupPairs": [{"groupId": r.get("GroupId")} for r in p.get("UserIdGroupPairs", [])],
        }
        for p in group.get("IpPermissions", [])
    ]
    return {
        "resourceType": RESOURCE_TYPE,
        "resourceId": group["GroupId"],
        "configurationItemStatus": "OK",
        "configurationItemCaptureTime": capture_time,
        "configuration": {
            "groupId": group["GroupId"],
            "groupName": group.get("GroupName"),
            "ipPermissions": permissions,
        },
        "tags": {t["Key"]: t["Value"] for t in group.get("Tags", [])},
    }


def _hard_violation(rule: WorldRule, params: RuleParameters) -> tuple[int, str] | None:
    """A violation that no tag can excuse, as (scenario, text), or None when only a justification is needed."""
    if rule.protocol == "all":
        return 4, f"{rule.describe()} (all protocols)"
    if rule.from_port is None or rule.to_port is None:
        return 7, f"{rule.describe()} (port-less protocol)"
    low, high = rule.from_port, rule.to_port
    sensitive = sorted(p for p in params.sensitive_ports - params.allowed_ports if low <= p <= high)
    if sensitive:
        return 5, f"{rule.describe()} exposes sensitive port {','.join(map(str, sensitive[:5]))}"
    if high - low + 1 > len(params.allowed_ports) or any(p not in params.allowed_ports for p in range(low, high + 1)):
        return 6, f"{rule.describe()} includes ports not in allowedPorts"
    return None


def _annotation(scenario: int, findings: list[str]) -> str:
    text = f"[S{scenario}] " + "; ".join(findings)
    return text if len(text) <= ANNOTATION_LIMIT else text[: ANNOTATION_LIMIT - 1] + "…"


def _configuration(item: Mapping[str, Any]) -> Mapping[str, Any]:
    configuration = item.get("configuration") or {}
    # GetResourceConfigHistory returns the configuration as a JSON string.
    if isinstance(configuration, str):
        configuration = json.loads(configuration)
    return configuration if isinstance(configuration, Mapping) else {}


def _tags(item: Mapping[str, Any]) -> dict[str, str]:
    """Tags as a dict: Config items carry ``tags`` as a dict; the configuration's own list is the fallback."""
    tags = item.get("tags")
    if isinstance(tags, Mapping) and tags:
        return {str(k): str(v) for k, v in tags.items()}
    listed = _configuration(item).get("tags") or []
    return {str(t.get("key")): str(t.get("value", "")) for t in listed if isinstance(t, Mapping)}


def _cidrs(permission: Mapping[str, Any]) -> list[str]:
    found = [str(e.get("cidrIp", "")) for e in permission.get("ipv4Ranges") or []]
    found += [str(e.get("cidrIpv6", "")) for e in permission.get("ipv6Ranges") or []]
    # Config items repeat the IPv4 ranges as plain strings in `ipRanges`; read both, report each CIDR once.
    found += [e if isinstance(e, str) else str(e.get("cidrIp", "")) for e in permission.get("ipRanges") or []]
    return list(dict.fromkeys(found))


def _is_world(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def _port_range(permission: Mapping[str, Any]) -> tuple[int, int]:
    low, high = permission.get("fromPort"), permission.get("toPort")
    # Absent or -1 ports on tcp/udp mean the whole range.
    if low is None or high is None or int(low) < 0 or int(high) < 0:
        return _ALL_PORTS
    return int(low), int(high)


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
