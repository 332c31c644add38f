"""Building the plugin manager and collecting the providers plugins register.

One factory, no module-global manager: specs, turnout's built-ins, then third-party plugins from
the ``turnout`` entry-point group (skipped when ``TURNOUT_DISABLE_PLUGIN_AUTOLOAD`` is set), then
``check_pending()`` so a misspelt hook fails at start rather than silently never running.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast, overload

import pluggy

from turnout.core import hookspecs
from turnout.core.errors import PluginError
from turnout.core.providers import (
    Breaker,
    Classifier,
    Dispatcher,
    HardwareProbe,
    MetricsSink,
    Provider,
    Tokenizer,
)

PROJECT = "turnout"
AUTOLOAD_OFF_ENV = "TURNOUT_DISABLE_PLUGIN_AUTOLOAD"

BUILTIN_PLUGINS: tuple[str, ...] = (
    "turnout.plugins.rules",
    "turnout.plugins.tokens_estimate",
    "turnout.plugins.tokens_tiktoken",
    "turnout.plugins.tokens_hf",
    "turnout.plugins.tokens_backend",
    "turnout.plugins.dispatch_openai",
    "turnout.plugins.dispatch_litellm",
    "turnout.plugins.breaker_pybreaker",
    "turnout.plugins.metrics_prometheus",
    "turnout.plugins.hardware_host",
    "turnout.plugins.hardware_apple",
    "turnout.plugins.hardware_nvml",
)

_F = TypeVar("_F", bound=Callable[..., Any])
_marker = pluggy.HookimplMarker(PROJECT)


@overload
def hookimpl(function: _F) -> _F: ...


@overload
def hookimpl(
    *, trylast: bool = ..., tryfirst: bool = ..., wrapper: bool = ...
) -> Callable[[_F], _F]: ...


def hookimpl(
    function: _F | None = None,
    *,
    trylast: bool = False,
    tryfirst: bool = False,
    wrapper: bool = False,
) -> _F | Callable[[_F], _F]:
    """Mark a function as a turnout hook implementation, keeping its signature for type checkers."""
    if function is not None:
        return _marker(function)
    return cast(Callable[[_F], _F], _marker(trylast=trylast, tryfirst=tryfirst, wrapper=wrapper))


def create_plugin_manager(*, load_entry_points: bool | None = None) -> pluggy.PluginManager:
    """A plugin manager with turnout's specs, its built-ins and (unless disabled) third parties."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for module_name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if load_entry_points is None:
        load_entry_points = not os.environ.get(AUTOLOAD_OFF_ENV)
    if load_entry_points:
        _load_entry_points(pm)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin '{exc.plugin}' implements an unknown hook: {exc}") from None
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    for ep in importlib.metadata.entry_points(group=PROJECT):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            raise PluginError(
                f"turnout plugin '{ep.name}' ({ep.value}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


@dataclass(frozen=True)
class ProviderRegistry:
    """Every provider the registered plugins offer, by kind and name."""

    classifiers: dict[str, Provider[Classifier]] = field(default_factory=dict)
    tokenizers: dict[str, Provider[Tokenizer]] = field(default_factory=dict)
    dispatchers: dict[str, Provider[Dispatcher]] = field(default_factory=dict)
    breakers: dict[str, Provider[Breaker]] = field(default_factory=dict)
    hardware_probes: dict[str, Provider[HardwareProbe]] = field(default_factory=dict)
    metrics_sinks: dict[str, Provider[MetricsSink]] = field(default_factory=dict)


def collect_providers(pm: pluggy.PluginManager) -> ProviderRegistry:
    """Call every registration hook; two plugins claiming one name is a :class:`PluginError`."""
    return ProviderRegistry(
        classifiers=_collect(pm, "turnout_classifiers"),
        tokenizers=_collect(pm, "turnout_tokenizers"),
        dispatchers=_collect(pm, "turnout_dispatchers"),
        breakers=_collect(pm, "turnout_breakers"),
        hardware_probes=_collect(pm, "turnout_hardware_probes"),
        metrics_sinks=_collect(pm, "turnout_metrics_sinks"),
    )


def _collect(pm: pluggy.PluginManager, hook_name: str) -> dict[str, Any]:
    found: dict[str, Provider[Any]] = {}
    owner: dict[str, str] = {}
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        try:
            provided: Iterable[Provider[Any]] = impl.function() or ()
            provided = list(provided)
        except Exception as exc:
            raise PluginError(
                f"plugin '{impl.plugin_name}' failed in {hook_name}: {type(exc).__name__}: {exc}"
            ) from exc
        for provider in provided:
            if not isinstance(provider, Provider):
                raise PluginError(
                    f"plugin '{impl.plugin_name}' returned {provider!r} from {hook_name}; "
                    "expected turnout.core.Provider records"
                )
            if provider.name in found:
                raise PluginError(
                    f"{hook_name}: provider name '{provider.name}' is claimed by both "
                    f"'{owner[provider.name]}' and '{impl.plugin_name}'"
                )
            found[provider.name] = provider
            owner[provider.name] = impl.plugin_name
    return found
