"""Admission: per-endpoint concurrency slots and bounded FIFO queues, with backpressure.

A request takes a free slot on the first candidate that has one; when none has, it waits in the
queue of the first candidate with room, until a slot is handed to it or its deadline passes (504).
When every candidate's queue is full the answer is 429 with a Retry-After drawn from how long the
queued work should take. A waiter that is cancelled (its client hung up) leaves the queue, and a
slot handed to it at that moment is passed on: nothing leaks and nothing waits forever.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque

from turnout.core.config import TurnoutConfig
from turnout.core.errors import DeadlineExceeded, QueueFull

DEFAULT_SLOTS = 64
LATENCY_WEIGHT = 0.1


class EndpointSlots:
    def __init__(self, slots: int, queue_size: int) -> None:
        self.slots = slots
        self.queue_size = queue_size
        self.in_flight = 0
        self.mean_hold_s = 1.0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def try_take(self) -> bool:
        if self.in_flight < self.slots and not self._waiters:
            self.in_flight += 1
            return True
        return False

    def has_room(self) -> bool:
        return len(self._waiters) < self.queue_size

    async def wait(self, timeout_s: float) -> bool:
        """Queue for a slot; True once one is handed over, False when ``timeout_s`` ran out."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
            return True
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return True  # handed over as the clock ran out: take it
            waiter.cancel()
            return False
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed over as the client left: pass it on
            waiter.cancel()
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self, held_s: float | None = None) -> None:
        if held_s is not None:
            self.mean_hold_s += LATENCY_WEIGHT * (held_s - self.mean_hold_s)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next in line
                return
        self.in_flight -= 1

    def drain_estimate_s(self) -> float:
        """How long until the current queue should have been served."""
        return self.mean_hold_s * (self.queued + 1) / self.slots


class Admission:
    def __init__(self, config: TurnoutConfig) -> None:
        default_slots = config.inference.max_num_seqs or DEFAULT_SLOTS
        self.endpoints = {
            m.id: EndpointSlots(
                m.max_concurrency or default_slots,
                m.queue_size if m.queue_size is not None else config.routing.queue_size,
            )
            for m in config.models
        }

    async def acquire(self, candidates: list[str], deadline: float) -> str:
        """A slot on one of ``candidates`` (in preference order); returns which endpoint."""
        for endpoint in candidates:
            if self.endpoints[endpoint].try_take():
                return endpoint
        for endpoint in candidates:
            slots = self.endpoints[endpoint]
            if slots.has_room():
                remaining = deadline - time.monotonic()
                if remaining > 0 and await slots.wait(remaining):
                    return endpoint
                raise DeadlineExceeded(
                    f"the request's deadline passed while it waited for a slot on {endpoint} "
                    f"({slots.in_flight} in flight, {slots.queued} queued)"
                )
        wait = min(self.endpoints[e].drain_estimate_s() for e in candidates)
        raise QueueFull(
            "every candidate endpoint is at capacity and its queue is full ("
            + ", ".join(f"{e}: {self.endpoints[e].queued} queued" for e in candidates)
            + "); retry after the Retry-After interval",
            retry_after_s=max(1.0, math.ceil(wait)),
        )

    def release(self, endpoint: str, held_s: float | None = None) -> None:
        self.endpoints[endpoint].release(held_s)
