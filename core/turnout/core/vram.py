"""The live VRAM watch: endpoints whose GPU crosses the alarm are routed around.

Memory comes from this host's NVML (for models with ``gpus:``) or from the sidecar on the GPU host
(``hardware_url``, its ``GET /v1/hardware``). Engines that reserve their memory up front (vLLM,
SGLang: ``gpu_memory_utilization``) look full to NVML whatever their load, so they are not watched
here; their KV-cache usage, read from their own metrics, is the signal for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from turnout.core.config import RESERVES_GPU_MEMORY, ModelConfig, TurnoutConfig
from turnout.core.periodic import Periodic

log = logging.getLogger(__name__)

LocalSampler = Callable[[], list[dict[str, Any]]]
RemoteSampler = Callable[[str], Awaitable[list[dict[str, Any]]]]


def watched(config: TurnoutConfig) -> list[ModelConfig]:
    """Models the VRAM watch covers: those with ``gpus`` or ``hardware_url`` on an engine whose
    memory use follows its load."""
    out = []
    for model in config.models:
        engine = config.inference.engine_of(model)
        if (model.gpus or model.hardware_url) and engine not in RESERVES_GPU_MEMORY:
            out.append(model)
    return out


class VramWatch:
    def __init__(
        self,
        config: TurnoutConfig,
        *,
        local: LocalSampler | None,
        remote: RemoteSampler | None,
    ) -> None:
        self._models = watched(config)
        self._alarm = config.monitoring.vram_alarm_percent
        interval_s = config.monitoring.vram_sample_interval_ms / 1000
        self._local = local
        self._remote = remote
        self._degraded: dict[str, str] = {}
        self._loop = Periodic("vram-watch", interval_s, self.sample_once, wait_first=False)

    @property
    def active(self) -> bool:
        return bool(self._models)

    def degraded(self, endpoint: str) -> str | None:
        """Why ``endpoint`` is degraded, or None."""
        return self._degraded.get(endpoint)

    async def sample_once(self) -> None:
        local: list[dict[str, Any]] | None = None
        remote: dict[str, list[dict[str, Any]]] = {}
        for model in self._models:
            if model.hardware_url:
                if model.hardware_url not in remote and self._remote is not None:
                    remote[model.hardware_url] = await _quietly(self._remote(model.hardware_url))
                gpus = remote.get(model.hardware_url, [])
                wanted = set(model.gpus) or {g["index"] for g in gpus}
            else:
                if local is None:
                    local = await asyncio.to_thread(self._local) if self._local else []
                gpus, wanted = local, set(model.gpus)
            self._judge(model.id, [g for g in gpus if g["index"] in wanted])

    def _judge(self, endpoint: str, gpus: list[dict[str, Any]]) -> None:
        over = []
        for gpu in gpus:
            used = 100 * (gpu["total_bytes"] - gpu["free_bytes"]) / gpu["total_bytes"]
            if used >= self._alarm:
                over.append(
                    f"GPU {gpu['index']} memory {used:.0f}% used (alarm at {self._alarm:g}%)"
                )
        reason = "; ".join(over) or None
        before = self._degraded.get(endpoint)
        if reason and not before:
            log.warning("endpoint %s degraded: %s", endpoint, reason)
        elif before and not reason:
            log.info("endpoint %s recovered: GPU memory back under the alarm", endpoint)
        if reason:
            self._degraded[endpoint] = reason
        else:
            self._degraded.pop(endpoint, None)

    def start(self) -> None:
        if self.active:
            self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()


async def _quietly(sample: Awaitable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A remote host that does not answer says nothing about memory: keep routing to it."""
    try:
        return await sample
    except Exception as exc:
        log.warning("could not read remote GPU memory: %s", exc)
        return []
