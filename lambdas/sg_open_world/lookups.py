"""EC2 reads both paths of the rule share: prefix lists resolved to what they admit, a group's rules with their IDs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from lambdas.common.aws import client
from lambdas.sg_open_world.logic import PrefixList

logger = Logger(service="sg-open-world", child=True)

AWS_OWNER = "AWS"  # DescribeManagedPrefixLists gives AWS-managed lists this OwnerId


def prefix_lists(ids: Iterable[str]) -> dict[str, PrefixList]:
    """The lists EC2 can describe; one missing from the answer counts as the whole address space in `decide`."""
    ec2 = client("ec2")
    found: dict[str, PrefixList] = {}
    for prefix_list_id in sorted(set(ids)):
        try:
            # One ID per call: an unknown ID fails the whole call, and the others must still resolve.
            described = ec2.describe_managed_prefix_lists(PrefixListIds=[prefix_list_id])["PrefixLists"]
            if not described:
                continue
            entry = described[0]
            # A customer may not name a list com.amazonaws.*, but only the owner proves that AWS manages it.
            aws_managed = entry.get("OwnerId") == AWS_OWNER
            cidrs = () if aws_managed else tuple(_entries(prefix_list_id))
        except ClientError as error:
            logger.warning(
                "prefix list unreadable, counted as the whole address space",
                extra={"prefix_list_id": prefix_list_id, "code": error.response.get("Error", {}).get("Code")},
            )
            continue
        found[prefix_list_id] = PrefixList(prefix_list_id, str(entry.get("PrefixListName", "")), aws_managed, cidrs)
    return found


def _entries(prefix_list_id: str) -> list[str]:
    paginator = client("ec2").get_paginator("get_managed_prefix_list_entries")
    return [e["Cidr"] for page in paginator.paginate(PrefixListId=prefix_list_id) for e in page.get("Entries", [])]


def group_rules(group_id: str) -> list[dict[str, Any]]:
    """Every rule of one group (ingress and egress), as DescribeSecurityGroupRules lists them."""
    paginator = client("ec2").get_paginator("describe_security_group_rules")
    pages = paginator.paginate(Filters=[{"Name": "group-id", "Values": [group_id]}])
    return [rule for page in pages for rule in page["SecurityGroupRules"]]


def groups_using_prefix_lists(ids: Iterable[str]) -> list[str]:
    """Groups with an ingress rule from any of these prefix lists (all rules are read: the filter is not universal)."""
    wanted = set(ids)
    paginator = client("ec2").get_paginator("describe_security_group_rules")
    return sorted(
        {
            rule["GroupId"]
            for page in paginator.paginate()
            for rule in page["SecurityGroupRules"]
            if not rule.get("IsEgress") and rule.get("PrefixListId") in wanted
        }
    )
