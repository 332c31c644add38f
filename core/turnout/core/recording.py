"""Recording what happened to each request: one ``RouteEvent`` to every ``turnout_record``
implementation, the backend's token count to the estimate's calibration, and (with
``monitoring.track_context_usage``) the context used against the context requested."""

from __future__ import annotations

import asyncio
import logging
import time

import pluggy

from turnout.core.errors import (
    DeadlineExceeded,
    NoEndpointAvailable,
    QueueFull,
    TurnoutError,
    UpstreamError,
)
from turnout.core.latency import LatencyStats
from turnout.core.providers import MetricsSink
from turnout.core.tokens import Calibration
from turnout.core.types import Attempt, Decision, Outcome, RouteEvent, RouteRequest

log = logging.getLogger("turnout.core.router")


class Recorder:
    def __init__(
        self,
        latency: LatencyStats,
        sinks: list[MetricsSink],
        pm: pluggy.PluginManager,
        calibration: Calibration,
        limits: dict[str, int],
        track_context: bool,
    ) -> None:
        self._latency = latency
        self._sinks = sinks
        self._pm = pm
        self._calibration = calibration
        self._limits = limits
        self._track_context = track_context

    def failure(
        self,
        request: RouteRequest,
        decision: Decision,
        started: float,
        exc: BaseException,
        *,
        decision_s: float | None = None,
    ) -> None:
        outcome: Outcome
        reason: str | None
        if isinstance(exc, asyncio.CancelledError):
            outcome, status, reason = "cancelled", 499, "client went away"
        elif isinstance(exc, UpstreamError):
            outcome, status, reason = "client_error", exc.status, exc.reason
        elif isinstance(exc, QueueFull):
            outcome, status, reason = "rejected", exc.status, exc.code
        elif isinstance(exc, DeadlineExceeded):
            outcome, status, reason = "deadline", exc.status, exc.code
        elif isinstance(exc, NoEndpointAvailable):
            outcome, status, reason = "no_endpoint", exc.status, exc.code
        elif isinstance(exc, TurnoutError):
            outcome, status, reason = "client_error", exc.status, exc.code
        else:
            outcome, status, reason = "no_endpoint", 500, type(exc).__name__
        attempts = tuple(Attempt(e, r) for e, r in getattr(exc, "attempts", ()))
        self.record(
            request,
            decision,
            getattr(exc, "endpoint", None),
            outcome,
            status,
            started,
            attempts=attempts,
            error=reason,
            decision_s=decision_s,
        )

    def record(
        self,
        request: RouteRequest,
        decision: Decision,
        endpoint: str | None,
        outcome: Outcome,
        status: int,
        started: float,
        *,
        attempts: tuple[Attempt, ...] = (),
        usage: dict[str, object] | None = None,
        ttft_s: float | None = None,
        error: str | None = None,
        decision_s: float | None = None,
        queue_wait_s: float | None = None,
        retries: int = 0,
        inter_token_s: float | None = None,
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
            attempts=attempts,
            error=error,
            decision_s=decision_s,
            queue_wait_s=queue_wait_s,
            retries=retries,
            inter_token_s=inter_token_s,
        )
        if outcome == "ok" and endpoint is not None:
            self._latency.observe(endpoint, event.latency_s, event.ttft_s, event.completion_tokens)
        if outcome == "ok" and endpoint is not None and event.prompt_tokens:
            # The backend's own count is the truth the estimate learns from.
            self._calibration.observe(endpoint, decision.prompt_estimate, event.prompt_tokens)
            if self._track_context:
                log.debug(
                    "%s on %s: context used %s of %s requested (limit %d)",
                    request.request_id,
                    endpoint,
                    event.context_used,
                    event.context_requested,
                    self._limits[endpoint],
                )
        for sink in self._sinks:
            sink.record(event)
        self._pm.hook.turnout_record(event=event)
