"""Baseline throughput per endpoint, stored with the profile and used as the latency prior."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from turnout.core import Router, parse_request
from turnout.core.baseline import estimated_latency_s, measure_endpoint
from turnout.core.testing import FakeUpstream, closed_port_api_base, make_config


def test_baseline_through_the_cli_then_routing_by_latency_target(
    openai_upstream: Callable[..., FakeUpstream], tmp_path: Path
) -> None:
    slow = openai_upstream("slow", chunks=6, chunk_gap_s=0.04)
    quick = openai_upstream("quick", chunks=6)
    config_path = tmp_path / "router.config.yaml"
    config_path.write_text(
        "models:\n"
        f"  - {{id: slow, max_model_len: 4096, api_base: '{slow.api_base}'}}\n"
        f"  - {{id: quick, max_model_len: 4096, api_base: '{quick.api_base}'}}\n"
        "routing: {default: slow}\n"
    )
    profile_path = tmp_path / "profile.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "turnout.sidecar.cli",
            "profile",
            "--baseline",
            "--config",
            str(config_path),
            "--out",
            str(profile_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    baselines = json.loads(profile_path.read_text())["baselines"]
    assert set(baselines) == {"slow", "quick"}
    assert set(baselines["slow"]) == {"c1", "c16"}
    assert baselines["slow"]["c16"]["requests"] == 16 and baselines["slow"]["c16"]["errors"] == []
    assert slow.hits == quick.hits == 17
    # 6 tokens over 5 gaps of 40 ms: about 30 tokens/s while decoding.
    assert 15 < baselines["slow"]["c1"]["decode_tokens_per_s"] < 40
    assert (
        baselines["quick"]["c1"]["decode_tokens_per_s"]
        > 4 * baselines["slow"]["c1"]["decode_tokens_per_s"]
    )
    assert "TTFT p50" in result.stdout

    config = make_config(
        [{"id": "slow", "api_base": slow.api_base}, {"id": "quick", "api_base": quick.api_base}],
        routing={"default": "slow"},
        monitoring={"profile": str(profile_path)},
    )
    router = Router(config)

    def order(**hints: Any) -> tuple[str, ...]:
        body = {
            "model": "auto",
            "max_tokens": 64,
            "turnout": hints,
            "messages": [{"role": "user", "content": "hi"}],
        }
        return asyncio.run(router.decide(parse_request("chat", body))).order

    assert order() == ("slow", "quick"), "no target: the policy's order"
    assert order(latency_target_ms=1000) == ("quick", "slow"), "slow would take ~2 s for 64 tokens"
    slow_estimate = estimated_latency_s(baselines["slow"], 64)
    assert slow_estimate is not None and slow_estimate > 1.0
    decision = asyncio.run(
        router.decide(
            parse_request(
                "chat",
                {"model": "auto", "max_tokens": 64, "messages": [{"role": "user", "content": "x"}]},
            )
        )
    )
    assert decision.candidates[0].estimated_latency_ms == round(slow_estimate * 1000, 1)


def test_unreachable_endpoint_reports_errors() -> None:
    config = make_config([{"id": "gone", "api_base": closed_port_api_base()}])

    async def run() -> dict[str, Any]:
        router = Router(config)
        await router.start()
        try:
            return await measure_endpoint(router, "gone", concurrency=2)
        finally:
            await router.close()

    assert asyncio.run(run()) == {
        "concurrency": 2,
        "requests": 2,
        "errors": ["connection_refused", "connection_refused"],
    }


def test_live_measurements_take_over_from_no_data(
    openai_upstream: Callable[..., FakeUpstream],
) -> None:
    slow = openai_upstream("slow", chunks=6, chunk_gap_s=0.04)
    quick = openai_upstream("quick", chunks=6)
    config = make_config(
        [{"id": "slow", "api_base": slow.api_base}, {"id": "quick", "api_base": quick.api_base}],
        routing={"default": "slow"},
    )
    targeted = {
        "model": "auto",
        "max_tokens": 64,
        "turnout": {"latency_target_ms": 1000},
        "messages": [{"role": "user", "content": "hi"}],
    }

    async def run() -> tuple[tuple[str, ...], tuple[str, ...], Any]:
        router = Router(config)
        await router.start()
        try:
            before = (await router.decide(parse_request("chat", targeted))).order
            for model in ("slow", "quick") * 5:
                body = {
                    "model": model,
                    "stream": True,
                    "messages": [{"role": "user", "content": "x"}],
                }
                async for _ in await router.stream(parse_request("chat", body)):
                    pass
            decision = await router.decide(parse_request("chat", targeted))
            return before, decision.order, decision
        finally:
            await router.close()

    before, after, decision = asyncio.run(run())
    assert before == ("slow", "quick"), "no measurements and no baseline: the policy's order"
    assert after == ("quick", "slow"), "measured: slow needs ~2 s for 64 tokens"
    slow_estimate = decision.candidates[0].estimated_latency_ms
    assert slow_estimate is not None and slow_estimate > 1000
