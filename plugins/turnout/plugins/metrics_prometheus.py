"""The ``prometheus`` metrics sink: prometheus-client collectors in a registry of their own.

prometheus-client rather than aioprometheus: the latter has had no release since 2023-12 and
labels by raw path. Labels are bounded (endpoint, model, task type, outcome, reason), never a path
or a prompt. Event metrics are updated as each request ends; state metrics (slots, queues,
breakers, health) are read from the router when scraped, so they are never stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from turnout.core import MetricsSink, Provider, RouteEvent, TurnoutConfig, hookimpl
from turnout.core.providers import Snapshot

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
RATE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)
BREAKER_STATES = ("closed", "open", "half-open")


class PrometheusSink:
    def __init__(self, config: TurnoutConfig) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "turnout_requests",
            "Requests by final endpoint and outcome.",
            ["endpoint", "model", "task_type", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "turnout_request_duration_seconds",
            "Time from arrival to the last byte.",
            ["endpoint", "task_type", "stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "turnout_time_to_first_token_seconds",
            "Time from arrival to a stream's first event.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "turnout_inter_token_latency_seconds",
            "Mean gap between a stream's events, per request.",
            ["endpoint"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "turnout_tokens", "Tokens the backends reported.", ["endpoint", "direction"], registry=r
        )
        self.rate = Histogram(
            "turnout_output_tokens_per_second",
            "Completion tokens per second of generation, per request.",
            ["endpoint"],
            buckets=RATE_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "turnout_fallbacks",
            "Attempts that failed over to another.",
            ["from_endpoint", "to_endpoint", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "turnout_retry_passes", "Extra passes over the candidates.", ["endpoint"], registry=r
        )
        self.rejected = Counter(
            "turnout_rejected",
            "Requests answered 429, 503 or 504.",
            ["status", "reason"],
            registry=r,
        )
        self.context = Histogram(
            "turnout_context_tokens",
            "Context per request: reserved (prompt + max_tokens) and used.",
            ["endpoint", "kind"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.decision = Histogram(
            "turnout_routing_decision_seconds",
            "Classification, counting, fitting and ranking per request.",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "turnout_queue_wait_seconds",
            "Time spent waiting for an endpoint slot.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._state = _StateCollector()
        r.register(self._state)

    def attach(self, snapshot: Snapshot) -> None:
        self._state.snapshot = snapshot

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def record(self, event: RouteEvent) -> None:
        endpoint = event.endpoint or "none"
        task = event.task_type or "unknown"
        # ``model`` is bounded: an unknown model is refused before anything is recorded.
        self.requests.labels(endpoint, event.model, task, event.outcome).inc()
        self.duration.labels(endpoint, task, str(event.stream).lower()).observe(event.latency_s)
        for attempt in event.attempts:
            self.fallbacks.labels(attempt.endpoint, endpoint, attempt.reason).inc()
        if event.retries:
            self.retries.labels(endpoint).inc(event.retries)
        if event.status in (429, 503, 504):
            self.rejected.labels(str(event.status), event.error or event.outcome).inc()
        if event.decision_s is not None:
            self.decision.observe(event.decision_s)
        if event.endpoint is None:
            return
        if event.queue_wait_s is not None:
            self.queue_wait.labels(endpoint).observe(event.queue_wait_s)
        if event.ttft_s is not None:
            self.ttft.labels(endpoint).observe(event.ttft_s)
        if event.inter_token_s is not None:
            self.itl.labels(endpoint).observe(event.inter_token_s)
        if event.prompt_tokens is not None:
            self.tokens.labels(endpoint, "prompt").inc(event.prompt_tokens)
        if event.completion_tokens is not None:
            self.tokens.labels(endpoint, "completion").inc(event.completion_tokens)
            generating = event.latency_s - (event.ttft_s or 0.0)
            if event.completion_tokens and generating > 0:
                self.rate.labels(endpoint).observe(event.completion_tokens / generating)
        if event.context_requested is not None:
            self.context.labels(endpoint, "requested").observe(event.context_requested)
        if event.context_used is not None:
            self.context.labels(endpoint, "used").observe(event.context_used)


class _StateCollector(Collector):
    """Router state read at scrape time."""

    snapshot: Snapshot | None = None

    def collect(self) -> Iterator[Any]:
        if self.snapshot is None:
            return
        state = self.snapshot()
        gauges = {
            "in_flight": GaugeMetricFamily(
                "turnout_endpoint_in_flight", "Requests being served.", labels=["endpoint"]
            ),
            "queued": GaugeMetricFamily(
                "turnout_endpoint_queue_depth", "Requests waiting for a slot.", labels=["endpoint"]
            ),
            "slots": GaugeMetricFamily(
                "turnout_endpoint_slots", "Concurrency slots.", labels=["endpoint"]
            ),
            "healthy": GaugeMetricFamily(
                "turnout_endpoint_healthy",
                "1 unless the last health check failed.",
                labels=["endpoint"],
            ),
            "degraded": GaugeMetricFamily(
                "turnout_endpoint_degraded",
                "1 while routed behind the others (VRAM alarm, 429).",
                labels=["endpoint"],
            ),
            "effective_context": GaugeMetricFamily(
                "turnout_endpoint_effective_context_tokens",
                "Context turnout routes with.",
                labels=["endpoint"],
            ),
        }
        backend = {
            "running": GaugeMetricFamily(
                "turnout_backend_requests_running",
                "Requests the engine reports running.",
                labels=["endpoint"],
            ),
            "waiting": GaugeMetricFamily(
                "turnout_backend_requests_waiting",
                "Requests the engine reports waiting.",
                labels=["endpoint"],
            ),
            "kv_cache_usage": GaugeMetricFamily(
                "turnout_backend_kv_cache_usage_ratio",
                "KV-cache use the engine reports, 0-1.",
                labels=["endpoint"],
            ),
            "prefix_cache_hit_ratio": GaugeMetricFamily(
                "turnout_backend_prefix_cache_hit_ratio",
                "Prefix-cache hits over queries so far.",
                labels=["endpoint"],
            ),
        }
        breaker = GaugeMetricFamily(
            "turnout_breaker_state", "1 for the breaker's state.", labels=["endpoint", "state"]
        )
        for endpoint, values in state["endpoints"].items():
            for key, family in gauges.items():
                family.add_metric([endpoint], _gauge(values[key]))
            for name in BREAKER_STATES:
                breaker.add_metric([endpoint, name], 1.0 if values["breaker"] == name else 0.0)
            for key, family in backend.items():
                reported = (values.get("backend") or {}).get(key)
                if reported is not None:
                    family.add_metric([endpoint], float(reported))
        yield from gauges.values()
        yield from backend.values()
        yield breaker
        transitions = CounterMetricFamily(
            "turnout_breaker_transitions",
            "Breaker state changes on this replica.",
            labels=["endpoint", "state"],
        )
        for (endpoint, name), count in state["breaker_transitions"].items():
            transitions.add_metric([endpoint, name], float(count))
        yield transitions
        if state["shared_state_connected"] is not None:
            shared = GaugeMetricFamily(
                "turnout_shared_state_connected", "1 while breaker state is shared through Redis."
            )
            shared.add_metric([], 1.0 if state["shared_state_connected"] else 0.0)
            yield shared


def _gauge(value: object) -> float:
    """A number as itself; a reason (or its absence) as 1 (or 0)."""
    if isinstance(value, int | float):
        return float(value)
    return 1.0 if value else 0.0


@hookimpl(trylast=True)
def turnout_metrics_sinks() -> Iterable[Provider[MetricsSink]]:
    return [Provider("prometheus", PrometheusSink, "prometheus-client, served at /metrics")]
