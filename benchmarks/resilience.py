"""What resilience costs a request, measured side by side in one run.

    python benchmarks/resilience.py

1. Fast fail with an open breaker: requests routed by a config whose preferred endpoint's breaker
   is open, against the same requests routed by a config without that endpoint, interleaved, to a
   zero-delay upstream in another process. The difference is what the open breaker adds.
2. Admission at 64 concurrent: 64 tasks taking and releasing endpoint slots around an
   ``await asyncio.sleep(0)``, against the same tasks without admission.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time

from turnout.core import Router, parse_request
from turnout.core.admission import Admission
from turnout.core.testing import make_config

ROUNDS = 3000
UPSTREAM = r"""
import json, sys
from aiohttp import web
body = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
    "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1,
    "total_tokens": 2}}).encode()
async def chat(request):
    await request.read()
    return web.Response(body=body, content_type="application/json")
async def ok(request):
    return web.Response(text="ok")
app = web.Application()
app.router.add_post("/v1/chat/completions", chat)
app.router.add_get("/health", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def breaker_fast_fail(api_base: str) -> dict[str, float]:
    plain = Router(make_config([{"id": "fast", "api_base": api_base}]))
    guarded = Router(
        make_config(
            [{"id": "dead", "api_base": api_base}, {"id": "fast", "api_base": api_base}],
            routing={"default": "dead"},
            circuit_breaker={"recovery_timeout_ms": 3_600_000},
        )
    )
    guarded.board.breaker("dead").apply("open")
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    for router in (plain, guarded):
        await router.start(background=False)
    timings: dict[str, list[float]] = {"plain": [], "breaker_open": []}
    for i in range(ROUNDS + 200):
        for name, router in (("plain", plain), ("breaker_open", guarded)):
            started = time.perf_counter()
            done = await router.complete(parse_request("chat", body))
            if i >= 200:  # warm-up
                timings[name].append((time.perf_counter() - started) * 1000)
            assert done.endpoint == "fast"
    for router in (plain, guarded):
        await router.close()
    out = {}
    for name, values in timings.items():
        out[f"{name}_p50_ms"] = round(statistics.median(values), 4)
        out[f"{name}_p99_ms"] = round(pct(values, 0.99), 4)
    out["added_p50_ms"] = round(out["breaker_open_p50_ms"] - out["plain_p50_ms"], 4)
    out["added_p99_ms"] = round(out["breaker_open_p99_ms"] - out["plain_p99_ms"], 4)
    return out


async def admission_overhead() -> dict[str, float]:
    admission = Admission(make_config([{"id": "e", "max_concurrency": 64}]))
    per_task = 2000

    async def with_admission() -> None:
        for _ in range(per_task):
            endpoint = await admission.acquire(["e"], time.monotonic() + 10)
            await asyncio.sleep(0)
            admission.release(endpoint, 0.001)

    async def without() -> None:
        for _ in range(per_task):
            await asyncio.sleep(0)

    results = {}
    for name, work in (("without", without), ("with", with_admission)) * 2:
        started = time.perf_counter()
        await asyncio.gather(*(work() for _ in range(64)))
        results[name] = (time.perf_counter() - started) / (64 * per_task) * 1000
    return {"admission_added_ms_per_request": round(results["with"] - results["without"], 5)}


async def main() -> None:
    port = free_port()
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(port)])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        api_base = f"http://127.0.0.1:{port}/v1"
        print(
            json.dumps(
                {**await breaker_fast_fail(api_base), **await admission_overhead()}, indent=2
            )
        )
    finally:
        upstream.terminate()


if __name__ == "__main__":
    asyncio.run(main())
