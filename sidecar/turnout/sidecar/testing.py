"""pytest fixtures that run turnout's sidecar for real (opt-in:
``pytest_plugins = ["turnout.sidecar.testing"]``).

``serve_app`` serves any ASGI app under uvicorn on a free loopback port in a background thread and
returns its base URL; ``serve_sidecar`` does so for ``create_app(config)``. ``sidecar_process``
runs ``turnout serve`` as its own process, as in production: for load tests, where a sidecar
sharing the test's interpreter would compete with the load generator and the upstreams for it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from starlette.types import ASGIApp

from turnout.core import TurnoutConfig
from turnout.sidecar.app import create_app

STARTUP_TIMEOUT_S = 10.0


class ServedApp:
    def __init__(self, app: ASGIApp) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app, lifespan="on", log_level="warning", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServedApp:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app did not start; see the log above")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


@pytest.fixture
def serve_app() -> Iterator[Callable[[ASGIApp], ServedApp]]:
    served: list[ServedApp] = []

    def serve(app: ASGIApp) -> ServedApp:
        running = ServedApp(app).start()
        served.append(running)
        return running

    yield serve
    for running in served:
        running.stop()


@pytest.fixture
def serve_sidecar(
    serve_app: Callable[[ASGIApp], ServedApp],
) -> Callable[..., ServedApp]:
    def serve(config: TurnoutConfig, **options: Any) -> ServedApp:
        options.setdefault("check_backends", False)
        return serve_app(create_app(config, **options))

    return serve


class SidecarProcess:
    """``turnout serve`` in a child process, on a free loopback port."""

    def __init__(self, config: dict[str, Any], folder: Path) -> None:
        path = folder / "router.config.yaml"
        path.write_text(yaml.safe_dump(config))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "turnout.sidecar.cli",
                "serve",
                "--config",
                str(path),
                "--port",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S * 3
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                    json.load(response)
                return
            except OSError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    self.stop()
                    raise RuntimeError("turnout serve did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


@pytest.fixture
def sidecar_process(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], SidecarProcess]]:
    started: list[SidecarProcess] = []

    def start(config: dict[str, Any]) -> SidecarProcess:
        folder = tmp_path / f"sidecar-{len(started)}"
        folder.mkdir()
        process = SidecarProcess(config, folder)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
