"""Fault injection: 2,000 requests at concurrency 64 through the sidecar (its own process), one
of three upstreams failing in one way per run. Every request must end in a complete answer or an
explicit OpenAI-shaped error, in bounded time; no output may be duplicated; the attempts turnout
reports must add up to what the upstreams saw; and no slot may be left taken."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import pytest

from turnout.core.testing import FakeUpstream
from turnout.sidecar.testing import SidecarProcess

REQUESTS = 2000
CONCURRENCY = 64
NEVER_SENT = ("breaker_open", "connection_refused")
NEVER_SENT = NEVER_SENT + ("connect_timeout",)
MAYBE_SENT = ("timeout", "connection_error", "stream_broken")
CLIENT_LIMIT_S = 20.0  # a request slower than this counts as a hang
MODES = [
    "refuse",
    "status:500",
    "status:503",
    "status:429",
    "hang",
    "malformed",
    "cut_stream",
    "stall_stream",
]


@dataclass
class Outcome:
    status: int
    endpoint: str | None
    attempts: list[tuple[str, str]]
    text: str
    complete: bool
    error: dict[str, Any] | None
    seconds: float


async def one(session: aiohttp.ClientSession, url: str, i: int) -> Outcome:
    stream = i % 2 == 0
    body = {"model": "auto", "stream": stream, "messages": [{"role": "user", "content": f"#{i}"}]}
    started = time.monotonic()
    async with session.post(url, json=body) as response:
        raw = await response.read()
    attempts = [
        tuple(a.split("=", 1))
        for a in response.headers.get("X-Turnout-Attempts", "").split(", ")
        if a
    ]
    text, complete, error = "", False, None
    if response.status == 200 and stream:
        for event in raw.decode().split("\n\n"):
            if not event.startswith("data: "):
                continue
            payload = event[len("data: ") :]
            if payload == "[DONE]":
                complete = True
                continue
            data = json.loads(payload)
            if "error" in data:
                error = data["error"]
            else:
                text += "".join(c["delta"].get("content") or "" for c in data["choices"])
    elif response.status == 200:
        text, complete = json.loads(raw)["choices"][0]["message"]["content"], True
    else:
        error = json.loads(raw)["error"]
    return Outcome(
        response.status,
        response.headers.get("X-Turnout-Endpoint"),
        attempts,
        text,
        complete,
        error,
        time.monotonic() - started,
    )  # type: ignore[arg-type]


async def load(url: str) -> list[Outcome]:
    gate = asyncio.Semaphore(CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=CLIENT_LIMIT_S)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=CONCURRENCY)
    ) as session:

        async def guarded(i: int) -> Outcome:
            async with gate:
                return await one(session, url, i)

        return await asyncio.gather(*(guarded(i) for i in range(REQUESTS)))


def health(served: SidecarProcess) -> list[dict[str, Any]]:
    return httpx.get(served.url + "/health", timeout=5).json()["endpoints"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", MODES)
def test_every_request_ends_cleanly_under_faults(
    mode: str,
    openai_upstream: Callable[..., FakeUpstream],
    sidecar_process: Callable[..., SidecarProcess],
) -> None:
    failing = openai_upstream("u0", mode="ok", hang_s=2.0)
    healthy = [openai_upstream("u1"), openai_upstream("u2")]
    upstreams = {u.name: u for u in (failing, *healthy)}
    config = {
        "models": [
            {
                "id": name,
                "api_base": u.api_base,
                "max_model_len": 4096,
                "max_concurrency": 32,
                "timeout_ms": 300 if name == "u0" else 5000,
            }
            for name, u in upstreams.items()
        ],
        # "refuse" needs u0 to pass its check and then die; the others recheck often, so that a
        # check that timed out on a busy machine does not keep a healthy upstream out.
        "routing": {
            "default": "u0",
            "fallback_order": ["u1", "u2"],
            "health_check_interval_ms": 3_600_000 if mode == "refuse" else 500,
        },
    }
    served = sidecar_process(config)
    deadline = time.monotonic() + 10
    while not all(e["health"]["status"] == "healthy" for e in health(served)):
        assert time.monotonic() < deadline, health(served)
        time.sleep(0.05)
    if mode == "refuse":
        failing.server.stop()  # dies after the start-up health check passed
    else:
        failing.mode = mode

    outcomes = asyncio.run(load(served.url + "/v1/chat/completions"))

    assert len(outcomes) == REQUESTS
    assert max(o.seconds for o in outcomes) < CLIENT_LIMIT_S / 2, "no request hangs"
    upstream_hits = maybe = 0
    for o in outcomes:
        if o.status == 200:
            words = upstreams[o.endpoint].words()  # type: ignore[index]
            if o.complete:
                assert o.text == "".join(words), "a complete answer, nothing repeated"
            else:
                assert o.error is not None and o.error["code"] == "stream_interrupted"
                assert "".join(words).startswith(o.text) and o.text != "".join(words)
            upstream_hits += 1
        else:
            assert o.error is not None and {"message", "type", "code"} <= set(o.error)
            assert o.status in (429, 503, 504), o.error
        # An attempt stopped by an open breaker or a refused connection reached no upstream; one
        # that timed out may or may not have been read by the server before turnout gave up.
        upstream_hits += sum(1 for _, why in o.attempts if why not in NEVER_SENT + MAYBE_SENT)
        maybe += sum(1 for _, why in o.attempts if why in MAYBE_SENT)
    seen = sum(u.hits for u in upstreams.values())
    tally = Counter(why for o in outcomes for _, why in o.attempts)
    statuses = Counter(o.status for o in outcomes)
    assert upstream_hits <= seen <= upstream_hits + maybe, (
        f"{mode}: {dict(tally)}, answers {dict(statuses)} vs {seen} seen"
    )
    served_ok = sum(1 for o in outcomes if o.status == 200)
    errors = Counter((o.status, (o.error or {}).get("code")) for o in outcomes if o.status != 200)
    assert served_ok >= REQUESTS * 0.99, f"{mode}: {errors}; {dict(tally)}; {health(served)}"

    # The fault really happened, and was handled as its kind demands.
    reasons = [why for o in outcomes for _, why in o.attempts]
    if mode == "refuse":
        assert "connection_refused" in reasons
    elif mode in ("cut_stream", "stall_stream"):
        broken = [o for o in outcomes if o.status == 200 and not o.complete]
        assert broken and all(o.endpoint == "u0" for o in broken), "no fallback after a byte"
    elif mode == "status:429":
        assert reasons.count("rate_limited") >= 1 and "breaker_open" not in reasons, dict(tally)
    state = health(served)
    if mode in ("status:500", "status:503", "hang", "malformed"):
        assert state[0]["breaker"] == "open"
        assert 5 <= failing.hits <= 2 * CONCURRENCY, "once open, the breaker keeps traffic off"

    assert [(e["in_flight"], e["queued"]) for e in state] == [(0, 0)] * 3, "no slot leaked"
