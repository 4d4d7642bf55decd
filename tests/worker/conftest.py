"""Worker test doubles: a tiny demo model, an upload stack on moto server, a stand-in ECS agent."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REGION, LoopbackHandler, client, loopback_server
from worker import events, synthetic
from worker.runner import Worker
from worker.settings import load_settings
from worker.train import TrainResult, train_demo


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A small demo model (64 px, narrow) trained once per session in a few seconds."""
    out = tmp_path_factory.mktemp("model")
    return train_demo(out, samples=240, epochs=4, input_size=64, width=16, seed=3, show_progress=False)


@dataclass
class Stack:
    endpoint: str
    bucket: str
    queue_url: str
    dlq_url: str
    table: str
    topic_arn: str
    notifications_url: str
    s3: Any
    sqs: Any
    dynamodb: Any

    def upload(self, key: str, data: bytes) -> str:
        etag = str(self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)["ETag"]).strip('"')
        self.send_event(key, etag, len(data))
        return etag

    def send_event(self, key: str, etag: str, size: int) -> None:
        self.send(json.dumps(events.s3_event(self.bucket, key, etag, size)))

    def send(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)

    def results(self) -> dict[str, dict[str, Any]]:
        items = self.dynamodb.scan(TableName=self.table)["Items"]
        return {i["upload_key"]["S"]: i for i in items}

    def drain(self, queue_url: str) -> list[dict[str, Any]]:
        """Every message currently visible in a queue (received, so invisible afterwards)."""
        found: list[dict[str, Any]] = []
        for _ in range(20):
            got = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            if not got.get("Messages"):
                break
            found.extend(got["Messages"])
        return found

    def notifications(self) -> list[dict[str, Any]]:
        return [json.loads(json.loads(m["Body"])["Message"]) for m in self.drain(self.notifications_url)]

    def env(self, model_dir: Path, **overrides: str) -> dict[str, str]:
        env = {
            "MLBASE_QUEUE_URL": self.queue_url,
            "MLBASE_UPLOAD_BUCKET": self.bucket,
            "MLBASE_RESULTS_TABLE": self.table,
            "MLBASE_RESULTS_TOPIC_ARN": self.topic_arn,
            "MLBASE_MODEL_URI": str(model_dir),
            "MLBASE_ENDPOINT_URL": self.endpoint,
            "MLBASE_DECODE_WORKERS": "1",
            "MLBASE_DOWNLOAD_CONCURRENCY": "4",
            "MLBASE_BATCH_SIZE": "8",
            "MLBASE_BATCH_TIMEOUT_MS": "50",
            "MLBASE_WAIT_TIME_S": "0",
            "MLBASE_RETRY_DELAY_S": "0",
            "MLBASE_STOP_TIMEOUT_S": "20",
            "MLBASE_DEVICE": "cpu",
            "AWS_REGION": REGION,
        }
        env.update(overrides)
        return env


@pytest.fixture
def stack(aws: str) -> Stack:
    s3, sqs, dynamodb, sns = (client(s, aws) for s in ("s3", "sqs", "dynamodb", "sns"))
    bucket = "uploads-test"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    dlq_url = sqs.create_queue(QueueName="photos-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName="photos",
        Attributes={
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}),
        },
    )["QueueUrl"]
    table = "results"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "upload_key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "upload_key", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    topic_arn = sns.create_topic(Name="results")["TopicArn"]
    notifications_url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    notifications_arn = sqs.get_queue_attributes(QueueUrl=notifications_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=notifications_arn)
    return Stack(aws, bucket, queue_url, dlq_url, table, topic_arn, notifications_url, s3, sqs, dynamodb)


@dataclass
class RunOutcome:
    worker: Worker
    metrics_lines: list[dict[str, Any]] = field(default_factory=list)


def run_worker(
    stack: Stack,
    model_dir: Path,
    *,
    s3: Any = None,
    dynamodb: Any = None,
    stop_after: float | None = None,
    **overrides: str,
) -> RunOutcome:
    """Run the worker in-process against moto until the queue stays empty (or a stop `stop_after` seconds in)."""
    from worker.__main__ import build_worker

    stream = io.StringIO()
    worker = build_worker(
        load_settings(stack.env(model_dir, **overrides)), s3=s3, dynamodb=dynamodb, metrics_stream=stream
    )
    timer = threading.Timer(stop_after, worker.request_stop) if stop_after is not None else None
    if timer:
        timer.start()
    try:
        assert worker.run(max_idle_polls=3) == 0
    finally:
        if timer:
            timer.cancel()
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line]
    return RunOutcome(worker, lines)


def jpeg(label: str = "food", size: tuple[int, int] = (320, 240), seed: int = 1) -> bytes:
    return synthetic.photo(label, size[0], size[1], seed)


@dataclass
class AgentServer:
    url: str
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


@pytest.fixture
def ecs_agent() -> Iterator[AgentServer]:
    """A stand-in for the ECS agent's task-protection endpoint that records every request."""
    state = AgentServer(url="")

    class Handler(LoopbackHandler):
        def do_PUT(self) -> None:  # noqa: N802 (http.server names)
            body = json.loads(self.body())
            state.requests.append((self.command, self.path, body))
            self.reply(200, json.dumps({"protection": {"ProtectionEnabled": body["ProtectionEnabled"]}}).encode())

    with loopback_server(Handler) as state.url:
        yield state
