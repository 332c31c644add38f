"""Building a router's providers from the config and the registered plugins, once, at start.

Providers are shared: one tokenizer object per distinct ``tokenizer`` spec, one dispatcher object
per dispatcher kind (so one HTTP connection pool serves every OpenAI-compatible endpoint).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from turnout.core.config import OPENAI_COMPATIBLE, ModelConfig, TurnoutConfig
from turnout.core.config_source import did_you_mean
from turnout.core.errors import ConfigError
from turnout.core.plugins import ProviderRegistry
from turnout.core.providers import Classifier, Dispatcher, MetricsSink, Provider, Tokenizer

T = TypeVar("T")


def find_provider(
    providers: dict[str, Provider[T]], name: str, where: str, kind: str
) -> Provider[T]:
    """The provider named ``name``, or a ConfigError saying where it was asked for and what
    is installed."""
    provider = providers.get(name)
    if provider is None:
        hint = did_you_mean(name, list(providers))
        close = hint if "did you mean" in hint else ""
        raise ConfigError(
            f"{where}: no {kind} named '{name}'{close}; installed: {', '.join(sorted(providers))}"
        )
    return provider


def build_classifier(registry: ProviderRegistry, config: TurnoutConfig) -> Classifier:
    name = config.routing.classifier
    return find_provider(registry.classifiers, name, "routing.classifier", "classifier").factory(
        config
    )


def build_tokenizers(registry: ProviderRegistry, config: TurnoutConfig) -> dict[str, Tokenizer]:
    """Model id -> its tokenizer; a provider's failure to load names the model and the spec."""
    by_spec: dict[str, Tokenizer] = {}
    out: dict[str, Tokenizer] = {}
    for i, model in enumerate(config.models):
        spec = model.tokenizer
        if spec not in by_spec:
            scheme, _, argument = spec.partition(":")
            where = f"models[{i}].tokenizer ({model.id})"
            provider = find_provider(registry.tokenizers, scheme, where, "tokenizer scheme")
            try:
                by_spec[spec] = provider.factory(argument, model)
            except ConfigError as exc:
                raise ConfigError(f"models[{i}].tokenizer ({model.id}): {exc.message}") from None
        out[model.id] = by_spec[spec]
    return out


def dispatcher_name(model: ModelConfig, config: TurnoutConfig) -> str:
    """Which dispatcher provider serves a model's ``provider`` value."""
    provider = config.inference.engine_of(model)
    if provider in OPENAI_COMPATIBLE:
        return "openai"
    if provider.startswith("litellm:"):
        return "litellm"
    return provider


def build_dispatchers(registry: ProviderRegistry, config: TurnoutConfig) -> dict[str, Dispatcher]:
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


def build_metrics_sinks(registry: ProviderRegistry, config: TurnoutConfig) -> list[MetricsSink]:
    sinks = []
    for i, name in enumerate(config.monitoring.metrics_sinks):
        where = f"monitoring.metrics_sinks[{i}]"
        sinks.append(
            find_provider(registry.metrics_sinks, name, where, "metrics sink").factory(config)
        )
    return sinks


def distinct(dispatchers: Iterable[Dispatcher]) -> list[Dispatcher]:
    seen: dict[int, Dispatcher] = {}
    for dispatcher in dispatchers:
        seen.setdefault(id(dispatcher), dispatcher)
    return list(seen.values())
