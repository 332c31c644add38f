"""turnout's plugin contract. Each spec's docstring is its documentation.

Two kinds of hooks (pluggy is synchronous; an ``async def`` implementation would return an
un-awaited coroutine):

* Registration hooks, called once at start, return :class:`~turnout.core.providers.Provider`
  records. Config chooses a provider by name; per-request async work runs on the objects those
  providers build, never through pluggy.
* Synchronous per-request hooks: ``turnout_rank_endpoints`` and ``turnout_record``; and
  ``turnout_configure``, called once with the loaded config (historic: late plugins get it too).
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from turnout.core.config import TurnoutConfig
from turnout.core.providers import (
    Breaker,
    Classifier,
    Dispatcher,
    HardwareProbe,
    MetricsSink,
    Provider,
    Tokenizer,
)
from turnout.core.types import Candidate, Classification, RouteEvent, RouteRequest

hookspec = pluggy.HookspecMarker("turnout")


@hookspec
def turnout_classifiers() -> Iterable[Provider[Classifier]]:
    """Register request classifiers.

    Return providers whose ``factory(config)`` builds an object with
    ``classify(request) -> Classification``. ``routing.classifier`` in the config picks one by
    ``name``. Built-in: ``rules``.
    """


@hookspec
def turnout_tokenizers() -> Iterable[Provider[Tokenizer]]:
    """Register tokenizer schemes.

    A model's ``tokenizer: "<scheme>:<argument>"`` picks the provider named ``<scheme>``; its
    ``factory(argument, model_config)`` builds an object with ``name`` and
    ``count(request) -> TokenCount``. Built-in: ``estimate``.
    """


@hookspec
def turnout_dispatchers() -> Iterable[Provider[Dispatcher]]:
    """Register dispatchers, the code that talks to backends.

    A model's ``provider`` picks one: ``vllm``, ``ollama``, ``mlx``, ``llamacpp``, ``sglang`` and
    ``openai`` use the provider named ``openai``; ``litellm:<provider>/<model>`` uses ``litellm``;
    any other value is looked up by name. ``factory(config)`` builds a
    :class:`~turnout.core.providers.Dispatcher`, started once and shared by its endpoints.
    """


@hookspec
def turnout_breakers() -> Iterable[Provider[Breaker]]:
    """Register circuit-breaker implementations.

    ``factory(endpoint_id, config)`` builds one :class:`~turnout.core.providers.Breaker` per
    endpoint.
    """


@hookspec
def turnout_hardware_probes() -> Iterable[Provider[HardwareProbe]]:
    """Register hardware probes (GPU, host CPU and memory).

    ``factory()`` builds an object whose ``probe()`` returns a JSON-able dict and never raises:
    a probe that finds no hardware says so in what it returns.
    """


@hookspec
def turnout_metrics_sinks() -> Iterable[Provider[MetricsSink]]:
    """Register metrics sinks.

    ``factory(config)`` builds an object whose ``record(event)`` receives every
    :class:`~turnout.core.types.RouteEvent`.
    """


@hookspec(firstresult=True)
def turnout_rank_endpoints(
    request: RouteRequest, classification: Classification, candidates: list[Candidate]
) -> list[Candidate] | None:
    """Order the candidates that fit a request, best first.

    :param request: the request being routed.
    :param classification: what the classifier concluded.
    :param candidates: the candidates that fit, in the policy's preference order.
    :return: the same candidates reordered (a subset drops the rest), or None to pass.

    Stops at the first non-None result.
    """


@hookspec
def turnout_record(event: RouteEvent) -> None:
    """Receive the outcome of one request (every implementation is called).

    Runs on the event loop after the response: keep it to microseconds and never raise.
    """


@hookspec(historic=True)
def turnout_configure(config: TurnoutConfig) -> None:
    """Receive the loaded configuration once the router starts.

    Historic: a plugin registered later is called with the same config on registration.
    """
