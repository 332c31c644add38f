"""The router: decide, admit, dispatch, fall back, record.

One ``Router`` per process (or per middleware), built from a config, started once, shared by all
requests. Fallback happens only before the client has received a byte: for a stream, the first
event is read from the backend before the stream is handed out, so a backend that accepts the
connection and then fails still falls back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import pluggy

from turnout.core.admission import Admission
from turnout.core.attempts import AttemptRunner
from turnout.core.backend_limits import adopt_backend_limits
from turnout.core.backend_load import BackendLoad
from turnout.core.breakers import BreakerBoard
from turnout.core.config import TurnoutConfig
from turnout.core.decision import Decider, require_some
from turnout.core.errors import (
    UpstreamError,
)
from turnout.core.hardware import (
    collect_profile,
    fetch_remote_memory,
    load_baselines,
    local_memory_sampler,
)
from turnout.core.health import HealthMonitor
from turnout.core.latency import LatencyStats
from turnout.core.plugins import collect_providers, create_plugin_manager
from turnout.core.policy import default_rules
from turnout.core.providers import Timeouts, UpstreamReply, UpstreamStream
from turnout.core.recording import Recorder
from turnout.core.shared_state import RedisBreakerSync
from turnout.core.streaming import RoutedStream
from turnout.core.tokens import Calibration
from turnout.core.types import Attempt, Decision, Outcome, RouteRequest
from turnout.core.vram import VramWatch
from turnout.core.wiring import (
    build_classifier,
    build_dispatchers,
    build_metrics_sinks,
    build_tokenizers,
    distinct,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Completed:
    """A non-streamed answer and how it was reached."""

    reply: UpstreamReply
    endpoint: str
    attempts: tuple[Attempt, ...]
    decision: Decision


class Router:
    """Routes OpenAI-style requests over the endpoints of one config."""

    def __init__(
        self, config: TurnoutConfig, *, plugin_manager: pluggy.PluginManager | None = None
    ) -> None:
        self.config = config
        self.pm = plugin_manager or create_plugin_manager()
        registry = collect_providers(self.pm)
        self.models = {m.id: m for m in config.models}
        self.tokenizers = build_tokenizers(registry, config)
        self.dispatchers = build_dispatchers(registry, config)
        self.limits = {m.id: m.context_limit for m in config.models}
        self.calibration = Calibration()
        self.latency = LatencyStats()
        self.board = BreakerBoard(registry, config)
        self.admission = Admission(config)
        self.health = HealthMonitor(
            self.models, self.dispatchers, config.routing.health_check_interval_ms / 1000
        )
        self.load = BackendLoad(config, self.models, self.dispatchers)
        self.runner = AttemptRunner(config, self.models, self.admission, self.board)
        storage = config.circuit_breaker.storage
        self.shared = (
            RedisBreakerSync(storage, self.board, config.circuit_breaker.recovery_timeout_ms / 1000)
            if storage != "memory"
            else None
        )
        sampler = local_memory_sampler(registry)
        self.memory_sampler = sampler
        self.vram = VramWatch(
            config,
            local=sampler.memory_sample if sampler is not None else None,
            remote=lambda url: asyncio.to_thread(fetch_remote_memory, url),
        )
        rules = config.routing.rules
        self.decider = Decider(
            config,
            pm=self.pm,
            classifier=build_classifier(registry, config),
            rules=rules if rules is not None else default_rules(config)[0],
            tokenizers=self.tokenizers,
            limits=self.limits,
            calibration=self.calibration,
            gates=self,
            latency=self.latency,
            baselines=load_baselines(config.monitoring.profile),
        )
        self.sinks = build_metrics_sinks(registry, config)
        for sink in self.sinks:
            sink.attach(self.snapshot)
        self.recorder = Recorder(
            self.latency,
            self.sinks,
            self.pm,
            self.calibration,
            self.limits,
            config.monitoring.track_context_usage,
        )
        self._profile: dict[str, Any] | None = None
        self.pm.hook.turnout_configure.call_historic(kwargs={"config": config})

    async def start(self, *, background: bool = True) -> None:
        """Open connection pools, read the backends' own limits, start the background checks."""
        for dispatcher in distinct(self.dispatchers.values()):
            await dispatcher.start()
        await adopt_backend_limits(self.models, self.dispatchers, self.limits)
        if self.shared is not None:
            await self.shared.start()
        if background:
            await self.health.check_all()  # routes start from a known state, not "unknown"
            await self.load.scrape_all()
            self.health.start()
            self.load.start()
            if self.config.monitoring.alert_on_vram_spike:
                self.vram.start()

    async def close(self) -> None:
        await self.health.stop()
        await self.load.stop()
        await self.vram.stop()
        if self.shared is not None:
            await self.shared.stop()
        for dispatcher in distinct(self.dispatchers.values()):
            await dispatcher.close()

    # Gates the decider asks: why an endpoint is out, or why it goes behind the others.
    def unroutable(self, endpoint: str) -> str | None:
        if not self.board.breaker(endpoint).allows():
            return f"circuit breaker {self.board.breaker(endpoint).state}"
        return self.health.unroutable(endpoint)

    def behind(self, endpoint: str) -> str | None:
        cooling = self.board.cooling_s(endpoint)
        if cooling is not None:
            return f"overloaded (429): routed around for {cooling:.1f} s more"
        return (
            self.vram.degraded(endpoint)
            or self.load.saturated(endpoint)
            or self.load.queueing(endpoint)
        )

    def snapshot(self) -> dict[str, Any]:
        """Live state per endpoint, for metrics and /health: read when asked, never stale.
        ``unroutable`` and ``degraded`` are the reasons (None when there is none)."""
        endpoints = {}
        for endpoint in self.models:
            slots = self.admission.endpoints[endpoint]
            endpoints[endpoint] = {
                "in_flight": slots.in_flight,
                "queued": slots.queued,
                "slots": slots.slots,
                "breaker": self.board.breaker(endpoint).state,
                "healthy": self.health.states[endpoint].status != "unhealthy",
                "unroutable": self.unroutable(endpoint),
                "degraded": self.behind(endpoint),
                "effective_context": self.limits[endpoint],
                "backend": self.load.describe(endpoint),
            }
        shared = self.shared.connected if self.shared is not None else None
        return {
            "endpoints": endpoints,
            "breaker_transitions": dict(self.board.transitions),
            "shared_state_connected": shared,
        }

    def hardware_profile(self) -> dict[str, Any]:
        """This host's hardware profile, probed once (blocking: call it off the event loop)."""
        if self._profile is None:
            self._profile = collect_profile(self.pm)
        return self._profile

    async def decide(self, request: RouteRequest) -> Decision:
        """The routing decision for ``request`` without sending anything."""
        return await self.decider.decide(request)

    async def complete(self, request: RouteRequest) -> Completed:
        """Send a non-streamed request, falling back along the decision's order."""
        started = time.perf_counter()
        decision = await self.decide(request)
        decided = time.perf_counter() - started

        async def send(endpoint: str, timeouts: Timeouts) -> UpstreamReply:
            model = self.models[endpoint]
            return await self.dispatchers[endpoint].send(model, request, timeouts)

        try:
            require_some(decision, request)
            done = await self.runner.run(decision.order, self._deadline(request), send)
        except BaseException as exc:
            self.recorder.failure(request, decision, started, exc, decision_s=decided)
            raise
        done.held.close()
        reply = done.result
        self.recorder.record(
            request,
            decision,
            done.endpoint,
            "ok",
            reply.status,
            started,
            attempts=done.attempts,
            usage=reply.usage,
            decision_s=decided,
            queue_wait_s=done.queue_wait_s,
            retries=done.retries,
        )
        return Completed(reply, done.endpoint, done.attempts, decision)

    async def stream(self, request: RouteRequest) -> RoutedStream:
        """Open a streamed request: returns once an endpoint has produced its first event."""
        started = time.perf_counter()
        decision = await self.decide(request)
        decided = time.perf_counter() - started

        async def open_first(
            endpoint: str, timeouts: Timeouts
        ) -> tuple[UpstreamStream, Any, bytes]:
            model = self.models[endpoint]
            upstream = await self.dispatchers[endpoint].open_stream(model, request, timeouts)
            try:
                events = upstream.__aiter__()
                return upstream, events, await events.__anext__()
            except StopAsyncIteration:
                await upstream.aclose()
                raise UpstreamError(
                    f"{endpoint}: empty stream", endpoint=endpoint, reason="empty_stream"
                ) from None
            except BaseException:
                await upstream.aclose()
                raise

        try:
            require_some(decision, request)
            done = await self.runner.run(decision.order, self._deadline(request), open_first)
        except BaseException as exc:
            self.recorder.failure(request, decision, started, exc, decision_s=decided)
            raise
        upstream, events, first = done.result

        def record(
            outcome: Outcome,
            status: int,
            usage: dict[str, object] | None,
            ttft_s: float,
            error: str | None,
            inter_token_s: float | None,
        ) -> None:
            self.recorder.record(
                request,
                decision,
                done.endpoint,
                outcome,
                status,
                started,
                attempts=done.attempts,
                usage=usage,
                ttft_s=ttft_s,
                error=error,
                decision_s=decided,
                queue_wait_s=done.queue_wait_s,
                retries=done.retries,
                inter_token_s=inter_token_s,
            )

        return RoutedStream(
            done.endpoint,
            done.attempts,
            decision,
            upstream,
            events,
            first,
            started,
            record,
            done.held,
        )

    def _deadline(self, request: RouteRequest) -> float:
        """When the answer (or a stream's first byte) is due: the client's hint or the config's."""
        timeout_ms = request.hints.timeout_ms or self.config.routing.timeout_ms
        return time.monotonic() + timeout_ms / 1000
