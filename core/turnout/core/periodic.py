"""A background task that repeats one piece of work at an interval, for the router's watchers
(health checks, the VRAM watch, backend metrics). A failing round is logged and the next runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(
        self,
        name: str,
        interval_s: float,
        work: Callable[[], Awaitable[None]],
        *,
        wait_first: bool = True,
    ) -> None:
        self._name = name
        self._interval_s = interval_s
        self._work = work
        self._wait_first = wait_first
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"turnout-{self._name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        if self._wait_first:
            await asyncio.sleep(self._interval_s)
        while True:
            try:
                await self._work()
            except Exception:
                log.exception("%s failed; the next round runs as planned", self._name)
            await asyncio.sleep(self._interval_s)
