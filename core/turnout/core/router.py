"""The router: classify -> candidates -> fit -> rank -> dispatch -> fall back -> record.

One ``Router`` per process (or per middleware), built from a config, started once, shared by all
requests. Fallback happens only before the client has received a byte: for a stream, the first
event is read from the backend before the stream is handed out, so a backend that accepts the
connection and then fails still falls back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pluggy

from turnout.core.baseline import estimated_latency_s
from turnout.core.config import OPENAI_COMPATIBLE, ROUTE_NAMES, ModelConfig, TurnoutConfig
from turnout.core.config_source import did_you_mean
from turnout.core.errors import (
    ConfigError,
    ContextLengthExceeded,
    ModelNotFound,
    NoEndpointAvailable,
    UpstreamError,
)
from turnout.core.hardware import (
    collect_profile,
    fetch_remote_memory,
    load_baselines,
    local_memory_sampler,
)
from turnout.core.plugins import ProviderRegistry, collect_providers, create_plugin_manager
from turnout.core.policy import candidate_order, default_rules
from turnout.core.providers import (
    Classifier,
    Dispatcher,
    HealthReport,
    Tokenizer,
    UpstreamReply,
    UpstreamStream,
)
from turnout.core.types import (
    Attempt,
    Candidate,
    Decision,
    Outcome,
    RouteEvent,
    RouteRequest,
    TokenCount,
)
from turnout.core.vram import VramWatch


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
        self.classifier = _build_classifier(registry, config)
        rules = config.routing.rules
        self.rules = rules if rules is not None else default_rules(config)[0]
        self.models = {m.id: m for m in config.models}
        self.tokenizers = _build_tokenizers(registry, config)
        self.dispatchers = _build_dispatchers(registry, config)
        sampler = local_memory_sampler(registry)
        self.memory_sampler = sampler
        self._profile: dict[str, Any] | None = None
        self.baselines = load_baselines(config.monitoring.profile)
        self.vram = VramWatch(
            config,
            local=sampler.memory_sample if sampler is not None else None,
            remote=lambda url: asyncio.to_thread(fetch_remote_memory, url),
        )
        self.pm.hook.turnout_configure.call_historic(kwargs={"config": config})

    async def start(self) -> None:
        for dispatcher in _distinct(self.dispatchers.values()):
            await dispatcher.start()
        if self.config.monitoring.alert_on_vram_spike:
            self.vram.start()

    async def close(self) -> None:
        await self.vram.stop()
        for dispatcher in _distinct(self.dispatchers.values()):
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

    def decide(self, request: RouteRequest) -> Decision:
        """The routing decision for ``request`` without sending anything."""
        pinned = self._pinned(request.model)
        classification = self.classifier.classify(request)
        counts: dict[int, TokenCount] = {}

        def count_for(model_id: str) -> TokenCount:
            tokenizer = self.tokenizers[model_id]
            key = id(tokenizer)
            if key not in counts:
                counts[key] = tokenizer.count(request)
            return counts[key]

        rule_tokens = count_for(self.config.default_model).tokens
        order = candidate_order(
            self.config, self.rules, classification, rule_tokens, request.max_tokens, pinned
        )
        candidates = [
            self._judge(model_id, why, count_for(model_id), request) for model_id, why in order
        ]
        fitting = [c for c in candidates if c.fits]
        ranked = self.pm.hook.turnout_rank_endpoints(
            request=request, classification=classification, candidates=fitting
        )
        if ranked is None:
            ranked = fitting
        known = {c.endpoint for c in fitting}
        ranked = [c for c in ranked if c.endpoint in known]
        target = classification.latency_target_ms

        def standing(c: Candidate) -> tuple[bool, bool]:
            # Degraded endpoints stay usable behind healthy ones; so do those whose measured
            # baseline says they would miss the caller's latency target.
            late = target is not None and (c.estimated_latency_ms or 0) > target
            return (c.degraded is not None, late)

        final = tuple(c.endpoint for c in sorted(ranked, key=standing))
        return Decision(classification, tuple(candidates), final, pinned)

    async def complete(self, request: RouteRequest) -> Completed:
        """Send a non-streamed request, falling back along the decision's order."""
        started = time.perf_counter()
        decision = self.decide(request)
        _require_some(decision, request)
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
        decision = self.decide(request)
        _require_some(decision, request)
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
                return RoutedStream(
                    self,
                    request,
                    decision,
                    endpoint,
                    tuple(attempts),
                    upstream,
                    events,
                    first,
                    started,
                )
        except asyncio.CancelledError:
            self._record(request, decision, endpoint, "cancelled", 499, started, attempts=attempts)
            raise
        error = _exhausted(attempts)
        self._record(
            request, decision, None, "no_endpoint", error.status, started, attempts=attempts
        )
        raise error

    def _pinned(self, requested: str) -> str | None:
        if requested in self.models:
            return requested
        if requested in ROUTE_NAMES:
            return None
        names = [*ROUTE_NAMES, *self.models]
        raise ModelNotFound(
            f"model '{requested}' is not served here{did_you_mean(requested, names)} "
            f"(models: {', '.join(names)})",
            param="model",
        )

    def _judge(
        self, model_id: str, why: str, count: TokenCount, request: RouteRequest
    ) -> Candidate:
        limit = self.models[model_id].context_limit
        need = count.tokens + (request.max_tokens or 1)
        dropped = None
        if need > limit:
            dropped = (
                f"needs {need} tokens (prompt {count.tokens} + max_tokens "
                f"{request.max_tokens or 1}) but the effective context is {limit}"
            )
        estimate = None
        if model_id in self.baselines:
            seconds = estimated_latency_s(self.baselines[model_id], request.max_tokens or 256)
            estimate = round(seconds * 1000, 1) if seconds is not None else None
        return Candidate(
            model_id,
            why,
            count.tokens,
            count.tokenizer,
            count.exact,
            limit,
            dropped,
            degraded=self.vram.degraded(model_id),
            estimated_latency_ms=estimate,
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
        self.pm.hook.turnout_record(event=event)


class RoutedStream:
    """An opened stream: its first event is already in hand, so no fallback is possible now.

    Iterate it for the events; a failure mid-stream raises :class:`UpstreamError` and the edge
    ends the client's stream with an error event. ``aclose`` is safe to call more than once.
    """

    def __init__(
        self,
        router: Router,
        request: RouteRequest,
        decision: Decision,
        endpoint: str,
        attempts: tuple[Attempt, ...],
        upstream: UpstreamStream,
        events: AsyncIterator[bytes],
        first: bytes,
        started: float,
    ) -> None:
        self.endpoint = endpoint
        self.attempts = attempts
        self.decision = decision
        self._router = router
        self._request = request
        self._upstream = upstream
        self._events = events
        self._first = first
        self._started = started
        self._ttft_s = time.perf_counter() - started
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        outcome: Outcome = "cancelled"
        status, error = 499, None
        try:
            yield self._first
            async for event in self._events:
                yield event
            outcome, status = "ok", 200
        except UpstreamError as exc:
            outcome, status, error = "stream_error", 502, exc.reason
            raise
        finally:
            await self.aclose()
            self._router._record(
                self._request,
                self.decision,
                self.endpoint,
                outcome,
                status,
                self._started,
                attempts=self.attempts,
                usage=self._upstream.usage,
                ttft_s=self._ttft_s,
                error=error,
            )

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._upstream.aclose()


def _require_some(decision: Decision, request: RouteRequest) -> None:
    if decision.order:
        return
    dropped = [c for c in decision.candidates if c.dropped]
    if dropped and all("effective context" in (c.dropped or "") for c in dropped):
        widest = max(dropped, key=lambda c: c.context_limit)
        raise ContextLengthExceeded(
            f"no model can hold this request: it needs about {widest.prompt_tokens} prompt tokens "
            f"plus max_tokens {request.max_tokens or 1}, and the largest effective context is "
            f"{widest.context_limit} ({widest.endpoint}); shorten the prompt or lower max_tokens",
            param="messages" if request.kind == "chat" else "prompt",
        )
    raise NoEndpointAvailable(
        "no endpoint is available: " + "; ".join(f"{c.endpoint}: {c.dropped}" for c in dropped)
    )


def _exhausted(attempts: list[Attempt]) -> NoEndpointAvailable:
    tried = "; ".join(f"{a.endpoint}: {a.reason}" for a in attempts)
    return NoEndpointAvailable(
        f"every candidate endpoint failed ({tried}); try again shortly",
        attempts=tuple((a.endpoint, a.reason) for a in attempts),
    )


def _distinct(items: object) -> list[Dispatcher]:
    seen: dict[int, Dispatcher] = {}
    for item in items:  # type: ignore[attr-defined]
        seen.setdefault(id(item), item)
    return list(seen.values())


def _build_classifier(registry: ProviderRegistry, config: TurnoutConfig) -> Classifier:
    name = config.routing.classifier
    provider = registry.classifiers.get(name)
    if provider is None:
        raise ConfigError(
            f"routing.classifier: no classifier named '{name}'"
            f"{did_you_mean(name, list(registry.classifiers))}; installed: "
            f"{', '.join(sorted(registry.classifiers))}"
        )
    return provider.factory(config)


def _build_tokenizers(registry: ProviderRegistry, config: TurnoutConfig) -> dict[str, Tokenizer]:
    """One tokenizer object per distinct spec, shared by the models that name it."""
    by_spec: dict[str, Tokenizer] = {}
    out: dict[str, Tokenizer] = {}
    for i, model in enumerate(config.models):
        spec = model.tokenizer
        if spec not in by_spec:
            scheme, _, argument = spec.partition(":")
            provider = registry.tokenizers.get(scheme)
            if provider is None:
                raise ConfigError(
                    f"models[{i}].tokenizer ({model.id}): no tokenizer scheme '{scheme}'; "
                    f"installed: {', '.join(sorted(registry.tokenizers))}"
                )
            by_spec[spec] = provider.factory(argument, model)
        out[model.id] = by_spec[spec]
    return out


def dispatcher_name(model: ModelConfig, config: TurnoutConfig) -> str:
    """Which dispatcher provider serves a model's ``provider`` value."""
    provider = model.provider or config.inference.backend
    if provider in OPENAI_COMPATIBLE:
        return "openai"
    if provider.startswith("litellm:"):
        return "litellm"
    return provider


def _build_dispatchers(registry: ProviderRegistry, config: TurnoutConfig) -> dict[str, Dispatcher]:
    by_name: dict[str, Dispatcher] = {}
    out: dict[str, Dispatcher] = {}
    for i, model in enumerate(config.models):
        name = dispatcher_name(model, config)
        if name not in by_name:
            provider = registry.dispatchers.get(name)
            if provider is None:
                raise ConfigError(
                    f"models[{i}].provider ({model.id}): unknown provider '{model.provider}'; use "
                    f"one of {', '.join(OPENAI_COMPATIBLE)}, litellm:<provider>/<model>, or a "
                    f"plugin's dispatcher ({', '.join(sorted(registry.dispatchers))})"
                )
            by_name[name] = provider.factory(config)
        out[model.id] = by_name[name]
    return out
