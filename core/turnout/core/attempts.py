"""Trying a decision's endpoints within the request's deadline.

For each try: skip endpoints whose breaker is open (fail fast, no call), take a slot through
admission (or wait in a queue, or get 429), guard the call with the endpoint's breaker, bound it by
what is left of the deadline, and on a transient failure go on to the next candidate. After a pass
with no success, ``routing.retries`` further passes follow with exponential backoff and full
jitter, while the deadline allows. All of this happens before the client has received a byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from turnout.core.admission import Admission
from turnout.core.breakers import BreakerBoard
from turnout.core.config import ModelConfig, TurnoutConfig
from turnout.core.errors import (
    BreakerOpen,
    DeadlineExceeded,
    NoEndpointAvailable,
    QueueFull,
    UpstreamError,
)
from turnout.core.providers import Timeouts
from turnout.core.types import Attempt

T = TypeVar("T")
Try = Callable[[str, Timeouts], Awaitable[T]]


@dataclass
class Success(Generic[T]):
    endpoint: str
    result: T
    attempts: tuple[Attempt, ...]
    queue_wait_s: float
    retries: int
    # Holds the slot and the breaker guard: close it when the answer is complete, or exit it
    # with the exception that broke the answer.
    held: contextlib.ExitStack


class AttemptRunner:
    def __init__(
        self,
        config: TurnoutConfig,
        models: dict[str, ModelConfig],
        admission: Admission,
        board: BreakerBoard,
    ) -> None:
        self._config = config
        self._models = models
        self._admission = admission
        self._board = board

    def timeouts(self, endpoint: str) -> Timeouts:
        model, routing = self._models[endpoint], self._config.routing
        total = (model.timeout_ms or routing.timeout_ms) / 1000
        first_byte = (model.first_byte_timeout_ms or model.timeout_ms or routing.timeout_ms) / 1000
        connect = (model.connect_timeout_ms or routing.connect_timeout_ms) / 1000
        return Timeouts(connect=connect, first_byte=first_byte, total=total)

    async def run(self, order: tuple[str, ...], deadline: float, try_one: Try[T]) -> Success[T]:
        attempts: list[Attempt] = []
        for attempt_pass in range(self._config.routing.retries + 1):
            if attempt_pass and not await self._backoff(attempt_pass, deadline):
                break
            done = await self._pass(order, deadline, try_one, attempts)
            if done is not None:
                done.retries = attempt_pass
                return done
        raise _exhausted(attempts, deadline)

    async def _pass(
        self, order: tuple[str, ...], deadline: float, try_one: Try[T], attempts: list[Attempt]
    ) -> Success[T] | None:
        tried: set[str] = set()
        while True:
            ready = []
            for endpoint in order:
                if endpoint in tried:
                    continue
                if not self._board.breaker(endpoint).allows():
                    tried.add(endpoint)
                    attempts.append(Attempt(endpoint, "breaker_open"))
                else:
                    ready.append(endpoint)
            if not ready:
                return None
            asked = time.monotonic()
            try:
                endpoint = await self._admission.acquire(ready, deadline)
            except (DeadlineExceeded, QueueFull) as exc:
                exc.attempts = tuple((a.endpoint, a.reason) for a in attempts)
                raise
            tried.add(endpoint)
            taken = time.monotonic()
            held = contextlib.ExitStack()
            held.callback(self._release, endpoint, taken)
            cut_off = asyncio.timeout(max(0.0, deadline - time.monotonic()))
            try:
                held.enter_context(self._board.breaker(endpoint).guard())
                async with cut_off:
                    result = await try_one(endpoint, self.timeouts(endpoint))
            except BaseException as exc:
                error = _as_upstream(endpoint, exc)
                if cut_off.expired():
                    # The request's deadline, not this endpoint, ended the attempt: say nothing
                    # of the endpoint's health (a cancellation is neither success nor failure).
                    cancelled = asyncio.CancelledError()
                    held.__exit__(type(cancelled), cancelled, None)
                    attempts.append(Attempt(endpoint, "deadline"))
                    raise _exhausted(attempts, deadline, expired=True) from None
                held.__exit__(type(error), error, error.__traceback__)
                if isinstance(error, BreakerOpen):
                    attempts.append(Attempt(endpoint, "breaker_open"))
                    continue
                if not isinstance(error, UpstreamError) or not error.retryable:
                    raise  # the request's own fault, a cancellation, or a bug: not retried
                if error.reason == "rate_limited":
                    self._board.cool(endpoint, error.retry_after_s)
                attempts.append(Attempt(endpoint, error.reason, error.upstream_status))
                continue
            return Success(endpoint, result, tuple(attempts), taken - asked, 0, held)

    def _release(self, endpoint: str, taken_at: float) -> None:
        self._admission.release(endpoint, time.monotonic() - taken_at)

    async def _backoff(self, attempt_pass: int, deadline: float) -> bool:
        base = self._config.routing.retry_backoff_ms / 1000
        delay = random.uniform(0, base * 2 ** (attempt_pass - 1))
        if time.monotonic() + delay >= deadline:
            return False
        await asyncio.sleep(delay)
        return True


def _as_upstream(endpoint: str, exc: BaseException) -> BaseException:
    """A deadline that cut an attempt short is that endpoint's timeout."""
    if isinstance(exc, TimeoutError):
        return UpstreamError(f"{endpoint}: timeout", endpoint=endpoint, reason="timeout")
    return exc


def _exhausted(
    attempts: list[Attempt], deadline: float, *, expired: bool = False
) -> NoEndpointAvailable | DeadlineExceeded:
    tried = "; ".join(f"{a.endpoint}: {a.reason}" for a in attempts) or "none could be tried"
    tried_pairs = tuple((a.endpoint, a.reason) for a in attempts)
    if expired or time.monotonic() >= deadline:
        return DeadlineExceeded(
            f"the request's deadline passed before an endpoint answered ({tried})",
            attempts=tried_pairs,
        )
    return NoEndpointAvailable(
        f"every candidate endpoint failed ({tried}); try again shortly",
        attempts=tried_pairs,
    )
