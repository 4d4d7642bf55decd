"""The queue worker end to end against moto server: results, bad inputs, duplicates, retries, DLQ, protection."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from PIL import Image

from tests.worker.conftest import AgentServer, Stack, jpeg, run_worker
from worker.__main__ import make_client
from worker.runner import retry_delay
from worker.train import TrainResult

REGION = "ap-northeast-1"


def test_classifies_uploads_writes_results_publishes_and_deletes(stack: Stack, demo_model: TrainResult) -> None:
    keys = {"uploads/u1/a b+c.jpg": jpeg("food", seed=11), "uploads/u1/日本.jpg": jpeg("other", seed=12)}
    etags = {key: stack.upload(key, data) for key, data in keys.items()}

    outcome = run_worker(stack, demo_model.out_dir)

    results = stack.results()
    assert set(results) == set(keys)  # URL-encoded keys in the events were decoded
    for key, item in results.items():
        assert item["etag"]["S"] == etags[key]
        assert item["label"]["S"] in ("food", "other")
        assert 0.5 <= float(item["score"]["N"]) <= 1.0
        assert item["model_version"]["S"].startswith("demo-")
        assert item["error"] == {"NULL": True}
        assert {"download_ms", "decode_ms", "infer_ms", "total_ms"} <= set(item["timings"]["M"])
        assert int(item["expires_at"]["N"]) > 29 * 86400
        assert "notify_pending" not in item
    assert sorted(n["upload_key"] for n in stack.notifications()) == sorted(keys)
    assert stack.drain(stack.queue_url) == []
    assert stack.drain(stack.dlq_url) == []
    emf = [m for m in outcome.metrics_lines if "ImagesPerSecond" in m]
    assert emf
    assert emf[0]["Images"] == [2.0]
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "mlbase/worker"
    assert len(emf[0]["DownloadMs"]) == len(emf[0]["DecodeMs"]) == 2  # one raw value per photo
    assert {"InferMs", "BatchSize"} <= set(emf[0])


def test_redelivered_message_writes_and_publishes_once(stack: Stack, demo_model: TrainResult) -> None:
    etag = stack.upload("uploads/u2/x.jpg", jpeg())
    stack.send_event("uploads/u2/x.jpg", etag, 1)  # at-least-once delivery: the same event twice
    run_worker(stack, demo_model.out_dir)
    stack.send_event("uploads/u2/x.jpg", etag, 1)  # and again after the first result is stored
    run_worker(stack, demo_model.out_dir)

    assert list(stack.results()) == ["uploads/u2/x.jpg"]
    assert [n["upload_key"] for n in stack.notifications()] == ["uploads/u2/x.jpg"]
    assert stack.drain(stack.queue_url) == []


def _image(mode: str, fmt: str, size: tuple[int, int] = (64, 48), **save: object) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 128 if mode in ("L", "I;16") else None).save(out, format=fmt, **save)
    return out.getvalue()


def _animated_png() -> bytes:
    out = io.BytesIO()
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "green", "blue")]
    frames[0].save(out, format="PNG", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


BAD_INPUTS = {
    "empty": (b"", "empty_object"),
    "truncated": (jpeg(seed=5)[:3000], "truncated_image"),
    "text": (b"this is not a photo", "not_an_image"),
    "bomb": (_image("L", "PNG", (3000, 2000)), "too_many_pixels"),
    "animated": (_animated_png(), "multi_frame_image"),
    "broken-heic": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "corrupt_image"),
    "postscript.jpg": (b"%!PS-Adobe-3.0\n0 0 moveto showpage\n", "unsupported_format"),
    "gif": (_image("RGB", "GIF"), "unsupported_format"),
    "sliver": (_image("RGB", "PNG", (50_000, 2)), "extreme_aspect_ratio"),
}
GOOD_ODD_INPUTS = {
    "cmyk": _image("CMYK", "JPEG"),
    "16bit": _image("I;16", "PNG"),
    "alpha": _image("RGBA", "PNG"),
    "iphone.heic": _image("RGB", "HEIF", (400, 300), quality=80),
    "android.avif": _image("RGB", "AVIF", (400, 300)),
}


def test_every_bad_input_gets_an_error_result_and_is_deleted(stack: Stack, demo_model: TrainResult) -> None:
    for name, (data, _) in BAD_INPUTS.items():
        stack.upload(f"uploads/u3/{name}", data)
    for name, data in GOOD_ODD_INPUTS.items():
        stack.upload(f"uploads/u3/{name}", data)
    stack.send_event("uploads/u3/deleted.jpg", "0123", 10)  # deleted before the worker got to it
    stack.send(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": stack.bucket}))

    run_worker(stack, demo_model.out_dir, MLBASE_MAX_PIXELS="4000000")

    results = stack.results()
    errors = {key.rsplit("/", 1)[1]: item["error"].get("S") for key, item in results.items()}
    assert errors == {
        **{name: code for name, (_, code) in BAD_INPUTS.items()},
        **dict.fromkeys(GOOD_ODD_INPUTS),
        "deleted.jpg": "object_missing",
    }
    assert all(results[f"uploads/u3/{n}"]["label"]["S"] in ("food", "other") for n in GOOD_ODD_INPUTS)
    assert stack.drain(stack.queue_url) == []
    assert stack.drain(stack.dlq_url) == []


@pytest.mark.parametrize(
    "body", ["not json", '{"Records": "nope"}', '{"Records": [{"eventName": "ObjectCreated:Put"}]}']
)
def test_malformed_message_goes_to_the_dlq_without_a_result(stack: Stack, demo_model: TrainResult, body: str) -> None:
    stack.send(body)
    run_worker(stack, demo_model.out_dir)
    assert stack.results() == {}
    assert [m["Body"] for m in stack.drain(stack.dlq_url)] == [body]


def _always(status: int, code: str, operation: str, client: object) -> None:
    def respond(request: object, **_: object) -> AWSResponse:
        raw = type("Raw", (), {"stream": lambda self, **_: iter([b""])})()
        body = f'<?xml version="1.0"?><Error><Code>{code}</Code><Message>x</Message></Error>'
        response = AWSResponse("https://example.invalid", status, {}, raw)
        response._content = body.encode()  # type: ignore[attr-defined]
        return response

    client.meta.events.register(f"before-send.{operation}", respond)  # type: ignore[attr-defined]


def test_throttled_download_is_retried_then_dead_lettered(stack: Stack, demo_model: TrainResult) -> None:
    stack.upload("uploads/u4/slow.jpg", jpeg())
    s3 = boto3.client(
        "s3", endpoint_url=stack.endpoint, region_name=REGION, config=Config(retries={"max_attempts": 1})
    )  # no SDK retries: the queue's redelivery is what is under test
    _always(503, "SlowDown", "s3.GetObject", s3)

    run_worker(stack, demo_model.out_dir, s3=s3)

    assert stack.results() == {}
    assert len(stack.drain(stack.dlq_url)) == 1


def test_download_timeout_is_retried_then_dead_lettered(stack: Stack, demo_model: TrainResult) -> None:
    from botocore.exceptions import ReadTimeoutError

    stack.upload("uploads/u4/timeout.jpg", jpeg())
    s3 = boto3.client("s3", endpoint_url=stack.endpoint, region_name=REGION, config=Config(retries={"max_attempts": 1}))

    def time_out(**_: object) -> None:
        raise ReadTimeoutError(endpoint_url=stack.endpoint)

    s3.meta.events.register("before-send.s3.GetObject", time_out)
    run_worker(stack, demo_model.out_dir, s3=s3)

    assert stack.results() == {}
    assert len(stack.drain(stack.dlq_url)) == 1


def test_throttled_result_write_is_retried_then_dead_lettered(stack: Stack, demo_model: TrainResult) -> None:
    stack.upload("uploads/u4/w.jpg", jpeg())
    dynamodb = make_client("dynamodb", stack.endpoint, REGION)
    dynamodb.meta.events.register(
        "before-send.dynamodb.PutItem",
        lambda request, **_: AWSResponse(
            "https://example.invalid",
            400,
            {},
            type("Raw", (), {"stream": lambda self, **_: iter([b""])})(),
        ),
    )
    run_worker(stack, demo_model.out_dir, dynamodb=dynamodb)
    assert stack.results() == {}
    assert len(stack.drain(stack.dlq_url)) == 1


def test_retry_delay_backs_off_exponentially_with_a_cap() -> None:
    assert [retry_delay(n, 30, 300) for n in (1, 2, 3, 4, 5)] == [30, 60, 120, 240, 300]
    assert retry_delay(3, 0, 300) == 0


def test_scale_in_protection_is_set_while_busy_and_cleared_when_idle(
    stack: Stack, demo_model: TrainResult, ecs_agent: AgentServer
) -> None:
    stack.upload("uploads/u5/p.jpg", jpeg())
    run_worker(stack, demo_model.out_dir, ECS_AGENT_URI=ecs_agent.url, MLBASE_PROTECTION_MINUTES="7")
    assert [(m, p) for m, p, _ in ecs_agent.requests] == [("PUT", "/task-protection/v1/state")] * 2
    assert [b for _, _, b in ecs_agent.requests] == [
        {"ProtectionEnabled": True, "ExpiresInMinutes": 7},
        {"ProtectionEnabled": False},
    ]
    assert list(stack.results()) == ["uploads/u5/p.jpg"]


def test_visibility_is_extended_for_messages_held_long(stack: Stack, demo_model: TrainResult) -> None:
    import time

    from worker.__main__ import build_worker
    from worker.runner import Held
    from worker.settings import load_settings

    stack.send("{}")
    message = stack.sqs.receive_message(QueueUrl=stack.queue_url, VisibilityTimeout=1)["Messages"][0]
    worker = build_worker(load_settings(stack.env(demo_model.out_dir, MLBASE_VISIBILITY_TIMEOUT_S="30")))
    try:
        worker._held["m"] = Held("m", message["ReceiptHandle"], 1, pending=1, extended_at=time.monotonic() - 16)
        assert worker.extend_visibility() == 1
        assert worker.extend_visibility() == 0  # not again until another half timeout has passed
        time.sleep(1.5)  # the original 1 s visibility has lapsed
        assert stack.drain(stack.queue_url) == []
    finally:
        worker.pipeline.close()
        worker.store.close()
