"""`make demo`: the photo pipeline on this machine, against moto server on 127.0.0.1, on the CPU.

Starts moto server, creates the upload bucket (with its ObjectCreated notification to the queue), queue + DLQ,
results table and topic; trains the demo model on generated photos the first time (cached in `build/demo-model`);
uploads generated photos (and a few broken files) through the upload API Lambda's pre-signed POST, as the app
does; runs the worker until the queue is empty; prints the results table.

    python -m tools.demo [--photos 24] [--weights DIR] [--retrain]

The demo model only knows generated pictures: real accuracy needs a model trained on your own labelled photos
(`python -m worker train DATA_DIR --out DIR`, see worker/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO / "build" / "demo-model"  # build/ is git-ignored
REGION = "ap-northeast-1"
BUCKET = "mlbase-demo-uploads"
USER = "demo-user"
DEMO_ROLE_ID = "AROADEMOBACKEND"


@dataclass(frozen=True)
class Upload:
    name: str
    expected: str | None  # the generated label, or None for a deliberately broken file
    data: bytes
    content_type: str = "image/jpeg"


def demo_uploads(count: int, seed: int = 2026) -> list[Upload]:
    """Generated phone photos in a few sizes, plus one file of each common kind of breakage."""
    from worker import synthetic

    rng = random.Random(seed)
    sizes = [(1600, 1200), (1200, 1600), (2048, 1536), (1024, 1024)]
    uploads = []
    for i in range(count):
        label = synthetic.LABELS[i % 2]
        width, height = rng.choice(sizes)
        uploads.append(Upload(f"{label}-{i:02d}", label, synthetic.photo(label, width, height, seed + i)))
    # An iPhone camera photo: the same kind of picture, stored as HEIC.
    label = synthetic.LABELS[0]
    uploads.append(Upload("iphone-heic", label, _heic(synthetic.photo(label, 1600, 1200, seed - 1)), "image/heic"))
    good = uploads[0].data
    uploads.append(Upload("truncated", None, good[: len(good) // 4]))
    # PostScript under a photo's name: refused from its first bytes, never handed to Ghostscript.
    uploads.append(Upload("postscript", None, b"%!PS-Adobe-3.0\n0 0 moveto showpage\n"))
    uploads.append(Upload("not-a-photo", None, b"just text with a .png name, not a photo", "image/png"))
    return uploads


def _heic(jpeg: bytes) -> bytes:
    import io

    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(out, format="HEIF", quality=85)
    return out.getvalue()


def create_stack(endpoint: str) -> dict[str, str]:
    import boto3

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=endpoint, region_name=REGION)  # type: ignore[call-overload]

    sqs, s3, ddb, sns = client("sqs"), client("s3"), client("dynamodb"), client("sns")
    dlq = sqs.create_queue(QueueName="photos-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    queue = sqs.create_queue(QueueName="photos", Attributes={"VisibilityTimeout": "300", "RedrivePolicy": redrive})
    queue_url = queue["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}},
                }
            ]
        },
    )
    ddb.create_table(
        TableName="photo-results",
        KeySchema=[{"AttributeName": "upload_key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "upload_key", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    topic = sns.create_topic(Name="photo-results")["TopicArn"]
    return {"queue_url": queue_url, "dlq_url": dlq, "table": "photo-results", "topic_arn": topic}


def upload_through_api(uploads: list[Upload]) -> tuple[dict[str, Upload], str]:
    """POST each photo with a pre-signed form from the upload API Lambda; plain PutObject if that Lambda is absent."""
    # The demo plays the app backend: its requests carry the backend role's unique ID, as API Gateway reports it.
    os.environ.update(MLBASE_UPLOAD_BUCKET=BUCKET, MLBASE_AUTH_MODE="iam", MLBASE_BACKEND_ROLE_ID=DEMO_ROLE_ID)
    try:
        from lambdas.presign.handler import handler
    except ImportError:
        return _put_objects(uploads), "plain PutObject (no upload API Lambda in this checkout)"
    import requests

    context = type(
        "Context",
        (),
        {
            "function_name": "demo-presign",
            "memory_limit_in_mb": 256,
            "invoked_function_arn": f"arn:aws:lambda:{REGION}:123456789012:function:demo-presign",
            "aws_request_id": "00000000-0000-4000-8000-000000000000",
        },
    )()
    keys: dict[str, Upload] = {}
    for upload in uploads:
        event = {
            "version": "2.0",
            "routeKey": "POST /uploads",
            "rawPath": "/uploads",
            "headers": {"content-type": "application/json", "x-mlbase-user-id": USER},
            "requestContext": {
                "http": {"method": "POST", "path": "/uploads"},
                "authorizer": {"iam": {"userId": f"{DEMO_ROLE_ID}:demo"}},
            },
            "body": json.dumps({"content_type": upload.content_type, "content_length": len(upload.data) or 1}),
            "isBase64Encoded": False,
        }
        answer = handler(event, context)
        if answer["statusCode"] != 200:
            raise SystemExit(f"upload API refused {upload.name}: {answer['body']}")
        form = json.loads(answer["body"])
        response = requests.post(
            form["url"], data=form["fields"], files={"file": (upload.name, upload.data)}, timeout=30
        )
        if response.status_code >= 300:
            raise SystemExit(f"POST of {upload.name} failed: {response.status_code} {response.text[:200]}")
        keys[form["key"]] = upload
    return keys, "pre-signed POST from the upload API Lambda"


def _put_objects(uploads: list[Upload]) -> dict[str, Upload]:
    import uuid

    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=REGION)  # type: ignore[call-overload]
    keys = {}
    for upload in uploads:
        key = f"uploads/{USER}/{uuid.uuid4()}.jpg"
        s3.put_object(Bucket=BUCKET, Key=key, Body=upload.data, ContentType=upload.content_type)
        keys[key] = upload
    return keys


def ensure_events(stack: dict[str, str], keys: dict[str, Upload], endpoint: str) -> str:
    """Wait for the bucket's notifications; send them ourselves if this moto build does not emit them."""
    import boto3

    from worker.events import s3_event

    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)  # type: ignore[call-overload]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)  # type: ignore[call-overload]
    deadline = time.monotonic() + 5
    waiting = 0
    while time.monotonic() < deadline:
        attributes = sqs.get_queue_attributes(QueueUrl=stack["queue_url"], AttributeNames=["All"])["Attributes"]
        waiting = int(attributes["ApproximateNumberOfMessages"])
        if waiting >= len(keys):
            return "S3 event notifications"
        time.sleep(0.2)
    if waiting:
        return f"S3 event notifications ({waiting} of {len(keys)})"
    for key in keys:
        head = s3.head_object(Bucket=BUCKET, Key=key)
        body = s3_event(BUCKET, key, head["ETag"], head["ContentLength"])
        sqs.send_message(QueueUrl=stack["queue_url"], MessageBody=json.dumps(body))
    return "events sent by the demo (this moto build emitted no S3 notifications)"


def model_dir(weights: str | None, retrain: bool) -> Path:
    if weights:
        return Path(weights)
    if retrain or not (DEMO_MODEL / "metadata.json").is_file():
        from worker.train import train_demo

        print(f"training the demo model on generated photos into {DEMO_MODEL} (once)")
        result = train_demo(DEMO_MODEL)
        accuracy = f"held-out accuracy {result.heldout_accuracy:.1%}"
        print(f"demo model {result.metadata.version}: {accuracy} in {result.seconds:.0f} s")
    return DEMO_MODEL


def run_worker(stack: dict[str, str], endpoint: str, model: Path, total: int) -> Any:
    from rich.progress import Progress

    from worker.__main__ import build_worker
    from worker.settings import load_settings

    settings = load_settings(
        {
            "MLBASE_QUEUE_URL": stack["queue_url"],
            "MLBASE_UPLOAD_BUCKET": BUCKET,
            "MLBASE_RESULTS_TABLE": stack["table"],
            "MLBASE_RESULTS_TOPIC_ARN": stack["topic_arn"],
            "MLBASE_MODEL_URI": str(model),
            "MLBASE_ENDPOINT_URL": endpoint,
            "MLBASE_DEVICE": "cpu",
            "MLBASE_WAIT_TIME_S": "1",
            "MLBASE_BATCH_SIZE": "8",
            "AWS_REGION": REGION,
        }
    )
    worker = build_worker(settings, metrics_stream=open(os.devnull, "w"))  # noqa: SIM115
    with Progress() as progress:
        task = progress.add_task("classifying on the CPU", total=total)
        runner = threading.Thread(target=worker.run, kwargs={"max_idle_polls": 2}, daemon=True)
        runner.start()
        while runner.is_alive():
            progress.update(task, completed=worker.processed)
            runner.join(0.2)
        progress.update(task, completed=worker.processed)
    return worker


def print_results(stack: dict[str, str], keys: dict[str, Upload], endpoint: str) -> None:
    import boto3
    from rich.console import Console
    from rich.table import Table

    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)  # type: ignore[call-overload]
    items = {i["upload_key"]["S"]: i for i in ddb.scan(TableName=stack["table"])["Items"]}
    table = Table(title="photo-results")
    for column in ("upload", "key", "label", "score", "error", "model_version", "total ms"):
        table.add_column(column, no_wrap=True)
    right = judged = 0
    for key, upload in sorted(keys.items(), key=lambda kv: kv[1].name):
        item = items.get(key, {})
        label = item.get("label", {}).get("S")
        if upload.expected and label:
            judged += 1
            right += label == upload.expected
        table.add_row(
            upload.name,
            key.rsplit("/", 1)[1][:13] + "...",
            label or "-",
            item.get("score", {}).get("N", "-"),
            item.get("error", {}).get("S", "-"),
            item.get("model_version", {}).get("S", "(no result)"),
            item.get("timings", {}).get("M", {}).get("total_ms", {}).get("N", "-"),
        )
    console = Console(width=max(120, Console().width))
    console.print(table)
    console.print(
        f"{len(items)} results for {len(keys)} uploads; generated photos labelled correctly: {right}/{judged}"
    )
    console.print("The demo model knows generated pictures only; real accuracy needs your own labelled photos.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.demo", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--photos", type=int, default=24, help="generated photos to upload")
    parser.add_argument("--weights", help="model directory to use instead of the demo model")
    parser.add_argument("--retrain", action="store_true", help="train the demo model again")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    import logging

    from moto.server import ThreadedMotoServer

    # Keep the terminal for the progress bar and the table: no per-request lines from moto or the upload Lambda.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

    model = model_dir(args.weights, args.retrain)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # Fake credentials: everything below talks to the local moto server only.
    os.environ.update(
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",  # noqa: S106
        AWS_SESSION_TOKEN="demo",  # noqa: S106
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_ENDPOINT_URL=endpoint,
        MLBASE_ENDPOINT_URL=endpoint,
    )
    os.environ.pop("AWS_PROFILE", None)
    try:
        print(f"moto server on {endpoint}")
        stack = create_stack(endpoint)
        uploads = demo_uploads(args.photos)
        keys, how = upload_through_api(uploads)
        print(f"uploaded {len(keys)} files via {how}")
        print(f"queue fed by {ensure_events(stack, keys, endpoint)}")
        started = time.perf_counter()
        worker = run_worker(stack, endpoint, model, len(keys))
        print(f"worker processed {worker.processed} photos in {time.perf_counter() - started:.1f} s")
        print_results(stack, keys, endpoint)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
