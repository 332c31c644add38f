"""pytest fixtures that run turnout's sidecar for real (opt-in:
``pytest_plugins = ["turnout.sidecar.testing"]``).

``serve_app`` serves any ASGI app under uvicorn on a free loopback port in a background thread and
returns its base URL; ``serve_sidecar`` does so for ``create_app(config)``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
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
