"""``backend``: ask the model's own server to count (vLLM and llama.cpp serve ``/tokenize``).

Exact by definition, chat template included, but a round trip: turnout asks only when the estimate
is near a limit, and keeps the last answers. vLLM answers ``{"count": N}`` for a prompt or a list of
messages; llama.cpp answers ``{"tokens": [...]}`` for ``content``, and renders chat through its
``/apply-template`` first.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import aiohttp

from turnout.core import ModelConfig, Provider, RouteRequest, TokenCount, Tokenizer, hookimpl

CACHE_SIZE = 1024
TIMEOUT = aiohttp.ClientTimeout(total=5)


class BackendTokenizer:
    exact = True

    def __init__(self, model: ModelConfig) -> None:
        self.name = f"backend:{model.id}"
        base = (model.api_base or "").rstrip("/")
        self._root = base[: -len("/v1")] if base.endswith("/v1") else base
        self._model = model.upstream_model
        self._headers = (
            {"Authorization": f"Bearer {model.api_key.get_secret_value()}"} if model.api_key else {}
        )
        self._cache: OrderedDict[str, int] = OrderedDict()

    async def count(self, request: RouteRequest) -> TokenCount:
        key = _key(request)
        if key in self._cache:
            self._cache.move_to_end(key)
            return TokenCount(self._cache[key], self.name, exact=True)
        async with aiohttp.ClientSession(timeout=TIMEOUT, headers=self._headers) as session:
            tokens = await self._ask(session, request)
        self._cache[key] = tokens
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return TokenCount(tokens, self.name, exact=True)

    async def _ask(self, session: aiohttp.ClientSession, request: RouteRequest) -> int:
        body: dict[str, Any] = {"model": self._model}
        if request.kind == "chat":
            body["messages"] = list(request.messages)
        else:
            body["prompt"] = request.text
        answer = await _post(session, f"{self._root}/tokenize", body)
        if isinstance(answer.get("count"), int):
            return int(answer["count"])
        content = request.text
        if request.kind == "chat":
            rendered = await _post(
                session, f"{self._root}/apply-template", {"messages": list(request.messages)}
            )
            content = str(rendered.get("prompt", ""))
        answer = await _post(session, f"{self._root}/tokenize", {"content": content})
        return len(answer.get("tokens") or [])


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with session.post(url, json=body) as response:
        response.raise_for_status()
        data = await response.json(content_type=None)
    return data if isinstance(data, dict) else {}


def _key(request: RouteRequest) -> str:
    payload = list(request.messages) if request.kind == "chat" else request.text
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _build(argument: str, model: ModelConfig) -> BackendTokenizer:
    return BackendTokenizer(model)


@hookimpl(trylast=True)
def turnout_tokenizers() -> Iterable[Provider[Tokenizer]]:
    return [Provider("backend", _build, "the backend's own /tokenize endpoint (vLLM, llama.cpp)")]
