"""A security group's ingress as `Grant`s (one source on one protocol and port range), from either view of it.

AWS Config items hold ``ipPermissions`` (several sources each); EC2's DescribeSecurityGroupRules holds one rule per
source, with the rule ID that a precise revoke needs. Both become the same grants for
:func:`lambdas.sg_open_world.logic.decide`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

RESOURCE_TYPE = "AWS::EC2::SecurityGroup"
_ICMP = frozenset({"icmp", "1", "icmpv6", "58"})
_PORT_PROTOCOLS = {"tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp"}
ALL_PORTS = (0, 65535)


@dataclass(frozen=True)
class Grant:
    """One source admitted on one protocol and port range: a security-group rule."""

    protocol: str  # "all", "tcp", "udp" or a port-less protocol as given
    from_port: int | None
    to_port: int | None
    source: str  # a CIDR, a prefix-list ID or a security-group ID
    kind: Literal["cidr", "prefix_list", "group"]
    rule_id: str | None = None  # SecurityGroupRuleId, when the grant comes from EC2

    def ports(self) -> str:
        if self.protocol == "all":
            return "all traffic"
        if self.from_port is None:
            return f"protocol {self.protocol}"
        span = str(self.from_port) if self.from_port == self.to_port else f"{self.from_port}-{self.to_port}"
        return f"{self.protocol} {span}"

    def describe(self) -> str:
        return f"{self.ports()} from {self.source}"


def grants_from_config(permissions: Iterable[Mapping[str, Any]]) -> list[Grant]:
    """The grants of a Config item's ``ipPermissions`` (one per source), ICMP left out."""
    grants: list[Grant] = []
    for permission in permissions:
        protocol, low, high = protocol_ports(
            permission.get("ipProtocol", "-1"), permission.get("fromPort"), permission.get("toPort")
        )
        if protocol is None:
            continue
        sources: list[tuple[str, Literal["cidr", "prefix_list", "group"]]] = [(c, "cidr") for c in cidrs(permission)]
        sources += [(str(p.get("prefixListId")), "prefix_list") for p in permission.get("prefixListIds") or []]
        sources += [(str(p.get("groupId")), "group") for p in permission.get("userIdGroupPairs") or []]
        grants.extend(Grant(protocol, low, high, source, kind) for source, kind in sources)
    return grants


def grants_from_rules(rules: Iterable[Mapping[str, Any]]) -> list[Grant]:
    """The grants of EC2 ``DescribeSecurityGroupRules`` entries (ingress only), each with its rule ID."""
    grants: list[Grant] = []
    for rule in rules:
        if rule.get("IsEgress"):
            continue
        protocol, low, high = protocol_ports(rule.get("IpProtocol", "-1"), rule.get("FromPort"), rule.get("ToPort"))
        if protocol is None:
            continue
        source: tuple[str, Literal["cidr", "prefix_list", "group"]]
        if rule.get("CidrIpv4"):
            source = (str(rule["CidrIpv4"]), "cidr")
        elif rule.get("CidrIpv6"):
            source = (str(rule["CidrIpv6"]), "cidr")
        elif rule.get("PrefixListId"):
            source = (str(rule["PrefixListId"]), "prefix_list")
        else:
            source = (str((rule.get("ReferencedGroupInfo") or {}).get("GroupId")), "group")
        grants.append(Grant(protocol, low, high, source[0], source[1], rule_id=rule.get("SecurityGroupRuleId")))
    return grants


def prefix_list_ids(grants: Iterable[Grant]) -> list[str]:
    return sorted({g.source for g in grants if g.kind == "prefix_list"})


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


def configuration_prefix_list_ids(configuration_item: Mapping[str, Any]) -> list[str]:
    """The prefix lists a Config item's ingress refers to (to resolve before `evaluate`)."""
    return prefix_list_ids(grants_from_config(configuration(configuration_item).get("ipPermissions") or []))


def tags_of(item: Mapping[str, Any]) -> dict[str, str]:
    """Tags as a dict: Config items carry ``tags`` as a dict; the configuration's own list is the fallback."""
    tags = item.get("tags")
    if isinstance(tags, Mapping) and tags:
        return {str(k): str(v) for k, v in tags.items()}
    listed = configuration(item).get("tags") or []
    return {str(t.get("key")): str(t.get("value", "")) for t in listed if isinstance(t, Mapping)}


def protocol_ports(raw_protocol: Any, low: Any, high: Any) -> tuple[str | None, int | None, int | None]:
    """(protocol, from, to): None protocol for ICMP (ignored), None ports for port-less protocols."""
    protocol = str(raw_protocol).lower()
    if protocol in _ICMP:
        return None, None, None
    if protocol == "-1":
        return "all", None, None
    if protocol in _PORT_PROTOCOLS:
        # Absent or -1 ports on tcp/udp mean the whole range.
        if low is None or high is None or int(low) < 0 or int(high) < 0:
            return _PORT_PROTOCOLS[protocol], *ALL_PORTS
        return _PORT_PROTOCOLS[protocol], int(low), int(high)
    return protocol, None, None


def configuration(item: Mapping[str, Any]) -> Mapping[str, Any]:
    configuration = item.get("configuration") or {}
    # GetResourceConfigHistory returns the configuration as a JSON string.
    if isinstance(configuration, str):
        configuration = json.loads(configuration)
    return configuration if isinstance(configuration, Mapping) else {}


def cidrs(permission: Mapping[str, Any]) -> list[str]:
    found = [str(e.get("cidrIp", "")) for e in permission.get("ipv4Ranges") or []]
    found += [str(e.get("cidrIpv6", "")) for e in permission.get("ipv6Ranges") or []]
    # Config items repeat the IPv4 ranges as plain strings in `ipRanges`; read both, report each CIDR once.
    found += [e if isinstance(e, str) else str(e.get("cidrIp", "")) for e in permission.get("ipRanges") or []]
    return [c for c in dict.fromkeys(found) if c]
