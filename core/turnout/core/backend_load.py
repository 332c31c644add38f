"""Load as the backends themselves report it: requests running and waiting, KV-cache usage and
prefix-cache hits, scraped from each engine's own ``/metrics``.

For engines that reserve their GPU memory at start (vLLM, SGLang), KV-cache usage is the memory
signal that NVML cannot give: with ``monitoring.alert_on_vram_spike`` an endpoint at or over
``vram_alarm_percent`` of its cache is routed behind the others. A view that has gone stale (no
answer for three intervals) counts as saturated, never as idle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from turnout.core.config import RESERVES_GPU_MEMORY, ModelConfig, TurnoutConfig
from turnout.core.periodic import Periodic
from turnout.core.providers import Dispatcher

log = logging.getLogger(__name__)

SCRAPED_ENGINES = ("vllm", "sglang", "llamacpp")
STALE_AFTER_INTERVALS = 3


class BackendLoad:
    def __init__(
        self,
        config: TurnoutConfig,
        models: dict[str, ModelConfig],
        dispatchers: dict[str, Dispatcher],
    ) -> None:
        self._engines = {m.id: config.inference.engine_of(m) for m in models.values()}
        self._models = models
        self._dispatchers = dispatchers
        self._interval_s = config.monitoring.backend_metrics_interval_ms / 1000
        self._kv_alarm = (
            config.monitoring.vram_alarm_percent / 100
            if config.monitoring.alert_on_vram_spike
            else None
        )
        self._scraped = [e for e, engine in self._engines.items() if engine in SCRAPED_ENGINES]
        self.views: dict[str, dict[str, float]] = {}
        self._seen_at: dict[str, float] = {}
        self._started_at = time.monotonic()
        self._loop = Periodic("backend-metrics", self._interval_s, self.scrape_all)

    def saturated(self, endpoint: str) -> str | None:
        """Why this endpoint should go behind the others, by its own metrics; or None."""
        if endpoint not in self._scraped:
            return None
        seen = self._seen_at.get(endpoint, self._started_at)
        silent = time.monotonic() - seen
        if silent > STALE_AFTER_INTERVALS * self._interval_s:
            return f"backend metrics stale ({silent:.0f} s without an answer): treated as saturated"
        usage = self.views.get(endpoint, {}).get("kv_cache_usage")
        preallocating = self._engines[endpoint] in RESERVES_GPU_MEMORY
        if self._kv_alarm is not None and preallocating and usage is not None:
            if usage >= self._kv_alarm:
                return f"KV cache {usage:.0%} used (alarm at {self._kv_alarm:.0%})"
        return None

    def queueing(self, endpoint: str) -> str | None:
        """The engine itself holds requests waiting: its batch is full, send elsewhere first."""
        view = self.views.get(endpoint) if endpoint in self._scraped else None
        waiting = (view or {}).get("waiting")
        if waiting:
            return f"backend queue: {waiting:.0f} waiting"
        return None

    async def scrape_all(self) -> None:
        answers = await asyncio.gather(
            *(self._dispatchers[e].backend_metrics(self._models[e]) for e in self._scraped),
            return_exceptions=True,
        )
        for endpoint, answer in zip(list(self._scraped), answers, strict=True):
            if isinstance(answer, BaseException):
                continue  # no answer: the view ages towards stale
            if answer is None:
                log.info("%s serves no metrics; not scraped", endpoint)
                self._scraped.remove(endpoint)
                continue
            self.views[endpoint] = answer
            self._seen_at[endpoint] = time.monotonic()

    def start(self) -> None:
        if self._scraped:
            self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def describe(self, endpoint: str) -> dict[str, Any] | None:
        view = self.views.get(endpoint)
        if view is None:
            return None
        queries, hits = view.get("prefix_cache_queries"), view.get("prefix_cache_hits")
        ratio = hits / queries if hits is not None and queries else None
        return {**view, "prefix_cache_hit_ratio": ratio}
