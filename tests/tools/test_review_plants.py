"""Planted changes on the real synthesized templates: every risky plant is flagged, no harmless one is.

Each row edits one stack of the session's synth (the archive, the results table, the upload bucket, ...) the way a
pull request would, and names the flags the review must raise: category, resource (by logical-ID prefix) and a
phrase of the message. A harmless row expects no flag at all, yet a visible change.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tools.review.assembly import StackTemplate, load_assembly
from tools.review.diff import StackDiff, diff_templates
from tools.review.flags import flag_stack
from tools.review.report import Review, to_text

Resources = dict[str, Any]


def _is(logical_id: str, prefix: str) -> bool:
    """`prefix` is the construct's ID: the CDK appends an 8-digit hash to it."""
    return re.fullmatch(rf"{prefix}[0-9A-F]{{8}}", logical_id) is not None


def res(resources: Resources, prefix: str) -> dict[str, Any]:
    """The properties of the one resource whose logical ID is `prefix` and its hash."""
    (match,) = [r for lid, r in resources.items() if _is(lid, prefix)]
    props: dict[str, Any] = match.setdefault("Properties", {})
    return props


def lock(resources: Resources) -> dict[str, Any]:
    rule: dict[str, Any] = res(resources, "LogArchiveBucket")["ObjectLockConfiguration"]["Rule"]
    return rule


def sse(resources: Resources, prefix: str) -> dict[str, Any]:
    config: dict[str, Any] = res(resources, prefix)["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    return config["ServerSideEncryptionByDefault"]  # type: ignore[no-any-return]


def _unlock(resources: Resources) -> None:
    props = res(resources, "LogArchiveBucket")
    del props["ObjectLockEnabled"], props["ObjectLockConfiguration"]


def _weaken(resources: Resources) -> None:
    default = sse(resources, "LogArchiveBucket")
    default["SSEAlgorithm"] = "AES256"
    del default["KMSMasterKeyID"]


def _new_key(resources: Resources) -> None:
    res(resources, "ResultsTable")["KeySchema"] = [{"AttributeName": "photo_id", "KeyType": "HASH"}]
    res(resources, "ResultsTable")["AttributeDefinitions"] = [{"AttributeName": "photo_id", "AttributeType": "S"}]


def _protect(resources: Resources) -> None:
    res(resources, "ResultsTable")["DeletionProtectionEnabled"] = True


def _unprotect(resources: Resources) -> None:
    res(resources, "ResultsTable")["DeletionProtectionEnabled"] = False


def _move_role(resources: Resources) -> None:
    res(resources, "DeployRole")["Path"] = "/ci/"


def _tag(resources: Resources) -> None:
    res(resources, "UploadsBucket").setdefault("Tags", []).append({"Key": "cost-centre", "Value": "photos"})


def _memory(resources: Resources) -> None:
    res(resources, "ApiPresignFunction")["MemorySize"] = 1024


@dataclass(frozen=True)
class Plant:
    id: str
    stack: str
    edit: Callable[[Resources], None]
    # (category, logical-ID prefix, phrase of the message); empty: harmless, nothing may be flagged.
    expect: tuple[tuple[str, str, str], ...]
    before: Callable[[Resources], None] | None = None


def _set(path: Callable[[Resources], dict[str, Any]], key: str, value: Any) -> Callable[[Resources], None]:
    return lambda resources: path(resources).__setitem__(key, value)


def _drop(path: Callable[[Resources], dict[str, Any]], key: str) -> Callable[[Resources], None]:
    return lambda resources: path(resources).pop(key)


ARCHIVE = "Production-Audit"
PHOTO = "Production-PhotoService"
DP, ENC, STATEFUL, FAILS = "data-protection", "encryption-logging", "stateful", "replacement-fails"

RISKY = [
    Plant("lock-retention-removed", ARCHIVE, _drop(lock, "DefaultRetention"),
          ((DP, "LogArchiveBucket", "default retention **removed**"),)),
    Plant("lock-mode-governance", ARCHIVE, lambda r: lock(r)["DefaultRetention"].update(Mode="GOVERNANCE"),
          ((DP, "LogArchiveBucket", "mode **COMPLIANCE -> GOVERNANCE**"),)),
    Plant("lock-retention-shortened", ARCHIVE, lambda r: lock(r)["DefaultRetention"].update(Days=30),
          ((DP, "LogArchiveBucket", "retention **shortened** 365 -> 30 days"),)),
    Plant("lock-removed", ARCHIVE, _unlock,
          ((DP, "LogArchiveBucket", "Object Lock **turned off**: write-once protection"),
           (FAILS, "LogArchiveBucket", "BucketName `mlbase-log-archive-111111111111-ap-northeast-1` is fixed"),
           (STATEFUL, "LogArchiveBucket", "(changed: ObjectLockEnabled)"))),
    # Longer is not weaker, but a COMPLIANCE lock cannot be shortened again: a reviewer must see it.
    Plant("lock-retention-lengthened", ARCHIVE, lambda r: lock(r)["DefaultRetention"].update(Days=400),
          ((DP, "LogArchiveBucket", "Object Lock retention lengthened 365 -> 400 days"),)),
    Plant("versioning-suspended", ARCHIVE,
          _set(lambda r: res(r, "LogArchiveConfigBucket")["VersioningConfiguration"], "Status", "Suspended"),
          ((DP, "LogArchiveConfigBucket", "versioning **suspended**"),)),
    Plant("archive-expiry-shortened", ARCHIVE,
          lambda r: res(r, "LogArchiveBucket")["LifecycleConfiguration"]["Rules"][0].update(ExpirationInDays=400),
          ((DP, "LogArchiveBucket", "lifecycle rule ArchiveThenExpire: expiration **shortened** 2555 -> 400"),)),
    Plant("trail-log-retention-shortened", ARCHIVE, _set(lambda r: res(r, "AccountAuditTrailLogGroup"),
          "RetentionInDays", 30), ((DP, "AccountAuditTrailLogGroup", "log retention **shortened** 365 -> 30"),)),
    Plant("encryption-removed", PHOTO, _drop(lambda r: res(r, "UploadsBucket"), "BucketEncryption"),
          ((ENC, "UploadsBucket", "`BucketEncryption.ServerSideEncryptionConfiguration[0]"),)),
    Plant("encryption-weakened", ARCHIVE, _weaken, ((ENC, "LogArchiveBucket", "encryption **weakened** aws:kms"),)),
    Plant("key-rotation-off", PHOTO, _set(lambda r: res(r, "UploadsKey"), "EnableKeyRotation", False),
          ((ENC, "UploadsKey", "key rotation **turned off**"),)),
    Plant("pitr-off", PHOTO, _set(lambda r: res(r, "ResultsTable")["PointInTimeRecoverySpecification"],
          "PointInTimeRecoveryEnabled", False), ((DP, "ResultsTable", "point-in-time recovery **turned off**"),)),
    Plant("deletion-protection-off", PHOTO, _unprotect,
          ((DP, "ResultsTable", "deletion protection **turned off**"),), before=_protect),
    Plant("public-access-relaxed", PHOTO, _set(lambda r: res(r, "UploadsBucket")["PublicAccessBlockConfiguration"],
          "BlockPublicPolicy", False), ((DP, "UploadsBucket", "public access block **relaxed**: BlockPublicPolicy"),)),
    Plant("table-key-changed", PHOTO, _new_key,
          ((STATEFUL, "ResultsTable", "**replaced** (changed: KeySchema)"),)),
    Plant("fixed-name-role-moved", "Production-Delivery", _move_role,
          ((FAILS, "DeployRole", "RoleName `MlbaseGitHubDeploy` is fixed"),)),
]  # fmt: skip

HARMLESS = [
    Plant("log-retention-lengthened", PHOTO, _set(lambda r: res(r, "ApiAccessLogs"), "RetentionInDays", 365), ()),
    Plant("lambda-memory", PHOTO, _memory, ()),
    Plant("bucket-tag", PHOTO, _tag, ()),
    Plant(
        "archive-expiry-lengthened",
        ARCHIVE,
        lambda r: res(r, "LogArchiveBucket")["LifecycleConfiguration"]["Rules"][0].update(ExpirationInDays=3000),
        (),
    ),
    Plant("queue-visibility", PHOTO, _set(lambda r: res(r, "FoodPhotoQueue"), "VisibilityTimeout", 1200), ()),
]


@pytest.fixture(scope="module")
def stacks(cloud_assembly: Path) -> dict[str, StackTemplate]:
    return {s.name: s for s in load_assembly(cloud_assembly)}


def plant(stacks: dict[str, StackTemplate], row: Plant) -> StackDiff:
    stack = stacks[row.stack]
    before, after = copy.deepcopy(stack.template), copy.deepcopy(stack.template)
    if row.before:
        row.before(before["Resources"])
        row.before(after["Resources"])
    row.edit(after["Resources"])
    return diff_templates(stack.stage, stack.name, before, after)


def test_enough_plants() -> None:
    assert len(RISKY) >= 12
    assert len(HARMLESS) >= 4


@pytest.mark.parametrize("row", RISKY, ids=lambda r: r.id)
def test_risky_plant_is_flagged(stacks: dict[str, StackTemplate], row: Plant) -> None:
    flags = flag_stack(plant(stacks, row))

    for category, prefix, phrase in row.expect:
        hits = [f for f in flags if f.category == category and _is(f.logical_id, prefix) and phrase in f.message]
        assert hits, f"{row.id}: no {category} flag on {prefix}* containing {phrase!r}: {flags}"
    assert {f.category for f in flags} == {c for c, _, _ in row.expect}, flags


@pytest.mark.parametrize("row", HARMLESS, ids=lambda r: r.id)
def test_harmless_plant_is_shown_not_flagged(stacks: dict[str, StackTemplate], row: Plant) -> None:
    diff = plant(stacks, row)

    assert not diff.empty
    assert flag_stack(diff) == []


def test_a_replaced_table_carries_to_the_task_definition_that_names_it(stacks: dict[str, StackTemplate]) -> None:
    """The task's environment names the table: a new table is a new task definition (as `cdk diff` shows)."""
    diff = plant(stacks, Plant("key", PHOTO, _new_key, ()))
    table = next(c for c in diff.resources if _is(c.logical_id, "ResultsTable"))
    carried = {c.logical_id: c for c in diff.resources if c.carried_from}

    task = next(c for lid, c in carried.items() if _is(lid, "FoodPhotoTaskDefinition"))
    assert task.carried_from == (table.logical_id,)
    assert (task.replacement, task.changed) == ("yes", ("ContainerDefinitions",))
    # The results function reads the table name from its environment, which Lambda updates in place.
    assert not [lid for lid in carried if _is(lid, "ApiResultsFunction")]
    text = to_text(Review("base", (diff,), tuple(flag_stack(diff)), "spec"))
    assert (
        f"~ {task.logical_id} (AWS::ECS::TaskDefinition): ContainerDefinitions [replacement with {table.logical_id}]"
        in text
    )


def test_a_stack_description_change_is_shown(stacks: dict[str, StackTemplate]) -> None:
    stack = stacks[ARCHIVE]
    after = copy.deepcopy(stack.template)
    after["Description"] = "something else"

    diff = diff_templates(stack.stage, stack.name, stack.template, after)
    text = to_text(Review("base", (diff,), (), "spec"))

    assert not diff.empty
    assert f"~ Description: {stack.template['Description']!r} -> 'something else'" in text
    assert "No template changes" not in text


@pytest.mark.parametrize(
    ("section", "value", "line"),
    [
        ("Outputs", {"Extra": {"Value": "x"}}, "+ Outputs: Extra"),
        ("Parameters", {"Extra": {"Type": "String"}}, "+ Parameters: Extra"),
        ("Conditions", {"Extra": {"Fn::Equals": ["a", "b"]}}, "+ Conditions: Extra"),
    ],
)
def test_top_level_sections_are_shown(stacks: dict[str, StackTemplate], section: str, value: Any, line: str) -> None:
    stack = stacks[ARCHIVE]
    after = copy.deepcopy(stack.template)
    after.setdefault(section, {}).update(value)

    diff = diff_templates(stack.stage, stack.name, stack.template, after)

    assert line in to_text(Review("base", (diff,), (), "spec"))
