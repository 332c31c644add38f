"""Records that cross turnout's boundaries: what a request is, what was decided, what happened.

All frozen: plugins receive them and cannot change the router's view by mutating one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from turnout.core.config import TaskType

RequestKind = Literal["chat", "completion"]
Outcome = Literal[
    "ok", "client_error", "no_endpoint", "rejected", "deadline", "stream_error", "cancelled"
]


@dataclass(frozen=True, slots=True)
class RoutingHints:
    """What the caller declared, from the body's ``turnout`` block or ``X-Turnout-*`` headers."""

    task_type: TaskType | None = None
    latency_target_ms: int | None = None
    timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """One validated OpenAI-style request, ready to route.

    ``body`` is what goes upstream (turnout's hint block removed); ``text`` is the prompt's text,
    flattened once, for classification and counting; ``messages`` keeps the chat structure for
    tokenizers that apply a chat template.
    """

    kind: RequestKind
    model: str
    body: dict[str, Any]
    text: str
    stream: bool = False
    max_tokens: int | None = None
    messages: tuple[dict[str, Any], ...] = ()
    hints: RoutingHints = field(default_factory=RoutingHints)
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Classification:
    """What the classifier concluded about a request.

    ``preferred`` lets a classifier name endpoints outright; most leave it empty and let the
    routing policy (``routing.rules``) map the task type to endpoints.
    """

    task_type: TaskType
    source: Literal["declared", "heuristic", "classifier"]
    latency_target_ms: int | None = None
    reason: str = ""
    preferred: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TokenCount:
    tokens: int
    tokenizer: str
    exact: bool


@dataclass(frozen=True, slots=True)
class Candidate:
    """One endpoint considered for a request, and the verdict on it."""

    endpoint: str
    why: str
    prompt_tokens: int
    tokenizer: str
    exact: bool
    context_limit: int
    dropped: str | None = None
    degraded: str | None = None
    estimated_latency_ms: float | None = None

    @property
    def fits(self) -> bool:
        return self.dropped is None


@dataclass(frozen=True, slots=True)
class Decision:
    """The whole routing decision: the class, every candidate with its verdict, the final order."""

    classification: Classification
    candidates: tuple[Candidate, ...]
    order: tuple[str, ...]
    pinned: str | None = None
    prompt_estimate: int = 0

    def as_dict(self) -> dict[str, Any]:
        c = self.classification
        return {
            "classification": {
                "task_type": c.task_type,
                "source": c.source,
                "latency_target_ms": c.latency_target_ms,
                "reason": c.reason,
            },
            "pinned": self.pinned,
            "prompt_estimate": self.prompt_estimate,
            "candidates": [
                {
                    "endpoint": cand.endpoint,
                    "why": cand.why,
                    "prompt_tokens": cand.prompt_tokens,
                    "tokenizer": cand.tokenizer,
                    "exact": cand.exact,
                    "context_limit": cand.context_limit,
                    "verdict": "fits" if cand.fits else "dropped",
                    "dropped": cand.dropped,
                    "degraded": cand.degraded,
                    "estimated_latency_ms": cand.estimated_latency_ms,
                }
                for cand in self.candidates
            ],
            "order": list(self.order),
        }


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at one endpoint that did not produce the answer."""

    endpoint: str
    reason: str
    status: int | None = None


@dataclass(frozen=True, slots=True)
class RouteEvent:
    """What happened to one request, handed to every ``turnout_record`` implementation."""

    request_id: str
    kind: RequestKind
    model: str
    task_type: TaskType | None
    endpoint: str | None
    outcome: Outcome
    status: int
    stream: bool
    latency_s: float
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    max_tokens: int | None = None
    attempts: tuple[Attempt, ...] = ()
    error: str | None = None
    decision_s: float | None = None
    queue_wait_s: float | None = None
    retries: int = 0
    inter_token_s: float | None = None

    @property
    def context_used(self) -> int | None:
        """Tokens the request really occupied: prompt plus what was generated."""
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens

    @property
    def context_requested(self) -> int | None:
        """Tokens the request reserved: prompt plus max_tokens."""
        if self.prompt_tokens is None or self.max_tokens is None:
            return None
        return self.prompt_tokens + self.max_tokens
