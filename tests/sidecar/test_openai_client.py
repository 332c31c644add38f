"""The sidecar under uvicorn, driven by the official openai client, over real loopback HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

from turnout.core.testing import FakeUpstream, closed_port_api_base, make_config
from turnout.sidecar.testing import ServedApp


@pytest.fixture
def two_upstreams(
    openai_upstream: Callable[..., FakeUpstream],
    serve_sidecar: Callable[..., ServedApp],
    openai_client: Callable[[str], openai.OpenAI],
) -> tuple[FakeUpstream, FakeUpstream, openai.OpenAI]:
    fast, big = openai_upstream("fast"), openai_upstream("big")
    config = make_config(
        [
            {
                "id": "fast",
                "api_base": fast.api_base,
                "task_types": ["chat"],
                "max_model_len": 2048,
                "served_model_name": "served-fast",
            },
            {
                "id": "big",
                "api_base": big.api_base,
                "task_types": ["code", "reasoning"],
                "max_model_len": 32768,
            },
        ],
        routing={"default": "fast", "fallback_order": ["fast", "big"]},
    )
    return fast, big, openai_client(serve_sidecar(config).url)


def test_chat_routes_by_declared_task_type(two_upstreams: Any) -> None:
    fast, big, client = two_upstreams
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "hello"}],
        extra_body={"turnout": {"task_type": "code"}},
    )
    reply = raw.parse()
    assert raw.headers["x-turnout-endpoint"] == "big"
    assert raw.headers["x-turnout-fallbacks"] == "0"
    assert reply.choices[0].message.content == "".join(big.words())
    assert reply.usage is not None and reply.usage.completion_tokens == big.chunks
    assert big.hits == 1 and fast.hits == 0
    assert "turnout" not in big.requests[0], "the hint block must not reach the backend"


def test_header_hints_and_served_model_name(two_upstreams: Any) -> None:
    fast, big, client = two_upstreams
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"X-Turnout-Task-Type": "chat"},
    )
    assert raw.headers["x-turnout-endpoint"] == "fast"
    assert fast.requests[0]["model"] == "served-fast"


def test_client_authorization_is_not_forwarded(two_upstreams: Any) -> None:
    fast, _, client = two_upstreams
    client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert "Authorization" not in fast.headers_seen[0]
    assert "client-key" not in str(fast.headers_seen[0])


def test_completions_plain_and_streamed(two_upstreams: Any) -> None:
    fast, _, client = two_upstreams
    reply = client.completions.create(model="fast", prompt="Once upon a time", max_tokens=16)
    assert reply.choices[0].text == "".join(fast.words())
    chunks = list(client.completions.create(model="fast", prompt="Once", stream=True))
    assert [c.choices[0].text for c in chunks] == fast.words()


def test_chat_stream_relays_every_event_and_hides_unrequested_usage(two_upstreams: Any) -> None:
    fast, _, client = two_upstreams
    stream = client.chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = list(stream)
    assert [c.choices[0].delta.content for c in chunks] == fast.words()
    assert all(c.usage is None for c in chunks)
    assert fast.requests[0]["stream_options"] == {"include_usage": True}


def test_chat_stream_forwards_usage_when_asked(two_upstreams: Any) -> None:
    fast, _, client = two_upstreams
    chunks = list(
        client.chat.completions.create(
            model="fast",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == fast.chunks


def test_models_lists_endpoints_and_auto(two_upstreams: Any) -> None:
    _, _, client = two_upstreams
    ids = [m.id for m in client.models.list()]
    assert ids == ["auto", "fast", "big"]


def test_unknown_model_is_404_with_suggestion(two_upstreams: Any) -> None:
    _, _, client = two_upstreams
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="bgi", messages=[{"role": "user", "content": "x"}])
    assert "did you mean 'big'" in info.value.message
    assert info.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": "auto"}, "'messages' is required"),
        ({"model": "auto", "messages": []}, "messages"),
        (
            {"model": "auto", "messages": [{"role": "user", "content": "x"}], "max_tokens": -5},
            "max_tokens",
        ),
        (
            {"model": "auto", "messages": [{"role": "user", "content": "x"}], "max_tokens": "9"},
            "max_tokens",
        ),
        ({"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}, "role"),
        (
            {
                "model": "auto",
                "messages": [{"role": "user", "content": "x"}],
                "turnout": {"task_type": "poetry"},
            },
            "task_type",
        ),
    ],
)
def test_bad_input_is_400_saying_what_to_fix(
    two_upstreams: Any, body: dict[str, Any], fragment: str
) -> None:
    _, _, client = two_upstreams
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/chat/completions", body=body, cast_to=object)
    assert fragment in info.value.message
    assert info.value.body["type"] == "invalid_request_error"  # type: ignore[index]


def test_prompt_too_long_for_every_model_is_context_length_exceeded(two_upstreams: Any) -> None:
    fast, big, client = two_upstreams
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "word " * 40_000}]
        )
    assert info.value.code == "context_length_exceeded"
    assert fast.hits == big.hits == 0


def test_long_prompt_skips_the_small_model(two_upstreams: Any) -> None:
    fast, big, client = two_upstreams
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": "word " * 3000}]
    )
    assert raw.headers["x-turnout-endpoint"] == "big"
    assert fast.hits == 0


def test_all_endpoints_down_is_503(
    serve_sidecar: Callable[..., ServedApp], openai_client: Callable[[str], openai.OpenAI]
) -> None:
    config = make_config(
        [
            {"id": "a", "api_base": closed_port_api_base()},
            {"id": "b", "api_base": closed_port_api_base()},
        ]
    )
    client = openai_client(serve_sidecar(config).url)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503
    assert "a: unhealthy: connection refused" in info.value.message
    assert "b: unhealthy: connection refused" in info.value.message


def test_backpressure_is_a_rate_limit_error_with_retry_after(
    openai_upstream: Callable[..., FakeUpstream],
    serve_sidecar: Callable[..., ServedApp],
    openai_client: Callable[[str], openai.OpenAI],
) -> None:
    import threading
    import time

    slow = openai_upstream("slow", mode="hang", hang_s=1.0)
    config = make_config(
        [{"id": "slow", "api_base": slow.api_base, "max_concurrency": 1, "queue_size": 0}]
    )
    client = openai_client(serve_sidecar(config).url)
    holder = threading.Thread(
        target=client.chat.completions.create,
        kwargs={"model": "slow", "messages": [{"role": "user", "content": "x"}]},
    )
    holder.start()
    while slow.hits == 0:
        time.sleep(0.01)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="slow", messages=[{"role": "user", "content": "y"}])
    holder.join()
    assert info.value.code == "queue_full"
    assert int(info.value.response.headers["retry-after"]) >= 1
