"""Fallback before the first byte, and honest failure after it, over real loopback HTTP."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import openai
import pytest

from turnout.core.testing import FakeUpstream, closed_port_api_base, make_config
from turnout.sidecar.testing import ServedApp


@pytest.fixture
def chain(
    openai_upstream: Callable[..., FakeUpstream],
    serve_sidecar: Callable[..., ServedApp],
    openai_client: Callable[[str], openai.OpenAI],
) -> Callable[..., tuple[FakeUpstream, FakeUpstream, openai.OpenAI]]:
    """A preferred upstream (set to fail in some way) and a healthy next one."""

    def build(mode: str, timeout_ms: int = 15000) -> tuple[FakeUpstream, FakeUpstream, Any]:
        """``timeout_ms`` is each attempt's limit; the request's deadline stays 15 s."""
        first = openai_upstream("first", mode=mode, hang_s=3.0)
        second = openai_upstream("second")
        config = make_config(
            [
                {"id": "first", "api_base": first.api_base, "timeout_ms": timeout_ms},
                {"id": "second", "api_base": second.api_base, "timeout_ms": timeout_ms},
            ],
            routing={"default": "first", "fallback_order": ["first", "second"]},
        )
        client = openai_client(serve_sidecar(config).url)
        return first, second, client

    return build


_BEFORE_FIRST_BYTE = [
    ("status:503", "http_503"),
    ("status:500", "http_500"),
    ("status:429", "rate_limited"),
    ("hang", "timeout"),
]


@pytest.mark.parametrize(
    ("mode", "reason", "stream"),
    [(m, r, s) for m, r in _BEFORE_FIRST_BYTE for s in (False, True)]
    + [("malformed", "malformed_response", False)],
)
def test_failure_before_first_byte_falls_back_once(
    chain: Callable[..., Any], mode: str, reason: str, stream: bool
) -> None:
    first, second, client = chain(mode, timeout_ms=500)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hi"}], stream=stream
    )
    assert raw.headers["x-turnout-endpoint"] == "second"
    assert raw.headers["x-turnout-fallbacks"] == "1"
    assert raw.headers["x-turnout-attempts"] == f"first={reason}"
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        text = raw.parse().choices[0].message.content
    assert text == "".join(second.words())
    assert first.hits == 1, "the failing upstream is tried exactly once"
    assert second.hits == 1


def test_endpoint_that_died_between_health_checks_falls_back(
    openai_upstream: Callable[..., FakeUpstream],
    serve_sidecar: Callable[..., ServedApp],
    openai_client: Callable[[str], openai.OpenAI],
) -> None:
    dying, second = openai_upstream("dying"), openai_upstream("second")
    config = make_config(
        [
            {"id": "dying", "api_base": dying.api_base},
            {"id": "second", "api_base": second.api_base},
        ],
        routing={"default": "dying", "health_check_interval_ms": 3_600_000},
    )
    served = serve_sidecar(config)
    wait_until_checked(served.url)
    dying.server.stop()
    client = openai_client(served.url)
    raw = client.chat.completions.with_raw_response.create(
        model="dying", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-turnout-endpoint"] == "second"
    assert raw.headers["x-turnout-attempts"] == "dying=connection_refused"


def test_endpoint_found_dead_by_health_check_is_not_tried(
    openai_upstream: Callable[..., FakeUpstream],
    serve_sidecar: Callable[..., ServedApp],
    openai_client: Callable[[str], openai.OpenAI],
) -> None:
    second = openai_upstream("second")
    config = make_config(
        [
            {"id": "dead", "api_base": closed_port_api_base()},
            {"id": "second", "api_base": second.api_base},
        ],
        routing={"default": "dead"},
    )
    served = serve_sidecar(config)
    wait_until_checked(served.url)
    client = openai_client(served.url)
    raw = client.chat.completions.with_raw_response.create(
        model="dead", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-turnout-endpoint"] == "second"
    assert raw.headers["x-turnout-fallbacks"] == "0", "not tried: the health check ruled it out"


def wait_until_checked(url: str) -> dict[str, Any]:
    for _ in range(200):
        with urllib.request.urlopen(url + "/health", timeout=5) as response:
            health = json.load(response)
        if all(e["health"]["status"] != "unknown" for e in health["endpoints"]):
            return health  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError("health checks did not run")


def test_client_error_from_backend_is_not_retried(chain: Callable[..., Any]) -> None:
    first, second, client = chain("status:400")
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
    assert "first says 400" in info.value.message, "the backend's own error is passed on"
    assert first.hits == 1 and second.hits == 0


@pytest.mark.parametrize("mode", ["cut_stream", "stall_stream"])
def test_failure_after_first_byte_ends_stream_with_error_and_no_duplicates(
    chain: Callable[..., Any], mode: str
) -> None:
    first, second, client = chain(mode, timeout_ms=500)
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            received.append(chunk.choices[0].delta.content or "")
    assert received == first.words()[:2], "what was sent stays; nothing is repeated"
    assert "mid-stream" in info.value.message
    assert second.hits == 0, "no fallback after the first byte: it would duplicate output"


def test_each_endpoint_tried_at_most_once_when_all_fail(
    openai_upstream: Callable[..., FakeUpstream],
    serve_sidecar: Callable[..., ServedApp],
    openai_client: Callable[[str], openai.OpenAI],
) -> None:
    ups = [openai_upstream(f"u{i}", mode="status:503") for i in range(3)]
    config = make_config(
        [{"id": u.name, "api_base": u.api_base} for u in ups],
        routing={"default": "u0", "fallback_order": ["u2", "u0", "u1", "u2"]},
    )
    client = openai_client(serve_sidecar(config).url)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503
    assert [u.hits for u in ups] == [1, 1, 1]
