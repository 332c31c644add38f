"""The live VRAM watch: a GPU over its alarm sends its endpoints behind the healthy ones.

GPU memory comes from the real NvmlProbe answering from a recorded H100 (20 GiB held; with the
driver's reservation 28% is unavailable), registered through the same hook as the built-in, locally
or via another sidecar's /v1/hardware.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

import pluggy
import pytest

from turnout.core import HardwareProbe, Provider, Router, hookimpl, parse_request
from turnout.core.testing import make_config
from turnout.core.vram import watched
from turnout.plugins.hardware_nvml import NvmlProbe
from turnout.sidecar.testing import ServedApp

from ..plugins.recorded_nvml import RecordedNvml

NVML_PLUGIN = "turnout.plugins.hardware_nvml"


class RecordedGpuPlugin:
    """Offers the recorded H100 as the ``nvml`` probe."""

    @hookimpl
    def turnout_hardware_probes(self) -> Iterable[Provider[HardwareProbe]]:
        return [Provider("nvml", lambda: NvmlProbe(RecordedNvml(under_load=True)))]


@pytest.fixture
def recorded_gpu_pm(turnout_plugin_manager: pluggy.PluginManager) -> pluggy.PluginManager:
    turnout_plugin_manager.unregister(name=NVML_PLUGIN)
    turnout_plugin_manager.register(RecordedGpuPlugin())
    return turnout_plugin_manager


def chat() -> Any:
    return parse_request("chat", {"model": "auto", "messages": [{"role": "user", "content": "x"}]})


def config_with(alarm: float, **gpu_model: Any) -> Any:
    return make_config(
        [
            {
                "id": "on-gpu",
                "provider": "llamacpp",
                "api_base": "http://127.0.0.1:9/v1",
                **gpu_model,
            },
            {"id": "elsewhere", "api_base": "http://127.0.0.1:9/v1"},
        ],
        routing={"default": "on-gpu"},
        monitoring={"alert_on_vram_spike": True, "vram_alarm_percent": alarm},
    )


def test_gpu_over_the_alarm_goes_behind_healthy_endpoints(
    recorded_gpu_pm: pluggy.PluginManager,
) -> None:
    router = Router(config_with(20, gpus=[0]), plugin_manager=recorded_gpu_pm)
    assert asyncio.run(router.decide(chat())).order == ("on-gpu", "elsewhere")
    asyncio.run(router.vram.sample_once())
    decision = asyncio.run(router.decide(chat()))
    assert decision.order == ("elsewhere", "on-gpu"), "degraded, not dropped"
    assert router.unroutable("on-gpu") is None
    (gpu_candidate,) = [c for c in decision.candidates if c.endpoint == "on-gpu"]
    assert gpu_candidate.degraded == "GPU 0 memory 28% used (alarm at 20%)"


def test_gpu_under_the_alarm_is_not_degraded(recorded_gpu_pm: pluggy.PluginManager) -> None:
    router = Router(config_with(95, gpus=[0]), plugin_manager=recorded_gpu_pm)
    asyncio.run(router.vram.sample_once())
    assert router.vram.degraded("on-gpu") is None
    assert asyncio.run(router.decide(chat())).order[0] == "on-gpu"


def test_preallocating_engines_are_not_watched() -> None:
    config = make_config(
        [
            {"id": "v", "provider": "vllm", "gpus": [0]},
            {"id": "l", "provider": "llamacpp", "gpus": [0]},
            {"id": "o", "provider": "ollama", "hardware_url": "http://gpu-host:8080"},
            {"id": "n", "provider": "ollama"},
        ],
    )
    assert [m.id for m in watched(config)] == ["l", "o"]


def test_remote_gpu_host_through_its_sidecar(
    recorded_gpu_pm: pluggy.PluginManager, serve_sidecar: Callable[..., ServedApp]
) -> None:
    gpu_host = serve_sidecar(
        make_config([{"id": "local", "api_base": "http://127.0.0.1:9/v1"}]),
        plugin_manager=recorded_gpu_pm,
    )
    with urllib.request.urlopen(gpu_host.url + "/v1/hardware", timeout=10) as response:
        hardware = json.load(response)
    (gpu,) = hardware["profile"]["probes"]["nvml"]["devices"]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"
    assert hardware["memory"] == [
        {
            "index": 0,
            "api": "v2",
            "total_bytes": 85520809984,
            "free_bytes": 61914415104,
            "used_bytes": 23103078400,
            "reserved_bytes": 503316480,
        }
    ]

    config = config_with(20, hardware_url=gpu_host.url)
    router = Router(config)
    asyncio.run(router.vram.sample_once())
    assert router.vram.degraded("on-gpu") == "GPU 0 memory 28% used (alarm at 20%)"


def test_unreachable_gpu_host_does_not_degrade(recorded_gpu_pm: pluggy.PluginManager) -> None:
    router = Router(config_with(20, hardware_url="http://127.0.0.1:9"))
    asyncio.run(router.vram.sample_once())
    assert router.vram.degraded("on-gpu") is None


def test_health_shows_degraded_endpoints(
    recorded_gpu_pm: pluggy.PluginManager, serve_sidecar: Callable[..., ServedApp]
) -> None:
    config = config_with(20, gpus=[0])
    config = config.model_copy(
        update={"monitoring": config.monitoring.model_copy(update={"vram_sample_interval_ms": 50})}
    )
    served = serve_sidecar(config, plugin_manager=recorded_gpu_pm)
    health: dict[str, Any] = {}
    for _ in range(100):
        with urllib.request.urlopen(served.url + "/health", timeout=5) as response:
            health = json.load(response)
        if health["endpoints"][0]["degraded"]:
            break
        asyncio.run(asyncio.sleep(0.05))
    degraded = {e["id"]: e["degraded"] for e in health["endpoints"]}
    assert degraded == {"on-gpu": "GPU 0 memory 28% used (alarm at 20%)", "elsewhere": None}
    with urllib.request.urlopen(served.url + "/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert 'turnout_endpoint_degraded{endpoint="on-gpu"} 1.0' in metrics
    assert 'turnout_endpoint_degraded{endpoint="elsewhere"} 0.0' in metrics
