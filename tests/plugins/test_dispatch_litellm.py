"""The litellm dispatcher against a real loopback server speaking OpenAI's format."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from turnout.core import Router, UpstreamError, parse_request
from turnout.core.testing import FakeUpstream, closed_port_api_base, make_config


def chat(**extra: Any) -> Any:
    return parse_request(
        "chat",
        {
            "model": "auto",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}],
            **extra,
        },
    )


def run(router: Router, coro_fn: Callable[[Router], Any]) -> Any:
    async def go() -> Any:
        await router.start()
        try:
            return await coro_fn(router)
        finally:
            await router.close()

    return asyncio.run(go())


def test_importing_turnout_does_not_import_litellm() -> None:
    code = (
        "import sys, turnout.core, turnout.sidecar.app, turnout.plugins.dispatch_litellm;"
        "from turnout.core import create_plugin_manager; create_plugin_manager();"
        "print('litellm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_litellm_completion_and_stream(openai_upstream: Callable[..., FakeUpstream]) -> None:
    upstream = openai_upstream("via-litellm")
    config = make_config(
        [
            {
                "id": "remote",
                "provider": "litellm:openai/some-model",
                "api_key": "sk-test",
                "api_base": upstream.api_base,
            }
        ]
    )
    router = Router(config)

    async def both(r: Router) -> tuple[Any, list[bytes]]:
        done = await r.complete(chat())
        stream = await r.stream(chat(stream=True))
        return done, [event async for event in stream]

    done, events = run(router, both)
    assert done.endpoint == "remote"
    assert b"".join(upstream.words()[i].encode() for i in range(upstream.chunks)) in (
        done.reply.body.replace(b"\\n", b"")
    )
    assert done.reply.usage is not None and done.reply.usage["completion_tokens"] == upstream.chunks
    assert upstream.requests[0]["model"] == "some-model"
    assert events[-1] == b"data: [DONE]\n\n"
    streamed = b"".join(events).decode()
    assert all(word in streamed for word in upstream.words())


def test_litellm_refused_connection_falls_back(
    openai_upstream: Callable[..., FakeUpstream],
) -> None:
    good = openai_upstream("good")
    config = make_config(
        [
            {
                "id": "gone",
                "provider": "litellm:openai/m",
                "api_key": "k",
                "api_base": closed_port_api_base(),
            },
            {"id": "good", "api_base": good.api_base},
        ],
        routing={"default": "gone"},
    )
    done = run(Router(config), lambda r: r.complete(chat()))
    assert done.endpoint == "good"
    assert done.attempts[0].endpoint == "gone"


def test_litellm_client_error_is_not_retried(openai_upstream: Callable[..., FakeUpstream]) -> None:
    strict = openai_upstream("strict", mode="status:400")
    other = openai_upstream("other")
    config = make_config(
        [
            {
                "id": "strict",
                "provider": "litellm:openai/m",
                "api_key": "k",
                "api_base": strict.api_base,
            },
            {"id": "other", "api_base": other.api_base},
        ],
        routing={"default": "strict"},
    )
    with pytest.raises(UpstreamError) as info:
        run(Router(config), lambda r: r.complete(chat()))
    assert info.value.upstream_status == 400 and not info.value.retryable
    assert strict.hits == 1, "litellm's own retries are off"
    assert other.hits == 0
