"""The photo worker's own fleet release (`wake: sla`, worker/release.py): the three calls it makes, on this
worker's service and host group, and nothing beyond them.

The release reads its service and sets the service's desired count and the group's desired capacity to 0; the
Service Authorization Reference lists DescribeServices and UpdateService with the `service` resource type, and
SetDesiredCapacity with `autoScalingGroup`, so each grant names its resource.
"""

from __future__ import annotations

import pytest

from tests.policy.assembly import Assembly
from tests.policy.engine import Case, Verdict, arn, at, check, role_session

ECS_ACTIONS = (
    "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerservice.html"
)
ASG_ACTIONS = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2autoscaling.html"
WORKER = "Production/PhotoService/FoodPhoto"
SERVICE = f"{WORKER}/Service/Service"
GROUP = f"{WORKER}/Hosts/ASG"
STACK = "Production/PhotoService"
TASK = role_session(f"{WORKER}/TaskDefinition/TaskRole", "0123456789abcdef")


def other_service(asm: Assembly) -> str:
    """Another service in the same cluster (none exists today; the grant must not cover one added later)."""
    own = asm.arn(asm.at(SERVICE))
    return own.rsplit("/", 1)[0] + "/another-service"


def other_group(asm: Assembly) -> str:
    own = asm.arn(asm.at(GROUP))
    return own.rsplit("/", 1)[0] + "/another-group"


CASES = [
    Case("release-reads-its-service", TASK, "ecs:DescribeServices", at(SERVICE), "allow",
         "the lone-task check reads the service's desired and running counts", ECS_ACTIONS),
    Case("release-sets-its-service", TASK, "ecs:UpdateService", at(SERVICE), "allow",
         "the release sets the service's desired count to 0", ECS_ACTIONS),
    Case("release-sets-its-group", TASK, "autoscaling:SetDesiredCapacity", at(GROUP), "allow",
         "the release sets the host group's desired capacity to 0", ASG_ACTIONS),
    Case("release-not-another-service", TASK, "ecs:UpdateService", arn(other_service, STACK), "deny",
         "only this worker's service", ECS_ACTIONS),
    Case("release-not-another-group", TASK, "autoscaling:SetDesiredCapacity", arn(other_group, STACK), "deny",
         "only this worker's host group", ASG_ACTIONS),
    Case("release-cannot-delete-its-service", TASK, "ecs:DeleteService", at(SERVICE), "deny",
         "setting a count is all the release does", ECS_ACTIONS),
    Case("release-cannot-resize-its-group-limits", TASK, "autoscaling:UpdateAutoScalingGroup", at(GROUP), "deny",
         "the group's minimum and maximum stay the template's", ASG_ACTIONS),
    Case("release-cannot-terminate-hosts", TASK, "autoscaling:TerminateInstanceInAutoScalingGroup", at(GROUP),
         "deny", "hosts go only through the group's desired capacity (managed draining)", ASG_ACTIONS),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_worker_release_grant(case: Case, verdicts: dict[str, Verdict]) -> None:
    check(case, verdicts[case.id])
