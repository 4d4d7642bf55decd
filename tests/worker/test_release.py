"""The worker's own fleet release (`wake: sla`), against moto server (SQS, ECS, EC2 Auto Scaling) and a stand-in
ECS task metadata endpoint on loopback."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LoopbackHandler, client, loopback_server
from tests.worker.conftest import Stack, jpeg, run_worker
from worker.release import FleetRelease, ReleaseRule, TaskIdentity, task_identity
from worker.train import TrainResult

CLUSTER, SERVICE, GROUP = "photos", "food-photo", "food-photo-hosts"


@dataclass
class Fleet:
    ecs: Any
    autoscaling: Any

    def desired(self) -> tuple[int, int]:
        service = self.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
        group = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]
        return int(service["desiredCount"]), int(group["DesiredCapacity"])


@pytest.fixture
def fleet(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    """One service with one desired and running task, on a group of one host."""
    # moto reports this many running tasks for a new service (the server runs in this process).
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")
    ecs, autoscaling = client("ecs", stack.endpoint), client("autoscaling", stack.endpoint)
    ecs.create_cluster(clusterName=CLUSTER)
    ecs.register_task_definition(family="worker", containerDefinitions=[{"name": "w", "image": "x", "memory": 128}])
    ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition="worker", desiredCount=1)
    autoscaling.create_launch_configuration(
        LaunchConfigurationName="hosts", ImageId="ami-12345678", InstanceType="g5.xlarge"
    )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchConfigurationName="hosts",
        MinSize=0,
        MaxSize=4,
        DesiredCapacity=1,
        AvailabilityZones=["ap-northeast-1a"],
    )
    return Fleet(ecs, autoscaling)


@pytest.fixture
def metadata() -> Iterator[str]:
    """The ECS task metadata endpoint v4 of a task of the service (only what the release reads, as ECS sends it)."""
    task = {
        "Cluster": f"arn:aws:ecs:ap-northeast-1:123456789012:cluster/{CLUSTER}",
        "ServiceName": SERVICE,
        "TaskARN": f"arn:aws:ecs:ap-northeast-1:123456789012:task/{CLUSTER}/0123456789abcdef",
        "Family": "worker",
        "Revision": "1",
    }

    class Handler(LoopbackHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server names)
            self.reply(200 if self.path == "/v4/task" else 404, json.dumps(task).encode())

    with loopback_server(Handler) as url:
        yield f"{url}/v4"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def release_for(stack: Stack, fleet: Fleet, clock: Clock | None = None, **rule: Any) -> FleetRelease:
    values: dict[str, Any] = {"host_group": GROUP, "caught_up_messages": 64, "max_age_s": 120, "slow_per_minute": 2376}
    values.update(rule)
    return FleetRelease(
        ReleaseRule(empty_wait_s=20, **values),
        TaskIdentity(f"arn:aws:ecs:ap-northeast-1:123456789012:cluster/{CLUSTER}", SERVICE),
        queue_url=stack.queue_url,
        sqs=stack.sqs,
        ecs=fleet.ecs,
        autoscaling=fleet.autoscaling,
        clock=clock or time.monotonic,
    )


def received(stack: Stack, count: int) -> list[dict[str, Any]]:
    """Send and receive `count` photos' messages, as the worker's receive returns them (they stay in flight)."""
    for i in range(count):
        stack.send_event(f"uploads/{i}.jpg", "etag", 1000)
    got: list[dict[str, Any]] = []
    while len(got) < count:
        got += stack.sqs.receive_message(
            QueueUrl=stack.queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["SentTimestamp"]
        )["Messages"]
    return got


def delete(stack: Stack, messages: list[dict[str, Any]]) -> None:
    for message in messages:
        stack.sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_an_empty_queue_after_a_whole_long_poll_sends_service_and_hosts_to_zero(stack: Stack, fleet: Fleet) -> None:
    release = release_for(stack, fleet)
    assert release.after_receive([], waited_s=20.0, busy=False)
    assert fleet.desired() == (0, 0)
    assert release.released == "queue empty"


def test_a_short_receive_or_work_in_hand_is_not_an_empty_queue(stack: Stack, fleet: Fleet) -> None:
    clock = Clock()
    release = release_for(stack, fleet, clock)
    assert not release.after_receive([], waited_s=3.0, busy=False)  # returned early: not a whole long poll
    clock.now += 30
    assert not release.after_receive([], waited_s=20.0, busy=True)  # still classifying what it received
    assert fleet.desired() == (1, 1)


def test_photos_in_flight_elsewhere_keep_the_fleet(stack: Stack, fleet: Fleet) -> None:
    received(stack, 3)  # another task holds them: not visible, not deleted
    release = release_for(stack, fleet)
    assert not release.after_receive([], waited_s=20.0, busy=False)
    assert fleet.desired() == (1, 1)


def test_a_fleet_caught_up_with_a_trickle_goes_back_to_zero(stack: Stack, fleet: Fleet) -> None:
    messages = received(stack, 5)
    delete(stack, messages)  # classified; the queue is empty again but the receive was not empty
    release = release_for(stack, fleet)
    assert release.after_receive(messages, waited_s=0.5, busy=True)
    assert fleet.desired() == (0, 0)
    assert release.released == "caught up with a trickle"


def test_a_busy_stream_or_old_photos_keep_the_task(stack: Stack, fleet: Fleet) -> None:
    messages = received(stack, 5)
    delete(stack, messages)
    clock = Clock()
    busy_stream = release_for(stack, fleet, clock, slow_per_minute=5)  # 5 a minute is not slower than 5
    assert not busy_stream.after_receive(messages, waited_s=0.5, busy=True)
    old = release_for(stack, fleet, clock, max_age_s=0)  # every photo counts as old: still draining a backlog
    assert not old.after_receive(messages, waited_s=0.5, busy=True)
    assert fleet.desired() == (1, 1)


def test_the_arrival_rate_counts_every_running_task(
    stack: Stack, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long polls share the queue: 5 photos seen here with 3 tasks running is about 15 a minute in all.
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "3")
    fleet.ecs.create_service(cluster=CLUSTER, serviceName="three-tasks", taskDefinition="worker", desiredCount=3)
    messages = received(stack, 5)
    delete(stack, messages)
    three = release_for(stack, fleet, slow_per_minute=12)
    three.identity = TaskIdentity(CLUSTER, "three-tasks")
    assert not three.after_receive(messages, waited_s=0.5, busy=True)
    one = release_for(stack, fleet, slow_per_minute=12)  # the fixture's service: one task running
    assert one.after_receive(messages, waited_s=0.5, busy=True)
    assert fleet.desired() == (0, 0)


def test_a_failed_release_is_logged_and_retried_later(
    stack: Stack, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    release = release_for(stack, fleet, clock, host_group="no-such-group")
    with caplog.at_level(logging.WARNING, logger="worker.release"):
        assert not release.after_receive([], waited_s=20.0, busy=False)
    assert "fleet release failed" in caplog.text
    clock.now += 30
    assert not release.after_receive([], waited_s=20.0, busy=False)  # backing off: not called again yet
    assert release.released is None


def test_task_identity_comes_from_the_task_metadata(metadata: str) -> None:
    identity = task_identity(metadata)
    assert identity == TaskIdentity(f"arn:aws:ecs:ap-northeast-1:123456789012:cluster/{CLUSTER}", SERVICE)


def test_no_metadata_turns_the_release_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="worker.release"):
        assert task_identity(None) is None
        assert task_identity("http://127.0.0.1:9/v4") is None  # nothing listens on the discard port
    assert "fleet release off" in caplog.text


def test_the_worker_releases_its_fleet_once_every_photo_is_classified(
    stack: Stack, fleet: Fleet, metadata: str, demo_model: TrainResult
) -> None:
    for i in range(3):
        stack.upload(f"uploads/{i}.jpg", jpeg(seed=i))
    outcome = run_worker(
        stack,
        Path(demo_model.out_dir),
        ECS_CONTAINER_METADATA_URI_V4=metadata,
        MLBASE_RELEASE_HOST_GROUP=GROUP,
        MLBASE_RELEASE_SLOW_PER_MINUTE="2376",
    )
    assert len(stack.results()) == 3
    assert outcome.worker.release is not None
    assert outcome.worker.release.released is not None
    assert fleet.desired() == (0, 0)
