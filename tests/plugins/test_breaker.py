"""The pybreaker breaker under asyncio: what counts as a failure, and bounded half-open trials."""

from __future__ import annotations

import asyncio
import time

import pytest

from turnout.core import BreakerOpen, UpstreamError
from turnout.core.testing import make_config
from turnout.plugins.breaker_pybreaker import PyBreaker


def breaker(**settings: object) -> PyBreaker:
    config = make_config(
        [{"id": "e"}],
        circuit_breaker={"failure_threshold": 2, "recovery_timeout_ms": 100, **settings},
    )
    return PyBreaker("e", config)


def fail(b: PyBreaker, exc: BaseException) -> None:
    with pytest.raises(type(exc)), b.guard():
        raise exc


def broken(reason: str = "http_500") -> UpstreamError:
    return UpstreamError("x", endpoint="e", reason=reason, status=500)


def test_opens_after_threshold_and_passes_the_original_error() -> None:
    b = breaker()
    fail(b, broken())
    assert b.state == "closed"
    fail(b, broken())  # the tripping failure is re-raised as itself, not CircuitBreakerError
    assert b.state == "open" and not b.allows()
    with pytest.raises(BreakerOpen), b.guard():
        raise AssertionError("an open breaker must not let the call run")


@pytest.mark.parametrize(
    "exc",
    [
        asyncio.CancelledError(),
        UpstreamError("bad request", endpoint="e", reason="http_400", status=400, retryable=False),
        UpstreamError("slow down", endpoint="e", reason="rate_limited", status=429),
    ],
    ids=["client-hung-up", "request-was-bad", "overloaded"],
)
def test_what_is_not_a_failure(exc: BaseException) -> None:
    b = breaker()
    for _ in range(5):
        fail(b, exc)
    assert b.state == "closed"


def test_half_open_allows_bounded_trials_then_closes_on_successes() -> None:
    b = breaker(success_threshold=2, half_open_max_calls=1)
    fail(b, broken())
    fail(b, broken())
    time.sleep(0.12)
    assert b.state == "half-open" and b.allows()
    with b.guard():
        assert not b.allows(), "the one trial slot is taken"
        with pytest.raises(BreakerOpen), b.guard():
            pass
    assert b.state == "half-open", "one success of the two needed"
    with b.guard():
        pass
    assert b.state == "closed"


def test_a_failed_trial_reopens() -> None:
    b = breaker()
    fail(b, broken())
    fail(b, broken())
    time.sleep(0.12)
    fail(b, broken())
    assert b.state == "open"


def test_transitions_are_announced_and_applied_quietly() -> None:
    b = breaker()
    seen: list[tuple[str, str]] = []
    b.on_change(lambda endpoint, state: seen.append((endpoint, state)))
    fail(b, broken())
    fail(b, broken())
    assert seen == [("e", "open")]
    b.apply("closed")
    assert b.state == "closed" and seen == [("e", "open")], "applied states are not re-announced"


def test_a_cancelled_trial_decides_nothing() -> None:
    b = breaker()
    fail(b, broken())
    fail(b, broken())
    time.sleep(0.12)
    fail(b, asyncio.CancelledError())
    assert b.state == "half-open", "a trial that never finished neither closes nor reopens"
    assert b.allows(), "and its trial slot is free again"
