"""The ``litellm`` dispatcher: for providers that need their API translated.

A model with ``provider: litellm:<provider>/<model>`` (``litellm:anthropic/claude-...``,
``litellm:ollama_chat/llama3``) goes through ``litellm.acompletion``. litellm is imported on first
use only: the import costs seconds and ~200 MB, and blocks on a network fetch unless its offline
switches are set first, which this module does. turnout owns retries and fallback, so litellm's
are off.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any

from turnout.core import (
    HealthReport,
    ModelConfig,
    Provider,
    RouteRequest,
    Timeouts,
    TurnoutConfig,
    UpstreamError,
    UpstreamReply,
    hookimpl,
)
from turnout.core.providers import Dispatcher

PREFIX = "litellm:"
# Request fields turnout hands to litellm as they are; the rest of OpenAI's body is passed through
# litellm's ``extra_body`` only where the provider is OpenAI-like.
_PASSED = (
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "response_format",
    "tools",
    "tool_choice",
    "stream_options",
    "logprobs",
    "top_logprobs",
)


def import_litellm() -> Any:
    """Import litellm offline and quiet; later calls return the loaded module."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


def litellm_model(model: ModelConfig) -> str:
    provider = model.provider or ""
    return provider[len(PREFIX) :] if provider.startswith(PREFIX) else model.upstream_model


class LiteLLMDispatcher:
    def __init__(self, config: TurnoutConfig) -> None:
        self._config = config
        self._litellm: Any = None

    async def start(self) -> None:
        self._litellm = import_litellm()

    async def close(self) -> None:
        return None

    async def send(
        self, model: ModelConfig, request: RouteRequest, timeouts: Timeouts
    ) -> UpstreamReply:
        litellm = self._litellm or import_litellm()
        try:
            response = await self._call(
                litellm, model, request, stream=False, timeout=timeouts.total
            )
        except Exception as exc:
            raise map_litellm_error(model.id, exc, litellm) from exc
        body = response.model_dump_json(exclude_none=True).encode()
        usage = getattr(response, "usage", None)
        usage_dict = usage.model_dump() if usage is not None else None
        return UpstreamReply(200, body, "application/json", usage_dict)

    async def open_stream(
        self, model: ModelConfig, request: RouteRequest, timeouts: Timeouts
    ) -> LiteLLMStream:
        litellm = self._litellm or import_litellm()
        try:
            response = await self._call(
                litellm, model, request, stream=True, timeout=timeouts.first_byte
            )
        except Exception as exc:
            raise map_litellm_error(model.id, exc, litellm) from exc
        return LiteLLMStream(model.id, response, litellm)

    async def check_health(self, model: ModelConfig) -> HealthReport:
        # Providers reached through litellm are remote APIs whose health probes cost money or
        # quota; they are judged by the outcome of real requests instead.
        return HealthReport(True, "not probed (litellm provider)", 0.0)

    async def context_limit(self, model: ModelConfig) -> int | None:
        return None

    async def backend_metrics(self, model: ModelConfig) -> dict[str, float] | None:
        return None

    async def _call(
        self,
        litellm: Any,
        model: ModelConfig,
        request: RouteRequest,
        *,
        stream: bool,
        timeout: float,
    ) -> Any:
        kwargs: dict[str, Any] = {k: request.body[k] for k in _PASSED if k in request.body}
        kwargs.update(
            model=litellm_model(model),
            stream=stream,
            max_retries=0,
            num_retries=0,
            timeout=timeout,
        )
        if model.api_base:
            kwargs["api_base"] = model.api_base
        if model.api_key is not None:
            kwargs["api_key"] = model.api_key.get_secret_value()
        if request.kind == "chat":
            return await litellm.acompletion(messages=list(request.messages), **kwargs)
        return await litellm.atext_completion(prompt=request.body.get("prompt"), **kwargs)


class LiteLLMStream:
    """litellm's stream objects, encoded back into OpenAI's SSE events."""

    def __init__(self, endpoint: str, response: Any, litellm: Any) -> None:
        self._endpoint = endpoint
        self._response = response
        self._litellm = litellm
        self.usage: dict[str, Any] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def aclose(self) -> None:
        close = getattr(self._response, "aclose", None)
        if close is not None:
            await close()

    async def _events(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response:
                usage = getattr(chunk, "usage", None)
                if usage is not None:
                    self.usage = usage.model_dump()
                yield b"data: " + chunk.model_dump_json(exclude_none=True).encode() + b"\n\n"
        except Exception as exc:
            raise map_litellm_error(self._endpoint, exc, self._litellm) from exc
        yield b"data: [DONE]\n\n"


def map_litellm_error(endpoint: str, exc: Exception, litellm: Any) -> UpstreamError:
    """litellm's exceptions -> turnout's. Its made-up 500 for a refused connection is a failure
    of the endpoint like any 5xx; a 4xx that the request caused goes back to the client."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, litellm.Timeout):
        return UpstreamError(f"{endpoint}: timeout", endpoint=endpoint, reason="timeout")
    if isinstance(exc, litellm.APIConnectionError):
        return UpstreamError(
            f"{endpoint}: connection error", endpoint=endpoint, reason="connection_error"
        )
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        return UpstreamError(f"{endpoint}: {type(exc).__name__}", endpoint=endpoint, reason="error")
    retryable = status == 429 or status >= 500 or status in (401, 403, 404, 408)
    message = getattr(exc, "message", None) or type(exc).__name__
    body = (
        None
        if retryable
        else _error_body(str(message), "invalid_request_error", getattr(exc, "code", None))
    )
    return UpstreamError(
        f"{endpoint} answered HTTP {status}",
        endpoint=endpoint,
        reason="rate_limited" if status == 429 else f"http_{status}",
        status=status,
        retryable=retryable,
        body=body,
    )


def _error_body(message: str, kind: str, code: Any) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "code": code}}).encode()


def _build(config: TurnoutConfig) -> LiteLLMDispatcher:
    return LiteLLMDispatcher(config)


@hookimpl(trylast=True)
def turnout_dispatchers() -> Iterable[Provider[Dispatcher]]:
    return [Provider("litellm", _build, "litellm, for providers that need translating")]
