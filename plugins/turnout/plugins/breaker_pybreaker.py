"""The ``pybreaker`` circuit breaker, made safe for asyncio.

pybreaker counts failures and times the recovery; turnout adds what it lacks for an event loop.
Its async support needs tornado, so the guard lets the ``await`` run and then tells pybreaker the
outcome. Outcomes are three, not two: a cancelled attempt (the client hung up, or the request's
deadline ended it) is neither success nor failure, where pybreaker would count any excluded
exception as a success (and could close a half-open breaker on a trial that never finished). A
request the backend rejected as malformed, and an overload (429), show a working backend: success.
While half-open only ``half_open_max_calls`` trials run at once (pybreaker lets all through).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import pybreaker

from turnout.core import Breaker, Provider, TurnoutConfig, UpstreamError, hookimpl
from turnout.core.errors import BreakerOpen
from turnout.core.providers import BreakerState, StateListener


def _backend_answered(exc: BaseException) -> bool:
    """The attempt failed, but the backend is working: it rejected the request or is busy."""
    return isinstance(exc, UpstreamError) and (not exc.retryable or exc.reason == "rate_limited")


def _nothing() -> None:
    return None


class _Notify(pybreaker.CircuitBreakerListener):
    def __init__(self, owner: PyBreaker) -> None:
        self._owner = owner

    def state_change(self, cb: pybreaker.CircuitBreaker, old: object, new: object) -> None:
        self._owner._changed(str(getattr(new, "name", new)))


class PyBreaker:
    def __init__(self, endpoint: str, config: TurnoutConfig) -> None:
        settings = config.circuit_breaker
        self.endpoint = endpoint
        self._max_trials = settings.half_open_max_calls
        self._trials = 0
        self._listeners: list[StateListener] = []
        self._quiet = False
        self._cb = pybreaker.CircuitBreaker(
            fail_max=settings.failure_threshold,
            reset_timeout=settings.recovery_timeout_ms / 1000,
            success_threshold=settings.success_threshold,
            listeners=[_Notify(self)],
            throw_new_error_on_trip=False,
            name=endpoint,
        )

    @property
    def state(self) -> BreakerState:
        state = str(self._cb.current_state)
        if state == pybreaker.STATE_OPEN and self._recovery_due():
            return pybreaker.STATE_HALF_OPEN
        return state

    def allows(self) -> bool:
        state = self.state
        if state == pybreaker.STATE_OPEN:
            return False
        return state == pybreaker.STATE_CLOSED or self._trials < self._max_trials

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        if not self.allows():
            raise BreakerOpen(f"{self.endpoint}: circuit breaker is {self.state}")
        trial = self.state == pybreaker.STATE_HALF_OPEN
        if trial:
            self._trials += 1
        try:
            yield
        except (asyncio.CancelledError, GeneratorExit):
            raise  # neither outcome: nobody learned whether the backend works
        except BaseException as exc:
            if _backend_answered(exc):
                self._succeeded()
            else:
                self._failed(exc)
            raise
        else:
            self._succeeded()
        finally:
            if trial:
                self._trials -= 1

    def _succeeded(self) -> None:
        try:
            self._cb.call(_nothing)
        except pybreaker.CircuitBreakerError:
            pass  # opened meanwhile, by another replica: its verdict stands

    def _failed(self, exc: BaseException) -> None:
        try:
            with self._cb.calling():
                raise exc
        except BaseException:  # pybreaker re-raises what it recorded
            pass

    def apply(self, state: BreakerState) -> None:
        if state == self._cb.current_state:
            return
        self._quiet = True
        try:
            if state == pybreaker.STATE_OPEN:
                self._cb.open()
            elif state == pybreaker.STATE_CLOSED:
                self._cb.close()
            elif state == pybreaker.STATE_HALF_OPEN:
                self._cb.half_open()
        finally:
            self._quiet = False

    def on_change(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def _changed(self, new_state: str) -> None:
        if self._quiet:
            return
        for listener in self._listeners:
            listener(self.endpoint, new_state)

    def _recovery_due(self) -> bool:
        opened_at = self._cb._state_storage.opened_at
        if opened_at is None:
            return True
        return datetime.now(UTC) >= opened_at + timedelta(seconds=self._cb.reset_timeout)


@hookimpl(trylast=True)
def turnout_breakers() -> Iterable[Provider[Breaker]]:
    return [Provider("pybreaker", PyBreaker, "pybreaker, guarded for asyncio, in memory")]
