"""A routed stream: committed to one endpoint once its first event is in hand."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Protocol

from turnout.core.errors import UpstreamError
from turnout.core.providers import UpstreamStream
from turnout.core.types import Attempt, Decision, Outcome


class RecordStream(Protocol):
    """How a finished stream reports its outcome to the router."""

    def __call__(
        self,
        outcome: Outcome,
        status: int,
        usage: dict[str, object] | None,
        ttft_s: float,
        error: str | None,
        inter_token_s: float | None,
    ) -> None: ...


class RoutedStream:
    """An opened stream: its first event is already in hand, so no fallback is possible now.

    Iterate it for the events; a failure mid-stream raises :class:`UpstreamError` and the edge
    ends the client's stream with an error event. ``aclose`` is safe to call more than once.
    """

    def __init__(
        self,
        endpoint: str,
        attempts: tuple[Attempt, ...],
        decision: Decision,
        upstream: UpstreamStream,
        events: AsyncIterator[bytes],
        first: bytes,
        started: float,
        record: RecordStream,
        held: contextlib.ExitStack,
    ) -> None:
        self.endpoint = endpoint
        self.attempts = attempts
        self.decision = decision
        self._record = record
        self._held = held
        self._upstream = upstream
        self._events = events
        self._first = first
        self._started = started
        self._ttft_s = time.perf_counter() - started
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        outcome: Outcome = "cancelled"
        status, error = 499, None
        events, last, gaps = 1, time.perf_counter(), 0.0
        try:
            yield self._first
            async for event in self._events:
                now = time.perf_counter()
                gaps, last, events = gaps + now - last, now, events + 1
                yield event
            outcome, status = "ok", 200
        except UpstreamError as exc:
            outcome, status, error = "stream_error", 502, exc.reason
            # A break mid-stream counts against the endpoint's breaker like any failure.
            self._held.__exit__(type(exc), exc, exc.__traceback__)
            raise
        finally:
            await self.aclose()
            self._held.close()
            inter_token = gaps / (events - 1) if events > 1 else None
            self._record(outcome, status, self._upstream.usage, self._ttft_s, error, inter_token)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._upstream.aclose()
