"""Deciding where a request goes: classify, list candidates, count, fit, rank.

Counting is two-stage. Every candidate gets the calibrated estimate (microseconds); only where
that estimate lands within ``routing.estimate_margin`` of a candidate's limit does the candidate's
own tokenizer count exactly, once per distinct tokenizer. Nothing is sent anywhere.
"""

from __future__ import annotations

from typing import Protocol

import pluggy

from turnout.core.baseline import estimated_latency_s
from turnout.core.config import ROUTE_NAMES, RuleConfig, TurnoutConfig
from turnout.core.config_source import did_you_mean
from turnout.core.errors import ContextLengthExceeded, ModelNotFound, NoEndpointAvailable
from turnout.core.latency import LatencyStats
from turnout.core.policy import candidate_order
from turnout.core.providers import Classifier, Tokenizer
from turnout.core.tokens import Calibration, estimate_request_tokens
from turnout.core.types import Candidate, Decision, RouteRequest, TokenCount


class Gates(Protocol):
    """What the router knows about endpoints beyond the request: why one is out of the running,
    or why it should go behind the others."""

    def unroutable(self, endpoint: str) -> str | None: ...

    def behind(self, endpoint: str) -> str | None: ...


ESTIMATE = "estimate"
REPLY_TOKENS_FOR_LATENCY = 256


class Decider:
    def __init__(
        self,
        config: TurnoutConfig,
        *,
        pm: pluggy.PluginManager,
        classifier: Classifier,
        rules: list[RuleConfig],
        tokenizers: dict[str, Tokenizer],
        limits: dict[str, int],
        calibration: Calibration,
        gates: Gates,
        latency: LatencyStats,
        baselines: dict[str, object],
    ) -> None:
        self.config = config
        self.pm = pm
        self.classifier = classifier
        self.rules = rules
        self.tokenizers = tokenizers
        self.limits = limits
        self.calibration = calibration
        self.gates = gates
        self.latency = latency
        self.baselines = baselines
        self.margin = config.routing.estimate_margin

    async def decide(self, request: RouteRequest) -> Decision:
        pinned = self._pinned(request.model)
        classification = self.classifier.classify(request)
        raw = estimate_request_tokens(request)
        rule_tokens = self.calibration.calibrated(self.config.default_model, raw)
        order = candidate_order(
            self.config, self.rules, classification, rule_tokens, request.max_tokens, pinned
        )
        exact: dict[int, TokenCount] = {}
        candidates = [
            await self._judge(model_id, why, raw, request, exact) for model_id, why in order
        ]
        fitting = [c for c in candidates if c.fits]
        ranked = self.pm.hook.turnout_rank_endpoints(
            request=request, classification=classification, candidates=fitting
        )
        known = {c.endpoint for c in fitting}
        ranked = [c for c in (fitting if ranked is None else ranked) if c.endpoint in known]
        target = classification.latency_target_ms

        def standing(c: Candidate) -> tuple[bool, bool]:
            # Degraded endpoints stay usable behind healthy ones; so do those whose latency
            # estimate (measured, else the baseline) would miss the caller's target.
            late = target is not None and (c.estimated_latency_ms or 0) > target
            return (c.degraded is not None, late)

        final = tuple(c.endpoint for c in sorted(ranked, key=standing))
        return Decision(classification, tuple(candidates), final, pinned, raw)

    async def _judge(
        self,
        model_id: str,
        why: str,
        raw: int,
        request: RouteRequest,
        exact: dict[int, TokenCount],
    ) -> Candidate:
        limit = self.limits[model_id]
        reply = request.max_tokens or 1
        room = limit - reply
        estimate = self.calibration.calibrated(model_id, raw)
        count = TokenCount(estimate, ESTIMATE, exact=False)
        tokenizer = self.tokenizers[model_id]
        near_limit = estimate * (1 - self.margin) <= room < estimate * (1 + self.margin)
        if tokenizer.exact and near_limit:
            key = id(tokenizer)
            if key not in exact:
                exact[key] = await tokenizer.count(request)
            count = exact[key]
            self.calibration.observe(model_id, raw, count.tokens)
        # Size first: a request no model can hold is the client's to fix, whatever else is down.
        dropped = None
        if count.tokens + reply > limit:
            how = "exact" if count.exact else "estimated"
            dropped = (
                f"needs {count.tokens + reply} tokens (prompt {count.tokens} {how} + max_tokens "
                f"{reply}) but the effective context is {limit}"
            )
        dropped = dropped or self.gates.unroutable(model_id)
        return Candidate(
            model_id,
            why,
            count.tokens,
            count.tokenizer,
            count.exact,
            limit,
            dropped,
            degraded=self.gates.behind(model_id),
            estimated_latency_ms=self._latency_ms(model_id, request),
        )

    def _latency_ms(self, model_id: str, request: RouteRequest) -> float | None:
        """Measured when there is enough live data, else the stored baseline, else unknown."""
        reply = request.max_tokens or REPLY_TOKENS_FOR_LATENCY
        live = self.latency.estimate_s(model_id, reply)
        if live is not None:
            return round(live * 1000, 1)
        baseline = self.baselines.get(model_id)
        if not isinstance(baseline, dict):
            return None
        seconds = estimated_latency_s(baseline, request.max_tokens or REPLY_TOKENS_FOR_LATENCY)
        return round(seconds * 1000, 1) if seconds is not None else None

    def _pinned(self, requested: str) -> str | None:
        if requested in self.limits:
            return requested
        if requested in ROUTE_NAMES:
            return None
        names = [*ROUTE_NAMES, *self.limits]
        raise ModelNotFound(
            f"model '{requested}' is not served here{did_you_mean(requested, names)} "
            f"(models: {', '.join(names)})",
            param="model",
        )


def require_some(decision: Decision, request: RouteRequest) -> None:
    """Raise the right error when nothing can serve: 400 when only size ruled candidates out."""
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
