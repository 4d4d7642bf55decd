"""sg-open-world: the decision over security-group shapes (tables), and the Config handler against moto server.

The real-time guard and its remediation are tested against moto in test_sg_open_world_guard.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from lambdas.common.aws import client as lambda_client
from lambdas.sg_open_world import handler as rule
from lambdas.sg_open_world.grants import Grant
from lambdas.sg_open_world.logic import (
    JUSTIFICATION_TAG_KEY,
    InvalidParametersError,
    PrefixList,
    WorldException,
    decide,
    evaluate,
    parse_exceptions,
    parse_rule_parameters,
)
from tests.conftest import client
from tests.lambdas.conftest import FakeContext

TAG = JUSTIFICATION_TAG_KEY
RESEARCHER_TAG = "mlbase:allow-world-ingress"  # the old key: researchers could write it
GOOD_REASON = "public web frontend, ticket OPS-123"
CAPTURE = "2026-11-27T10:00:00.000Z"


def perm(
    protocol: str = "tcp",
    from_port: int | None = 22,
    to_port: int | None = None,
    v4: tuple[str, ...] = (),
    v6: tuple[str, ...] = (),
    prefix_lists: tuple[str, ...] = (),
    groups: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One ipPermissions entry as AWS Config records it (both ipRanges and ipv4Ranges, like real items)."""
    entry: dict[str, Any] = {
        "ipProtocol": protocol,
        "ipv4Ranges": [{"cidrIp": c} for c in v4],
        "ipRanges": list(v4),
        "ipv6Ranges": [{"cidrIpv6": c} for c in v6],
        "prefixListIds": [{"prefixListId": p} for p in prefix_lists],
        "userIdGroupPairs": [{"groupId": g, "userId": "123456789012"} for g in groups],
    }
    if protocol != "-1":
        entry["fromPort"] = from_port
        entry["toPort"] = from_port if to_port is None else to_port
    return entry


def item(
    *ingress: dict[str, Any],
    egress: tuple[dict[str, Any], ...] = (),
    tags: dict[str, str] | None = None,
    status: str = "OK",
    resource_type: str = "AWS::EC2::SecurityGroup",
    group_id: str = "sg-0123456789abcdef0",
) -> dict[str, Any]:
    """A configuration item shaped like the ones AWS Config sends for AWS::EC2::SecurityGroup."""
    tags = tags or {}
    return {
        "configurationItemVersion": "1.3",
        "configurationItemCaptureTime": CAPTURE,
        "configurationItemStatus": status,
        "awsAccountId": "123456789012",
        "awsRegion": "ap-northeast-1",
        "resourceType": resource_type,
        "resourceId": group_id,
        "resourceName": "web",
        "ARN": f"arn:aws:ec2:ap-northeast-1:123456789012:security-group/{group_id}",
        "configuration": {
            "description": "test group",
            "groupName": "web",
            "ipPermissions": list(ingress),
            "ownerId": "123456789012",
            "groupId": group_id,
            "ipPermissionsEgress": list(egress) or [perm("-1", v4=("0.0.0.0/0",))],
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
            "vpcId": "vpc-0123456789abcdef0",
        },
        "tags": tags,
        "relationships": [],
    }


WORLD4 = ("0.0.0.0/0",)
WORLD6 = ("::/0",)
HALVES4 = ("0.0.0.0/1", "128.0.0.0/1")
HALVES6 = ("::/1", "8000::/1")
QUARTERS4 = ("0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/2", "192.0.0.0/2")
# 32 public /13s from 16.0.0.0: each about 0.014 % of public IPv4, together about 0.45 %, over 1/256.
SMALL_BLOCKS = tuple(f"16.{8 * i}.0.0/13" for i in range(32))
OFFICE = "100.24.0.0/24"  # a small public range (not in any special-purpose block)
ALLOW = {TAG: GOOD_REASON}
EXCEPTED = "sg-0e0e0e0e0e0e0e0e0"
PREFIX_LISTS = {
    "pl-private": PrefixList("pl-private", "offices", False, ("10.0.0.0/8", "192.168.0.0/16")),
    "pl-world": PrefixList("pl-world", "everyone", False, ("0.0.0.0/0",)),
    "pl-lower-half": PrefixList("pl-lower-half", "half", False, ("0.0.0.0/1",)),
    "pl-office": PrefixList("pl-office", "office", False, (OFFICE,)),
    "pl-cloudfront": PrefixList("pl-cloudfront", "com.amazonaws.global.cloudfront.origin-facing", True),
    "pl-healthchecks": PrefixList("pl-healthchecks", "com.amazonaws.ap-northeast-1.ipv6.route53-healthchecks", True),
    "pl-s3": PrefixList("pl-s3", "com.amazonaws.ap-northeast-1.s3", True),
    # A customer list may carry an AWS-looking name only in a test; it is still judged by its entries.
    "pl-fake-aws": PrefixList("pl-fake-aws", "com.amazonaws.global.cloudfront.origin-facing", False, ("0.0.0.0/0",)),
}
EXCEPTIONS = {EXCEPTED: WorldException(frozenset({8443}), "partner webhook, PLAT-42")}

# (id, configuration item, rule parameters, expected compliance, expected scenario)
CASES: list[tuple[str, dict[str, Any], dict[str, str], str, int]] = [
    ("other-resource-type", item(resource_type="AWS::S3::Bucket"), {}, "NOT_APPLICABLE", 1),
    ("deleted", item(perm(v4=WORLD4), status="ResourceDeleted"), {}, "NOT_APPLICABLE", 2),
    ("deleted-not-recorded", item(status="ResourceDeletedNotRecorded"), {}, "NOT_APPLICABLE", 2),
    ("empty-group", item(), {}, "COMPLIANT", 3),
    ("egress-only-world", item(egress=(perm("-1", v4=WORLD4, v6=WORLD6),)), {}, "COMPLIANT", 3),
    ("private-cidr-ssh", item(perm(v4=("10.0.0.0/8",))), {}, "COMPLIANT", 3),
    ("private-ipv6-ssh", item(perm(v6=("2001:db8::/32",))), {}, "COMPLIANT", 3),
    ("private-prefix-list-all", item(perm("-1", prefix_lists=("pl-private",))), {}, "COMPLIANT", 3),
    ("group-pair-db", item(perm(from_port=5432, groups=("sg-0aaa",))), {}, "COMPLIANT", 3),
    ("world-icmp", item(perm("icmp", from_port=3, to_port=4, v4=WORLD4)), {}, "COMPLIANT", 3),
    ("world-icmpv6-number", item(perm("58", from_port=-1, to_port=-1, v6=WORLD6)), {}, "COMPLIANT", 3),
    ("world-all-protocols-v4", item(perm("-1", v4=WORLD4)), {}, "NON_COMPLIANT", 4),
    ("world-all-protocols-v6", item(perm("-1", v6=WORLD6)), {}, "NON_COMPLIANT", 4),
    ("world-all-protocols-tagged", item(perm("-1", v4=WORLD4), tags=ALLOW), {}, "NON_COMPLIANT", 4),
    ("world-ssh-v4", item(perm(from_port=22, v4=WORLD4)), {}, "NON_COMPLIANT", 5),
    ("world-rdp-v6", item(perm(from_port=3389, v6=WORLD6)), {}, "NON_COMPLIANT", 5),
    ("world-ssh-tagged", item(perm(from_port=22, v4=WORLD4), tags=ALLOW), {}, "NON_COMPLIANT", 5),
    ("world-range-covers-mysql", item(perm(from_port=3000, to_port=4000, v4=WORLD4)), {}, "NON_COMPLIANT", 5),
    ("world-tcp-all-ports", item(perm(from_port=0, to_port=65535, v4=WORLD4), tags=ALLOW), {}, "NON_COMPLIANT", 5),
    ("world-udp-nfs", item(perm("udp", from_port=2049, v4=WORLD4)), {}, "NON_COMPLIANT", 5),
    ("world-protocol-number-6", item(perm("6", from_port=6379, v6=WORLD6)), {}, "NON_COMPLIANT", 5),
    ("world-8080-untagged", item(perm(from_port=8080, v4=WORLD4)), {}, "NON_COMPLIANT", 6),
    ("world-8080-tagged", item(perm(from_port=8080, v4=WORLD4), tags=ALLOW), {}, "NON_COMPLIANT", 6),
    ("world-range-80-443-tagged", item(perm(from_port=80, to_port=443, v4=WORLD4), tags=ALLOW), {}, "NON_COMPLIANT", 6),
    ("world-gre", item(perm("47", from_port=None, to_port=None, v4=WORLD4), tags=ALLOW), {}, "NON_COMPLIANT", 7),
    ("world-https-untagged", item(perm(from_port=443, v4=WORLD4, v6=WORLD6)), {}, "NON_COMPLIANT", 8),
    ("world-https-short-reason", item(perm(from_port=443, v4=WORLD4), tags={TAG: "web"}), {}, "NON_COMPLIANT", 8),
    (
        "world-https-blank-reason",
        item(perm(from_port=443, v4=WORLD4), tags={TAG: "          "}),
        {},
        "NON_COMPLIANT",
        8,
    ),
    ("world-https-other-tag", item(perm(from_port=443, v4=WORLD4), tags={"Name": GOOD_REASON}), {}, "NON_COMPLIANT", 8),
    ("world-https-tagged", item(perm(from_port=443, v4=WORLD4, v6=WORLD6), tags=ALLOW), {}, "COMPLIANT", 9),
    (
        "world-http-and-https-tagged-plus-private-ssh",
        item(perm(from_port=80, v4=WORLD4), perm(from_port=443, v6=WORLD6), perm(v4=("10.0.0.0/16",)), tags=ALLOW),
        {},
        "COMPLIANT",
        9,
    ),
    (
        "custom-allowed-port",
        item(perm(from_port=8443, v4=WORLD4), tags=ALLOW),
        {"allowedPorts": "8443"},
        "COMPLIANT",
        9,
    ),
    (
        "custom-allowed-replaces-default",
        item(perm(from_port=443, v4=WORLD4), tags=ALLOW),
        {"allowedPorts": "8443"},
        "NON_COMPLIANT",
        6,
    ),
    (
        "sensitive-but-explicitly-allowed",
        item(perm(from_port=22, v4=WORLD4), tags=ALLOW),
        {"allowedPorts": "22"},
        "COMPLIANT",
        9,
    ),
    (
        "custom-sensitive-list",
        item(perm(from_port=8080, v4=WORLD4)),
        {"sensitivePorts": "8080", "allowedPorts": "443"},
        "NON_COMPLIANT",
        5,
    ),
    (
        "custom-world-share",
        item(perm(from_port=22, v4=("8.0.0.0/9",))),
        {"worldShare": "0.001"},
        "NON_COMPLIANT",
        5,
    ),
    (
        "tags-only-in-configuration-list",
        {**item(perm(from_port=443, v4=WORLD4), tags=ALLOW), "tags": {}},
        {},
        "COMPLIANT",
        9,
    ),
    (
        "configuration-as-json-string",
        {
            **item(perm(from_port=22, v4=WORLD4)),
            "configuration": json.dumps(item(perm(from_port=22, v4=WORLD4))["configuration"]),
        },
        {},
        "NON_COMPLIANT",
        5,
    ),
]


@pytest.mark.parametrize(
    ("configuration_item", "params", "expected", "scenario"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_evaluate(configuration_item: dict[str, Any], params: dict[str, str], expected: str, scenario: int) -> None:
    compliance, annotation = evaluate(configuration_item, params, prefix_lists=PREFIX_LISTS, exceptions=EXCEPTIONS)
    assert (compliance, annotation.split("]")[0]) == (expected, f"[S{scenario}")
    assert len(annotation) <= 256


# What "the world" is, and who may grant an exception: (id, item, expected, scenario, why).
WORLD_CASES: list[tuple[str, dict[str, Any], str, int, str]] = [
    ("v4-halves-one-rule", item(perm(from_port=8888, v4=HALVES4)), "NON_COMPLIANT", 6, "two /1 halves are 0.0.0.0/0"),
    (
        "v4-halves-two-rules",
        item(perm(from_port=8888, v4=HALVES4[:1]), perm(from_port=8888, v4=HALVES4[1:])),
        "NON_COMPLIANT",
        6,
        "the union of all rules counts, not each rule",
    ),
    ("v4-quarters", item(perm(from_port=443, v4=QUARTERS4)), "NON_COMPLIANT", 8, "four /2 quarters, untagged"),
    ("v4-one-quarter", item(perm(from_port=22, v4=QUARTERS4[1:2])), "NON_COMPLIANT", 5, "a quarter is far over 1/256"),
    ("v4-public-slash-8", item(perm(from_port=22, v4=("8.0.0.0/8",))), "NON_COMPLIANT", 5, "a public /8 is over 1/256"),
    ("v4-public-slash-9", item(perm(from_port=22, v4=("8.0.0.0/9",))), "COMPLIANT", 3, "a public /9 is under 1/256"),
    (
        "v4-small-blocks-add-up",
        item(*(perm(from_port=3306, v4=(block,)) for block in SMALL_BLOCKS)),
        "NON_COMPLIANT",
        5,
        "32 rules of one /13 each: every one is small, together they are the world",
    ),
    (
        "v4-small-blocks-on-different-ports",
        item(*(perm(from_port=9000 + i, v4=(block,)) for i, block in enumerate(SMALL_BLOCKS))),
        "COMPLIANT",
        3,
        "each port is reached by one /13 only",
    ),
    (
        "v4-private-not-counted",
        item(perm(from_port=22, v4=("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"))),
        "COMPLIANT",
        3,
        "RFC 1918 and shared address space are not public",
    ),
    (
        "v4-reserved-and-multicast-not-counted",
        item(perm("-1", v4=("224.0.0.0/3", "127.0.0.0/8", "169.254.0.0/16", "0.0.0.0/8"))),
        "COMPLIANT",
        3,
        "multicast, reserved, loopback, link-local and this-network hold no public source",
    ),
    ("v4-office-range", item(perm(from_port=22, v4=(OFFICE,))), "COMPLIANT", 3, "one small public range"),
    ("v6-halves", item(perm("-1", v6=HALVES6)), "NON_COMPLIANT", 4, "::/1 plus 8000::/1 is ::/0"),
    ("v6-global-unicast", item(perm(from_port=22, v6=("2000::/3",))), "NON_COMPLIANT", 5, "2000::/3 is all of it"),
    ("v6-slash-4", item(perm(from_port=443, v6=("2000::/4",))), "NON_COMPLIANT", 8, "half of the public IPv6 space"),
    (
        "v6-not-public",
        item(perm(from_port=22, v6=("fc00::/7", "fe80::/10", "ff00::/8", "4000::/2", "2001:db8::/32"))),
        "COMPLIANT",
        3,
        "unique-local, link-local, multicast, unallocated and documentation space is not public",
    ),
    ("v6-one-allocation", item(perm(from_port=22, v6=("2400:cb00::/32",))), "COMPLIANT", 3, "a /32 is tiny"),
    ("v4-and-v6-halves", item(perm(from_port=22, v4=HALVES4[:1], v6=HALVES6[:1])), "NON_COMPLIANT", 5, "each half"),
    (
        "prefix-list-holding-the-world",
        item(perm(from_port=22, prefix_lists=("pl-world",))),
        "NON_COMPLIANT",
        5,
        "a customer-managed list counts by its entries",
    ),
    (
        "prefix-list-plus-cidr",
        item(perm(from_port=8888, v4=HALVES4[1:], prefix_lists=("pl-lower-half",))),
        "NON_COMPLIANT",
        6,
        "entries and CIDRs add up",
    ),
    ("prefix-list-private", item(perm(from_port=22, prefix_lists=("pl-private",))), "COMPLIANT", 3, "private entries"),
    ("prefix-list-office", item(perm(from_port=22, prefix_lists=("pl-office",))), "COMPLIANT", 3, "a small entry"),
    (
        "prefix-list-unreadable",
        item(perm(from_port=22, prefix_lists=("pl-gone",))),
        "NON_COMPLIANT",
        5,
        "a list that cannot be read counts as the whole space",
    ),
    (
        "aws-managed-allow-listed",
        item(perm(from_port=443, prefix_lists=("pl-cloudfront", "pl-healthchecks"))),
        "COMPLIANT",
        3,
        "CloudFront origin-facing and Route 53 health checkers are on the allow-list",
    ),
    (
        "aws-managed-not-allow-listed",
        item(perm(from_port=443, prefix_lists=("pl-s3",))),
        "NON_COMPLIANT",
        8,
        "an AWS-managed list off the allow-list counts as the whole space",
    ),
    (
        "customer-list-with-an-aws-name",
        item(perm(from_port=443, prefix_lists=("pl-fake-aws",))),
        "NON_COMPLIANT",
        8,
        "only the AWS owner makes a list AWS-managed; the name alone does not",
    ),
    (
        "researcher-written-tag",
        item(perm(from_port=443, v4=WORLD4), tags={RESEARCHER_TAG: "need it for demo"}),
        "NON_COMPLIANT",
        8,
        "the old tag key was writable by researchers and justifies nothing",
    ),
    ("platform-tag", item(perm(from_port=443, v4=WORLD4), tags=ALLOW), "COMPLIANT", 9, "the platform-only key"),
    (
        "config-exception",
        item(perm(from_port=8443, v4=WORLD4, v6=WORLD6), group_id=EXCEPTED),
        "COMPLIANT",
        11,
        "listed in config/platform.yaml for this group and port",
    ),
    (
        "config-exception-other-port",
        item(perm(from_port=8080, v4=WORLD4), group_id=EXCEPTED, tags=ALLOW),
        "NON_COMPLIANT",
        6,
        "the exception names 8443 only",
    ),
    (
        "config-exception-other-group",
        item(perm(from_port=8443, v4=WORLD4), tags=ALLOW),
        "NON_COMPLIANT",
        6,
        "the exception names one group ID",
    ),
    (
        "config-exception-does-not-justify-allowed-ports",
        item(perm(from_port=8443, v4=WORLD4), perm(from_port=443, v4=WORLD4), group_id=EXCEPTED),
        "NON_COMPLIANT",
        8,
        "443 still needs the platform tag",
    ),
    (
        "all-traffic-from-office-adds-to-justified-443",
        item(perm("-1", v4=(OFFICE,)), perm(from_port=443, v4=WORLD4), tags=ALLOW),
        "COMPLIANT",
        9,
        "all traffic from one small range is not the world; 443 is justified",
    ),
]


@pytest.mark.parametrize(
    ("configuration_item", "expected", "scenario"),
    [c[1:4] for c in WORLD_CASES],
    ids=[c[0] for c in WORLD_CASES],
)
def test_what_the_world_is(configuration_item: dict[str, Any], expected: str, scenario: int) -> None:
    compliance, annotation = evaluate(configuration_item, {}, prefix_lists=PREFIX_LISTS, exceptions=EXCEPTIONS)
    assert (compliance, annotation.split("]")[0]) == (expected, f"[S{scenario}")


def grant(port: int | None, source: str, rule_id: str, protocol: str = "tcp", kind: str = "cidr") -> Grant:
    return Grant(protocol, port, port, source, kind, rule_id)  # type: ignore[arg-type]


# What remediation revokes: (id, grants, tags, rule IDs to revoke, why).
REVOKE_CASES: list[tuple[str, list[Grant], dict[str, str], set[str], str]] = [
    (
        "halves-go-office-stays",
        [grant(8888, HALVES4[0], "a"), grant(8888, HALVES4[1], "b"), grant(8888, OFFICE, "office")],
        {},
        {"a", "b"},
        "the biggest sources go until what is left is under the share",
    ),
    (
        "justified-and-private-stay",
        [grant(8888, "0.0.0.0/0", "bad"), grant(443, "0.0.0.0/0", "web"), grant(22, "10.0.0.0/8", "private")],
        ALLOW,
        {"bad"},
        "443 is tagged by the platform, 10.0.0.0/8 is private",
    ),
    (
        "untagged-allowed-port-goes-with-the-hard-one",
        [grant(22, "0.0.0.0/0", "ssh"), grant(443, "::/0", "web")],
        {},
        {"ssh", "web"},
        "nothing justifies either",
    ),
    (
        "config-excepted-port-stays",
        [grant(22, "0.0.0.0/0", "ssh"), grant(8443, "0.0.0.0/0", "partner")],
        {},
        {"ssh"},
        "8443 is the group's reviewed exception",
    ),
    (
        "world-prefix-list",
        [grant(22, "pl-world", "list", kind="prefix_list"), grant(22, "pl-office", "office", kind="prefix_list")],
        {},
        {"list"},
        "the list holding 0.0.0.0/0 goes, the office list stays",
    ),
    (
        "all-traffic",
        [grant(None, HALVES4[0], "h1", protocol="all"), grant(None, HALVES4[1], "h2", protocol="all")],
        ALLOW,
        {"h1", "h2"},
        "all protocols cannot be justified",
    ),
    (
        "v6-halves",
        [grant(None, "::/1", "h1", protocol="all"), grant(None, "8000::/1", "h2", protocol="all")],
        {},
        {"h1"},
        "::/1 holds all of 2000::/3; 8000::/1 holds no global unicast space, so it stays",
    ),
]


@pytest.mark.parametrize(
    ("grants", "tags", "expected"), [c[1:4] for c in REVOKE_CASES], ids=[c[0] for c in REVOKE_CASES]
)
def test_remediation_revokes_only_the_offending_grants(
    grants: list[Grant], tags: dict[str, str], expected: set[str]
) -> None:
    decision = decide(
        grants, tags, parse_rule_parameters({}), prefix_lists=PREFIX_LISTS, exception=EXCEPTIONS[EXCEPTED]
    )
    assert decision.compliance == "NON_COMPLIANT"
    assert {g.rule_id for g in decision.offending} == expected


def test_compliant_decisions_revoke_nothing() -> None:
    decision = decide(
        [grant(443, "0.0.0.0/0", "web")], ALLOW, parse_rule_parameters({}), prefix_lists={}, exception=None
    )
    assert (decision.compliance, decision.offending) == ("COMPLIANT", ())


def test_annotation_names_every_source_of_a_split_world() -> None:
    _, annotation = evaluate(item(perm(from_port=8888, v4=HALVES4)), {})
    assert annotation == "[S6] tcp 8888 from 0.0.0.0/1, 128.0.0.0/1 includes ports not in allowedPorts"


def test_annotation_names_a_prefix_list_and_why_it_counts() -> None:
    _, annotation = evaluate(item(perm(from_port=443, prefix_lists=("pl-s3",))), {}, prefix_lists=PREFIX_LISTS)
    assert annotation == (
        f"[S8] allowed port open to the world with no justification in tag {TAG}: "
        "tcp 443 from pl-s3 (com.amazonaws.ap-northeast-1.s3, AWS-managed, not allow-listed)"
    )


def test_annotation_names_the_config_exception() -> None:
    _, annotation = evaluate(item(perm(from_port=8443, v4=WORLD4), group_id=EXCEPTED), {}, exceptions=EXCEPTIONS)
    assert annotation == "[S11] config exception (partner webhook, PLAT-42): tcp 8443 from 0.0.0.0/0"


def test_exceptions_parse_from_the_stack_json() -> None:
    raw = json.dumps([{"group_id": EXCEPTED, "ports": [8443, 443], "reason": "partner webhook, PLAT-42"}])
    assert parse_exceptions(raw) == {EXCEPTED: WorldException(frozenset({443, 8443}), "partner webhook, PLAT-42")}
    assert parse_exceptions("") == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{", "MLBASE_WORLD_EXCEPTIONS is not JSON"),
        ("{}", "MLBASE_WORLD_EXCEPTIONS must be a JSON list"),
        ('[{"group_id": "web", "ports": [443]}]', r"MLBASE_WORLD_EXCEPTIONS\[0\] needs a group_id"),
        ('[{"group_id": "sg-0abc", "ports": []}]', r"MLBASE_WORLD_EXCEPTIONS\[0\] needs a group_id"),
        ('[{"group_id": "sg-0abc", "ports": [70000]}]', r"MLBASE_WORLD_EXCEPTIONS\[0\] needs a group_id"),
    ],
)
def test_bad_exceptions_are_refused(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_exceptions(raw)


def test_annotation_names_the_exposure() -> None:
    _, annotation = evaluate(item(perm(from_port=3000, to_port=4000, v6=WORLD6)), {})
    assert annotation == "[S5] tcp 3000-4000 from ::/0 exposes sensitive port 3306,3389"


def test_annotation_is_cut_to_config_limit() -> None:
    many = [perm(from_port=p, v4=WORLD4) for p in range(8000, 8100)]
    compliance, annotation = evaluate(item(*many), {})
    assert compliance == "NON_COMPLIANT"
    assert len(annotation) == 256
    assert annotation.endswith("…")


def test_default_parameters() -> None:
    params = parse_rule_parameters("{}")
    assert params.sensitive_ports == {22, 3389, 3306, 5432, 1433, 1521, 6379, 9200, 27017, 2049, 445, 23, 21}
    assert params.allowed_ports == {80, 443}
    assert params.world_share == 1 / 256


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"sensitivePorts": "22,ssh"}, "sensitivePorts: 'ssh' is not a port number"),
        ({"allowedPorts": "70000"}, "allowedPorts: '70000' is not a port number"),
        ({"allowedPorts": "-1"}, "allowedPorts: '-1' is not a port number"),
        ("not json", "ruleParameters is not JSON"),
        ({"worldShare": "half"}, "worldShare: 'half' is not a number"),
        ({"worldShare": "0.5"}, "worldShare: '0.5' must be more than 0 and less than 0.5"),
        ({"worldShare": "0"}, "worldShare: '0' must be more than 0"),
        ({"allowTagKey": "exposure"}, "unknown rule parameter 'allowTagKey'"),
    ],
)
def test_bad_rule_parameters_are_refused(raw: Any, message: str) -> None:
    with pytest.raises(InvalidParametersError, match=message):
        parse_rule_parameters(raw)


# --- the handler against moto server ------------------------------------------------------------------------


@pytest.fixture
def sent_evaluations(aws: str) -> Iterator[list[dict[str, Any]]]:
    """PutEvaluations requests as they leave boto3 for moto (moto accepts them in test mode but keeps nothing)."""
    calls: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        calls.append(params)

    def answered(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        answers.append({"status": http_response.status_code, "parsed": parsed})

    config = lambda_client("config")
    config.meta.events.register("provide-client-params.config.PutEvaluations", capture)
    config.meta.events.register("after-call.config.PutEvaluations", answered)
    yield calls
    config.meta.events.unregister("provide-client-params.config.PutEvaluations", capture)
    config.meta.events.unregister("after-call.config.PutEvaluations", answered)
    # Every call reached moto over HTTP and was accepted with no failed evaluations.
    assert all(a["status"] == 200 and a["parsed"]["FailedEvaluations"] == [] for a in answers)
    assert len(answers) == len(calls)


def config_event(invoking: dict[str, Any], params: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "version": "1.0",
        "invokingEvent": json.dumps(invoking),
        "ruleParameters": json.dumps(params or {}),
        "resultToken": "TESTMODE",
        "eventLeftScope": False,
        "executionRoleArn": "arn:aws:iam::123456789012:role/config-role",
        "configRuleArn": "arn:aws:config:ap-northeast-1:123456789012:config-rule/config-rule-abc",
        "configRuleName": "sg-open-world",
        "configRuleId": "config-rule-abc",
        "accountId": "123456789012",
        **extra,
    }


def change_event(configuration_item: dict[str, Any], **extra: Any) -> dict[str, Any]:
    invoking = {
        "configurationItem": configuration_item,
        "notificationCreationTime": CAPTURE,
        "messageType": "ConfigurationItemChangeNotification",
        "recordVersion": "1.3",
    }
    return config_event(invoking, **extra)


def test_change_notification_puts_one_evaluation(
    sent_evaluations: list[dict[str, Any]], lambda_context: FakeContext
) -> None:
    result = rule.handler(change_event(item(perm(from_port=22, v4=WORLD4))), lambda_context)

    assert result == {"evaluated": 1, "non_compliant": ["sg-0123456789abcdef0"], "failed": 0}
    [call] = sent_evaluations
    assert call["ResultToken"] == "TESTMODE"
    assert call["TestMode"] is True
    [evaluation] = call["Evaluations"]
    assert evaluation["ComplianceResourceType"] == "AWS::EC2::SecurityGroup"
    assert evaluation["ComplianceResourceId"] == "sg-0123456789abcdef0"
    assert evaluation["ComplianceType"] == "NON_COMPLIANT"
    assert evaluation["Annotation"] == "[S5] tcp 22 from 0.0.0.0/0 exposes sensitive port 22"
    assert evaluation["OrderingTimestamp"].isoformat() == "2026-11-27T10:00:00+00:00"


def test_event_left_scope_is_not_applicable(
    sent_evaluations: list[dict[str, Any]], lambda_context: FakeContext
) -> None:
    rule.handler(change_event(item(perm("-1", v4=WORLD4)), eventLeftScope=True), lambda_context)
    [evaluation] = sent_evaluations[0]["Evaluations"]
    assert (evaluation["ComplianceType"], evaluation["Annotation"]) == (
        "NOT_APPLICABLE",
        "[S2] security group left the rule's scope",
    )


def test_rule_parameters_from_event_are_used(
    sent_evaluations: list[dict[str, Any]], lambda_context: FakeContext
) -> None:
    event = change_event(item(perm(from_port=8443, v4=WORLD4), tags=ALLOW))
    event["ruleParameters"] = json.dumps({"allowedPorts": "443,8443"})
    rule.handler(event, lambda_context)
    assert sent_evaluations[0]["Evaluations"][0]["ComplianceType"] == "COMPLIANT"


def test_bad_rule_parameters_fail_before_any_call(
    sent_evaluations: list[dict[str, Any]], lambda_context: FakeContext
) -> None:
    event = change_event(item())
    event["ruleParameters"] = json.dumps({"sensitivePorts": "twenty-two"})
    with pytest.raises(InvalidParametersError, match="sensitivePorts: 'twenty-two' is not a port number"):
        rule.handler(event, lambda_context)
    assert sent_evaluations == []


def test_scheduled_sweep_evaluates_every_group_in_moto(
    aws: str, sent_evaluations: list[dict[str, Any]], lambda_context: FakeContext
) -> None:
    ec2 = client("ec2", aws)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]

    def group(name: str, permissions: list[dict[str, Any]], tags: dict[str, str] | None = None) -> str:
        spec = (
            [{"ResourceType": "security-group", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
            if tags
            else []
        )
        gid: str = ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc, TagSpecifications=spec)[
            "GroupId"
        ]
        if permissions:
            ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=permissions)
        return gid

    ssh = group("ssh", [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    everything6 = group("all6", [{"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
    web = group(
        "web",
        [{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
        tags={TAG: GOOD_REASON},
    )
    web_untagged = group(
        "web-untagged", [{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    internal = group(
        "internal",
        [
            {
                "IpProtocol": "tcp",
                "FromPort": 5432,
                "ToPort": 5432,
                "UserIdGroupPairs": [{"GroupId": web}],
                "IpRanges": [{"CidrIp": "10.0.0.0/16"}],
            }
        ],
    )
    invoking = {
        "awsAccountId": "123456789012",
        "notificationCreationTime": CAPTURE,
        "messageType": "ScheduledNotification",
        "recordVersion": "1.0",
    }

    result = rule.handler(config_event(invoking), lambda_context)

    verdicts = {
        e["ComplianceResourceId"]: e["ComplianceType"] for call in sent_evaluations for e in call["Evaluations"]
    }
    assert verdicts[ssh] == "NON_COMPLIANT"
    assert verdicts[everything6] == "NON_COMPLIANT"
    assert verdicts[web] == "COMPLIANT"
    assert verdicts[web_untagged] == "NON_COMPLIANT"
    assert verdicts[internal] == "COMPLIANT"
    # moto also lists each VPC's default group (no ingress from outside it).
    default_groups = [
        g["GroupId"]
        for g in ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
    ]
    assert all(verdicts[g] == "COMPLIANT" for g in default_groups)
    assert set(result["non_compliant"]) == {ssh, everything6, web_untagged}
    assert result["evaluated"] == len(verdicts)


def test_scheduled_sweep_batches_put_evaluations(
    aws: str, sent_evaluations: list[dict[str, Any]], lambda_context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rule, "PUT_EVALUATIONS_BATCH", 2)
    ec2 = client("ec2", aws)
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    for n in range(3):
        ec2.create_security_group(GroupName=f"g{n}", Description="x", VpcId=vpc)
    total = len(ec2.describe_security_groups()["SecurityGroups"])
    invoking = {
        "awsAccountId": "123456789012",
        "notificationCreationTime": CAPTURE,
        "messageType": "ScheduledNotification",
    }

    rule.handler(config_event(invoking), lambda_context)

    assert [len(c["Evaluations"]) for c in sent_evaluations] == [2] * (total // 2) + ([1] if total % 2 else [])


def test_oversized_notification_fetches_the_item_from_config(
    aws: str, sent_evaluations: list[dict[str, Any]], lambda_context: FakeContext
) -> None:
    # moto's GetResourceConfigHistory serves S3 buckets but not security groups, so the fetch over HTTP is checked
    # with a bucket (out of scope -> NOT_APPLICABLE); the security-group case follows with a stubbed fetch.
    client("s3", aws).create_bucket(
        Bucket="oversized", CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"}
    )
    invoking = {
        "configurationItemSummary": {
            "changeType": "UPDATE",
            "configurationItemVersion": "1.3",
            "configurationItemCaptureTime": CAPTURE,
            "configurationStateId": 1,
            "awsAccountId": "123456789012",
            "configurationItemStatus": "OK",
            "resourceType": "AWS::S3::Bucket",
            "resourceId": "oversized",
            "resourceName": "oversized",
        },
        "messageType": "OversizedConfigurationItemChangeNotification",
        "notificationCreationTime": CAPTURE,
        "recordVersion": "1.3",
    }
    rule.handler(config_event(invoking), lambda_context)
    [evaluation] = sent_evaluations[0]["Evaluations"]
    assert (evaluation["ComplianceResourceType"], evaluation["ComplianceResourceId"]) == (
        "AWS::S3::Bucket",
        "oversized",
    )
    assert (evaluation["ComplianceType"], evaluation["Annotation"]) == ("NOT_APPLICABLE", "[S1] not a security group")


def test_oversized_security_group_is_evaluated_from_history(
    sent_evaluations: list[dict[str, Any]], lambda_context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    history_item = item(perm("-1", v6=WORLD6))
    history_item["configuration"] = json.dumps(history_item["configuration"])  # as GetResourceConfigHistory returns it
    requested: list[dict[str, Any]] = []

    class History:
        def get_resource_config_history(self, **kwargs: Any) -> dict[str, Any]:
            requested.append(kwargs)
            return {"configurationItems": [dict(history_item)]}

    real_client = rule.client
    monkeypatch.setattr(
        rule, "client", lambda service: History() if service == "config" and not requested else real_client(service)
    )
    summary = {
        "configurationItemStatus": "OK",
        "resourceType": "AWS::EC2::SecurityGroup",
        "resourceId": "sg-0123456789abcdef0",
        "configurationItemCaptureTime": CAPTURE,
    }
    invoking = {
        "configurationItemSummary": summary,
        "messageType": "OversizedConfigurationItemChangeNotification",
        "notificationCreationTime": CAPTURE,
    }

    rule.handler(config_event(invoking), lambda_context)

    assert requested == [{"resourceType": "AWS::EC2::SecurityGroup", "resourceId": "sg-0123456789abcdef0", "limit": 1}]
    [evaluation] = sent_evaluations[0]["Evaluations"]
    assert evaluation["ComplianceType"] == "NON_COMPLIANT"
    assert evaluation["Annotation"].startswith("[S4]")


def test_oversized_deletion_needs_no_fetch(sent_evaluations: list[dict[str, Any]], lambda_context: FakeContext) -> None:
    summary = {
        "configurationItemStatus": "ResourceDeleted",
        "resourceType": "AWS::EC2::SecurityGroup",
        "resourceId": "sg-0gone",
        "configurationItemCaptureTime": CAPTURE,
    }
    invoking = {
        "configurationItemSummary": summary,
        "messageType": "OversizedConfigurationItemChangeNotification",
        "notificationCreationTime": CAPTURE,
    }
    rule.handler(config_event(invoking), lambda_context)
    [evaluation] = sent_evaluations[0]["Evaluations"]
    assert (evaluation["ComplianceResourceId"], evaluation["ComplianceType"]) == ("sg-0gone", "NOT_APPLICABLE")


def test_unknown_message_type_is_an_error(aws: str, lambda_context: FakeContext) -> None:
    with pytest.raises(ValueError, match="unexpected messageType 'Surprise'"):
        rule.handler(config_event({"messageType": "Surprise"}), lambda_context)


def test_rule_parameters_that_are_not_json_fail_before_any_call(
    sent_evaluations: list[dict[str, Any]], lambda_context: FakeContext
) -> None:
    event = change_event(item())
    event["ruleParameters"] = "sensitivePorts=22"
    with pytest.raises(InvalidParametersError, match="ruleParameters is not JSON"):
        rule.handler(event, lambda_context)
    assert sent_evaluations == []


def test_scheduled_sweep_resolves_prefix_lists_and_exceptions_in_moto(
    aws: str, sent_evaluations: list[dict[str, Any]], lambda_context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    ec2 = client("ec2", aws)
    vpc = ec2.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
    world_list = ec2.create_managed_prefix_list(
        PrefixListName="everyone", MaxEntries=2, AddressFamily="IPv4", Entries=[{"Cidr": "0.0.0.0/0"}]
    )["PrefixList"]["PrefixListId"]
    cloudfront = next(
        p["PrefixListId"]
        for p in ec2.describe_managed_prefix_lists()["PrefixLists"]
        if p["PrefixListName"] == "com.amazonaws.global.cloudfront.origin-facing"
    )

    def group(name: str, permission: dict[str, Any]) -> str:
        gid: str = ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[permission])
        return gid

    listed = group(
        "listed", {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "PrefixListIds": [{"PrefixListId": world_list}]}
    )
    origin = group(
        "origin", {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "PrefixListIds": [{"PrefixListId": cloudfront}]}
    )
    partner = group(
        "partner", {"IpProtocol": "tcp", "FromPort": 8443, "ToPort": 8443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    )
    monkeypatch.setattr(rule, "SETTINGS", rule.Settings(exceptions=EXCEPTIONS | {partner: EXCEPTIONS[EXCEPTED]}))
    invoking = {"notificationCreationTime": CAPTURE, "messageType": "ScheduledNotification"}

    rule.handler(config_event(invoking), lambda_context)

    verdicts = {e["ComplianceResourceId"]: e for call in sent_evaluations for e in call["Evaluations"]}
    assert verdicts[listed]["ComplianceType"] == "NON_COMPLIANT"
    assert verdicts[listed]["Annotation"] == (f"[S5] tcp 22 from {world_list} (everyone) exposes sensitive port 22")
    assert verdicts[origin]["ComplianceType"] == "COMPLIANT"
    assert (verdicts[partner]["ComplianceType"], verdicts[partner]["Annotation"][:5]) == ("COMPLIANT", "[S11]")
