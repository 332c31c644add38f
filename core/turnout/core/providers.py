"""What a plugin provides: the interfaces of providers and the records that register them.

Registration hooks (``turnout_classifiers`` and friends) return :class:`Provider` records. Config
picks a provider by name; turnout calls its ``factory`` once at start and then talks to the object
it built directly, so per-request async work never goes through a pluggy call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from turnout.core.config import ModelConfig, TurnoutConfig
from turnout.core.types import Classification, RouteEvent, RouteRequest, TokenCount

T = TypeVar("T")


@dataclass(frozen=True)
class Provider(Generic[T]):
    """A named way to build one kind of provider (``T``). ``factory``'s arguments depend on the
    kind: see each registration hook and the ``*Factory`` aliases at the end of this module."""

    name: str
    factory: Callable[..., T]
    description: str = ""


@runtime_checkable
class Classifier(Protocol):
    """Decides a request's task type and latency target. Must be cheap: it runs on every request."""

    def classify(self, request: RouteRequest) -> Classification: ...


@runtime_checkable
class Tokenizer(Protocol):
    """Counts a request's prompt tokens as one model will see them.

    ``exact`` False marks an estimator: turnout then uses its own calibrated estimate. ``count``
    is async because some tokenizers ask the backend; local ones should run large prompts off the
    event loop (``turnout.core.tokens.off_loop_if_large``).
    """

    name: str
    exact: bool

    async def count(self, request: RouteRequest) -> TokenCount: ...


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    """A complete non-streamed answer: the backend's bytes, passed on without re-encoding."""

    status: int
    body: bytes
    content_type: str
    usage: dict[str, Any] | None


class UpstreamStream(Protocol):
    """An opened streaming answer: SSE events as bytes, one event per item, as they arrive."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...

    @property
    def usage(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class Timeouts:
    """One attempt's limits in seconds, already cut to what is left of the request's deadline.

    ``total`` bounds a whole non-streamed answer; ``first_byte`` bounds the wait for a stream's
    first event and every gap after it.
    """

    connect: float
    first_byte: float
    total: float


@dataclass(frozen=True, slots=True)
class HealthReport:
    healthy: bool
    detail: str
    latency_s: float


@runtime_checkable
class Dispatcher(Protocol):
    """Sends requests to one kind of backend.

    ``send`` and ``open_stream`` raise :class:`turnout.core.errors.UpstreamError` for a failed
    attempt; ``open_stream`` returns only once the backend has accepted the request, so a failure
    before that can still fall back.
    """

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(
        self, model: ModelConfig, request: RouteRequest, timeouts: Timeouts
    ) -> UpstreamReply: ...

    async def open_stream(
        self, model: ModelConfig, request: RouteRequest, timeouts: Timeouts
    ) -> UpstreamStream: ...

    async def check_health(self, model: ModelConfig) -> HealthReport: ...

    async def context_limit(self, model: ModelConfig) -> int | None:
        """The context the backend itself enforces (vLLM's ``max_model_len``), or None."""
        ...

    async def backend_metrics(self, model: ModelConfig) -> dict[str, float] | None:
        """The engine's own load (``running``, ``waiting``, ``kv_cache_usage`` 0-1,
        ``prefix_cache_queries``, ``prefix_cache_hits``), None where it serves no metrics.
        Raises when the backend does not answer."""
        ...


BreakerState = str  # "closed", "open" or "half-open"
StateListener = Callable[[str, BreakerState], None]


@runtime_checkable
class Breaker(Protocol):
    """A circuit breaker for one endpoint.

    ``guard()`` wraps one attempt (an ``await`` inside a ``with``): it raises
    :class:`turnout.core.errors.BreakerOpen` without calling when the breaker is open (or its
    half-open trials are taken), counts an exception from the attempt as a failure unless it is
    the request's fault, an overload or a cancellation, and a clean exit as a success.
    """

    @property
    def state(self) -> BreakerState: ...

    def allows(self) -> bool:
        """Whether ``guard()`` would let a call through now; no side effects."""
        ...

    def guard(self) -> AbstractContextManager[None]: ...

    def apply(self, state: BreakerState) -> None:
        """Adopt a state decided elsewhere (another replica); does not notify listeners."""
        ...

    def on_change(self, listener: StateListener) -> None:
        """Call ``listener(endpoint, new_state)`` on every local transition."""
        ...


@runtime_checkable
class HardwareProbe(Protocol):
    """Reads this host's hardware; must return (with what it could not read said) and not raise."""

    def probe(self, *, measure: bool = False) -> dict[str, Any]:
        """``measure`` allows active tests (copy bandwidth, throughput samples) that take time."""
        ...


@runtime_checkable
class MemorySampler(Protocol):
    """A hardware probe that can also read GPU memory cheaply, for the live VRAM watch."""

    def memory_sample(self) -> list[dict[str, Any]]:
        """Per GPU: ``index``, ``total_bytes``, ``free_bytes``, ``used_bytes``. Blocking: turnout
        calls it in a worker thread."""
        ...


Snapshot = Callable[[], dict[str, Any]]


@runtime_checkable
class MetricsSink(Protocol):
    """Receives every routing event, reads live router state when asked, exposes what it has.

    ``attach`` hands it a function returning the router's state now (per endpoint: slots,
    queue, breaker, health, degradation); ``render`` returns the exposition body and its content
    type, or None for a sink that pushes elsewhere.
    """

    def record(self, event: RouteEvent) -> None: ...

    def attach(self, snapshot: Snapshot) -> None: ...

    def render(self) -> tuple[bytes, str] | None: ...


ClassifierFactory = Callable[[TurnoutConfig], Classifier]
TokenizerFactory = Callable[[str, ModelConfig], Tokenizer]
DispatcherFactory = Callable[[TurnoutConfig], Dispatcher]
BreakerFactory = Callable[[str, TurnoutConfig], Breaker]
HardwareProbeFactory = Callable[[], HardwareProbe]
MetricsSinkFactory = Callable[[TurnoutConfig], MetricsSink]
