"""turnout's engine: routing OpenAI-style requests to the endpoint that fits.

This is the public API; the sidecar, the middleware and plugins use nothing else of ``core``
except the modules named in the plugin author guide (``hookspecs``, ``providers``, ``testing``).
"""

from __future__ import annotations

from turnout.core.config import (
    LoadedConfig,
    ModelConfig,
    TurnoutConfig,
    load_config,
    parse_config,
)
from turnout.core.errors import (
    BreakerOpen,
    ConfigError,
    ContextLengthExceeded,
    DeadlineExceeded,
    InvalidRequest,
    ModelNotFound,
    NoEndpointAvailable,
    PayloadTooLarge,
    PluginError,
    QueueFull,
    TurnoutError,
    UpstreamError,
    upstream_status_error,
)
from turnout.core.plugins import create_plugin_manager, hookimpl
from turnout.core.providers import (
    Breaker,
    Classifier,
    Dispatcher,
    HardwareProbe,
    HealthReport,
    MetricsSink,
    Provider,
    Timeouts,
    Tokenizer,
    UpstreamReply,
    UpstreamStream,
)
from turnout.core.requests import decode_body, detect_kind, parse_request
from turnout.core.router import Completed, Router
from turnout.core.streaming import RoutedStream
from turnout.core.types import (
    Attempt,
    Candidate,
    Classification,
    Decision,
    RouteEvent,
    RouteRequest,
    RoutingHints,
    TokenCount,
)

__all__ = [
    "Attempt",
    "Breaker",
    "BreakerOpen",
    "Candidate",
    "Classification",
    "Classifier",
    "Completed",
    "ConfigError",
    "ContextLengthExceeded",
    "DeadlineExceeded",
    "Decision",
    "Dispatcher",
    "HardwareProbe",
    "HealthReport",
    "InvalidRequest",
    "LoadedConfig",
    "MetricsSink",
    "ModelConfig",
    "ModelNotFound",
    "NoEndpointAvailable",
    "PayloadTooLarge",
    "PluginError",
    "Provider",
    "QueueFull",
    "RouteEvent",
    "RouteRequest",
    "RoutedStream",
    "Router",
    "RoutingHints",
    "Timeouts",
    "TokenCount",
    "Tokenizer",
    "TurnoutConfig",
    "TurnoutError",
    "UpstreamError",
    "UpstreamReply",
    "UpstreamStream",
    "create_plugin_manager",
    "decode_body",
    "detect_kind",
    "hookimpl",
    "load_config",
    "parse_config",
    "parse_request",
    "upstream_status_error",
]
