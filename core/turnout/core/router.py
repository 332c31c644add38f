"""The router: decide, dispatch, fall back, record.

One ``Router`` per process (or per middleware), built from a config, started once, shared by all
requests. Fallback happens only before the client has received a byte: for a stream, the first
event is read from the backend before the stream is handed out, so a backend that accepts the
connection and then fails still falls back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

import pluggy

from turnout.core.config import TurnoutConfig
from turnout.core.decision import Decider, require_some
from turnout.core.errors import NoEndpointAvailable, UpstreamError
from turnout.core.hardware import (
    collect_profile,
    fetch_remote_memory,
    load_baselines,
    local_memory_sampler,
)
from turnout.core.plugins import collect_providers, create_plugin_manager
from turnout.core.policy import default_rules
from turnout.core.providers import HealthReport, UpstreamReply, UpstreamStream
from turnout.core.streaming import RoutedStream
from turnout.core.tokens import Calibration
from turnout.core.types import Attempt, Decision, Outcome, RouteEvent, RouteRequest
from turnout.core.vram import VramWatch
from turnout.core.wiring import (
    build_classifier,
    build_dispatchers,
    build_tokenizers,
    distinct,
)

log = logging.getLogger(__name__)
BACKEND_LIMIT_TIMEOUT_S = 3.0


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
            vram=self.vram,
            baselines=load_baselines(config.monitoring.profile),
        )
        self._profile: dict[str, Any] | None = None
        self.pm.hook.turnout_configure.call_historic(kwargs={"config": config})

    async def start(self) -> None:
        for dispatcher in distinct(self.dispatchers.values()):
            await dispatcher.start()
        await self._adopt_backend_limits()
        if self.config.monitoring.alert_on_vram_spike:
            self.vram.start()

    async def close(self) -> None:
        await self.vram.stop()
        for dispatcher in distinct(self.dispatchers.values()):
            await dispatcher.close()

    def hardware_profile(self) -> dict[str, Any]:
        """This host's hardware profile, probed once (blocking: call it off the event loop)."""
        if self._profile is None:
            self._profile = collect_profile(self.pm)
        return self._profile

    async def check_endpoints(self) -> dict[str, HealthReport]:
        """Probe every endpoint once (no tokens spent), concurrently."""
        ids = list(self.models)
        reports = await asyncio.gather(
            *(self.dispatchers[i].check_health(self.models[i]) for i in ids)
        )
        return dict(zip(ids, reports, strict=True))

    async def decide(self, request: RouteRequest) -> Decision:
        """The routing decision for ``request`` without sending anything."""
        return await self.decider.decide(request)

    async def _adopt_backend_limits(self) -> None:
        """Where a backend enforces a smaller context than the config says, the smaller wins."""

        async def ask(model_id: str) -> int | None:
            model = self.models[model_id]
            try:
                return await asyncio.wait_for(
                    self.dispatchers[model_id].context_limit(model), BACKEND_LIMIT_TIMEOUT_S
                )
            except Exception:
                return None

        answers = await asyncio.gather(*(ask(i) for i in self.models))
        for model_id, backend_limit in zip(self.models, answers, strict=True):
            configured = self.models[model_id].context_limit
            if backend_limit is None or backend_limit == configured:
                continue
            if backend_limit < configured:
                self.limits[model_id] = backend_limit
            log.warning(
                "%s: the backend serves %d tokens of context, the config says %d; routing with %d",
                model_id,
                backend_limit,
                configured,
                self.limits[model_id],
            )

    async def complete(self, request: RouteRequest) -> Completed:
        """Send a non-streamed request, falling back along the decision's order."""
        started = time.perf_counter()
        decision = await self.decide(request)
        require_some(decision, request)
        attempts: list[Attempt] = []
        endpoint: str | None = None
        try:
            for endpoint in decision.order:
                model = self.models[endpoint]
                try:
                    reply = await self.dispatchers[endpoint].send(model, request)
                except UpstreamError as exc:
                    if not exc.retryable:
                        self._record(
                            request,
                            decision,
                            endpoint,
                            "client_error",
                            exc.status,
                            started,
                            attempts=attempts,
                            error=exc.reason,
                        )
                        raise
                    attempts.append(Attempt(endpoint, exc.reason, exc.upstream_status))
                    continue
                self._record(
                    request,
                    decision,
                    endpoint,
                    "ok",
                    reply.status,
                    started,
                    attempts=attempts,
                    usage=reply.usage,
                )
                return Completed(reply, endpoint, tuple(attempts), decision)
        except asyncio.CancelledError:
            self._record(request, decision, endpoint, "cancelled", 499, started, attempts=attempts)
            raise
        error = _exhausted(attempts)
        self._record(
            request, decision, None, "no_endpoint", error.status, started, attempts=attempts
        )
        raise error

    async def stream(self, request: RouteRequest) -> RoutedStream:
        """Open a streamed request: returns once an endpoint has produced its first event."""
        started = time.perf_counter()
        decision = await self.decide(request)
        require_some(decision, request)
        attempts: list[Attempt] = []
        endpoint: str | None = None
        try:
            for endpoint in decision.order:
                model = self.models[endpoint]
                upstream: UpstreamStream | None = None
                try:
                    upstream = await self.dispatchers[endpoint].open_stream(model, request)
                    events = upstream.__aiter__()
                    first = await events.__anext__()
                except (UpstreamError, StopAsyncIteration) as exc:
                    if upstream is not None:
                        await upstream.aclose()
                    if isinstance(exc, UpstreamError) and not exc.retryable:
                        self._record(
                            request,
                            decision,
                            endpoint,
                            "client_error",
                            exc.status,
                            started,
                            attempts=attempts,
                            error=exc.reason,
                        )
                        raise
                    reason = exc.reason if isinstance(exc, UpstreamError) else "empty_stream"
                    status = exc.upstream_status if isinstance(exc, UpstreamError) else None
                    attempts.append(Attempt(endpoint, reason, status))
                    continue
                done = tuple(attempts)
                record = functools.partial(
                    self._record_stream, request, decision, endpoint, started, done
                )
                return RoutedStream(
                    endpoint, done, decision, upstream, events, first, started, record
                )
        except asyncio.CancelledError:
            self._record(request, decision, endpoint, "cancelled", 499, started, attempts=attempts)
            raise
        error = _exhausted(attempts)
        self._record(
            request, decision, None, "no_endpoint", error.status, started, attempts=attempts
        )
        raise error

    def _record_stream(
        self,
        request: RouteRequest,
        decision: Decision,
        endpoint: str,
        started: float,
        attempts: tuple[Attempt, ...],
        outcome: Outcome,
        status: int,
        usage: dict[str, object] | None,
        ttft_s: float,
        error: str | None,
    ) -> None:
        self._record(
            request,
            decision,
            endpoint,
            outcome,
            status,
            started,
            attempts=attempts,
            usage=usage,
            ttft_s=ttft_s,
            error=error,
        )

    def _record(
        self,
        request: RouteRequest,
        decision: Decision,
        endpoint: str | None,
        outcome: Outcome,
        status: int,
        started: float,
        *,
        attempts: list[Attempt] | tuple[Attempt, ...] = (),
        usage: dict[str, object] | None = None,
        ttft_s: float | None = None,
        error: str | None = None,
    ) -> None:
        usage = usage or {}
        prompt_tokens, completion_tokens = (
            usage.get("prompt_tokens"),
            usage.get("completion_tokens"),
        )
        event = RouteEvent(
            request_id=request.request_id,
            kind=request.kind,
            model=request.model,
            task_type=decision.classification.task_type,
            endpoint=endpoint,
            outcome=outcome,
            status=status,
            stream=request.stream,
            latency_s=time.perf_counter() - started,
            ttft_s=ttft_s,
            prompt_tokens=prompt_tokens if isinstance(prompt_tokens, int) else None,
            completion_tokens=completion_tokens if isinstance(completion_tokens, int) else None,
            max_tokens=request.max_tokens,
            attempts=tuple(attempts),
            error=error,
        )
        if outcome == "ok" and endpoint is not None and event.prompt_tokens:
            # The backend's own count is the truth the estimate learns from.
            self.calibration.observe(endpoint, decision.prompt_estimate, event.prompt_tokens)
            if self.config.monitoring.track_context_usage:
                log.debug(
                    "%s on %s: context used %s of %s requested (limit %d)",
                    request.request_id,
                    endpoint,
                    event.context_used,
                    event.context_requested,
                    self.limits[endpoint],
                )
        self.pm.hook.turnout_record(event=event)


def _exhausted(attempts: list[Attempt]) -> NoEndpointAvailable:
    tried = "; ".join(f"{a.endpoint}: {a.reason}" for a in attempts)
    return NoEndpointAvailable(
        f"every candidate endpoint failed ({tried}); try again shortly",
        attempts=tuple((a.endpoint, a.reason) for a in attempts),
    )
