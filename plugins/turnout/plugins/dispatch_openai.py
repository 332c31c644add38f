"""The ``openai`` dispatcher: a lean aiohttp pass-through for OpenAI-compatible servers.

vLLM, SGLang, Ollama's /v1, MLX server and llama.cpp server all speak OpenAI's wire format, so the
hot path only rewrites ``model`` (and asks for streamed usage), then relays bytes: responses are not
re-encoded and SSE events go out one by one as they arrive. One pooled session serves every
endpoint; the client's own Authorization header is never forwarded.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp

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
    upstream_status_error,
)
from turnout.core.providers import Dispatcher
from turnout.plugins.engine_metrics import engine_load

CONNECTION_LIMIT = 512
DONE_EVENT = b"data: [DONE]"


class OpenAIDispatcher:
    def __init__(self, config: TurnoutConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=CONNECTION_LIMIT, limit_per_host=0)
            self._session = aiohttp.ClientSession(connector=connector, raise_for_status=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the openai dispatcher is not started")
        return self._session

    async def send(
        self, model: ModelConfig, request: RouteRequest, timeouts: Timeouts
    ) -> UpstreamReply:
        timeout = aiohttp.ClientTimeout(total=timeouts.total, connect=timeouts.connect)
        url, payload, headers = self._prepare(model, request, stream=False)
        try:
            async with self.session.post(url, data=payload, headers=headers, timeout=timeout) as r:
                body = await r.read()
                status, content_type = r.status, r.headers.get("Content-Type", "application/json")
                retry_after = r.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _transport_error(model.id, exc) from exc
        if status >= 300:
            raise upstream_status_error(model.id, status, body, retry_after)
        try:
            data = json.loads(body)
        except ValueError:
            raise UpstreamError(
                f"{model.id} answered with a body that is not JSON",
                endpoint=model.id,
                reason="malformed_response",
            ) from None
        usage = data.get("usage") if isinstance(data, dict) else None
        return UpstreamReply(status, body, content_type, usage if isinstance(usage, dict) else None)

    async def open_stream(
        self, model: ModelConfig, request: RouteRequest, timeouts: Timeouts
    ) -> SSEStream:
        # No total timeout for a stream: the read timeout bounds first byte and every gap.
        timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.connect, sock_read=timeouts.first_byte
        )
        url, payload, headers = self._prepare(model, request, stream=True)
        try:
            response = await self.session.post(url, data=payload, headers=headers, timeout=timeout)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _transport_error(model.id, exc) from exc
        if response.status >= 300:
            try:
                body = await response.read()
            except (TimeoutError, aiohttp.ClientError, OSError):
                body = b""
            finally:
                response.release()
            raise upstream_status_error(
                model.id, response.status, body, response.headers.get("Retry-After")
            )
        options = request.body.get("stream_options")
        wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return SSEStream(model.id, response, forward_usage=wants_usage)

    async def check_health(self, model: ModelConfig) -> HealthReport:
        """A probe that spends no tokens: Ollama's /api/tags; else the server's /health (vLLM,
        SGLang and llama.cpp answer 503 while the model loads), or /v1/models where there is
        no /health."""
        started = time.perf_counter()
        root = _root(model)
        if self._config.inference.engine_of(model) == "ollama":
            probes = [f"{root}/api/tags"]
        else:
            probes = [f"{root}/health", f"{_base(model)}/models"]
        timeout = aiohttp.ClientTimeout(total=self._connect_s() + 1.0, connect=self._connect_s())
        healthy, detail = False, "no probe answered"
        for url in probes:
            try:
                async with self.session.get(url, headers=_auth(model), timeout=timeout) as r:
                    await r.read()
                    status = r.status
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                healthy, detail = False, _transport_error(model.id, exc).reason.replace("_", " ")
                break
            if status in (404, 405):
                continue  # this server has no such probe: try the next
            healthy = status == 200
            if healthy:
                detail = "ok"
            elif status == 503:
                detail = "loading (HTTP 503)"
            else:
                detail = f"HTTP {status} from {url[len(root) :]}"
            break
        return HealthReport(healthy, detail, time.perf_counter() - started)

    async def context_limit(self, model: ModelConfig) -> int | None:
        """vLLM lists each model's ``max_model_len`` under /v1/models."""
        timeout = aiohttp.ClientTimeout(total=self._connect_s() + 1.0, connect=self._connect_s())
        try:
            async with self.session.get(
                f"{_base(model)}/models", headers=_auth(model), timeout=timeout
            ) as r:
                listing = await r.json(content_type=None) if r.status == 200 else None
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            return None
        for entry in (listing or {}).get("data") or []:
            if isinstance(entry, dict) and entry.get("id") == model.upstream_model:
                limit = entry.get("max_model_len")
                return limit if isinstance(limit, int) and limit > 0 else None
        return None

    async def backend_metrics(self, model: ModelConfig) -> dict[str, float] | None:
        """The engine's /metrics, in turnout's names (vLLM, SGLang, llama.cpp)."""
        timeout = aiohttp.ClientTimeout(total=self._connect_s() + 1.0, connect=self._connect_s())
        try:
            async with self.session.get(
                f"{_root(model)}/metrics", headers=_auth(model), timeout=timeout
            ) as r:
                if r.status == 404:
                    return None
                text = await r.text()
                status = r.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _transport_error(model.id, exc) from exc
        if status != 200:
            raise UpstreamError(
                f"{model.id}: metrics HTTP {status}", endpoint=model.id, reason=f"http_{status}"
            )
        return engine_load(text)

    def _prepare(
        self, model: ModelConfig, request: RouteRequest, *, stream: bool
    ) -> tuple[str, bytes, dict[str, str]]:
        body = dict(request.body)
        body["model"] = model.upstream_model
        if stream:
            # Ask for usage so turnout learns the real token counts; the usage-only event is
            # dropped again unless the client asked for it.
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        path = "/chat/completions" if request.kind == "chat" else "/completions"
        headers = {"Content-Type": "application/json", **_auth(model)}
        return _base(model) + path, json.dumps(body).encode(), headers

    def _connect_s(self) -> float:
        return self._config.routing.connect_timeout_ms / 1000


class SSEStream:
    """A backend's SSE answer as whole events, with the usage it reports kept aside."""

    def __init__(
        self, endpoint: str, response: aiohttp.ClientResponse, *, forward_usage: bool
    ) -> None:
        self._endpoint = endpoint
        self._response = response
        self._forward_usage = forward_usage
        self.usage: dict[str, Any] | None = None
        self._done = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def aclose(self) -> None:
        # Closing (not releasing) an unfinished response drops the connection, which is how a
        # backend learns to stop generating for a client that went away.
        if self._done:
            self._response.release()
        else:
            self._response.close()

    async def _events(self) -> AsyncIterator[bytes]:
        buffer = b""
        finished = False
        try:
            async for data in self._response.content.iter_any():
                if b"\r" in data:
                    data = data.replace(b"\r\n", b"\n")
                buffer += data
                while (end := buffer.find(b"\n\n")) >= 0:
                    event, buffer = buffer[: end + 2], buffer[end + 2 :]
                    if event.startswith(DONE_EVENT):
                        finished = True
                    elif b'"usage"' in event and self._take_usage(event):
                        continue
                    yield event
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _transport_error(self._endpoint, exc, mid_stream=True) from exc
        if not finished:
            raise UpstreamError(
                f"{self._endpoint} closed the stream before it finished",
                endpoint=self._endpoint,
                reason="stream_truncated",
            )
        self._done = True

    def _take_usage(self, event: bytes) -> bool:
        """Keep reported usage. True: the event is usage alone, which the client did not ask for."""
        try:
            payload = json.loads(event[event.index(b"{") :])
        except ValueError:
            return False
        usage = payload.get("usage") if isinstance(payload, dict) else None
        if not isinstance(usage, dict):
            return False
        self.usage = usage
        return not self._forward_usage and not payload.get("choices")


def _base(model: ModelConfig) -> str:
    assert model.api_base is not None
    return model.api_base.rstrip("/")


def _root(model: ModelConfig) -> str:
    """The server root: api_base without its trailing /v1."""
    base = _base(model)
    return base[: -len("/v1")] if base.endswith("/v1") else base


def _auth(model: ModelConfig) -> dict[str, str]:
    if model.api_key is None:
        return {}
    return {"Authorization": f"Bearer {model.api_key.get_secret_value()}"}


def _transport_error(
    endpoint: str, exc: BaseException, *, mid_stream: bool = False
) -> UpstreamError:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        reason = "connect_timeout"
    elif isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        reason = "timeout"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        reason = "connection_refused"
    elif mid_stream:
        reason = "stream_broken"
    else:
        reason = "connection_error"
    return UpstreamError(
        f"{endpoint}: {reason.replace('_', ' ')}", endpoint=endpoint, reason=reason
    )


def _build(config: TurnoutConfig) -> OpenAIDispatcher:
    return OpenAIDispatcher(config)


@hookimpl(trylast=True)
def turnout_dispatchers() -> Iterable[Provider[Dispatcher]]:
    return [Provider("openai", _build, "aiohttp pass-through for OpenAI-compatible servers")]
