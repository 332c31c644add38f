"""turnout's configuration: the schema of ``router.config.yaml`` and ``load_config``.

The file keeps the shape users already write (``inference``, ``models``, ``routing``,
``circuit_breaker``, ``monitoring``) and adds what a router needs per model. Unknown keys are
errors; what turnout had to assume is kept in ``TurnoutConfig.warnings`` for ``check-config``.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from turnout.core.config_source import (
    Loc,
    describe_error,
    did_you_mean,
    expand_env,
    format_loc,
    located,
    parse_yaml,
)
from turnout.core.errors import ConfigError

TaskType = Literal["code", "reasoning", "extraction", "chat"]
OPENAI_COMPATIBLE = ("vllm", "ollama", "mlx", "llamacpp", "openai", "sglang")
# Engines that reserve their share of GPU memory at start: NVML sees them full whatever their load.
RESERVES_GPU_MEMORY = ("vllm", "sglang")
ROUTE_NAMES = ("auto",)

PositiveInt = Annotated[int, Field(gt=0, strict=True)]
Ms = Annotated[int, Field(gt=0, le=86_400_000, strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InferenceConfig(_Strict):
    """Defaults for the backends (the seed's block); per-model keys override them."""

    backend: str = "vllm"
    version: str | None = None
    quantization: str | None = None
    batch_size: PositiveInt | None = None
    max_num_seqs: PositiveInt | None = None
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.9

    def engine_of(self, model: ModelConfig) -> str:
        """The engine (provider) serving ``model``: its own ``provider``, else ``backend``."""
        return model.provider or self.backend


class ModelConfig(_Strict):
    """One model endpoint: where it is, what it can hold, what it is for."""

    id: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")]
    path: str | None = None
    max_model_len: PositiveInt
    tensor_parallel_size: PositiveInt = 1
    dtype: str | None = None
    enforce_eager: bool = False
    quantization: str | None = None
    api_base: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] | None = None
    provider: str | None = None
    served_model_name: str | None = None
    task_types: list[TaskType] = Field(default_factory=list)
    latency_target_ms: Ms | None = None
    min_vram_gb: Annotated[float, Field(ge=0)] | None = None
    effective_context: PositiveInt | None = None
    api_key: SecretStr | None = None
    tokenizer: str = "estimate"
    timeout_ms: Ms | None = None
    connect_timeout_ms: Ms | None = None
    first_byte_timeout_ms: Ms | None = None
    max_concurrency: PositiveInt | None = None
    queue_size: Annotated[int, Field(ge=0, strict=True)] | None = None
    gpus: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)
    hardware_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] | None = None

    @model_validator(mode="after")
    def _context_within_window(self) -> ModelConfig:
        if self.effective_context is not None and self.effective_context > self.max_model_len:
            raise ValueError(
                f"effective_context ({self.effective_context}) is larger than max_model_len "
                f"({self.max_model_len}); a model cannot hold more than its window"
            )
        return self

    @property
    def context_limit(self) -> int:
        """The context turnout routes with: ``effective_context`` when set, else the window."""
        return self.effective_context or self.max_model_len

    @property
    def upstream_model(self) -> str:
        """The model name sent to the backend."""
        return self.served_model_name or self.id


class RuleConfig(_Strict):
    """One row of the decision matrix: every condition given must hold, then ``route`` leads."""

    route: str
    task_type: TaskType | None = None
    max_tokens_over: Annotated[int, Field(ge=0)] | None = None
    prompt_tokens_over: Annotated[int, Field(ge=0)] | None = None
    latency_target_ms_at_most: Ms | None = None


class RoutingConfig(_Strict):
    default: str | None = None
    fallback_order: list[str] = Field(default_factory=list)
    health_check_interval_ms: Ms = 5000
    timeout_ms: Ms = 15000
    connect_timeout_ms: Ms = 2000
    retries: Annotated[int, Field(ge=0, le=5, strict=True)] = 0
    retry_backoff_ms: Ms = 50
    queue_size: Annotated[int, Field(ge=0, strict=True)] = 256
    estimate_margin: Annotated[float, Field(ge=0, lt=1)] = 0.25
    classifier: str = "rules"
    rules: list[RuleConfig] | None = None


class CircuitBreakerConfig(_Strict):
    failure_threshold: PositiveInt = 5
    recovery_timeout_ms: Ms = 30000
    success_threshold: PositiveInt = 1
    half_open_max_calls: PositiveInt = 1
    provider: str = "pybreaker"
    storage: Annotated[str, Field(pattern=r"^(memory|rediss?://\S+)$")] = "memory"


class MonitoringConfig(_Strict):
    metrics_endpoint: Annotated[str, Field(pattern=r"^/")] = "/metrics"
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    track_context_usage: bool = True
    alert_on_vram_spike: bool = False
    vram_alarm_percent: Annotated[float, Field(gt=0, le=100)] = 95.0
    vram_sample_interval_ms: Ms = 5000
    profile: str | None = None
    backend_metrics_interval_ms: Ms = 2000
    metrics_sinks: list[str] = Field(default_factory=lambda: ["prometheus"])


class TurnoutConfig(_Strict):
    """A whole, cross-checked configuration. Build it with :func:`load_config` or ``parse``."""

    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    models: Annotated[list[ModelConfig], Field(min_length=1)]
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)

    @model_validator(mode="after")
    def _references_exist(self) -> TurnoutConfig:
        ids = [m.id for m in self.models]
        seen: set[str] = set()
        for model_id in ids:
            if model_id in seen:
                raise ValueError(f"model id '{model_id}' is used twice; ids must be unique")
            if model_id in ROUTE_NAMES:
                raise ValueError(f"model id '{model_id}' is reserved for routing")
            seen.add(model_id)
        refs = [("routing.default", self.routing.default)]
        refs += [
            (f"routing.fallback_order[{i}]", r) for i, r in enumerate(self.routing.fallback_order)
        ]
        refs += [
            (f"routing.rules[{i}].route", r.route) for i, r in enumerate(self.routing.rules or [])
        ]
        for where, ref in refs:
            if ref is not None and ref not in seen:
                raise ValueError(f"{where}: no model has id '{ref}'{did_you_mean(ref, ids)}")
        return self

    def model(self, model_id: str) -> ModelConfig:
        for m in self.models:
            if m.id == model_id:
                return m
        raise KeyError(model_id)

    @property
    def default_model(self) -> str:
        return self.routing.default or self.models[0].id


class LoadedConfig(typing.NamedTuple):
    config: TurnoutConfig
    warnings: list[str]


def parse_config(data: Any, *, source: str = "<config>", node: Any = None) -> LoadedConfig:
    """Validate already-parsed YAML/JSON data; ``node`` (a YAML node tree) adds line numbers."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    missing: list[Loc] = []
    data = expand_env(data, (), missing)
    problems = [
        located(source, node, loc[:-1])
        + f"{format_loc(loc[:-1])}: environment variable {loc[-1]} is not set"
        for loc in missing
    ]
    if problems:
        raise ConfigError("\n".join(problems), problems=problems)
    data, warnings = _fill_assumed(data)
    try:
        config = TurnoutConfig.model_validate(data)
    except ValidationError as exc:
        problems = [describe_error(err, source, node, TurnoutConfig) for err in exc.errors()]
        raise ConfigError("\n".join(problems), problems=problems) from None
    return LoadedConfig(config, warnings + _rule_warnings(config))


def load_config(path: str | Path) -> LoadedConfig:
    """Read, expand and validate ``path``. Raises :class:`ConfigError` naming file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    data, node = parse_yaml(text, str(path))
    return parse_config(data, source=str(path), node=node)


def _fill_assumed(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Fill what the seed's shape leaves out (api_base), saying so."""
    warnings: list[str] = []
    models = data.get("models")
    if not isinstance(models, list):
        return data, warnings
    filled = []
    for i, model in enumerate(models):
        remote = isinstance(model, dict) and str(model.get("provider", "")).startswith("litellm:")
        if isinstance(model, dict) and "api_base" not in model and not remote:
            model = {**model, "api_base": f"http://localhost:{8000 + i}/v1"}
            warnings.append(
                f"models[{i}] ({model.get('id')}): no api_base; assuming {model['api_base']}"
            )
        filled.append(model)
    return {**data, "models": filled}, warnings


def _rule_warnings(config: TurnoutConfig) -> list[str]:
    if config.routing.rules is not None:
        return []
    from turnout.core.policy import default_rules

    _, notes = default_rules(config)
    return notes
