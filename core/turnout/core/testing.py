"""pytest fixtures for turnout and its plugin authors (opt-in:
``pytest_plugins = ["turnout.core.testing"]``).

* ``turnout_plugin_manager``: a fresh plugin manager with the built-ins, no entry points.
* ``register_plugin``: registers a plugin object and always unregisters it after the test.
* ``redis_server``: a real ``redis-server`` on a free loopback port (``.url``, ``.stop()``).
* ``openai_upstream``: a factory of real HTTP servers on loopback that speak OpenAI's wire format
  (plain and SSE) and can be told to fail: refuse, answer 5xx/429, hang, send malformed JSON, or
  break a stream midway. Each records the bodies it received.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from turnout.core.config import TurnoutConfig, parse_config
from turnout.core.plugins import create_plugin_manager

# "ok", "status:<code>", "hang", "malformed", "cut_stream", "stall_stream", "loading" (503 on
# /health and on requests, as vLLM while it loads a model)
Mode = str


@dataclass
class FakeUpstream:
    """One OpenAI-compatible server on loopback. Change ``mode`` at any time."""

    name: str
    server: HTTPServer
    mode: Mode = "ok"
    chunks: int = 5
    chunk_gap_s: float = 0.0
    hang_s: float = 5.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/v1"

    @property
    def hits(self) -> int:
        with self._lock:
            return len(self.requests)

    def words(self) -> list[str]:
        """The words every completion of this upstream consists of."""
        return [f"{self.name}-w{i} " for i in range(self.chunks)]

    def handle(self, request: Request) -> Response:
        if request.path == "/health":
            return Response(b"", status=503 if self.mode == "loading" else 200)
        if request.path == "/metrics":
            return Response(b"", status=404)  # like a server that exports no metrics
        if request.method == "GET":
            return _json({"object": "list", "data": [{"id": self.name, "object": "model"}]})
        try:
            body = json.loads(request.get_data())
        except ValueError:
            body = {"unparseable": True}
        with self._lock:
            self.requests.append(body)
            self.headers_seen.append(dict(request.headers))
        if self.mode.startswith("status:") or self.mode == "loading":
            code = 503 if self.mode == "loading" else int(self.mode.split(":", 1)[1])
            error = {"error": {"message": f"{self.name} says {code}", "type": "x", "code": code}}
            headers = {"Retry-After": "2"} if code == 429 else {}
            return _json(error, status=code, headers=headers)
        if self.mode == "hang":
            time.sleep(self.hang_s)
        if self.mode == "malformed":
            return Response(b'{"choices": [', status=200, content_type="application/json")
        chat = request.path.endswith("/chat/completions")
        if body.get("stream"):
            return Response(self._events(body, chat), content_type="text/event-stream")
        text = "".join(self.words())
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return _json(
            {
                "id": f"cmpl-{self.name}",
                "object": "chat.completion" if chat else "text_completion",
                "created": 0,
                "model": body.get("model"),
                "choices": [choice],
                "usage": _usage(self.chunks),
            }
        )

    def _events(self, body: dict[str, Any], chat: bool) -> Iterator[bytes]:
        kind = "chat.completion.chunk" if chat else "text_completion"
        for i, word in enumerate(self.words()):
            if i and self.chunk_gap_s:
                time.sleep(self.chunk_gap_s)
            if i == 2 and self.mode == "cut_stream":
                raise ConnectionAbortedError("cut mid-stream on purpose")
            if i == 2 and self.mode == "stall_stream":
                time.sleep(self.hang_s)
            last = i == self.chunks - 1
            choice: dict[str, Any] = {"index": 0, "finish_reason": "stop" if last else None}
            if chat:
                choice["delta"] = {"content": word}
            else:
                choice["text"] = word
            chunk = {
                "id": f"cmpl-{self.name}",
                "object": kind,
                "created": 0,
                "model": body.get("model"),
                "choices": [choice],
            }
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
        if (body.get("stream_options") or {}).get("include_usage"):
            usage: dict[str, Any] = {
                "id": f"cmpl-{self.name}",
                "object": kind,
                "created": 0,
                "model": body.get("model"),
                "choices": [],
                "usage": _usage(self.chunks),
            }
            yield b"data: " + json.dumps(usage).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"


def _usage(completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": 7,
        "completion_tokens": completion_tokens,
        "total_tokens": 7 + completion_tokens,
    }


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(data), status=status, headers=headers, content_type="application/json"
    )


def closed_port_api_base() -> str:
    """An api_base on loopback where nothing listens: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def make_config(models: list[dict[str, Any]], **sections: Any) -> TurnoutConfig:
    """A validated config from plain data (``max_model_len`` defaults to 4096)."""
    data: dict[str, Any] = {"models": [{"max_model_len": 4096, **m} for m in models]}
    data.update(sections)
    return parse_config(data).config


@pytest.fixture
def turnout_plugin_manager() -> pluggy.PluginManager:
    return create_plugin_manager(load_entry_points=False)


@pytest.fixture
def register_plugin(
    turnout_plugin_manager: pluggy.PluginManager,
) -> Iterator[Callable[[object], object]]:
    registered: list[object] = []

    def register(plugin: object, name: str | None = None) -> object:
        turnout_plugin_manager.register(plugin, name=name)
        registered.append(plugin)
        return plugin

    yield register
    for plugin in registered:
        if turnout_plugin_manager.is_registered(plugin):
            turnout_plugin_manager.unregister(plugin)


@pytest.fixture
def openai_upstream() -> Iterator[Callable[..., FakeUpstream]]:
    servers: list[FakeUpstream] = []

    def start(name: str = "upstream", **options: Any) -> FakeUpstream:
        server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
        server.start()
        upstream = FakeUpstream(name=name, server=server, **options)
        server.expect_request(re.compile(r"/v1/.*|/health|/metrics")).respond_with_handler(
            upstream.handle
        )
        servers.append(upstream)
        return upstream

    yield start
    # Each server takes up to its poll interval to stop: stop them side by side.
    running = [u for u in servers if u.server.is_running()]
    stoppers = [threading.Thread(target=u.server.stop) for u in running]
    for upstream in servers:
        upstream.mode = "ok"
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join()


class RedisServer:
    """A throwaway redis-server: no persistence, loopback only."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; .ci/run installs it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer()
    yield server
    server.stop()
