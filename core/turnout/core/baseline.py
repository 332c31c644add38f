"""Baseline throughput of each endpoint: a short prefill + decode at concurrency 1 and 16.

It goes through the endpoint's own dispatcher (no fallback: the endpoint is what is measured) and
streams, so time to first token and decode speed come apart. The result is stored with the
hardware profile and is the prior for latency estimates until live measurements exist.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import TYPE_CHECKING, Any

from turnout.core.errors import UpstreamError
from turnout.core.types import RouteRequest

if TYPE_CHECKING:
    from turnout.core.router import Router

PROMPT_WORDS = 200
MAX_TOKENS = 64
CONCURRENCY = (1, 16)
_SENTENCE = "The committee reviewed the quarterly figures and asked for a summary of the changes. "


def baseline_request(model_id: str, *, prompt_words: int, max_tokens: int) -> RouteRequest:
    words = (_SENTENCE * (prompt_words // 14 + 1)).split()[:prompt_words]
    text = " ".join(words) + "\nSummarise the above in one paragraph."
    messages = ({"role": "user", "content": text},)
    body: dict[str, Any] = {
        "model": model_id,
        "messages": list(messages),
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    return RouteRequest("chat", model_id, body, text, True, max_tokens, messages)


async def _one(router: Router, model_id: str, request: RouteRequest) -> dict[str, float]:
    model = router.models[model_id]
    started = time.perf_counter()
    timeouts = router.runner.timeouts(model_id)
    stream = await router.dispatchers[model_id].open_stream(model, request, timeouts)
    first: float | None = None
    events = 0
    try:
        async for _ in stream:
            events += 1
            if first is None:
                first = time.perf_counter() - started
    finally:
        await stream.aclose()
    total = time.perf_counter() - started
    usage = stream.usage or {}
    out_tokens = int(usage.get("completion_tokens") or events)
    ttft = first if first is not None else total
    return {
        "ttft_s": ttft,
        "total_s": total,
        "prompt_tokens": float(usage.get("prompt_tokens") or 0),
        "completion_tokens": float(out_tokens),
    }


async def measure_endpoint(
    router: Router,
    model_id: str,
    *,
    concurrency: int,
    requests: int | None = None,
    prompt_words: int = PROMPT_WORDS,
    max_tokens: int = MAX_TOKENS,
) -> dict[str, Any]:
    """Run ``requests`` (default: ``concurrency``) streamed requests, ``concurrency`` at a time."""
    total_requests = requests or concurrency
    request = baseline_request(
        router.models[model_id].upstream_model, prompt_words=prompt_words, max_tokens=max_tokens
    )
    gate = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def guarded() -> dict[str, float] | None:
        async with gate:
            try:
                return await _one(router, model_id, request)
            except UpstreamError as exc:
                errors.append(exc.reason)
                return None

    started = time.perf_counter()
    results = [r for r in await asyncio.gather(*(guarded() for _ in range(total_requests))) if r]
    wall = time.perf_counter() - started
    if not results:
        return {"concurrency": concurrency, "requests": total_requests, "errors": errors}
    ttfts = sorted(r["ttft_s"] for r in results)
    decode = [r["completion_tokens"] / max(r["total_s"] - r["ttft_s"], 1e-6) for r in results]
    prefill = [r["prompt_tokens"] / r["ttft_s"] for r in results if r["prompt_tokens"]]
    return {
        "concurrency": concurrency,
        "requests": total_requests,
        "errors": errors,
        "ttft_s": {"p50": _pct(ttfts, 50), "p90": _pct(ttfts, 90)},
        "decode_tokens_per_s": round(statistics.median(decode), 1),
        "prefill_tokens_per_s": round(statistics.median(prefill), 1) if prefill else None,
        "output_tokens_per_s": round(sum(r["completion_tokens"] for r in results) / wall, 1),
    }


async def measure_baselines(router: Router) -> dict[str, Any]:
    """Every endpoint at each concurrency level, one endpoint at a time."""
    out: dict[str, Any] = {}
    for model_id in router.models:
        out[model_id] = {
            f"c{c}": await measure_endpoint(router, model_id, concurrency=c) for c in CONCURRENCY
        }
    return out


def estimated_latency_s(baseline: dict[str, Any], max_tokens: int) -> float | None:
    """TTFT plus ``max_tokens`` at the decode speed measured alone (concurrency 1)."""
    solo = baseline.get("c1") or {}
    ttft, decode = (solo.get("ttft_s") or {}).get("p50"), solo.get("decode_tokens_per_s")
    if ttft is None or not decode:
        return None
    return float(ttft) + max_tokens / float(decode)


def _pct(sorted_values: list[float], pct: int) -> float:
    index = min(len(sorted_values) - 1, round(pct / 100 * (len(sorted_values) - 1)))
    return round(sorted_values[index], 4)
