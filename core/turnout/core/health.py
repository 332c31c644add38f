"""Active health: background checks that cost no tokens, kept apart from breaker outcomes.

Every ``routing.health_check_interval_ms`` each endpoint's dispatcher probes it (vLLM and
llama.cpp ``/health``, else ``/v1/models``; Ollama ``/api/tags``). An endpoint that fails its
check, or is still loading its model (503 on ``/health``), is not routed to until it passes.
Before the first check an endpoint counts as routable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from turnout.core.config import ModelConfig
from turnout.core.periodic import Periodic
from turnout.core.providers import Dispatcher, HealthReport

log = logging.getLogger(__name__)


@dataclass
class EndpointHealth:
    status: str = "unknown"  # "unknown", "healthy", "unhealthy"
    detail: str = "not checked yet"
    checked_at: float | None = None  # wall clock, for people
    latency_s: float | None = None
    last_error: str | None = None


class HealthMonitor:
    def __init__(
        self, models: dict[str, ModelConfig], dispatchers: dict[str, Dispatcher], interval_s: float
    ) -> None:
        self._models = models
        self._dispatchers = dispatchers
        self.states = {endpoint: EndpointHealth() for endpoint in models}
        self._loop = Periodic("health-checks", interval_s, self.check_all)

    def unroutable(self, endpoint: str) -> str | None:
        state = self.states[endpoint]
        return f"unhealthy: {state.detail}" if state.status == "unhealthy" else None

    async def check_all(self) -> None:
        reports = await asyncio.gather(
            *(self._check(endpoint) for endpoint in self._models), return_exceptions=True
        )
        for endpoint, report in zip(self._models, reports, strict=True):
            if isinstance(report, BaseException):
                report = HealthReport(False, f"check failed: {type(report).__name__}", 0.0)
            self._apply(endpoint, report)

    async def _check(self, endpoint: str) -> HealthReport:
        return await self._dispatchers[endpoint].check_health(self._models[endpoint])

    def _apply(self, endpoint: str, report: HealthReport) -> None:
        state = self.states[endpoint]
        status = "healthy" if report.healthy else "unhealthy"
        if status != state.status and (state.status != "unknown" or status == "unhealthy"):
            level = logging.INFO if report.healthy else logging.WARNING
            log.log(level, "endpoint %s is %s (%s)", endpoint, status, report.detail)
        state.status, state.detail = status, report.detail
        state.checked_at, state.latency_s = time.time(), report.latency_s
        if not report.healthy:
            state.last_error = report.detail

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
