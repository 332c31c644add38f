"""GET /metrics after traffic of known shape: counts, histograms, state, bounded labels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount

from turnout.core import ConfigError, Router
from turnout.core.testing import FakeUpstream, make_config
from turnout.sidecar.middleware import TurnoutMiddleware
from turnout.sidecar.testing import ServedApp

SECRET_PROMPT = "the-prompt-text-must-never-be-a-label"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: dict[Any, float], name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def chat(served: ServedApp, **extra: Any) -> httpx.Response:
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": SECRET_PROMPT}],
        "max_tokens": 100,
        "turnout": {"task_type": "chat"},
        **extra,
    }
    return httpx.post(served.url + "/v1/chat/completions", json=body, timeout=10)


def test_metrics_after_known_traffic(
    openai_upstream: Callable[..., FakeUpstream], serve_sidecar: Callable[..., ServedApp]
) -> None:
    broken, fast = openai_upstream("broken", mode="status:500"), openai_upstream("fast")
    config = make_config(
        [
            {"id": "broken", "api_base": broken.api_base},
            {"id": "fast", "api_base": fast.api_base, "max_model_len": 2048},
        ],
        routing={"default": "broken"},
        circuit_breaker={"failure_threshold": 2},
        monitoring={"metrics_endpoint": "/custom-metrics"},
    )
    served = serve_sidecar(config)
    for _ in range(3):
        assert chat(served).status_code == 200
    for _ in range(2):
        with httpx.stream(
            "POST",
            served.url + "/v1/chat/completions",
            timeout=10,
            json={
                "model": "fast",
                "stream": True,
                "turnout": {"task_type": "chat"},
                "messages": [{"role": "user", "content": "hi"}],
            },
        ) as r:
            assert sum(1 for line in r.iter_lines() if line.startswith("data: ")) == 6
    assert chat(served, max_tokens=50_000).status_code == 400

    response = httpx.get(served.url + "/custom-metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    m = samples(response.text)
    ok = dict(endpoint="fast", task_type="chat", outcome="ok")
    assert value(m, "turnout_requests_total", model="auto", **ok) == 3
    assert value(m, "turnout_requests_total", model="fast", **ok) == 2
    assert (
        value(
            m,
            "turnout_requests_total",
            endpoint="none",
            model="auto",
            task_type="chat",
            outcome="client_error",
        )
        == 1
    )
    # Two failures opened broken's breaker; the third request did not try it.
    assert (
        value(
            m,
            "turnout_fallbacks_total",
            from_endpoint="broken",
            to_endpoint="fast",
            reason="http_500",
        )
        == 2
    )
    assert value(m, "turnout_breaker_state", endpoint="broken", state="open") == 1
    assert value(m, "turnout_breaker_transitions_total", endpoint="broken", state="open") == 1
    assert (
        value(
            m,
            "turnout_request_duration_seconds_count",
            endpoint="fast",
            task_type="chat",
            stream="false",
        )
        == 3
    )
    assert value(m, "turnout_time_to_first_token_seconds_count", endpoint="fast") == 2
    assert value(m, "turnout_inter_token_latency_seconds_count", endpoint="fast") == 2
    assert value(m, "turnout_tokens_total", endpoint="fast", direction="completion") == 5 * 5
    assert value(m, "turnout_tokens_total", endpoint="fast", direction="prompt") == 7 * 5
    assert value(m, "turnout_context_tokens_sum", endpoint="fast", kind="requested") == 3 * 107
    assert value(m, "turnout_context_tokens_sum", endpoint="fast", kind="used") == 5 * 12
    assert value(m, "turnout_routing_decision_seconds_count") == 6
    assert value(m, "turnout_queue_wait_seconds_count", endpoint="fast") == 5
    assert value(m, "turnout_endpoint_slots", endpoint="fast") == 64
    assert value(m, "turnout_endpoint_in_flight", endpoint="fast") == 0
    assert value(m, "turnout_endpoint_effective_context_tokens", endpoint="fast") == 2048
    assert value(m, "turnout_endpoint_healthy", endpoint="fast") == 1
    assert any(name.startswith("process_") for name, _ in m), "turnout's own process metrics"
    labels = {v for _, pairs in m for _, v in pairs}
    assert SECRET_PROMPT not in response.text and not any("/v1" in v for v in labels)


def test_an_overloaded_endpoint_shows_as_degraded(
    openai_upstream: Callable[..., FakeUpstream], serve_sidecar: Callable[..., ServedApp]
) -> None:
    busy, other = openai_upstream("busy", mode="status:429"), openai_upstream("other")
    config = make_config(
        [{"id": "busy", "api_base": busy.api_base}, {"id": "other", "api_base": other.api_base}],
        routing={"default": "busy"},
    )
    served = serve_sidecar(config)
    assert chat(served).status_code == 200
    m = samples(httpx.get(served.url + "/metrics", timeout=5).text)
    assert value(m, "turnout_endpoint_degraded", endpoint="busy") == 1
    assert value(m, "turnout_endpoint_degraded", endpoint="other") == 0
    assert (
        value(
            m,
            "turnout_fallbacks_total",
            from_endpoint="busy",
            to_endpoint="other",
            reason="rate_limited",
        )
        == 1
    )


def test_middleware_metrics_app_mounts_in_the_host(
    openai_upstream: Callable[..., FakeUpstream], serve_app: Callable[..., ServedApp]
) -> None:
    upstream = openai_upstream("m")
    host = Starlette()
    middleware = TurnoutMiddleware(
        host, config=make_config([{"id": "m", "api_base": upstream.api_base}])
    )
    host.router.routes.append(Mount("/ops/metrics", app=middleware.metrics_app))
    served = serve_app(middleware)
    assert chat(served).status_code == 200
    text = httpx.get(served.url + "/ops/metrics/", timeout=5).text
    assert (
        value(
            samples(text),
            "turnout_requests_total",
            endpoint="m",
            model="auto",
            task_type="chat",
            outcome="ok",
        )
        == 1
    )


def test_unknown_metrics_sink_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no metrics sink named 'statsd'"):
        Router(make_config([{"id": "a"}], monitoring={"metrics_sinks": ["statsd"]}))
