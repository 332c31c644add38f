"""Breaker state shared by router replicas through Redis, without ever blocking the event loop.

Each replica keeps its own breakers and routes on them. Transitions are queued from the request
path (a non-blocking put) and published by a background task; another task listens for the other
replicas' transitions and applies them. A replica that loses Redis keeps routing on its local
view, logs it once, shows it in ``/health``, and reconnects by itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from typing import Any

from turnout.core.breakers import BreakerBoard

log = logging.getLogger(__name__)

CHANNEL = "turnout:breakers"
KEY_PREFIX = "turnout:breaker:"
IO_TIMEOUT_S = 0.5
PING_EVERY_S = 1.0
RECONNECT_MAX_S = 5.0
OUTBOX_SIZE = 1024
SHARED_STATES = ("open", "closed")


class RedisBreakerSync:
    def __init__(self, url: str, board: BreakerBoard, ttl_s: float) -> None:
        self.url = url
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.connected = False
        self.last_error: str | None = None
        self._board = board
        self._ttl_s = max(1, int(ttl_s))
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue(OUTBOX_SIZE)
        self._tasks: list[asyncio.Task[None]] = []
        self._client: Any = None
        for breaker in board.breakers.values():
            breaker.on_change(self._local_change)

    def status(self) -> dict[str, Any]:
        return {
            "backend": "redis",
            "connected": self.connected,
            "last_error": self.last_error,
            "replica": self.replica,
        }

    def _local_change(self, endpoint: str, state: str) -> None:
        if state not in SHARED_STATES:
            return
        try:
            self._outbox.put_nowait((endpoint, state))
        except asyncio.QueueFull:
            log.warning("breaker sync outbox full; %s -> %s not shared", endpoint, state)

    async def start(self) -> None:
        import redis.asyncio as redis

        self._client = redis.from_url(
            self.url, socket_timeout=IO_TIMEOUT_S, socket_connect_timeout=IO_TIMEOUT_S
        )
        self._tasks = [
            asyncio.create_task(self._publish(), name="turnout-breaker-publish"),
            asyncio.create_task(self._listen(), name="turnout-breaker-listen"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()

    async def _publish(self) -> None:
        while True:
            endpoint, state = await self._outbox.get()
            message = json.dumps(
                {"endpoint": endpoint, "state": state, "replica": self.replica, "at": time.time()}
            )
            try:
                await self._client.set(KEY_PREFIX + endpoint, message, ex=self._ttl_s)
                await self._client.publish(CHANNEL, message)
            except Exception as exc:
                self._lost(exc)

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                pubsub = self._client.pubsub()
                await pubsub.subscribe(CHANNEL)
                await self._catch_up()
                self._found()
                delay = 0.1
                pinged = time.monotonic()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                    if message is not None:
                        self._apply(message.get("data"))
                    if time.monotonic() - pinged > PING_EVERY_S:
                        await self._client.ping()
                        pinged = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._lost(exc)
                await asyncio.sleep(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)

    async def _catch_up(self) -> None:
        """Adopt what other replicas published while this one was not listening."""
        for endpoint in self._board.breakers:
            self._apply(await self._client.get(KEY_PREFIX + endpoint))

    def _apply(self, raw: Any) -> None:
        if raw is None:
            return
        try:
            data = json.loads(raw)
        except ValueError:
            return
        if data.get("replica") == self.replica or data.get("state") not in SHARED_STATES:
            return
        endpoint = data.get("endpoint")
        if endpoint in self._board.breakers:
            self._board.breaker(endpoint).apply(data["state"])

    def _found(self) -> None:
        if not self.connected:
            log.info("breaker state shared through %s", _safe(self.url))
        self.connected, self.last_error = True, None

    def _lost(self, exc: BaseException) -> None:
        if self.connected or self.last_error is None:
            log.warning(
                "lost Redis at %s (%s); routing on this replica's own breaker state",
                _safe(self.url),
                type(exc).__name__,
            )
        self.connected = False
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]


def _safe(url: str) -> str:
    """The URL without its password."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
