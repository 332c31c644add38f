"""Resilience through the sidecar over loopback: breakers, 429 cool-downs, health, admission
queues, deadlines, client disconnects, retries, and breaker state shared through real Redis."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from turnout.core.testing import FakeUpstream, RedisServer, make_config
from turnout.sidecar.testing import ServedApp

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


def health(served: ServedApp) -> dict[str, Any]:
    return {e["id"]: e for e in httpx.get(served.url + "/health", timeout=5).json()["endpoints"]}


def post(served: ServedApp, body: dict[str, Any] = CHAT, **options: Any) -> httpx.Response:
    options.setdefault("timeout", 10)
    return httpx.post(served.url + "/v1/chat/completions", json=body, **options)


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def pair(
    openai_upstream: Callable[..., FakeUpstream], serve_sidecar: Callable[..., ServedApp]
) -> Callable[..., tuple[FakeUpstream, FakeUpstream, ServedApp]]:
    def build(**sections: Any) -> tuple[FakeUpstream, FakeUpstream, ServedApp]:
        flaky, backup = openai_upstream("flaky"), openai_upstream("backup")
        routing = {
            "default": "flaky",
            "fallback_order": ["flaky", "backup"],
            **sections.pop("routing", {}),
        }
        config = make_config(
            [
                {"id": "flaky", "api_base": flaky.api_base, **sections.pop("flaky", {})},
                {"id": "backup", "api_base": backup.api_base},
            ],
            routing=routing,
            **sections,
        )
        return flaky, backup, serve_sidecar(config)

    return build


def test_breaker_opens_fails_fast_half_opens_and_closes(pair: Callable[..., Any]) -> None:
    flaky, backup, served = pair(
        circuit_breaker={"failure_threshold": 3, "recovery_timeout_ms": 400, "success_threshold": 2}
    )
    flaky.mode = "status:500"
    for _ in range(3):
        response = post(served)
        assert response.status_code == 200 and response.headers["x-turnout-endpoint"] == "backup"
    assert flaky.hits == 3
    assert health(served)["flaky"]["breaker"] == "open"

    response = post(served)
    assert response.headers["x-turnout-endpoint"] == "backup"
    assert flaky.hits == 3, "open: no call reaches the endpoint"
    route = httpx.post(served.url + "/v1/route", json=CHAT, timeout=5).json()
    assert route["candidates"][0]["dropped"] == "circuit breaker open"

    wait_for(lambda: health(served)["flaky"]["breaker"] == "half-open")
    flaky.mode = "ok"
    assert post(served).headers["x-turnout-endpoint"] == "flaky"
    assert health(served)["flaky"]["breaker"] == "half-open", "one success of the two needed"
    assert post(served).headers["x-turnout-endpoint"] == "flaky"
    assert health(served)["flaky"]["breaker"] == "closed"


def test_overloaded_endpoint_is_routed_around_for_its_retry_after(pair: Callable[..., Any]) -> None:
    flaky, backup, served = pair(circuit_breaker={"failure_threshold": 1})
    flaky.mode = "status:429"  # answers Retry-After: 2
    assert post(served).headers["x-turnout-attempts"] == "flaky=rate_limited"
    state = health(served)["flaky"]
    assert state["breaker"] == "closed", "overloaded is not broken"
    assert 1.0 < state["overloaded_for_s"] <= 2.0
    assert state["degraded"].startswith("overloaded (429)"), "/health and metrics agree"
    for _ in range(3):
        assert post(served).headers["x-turnout-endpoint"] == "backup"
    assert flaky.hits == 1, "behind the others while it cools down"


def test_request_errors_do_not_open_the_breaker(pair: Callable[..., Any]) -> None:
    flaky, backup, served = pair(circuit_breaker={"failure_threshold": 2})
    flaky.mode = "status:400"
    for _ in range(4):
        assert post(served).status_code == 400
    assert health(served)["flaky"]["breaker"] == "closed"
    assert backup.hits == 0


def test_a_loading_backend_is_not_routed_to_until_it_is_ready(pair: Callable[..., Any]) -> None:
    flaky, backup, served = pair(routing={"health_check_interval_ms": 50})
    flaky.mode = "loading"
    wait_for(lambda: health(served)["flaky"]["health"]["status"] == "unhealthy")
    state = health(served)["flaky"]
    assert state["health"]["detail"] == "loading (HTTP 503)" and not state["routable"]
    assert state["breaker"] == "closed", "active health and passive breaker are kept apart"
    hits = flaky.hits
    assert post(served).headers["x-turnout-endpoint"] == "backup"
    assert flaky.hits == hits
    flaky.mode = "ok"
    wait_for(lambda: health(served)["flaky"]["routable"])
    assert post(served).headers["x-turnout-endpoint"] == "flaky"


def test_full_queues_answer_429_with_retry_after(
    openai_upstream: Callable[..., FakeUpstream], serve_sidecar: Callable[..., ServedApp]
) -> None:
    slow = openai_upstream("slow", mode="hang", hang_s=1.0)
    config = make_config(
        [{"id": "slow", "api_base": slow.api_base, "max_concurrency": 1, "queue_size": 1}]
    )
    served = serve_sidecar(config)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            first = asyncio.create_task(client.post("/v1/chat/completions", json=CHAT))
            await asyncio.sleep(0.2)
            second = asyncio.create_task(client.post("/v1/chat/completions", json=CHAT))
            await asyncio.sleep(0.2)
            third = await client.post("/v1/chat/completions", json=CHAT)
            return [await first, await second, third]

    first, second, third = asyncio.run(burst())
    assert (first.status_code, second.status_code) == (200, 200), "one ran, one waited its turn"
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "queue_full"
    assert int(third.headers["retry-after"]) >= 1
    assert slow.hits == 2, "the rejected request never reached the backend"


def test_deadline_passing_in_the_queue_is_504(
    openai_upstream: Callable[..., FakeUpstream], serve_sidecar: Callable[..., ServedApp]
) -> None:
    slow = openai_upstream("slow", mode="hang", hang_s=1.5)
    config = make_config([{"id": "slow", "api_base": slow.api_base, "max_concurrency": 1}])
    served = serve_sidecar(config)

    async def run() -> tuple[httpx.Response, httpx.Response, float]:
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            holder = asyncio.create_task(client.post("/v1/chat/completions", json=CHAT))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            waiter = await client.post(
                "/v1/chat/completions", json=CHAT, headers={"X-Turnout-Timeout-Ms": "300"}
            )
            waited = time.monotonic() - started
            return await holder, waiter, waited

    holder, waiter, waited = asyncio.run(run())
    assert holder.status_code == 200
    assert waiter.status_code == 504 and waiter.json()["error"]["code"] == "deadline_exceeded"
    assert 0.25 < waited < 1.0
    assert slow.hits == 1


class WatchfulUpstream:
    """An aiohttp server whose handler notices when turnout drops the connection."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.disconnected = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)

    async def _serve(self) -> int:
        async def slow(request: web.Request) -> web.Response:
            self.started.set()
            for _ in range(200):
                await asyncio.sleep(0.02)
                if request.transport is None or request.transport.is_closing():
                    self.disconnected.set()
                    break
            return web.json_response({"choices": []})

        async def ok(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/v1/chat/completions", slow)
        app.router.add_get("/health", ok)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def watchful() -> Iterator[WatchfulUpstream]:
    upstream = WatchfulUpstream()
    yield upstream
    upstream.stop()


def test_client_disconnect_cancels_the_upstream_request_and_frees_the_slot(
    watchful: WatchfulUpstream, serve_sidecar: Callable[..., ServedApp]
) -> None:
    config = make_config(
        [{"id": "w", "api_base": f"http://127.0.0.1:{watchful.port}/v1", "max_concurrency": 1}]
    )
    served = serve_sidecar(config)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(served.url + "/v1/chat/completions", json=CHAT, timeout=0.5)
    assert watchful.started.is_set()
    assert watchful.disconnected.wait(3), "turnout closed its upstream connection"
    wait_for(lambda: health(served)["w"]["in_flight"] == 0)


def test_client_disconnect_while_queued_leaves_the_queue(
    openai_upstream: Callable[..., FakeUpstream], serve_sidecar: Callable[..., ServedApp]
) -> None:
    slow = openai_upstream("slow", mode="hang", hang_s=1.5)
    config = make_config([{"id": "slow", "api_base": slow.api_base, "max_concurrency": 1}])
    served = serve_sidecar(config)
    holder = threading.Thread(target=post, args=(served,))
    holder.start()
    wait_for(lambda: health(served)["slow"]["in_flight"] == 1)
    with pytest.raises(httpx.ReadTimeout):
        post(served, timeout=0.3)
    wait_for(lambda: health(served)["slow"]["queued"] == 0)
    holder.join()
    assert slow.hits == 1, "the request that left the queue never reached the backend"


def test_retries_make_further_passes_with_backoff(
    openai_upstream: Callable[..., FakeUpstream], serve_sidecar: Callable[..., ServedApp]
) -> None:
    broken = openai_upstream("broken", mode="status:503")
    config = make_config(
        [{"id": "broken", "api_base": broken.api_base}],
        routing={"retries": 2, "retry_backoff_ms": 20},
        circuit_breaker={"failure_threshold": 10},
    )
    response = post(serve_sidecar(config))
    assert response.status_code == 503
    assert broken.hits == 3, "one pass and two retries"
    assert response.json()["error"]["message"].count("broken: http_503") == 3


def test_replicas_share_breaker_state_and_survive_losing_redis(
    openai_upstream: Callable[..., FakeUpstream],
    serve_sidecar: Callable[..., ServedApp],
    redis_server: RedisServer,
) -> None:
    flaky, backup = openai_upstream("flaky", mode="status:500"), openai_upstream("backup")
    config = make_config(
        [
            {"id": "flaky", "api_base": flaky.api_base},
            {"id": "backup", "api_base": backup.api_base},
        ],
        routing={"default": "flaky"},
        circuit_breaker={
            "failure_threshold": 2,
            "recovery_timeout_ms": 60_000,
            "storage": redis_server.url,
        },
    )
    one, two = serve_sidecar(config), serve_sidecar(config)
    shared = httpx.get(one.url + "/health", timeout=5).json()["shared_state"]
    wait_for(lambda: httpx.get(one.url + "/health").json()["shared_state"]["connected"])
    assert shared["backend"] == "redis"
    post(one)
    post(one)
    assert health(one)["flaky"]["breaker"] == "open"
    wait_for(lambda: health(two)["flaky"]["breaker"] == "open")
    hits = flaky.hits
    assert post(two).headers["x-turnout-endpoint"] == "backup"
    assert flaky.hits == hits, "replica two learned of the open breaker without trying"

    redis_server.stop()
    for replica in (one, two):
        wait_for(
            lambda r=replica: not httpx.get(r.url + "/health").json()["shared_state"]["connected"]
        )
        started = time.monotonic()
        response = post(replica)
        assert response.status_code == 200
        assert time.monotonic() - started < 1.0, "a dead Redis never blocks a request"
    state = httpx.get(two.url + "/health").json()["shared_state"]
    assert state["last_error"], "the loss is said, not hidden"
    assert json.dumps(state).count("redis") >= 1


def test_client_leaving_mid_stream_closes_the_upstream_stream(
    openai_upstream: Callable[..., FakeUpstream], serve_sidecar: Callable[..., ServedApp]
) -> None:
    slow = openai_upstream("slow", chunks=50, chunk_gap_s=0.1)
    config = make_config([{"id": "slow", "api_base": slow.api_base, "max_concurrency": 1}])
    served = serve_sidecar(config)
    body = {**CHAT, "stream": True}
    with httpx.stream("POST", served.url + "/v1/chat/completions", json=body, timeout=10) as r:
        lines = r.iter_lines()  # kept: dropping it would close the response
        assert next(lines).startswith("data: ")
        assert health(served)["slow"]["in_flight"] == 1
    # The client is gone one event into a five-second stream.
    wait_for(lambda: health(served)["slow"]["in_flight"] == 0, seconds=3)
    started = time.monotonic()
    assert post(served).status_code == 200, "the slot is free for the next request"
    assert time.monotonic() - started < 4, "it did not wait for the abandoned stream to finish"
