"""Passive endpoint state: one circuit breaker per endpoint, and 429 cool-downs.

A breaker opens on failures (connection errors, timeouts, 5xx). An endpoint that answers 429 is
overloaded, not broken: it is routed around for its Retry-After without touching its breaker.
"""

from __future__ import annotations

import time

from turnout.core.config import TurnoutConfig
from turnout.core.plugins import ProviderRegistry
from turnout.core.providers import Breaker
from turnout.core.wiring import find_provider

DEFAULT_COOL_DOWN_S = 1.0
MAX_COOL_DOWN_S = 60.0


class BreakerBoard:
    def __init__(self, registry: ProviderRegistry, config: TurnoutConfig) -> None:
        name = config.circuit_breaker.provider
        provider = find_provider(registry.breakers, name, "circuit_breaker.provider", "breaker")
        self.breakers: dict[str, Breaker] = {
            m.id: provider.factory(m.id, config) for m in config.models
        }
        self._cool_until: dict[str, float] = {}
        self.transitions: dict[tuple[str, str], int] = {}
        for breaker in self.breakers.values():
            breaker.on_change(self._count)

    def _count(self, endpoint: str, state: str) -> None:
        key = (endpoint, state)
        self.transitions[key] = self.transitions.get(key, 0) + 1

    def breaker(self, endpoint: str) -> Breaker:
        return self.breakers[endpoint]

    def cool(self, endpoint: str, retry_after_s: float | None) -> None:
        seconds = min(MAX_COOL_DOWN_S, retry_after_s or DEFAULT_COOL_DOWN_S)
        self._cool_until[endpoint] = time.monotonic() + seconds

    def cooling_s(self, endpoint: str) -> float | None:
        """Seconds this endpoint stays routed around for its last 429, or None."""
        until = self._cool_until.get(endpoint)
        if until is None:
            return None
        left = until - time.monotonic()
        if left <= 0:
            del self._cool_until[endpoint]
            return None
        return left
