"""The planner on real config.json shapes (GQA, MHA, MQA, MLA), checked against hand arithmetic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from turnout.core.launch import launch_command
from turnout.core.planner import GIB, ModelShape, load_shape, plan_model, usable_vram_bytes
from turnout.core.testing import make_config

DATA = Path(__file__).resolve().parents[1] / "data" / "model-configs"
REPO = Path(__file__).resolve().parents[2]
H100_PROFILE = REPO / "examples" / "profile-h100.json"


def shape(name: str) -> ModelShape:
    return ModelShape.from_config(json.loads((DATA / f"{name}.json").read_text()))


@pytest.mark.parametrize(
    ("name", "kv_bytes", "by_hand"),
    [
        ("llama-3.1-8b", 131072, "2 (K,V) x 32 layers x 8 KV heads x 128 dims x 2 bytes"),
        ("mistral-7b-v0.1", 131072, "2 x 32 x 8 x 128 x 2"),
        ("qwen2.5-7b", 57344, "2 x 28 x 4 x 128 x 2"),
        ("phi-3-mini-4k", 393216, "2 x 32 x 32 (no GQA) x 96 x 2"),
        ("falcon-7b", 8192, "2 x 32 x 1 (multi-query) x 64 x 2"),
        ("deepseek-v3", 70272, "61 layers x (512 latent + 64 rope) x 2"),
    ],
)
def test_kv_bytes_per_token(name: str, kv_bytes: int, by_hand: str) -> None:
    assert shape(name).kv_bytes_per_token() == kv_bytes, by_hand


@pytest.mark.parametrize(
    ("name", "billions"),
    [
        ("llama-3.1-8b", 8.03),
        ("mistral-7b-v0.1", 7.24),
        ("qwen2.5-7b", 7.62),
        ("phi-3-mini-4k", 3.82),
        ("falcon-7b", 7.22),
    ],
)
def test_parameter_count_matches_published_size(name: str, billions: float) -> None:
    assert shape(name).params / 1e9 == pytest.approx(billions, abs=0.01)


def test_quantized_weights() -> None:
    llama = shape("llama-3.1-8b")
    assert llama.weight_bytes(None) == pytest.approx(16.06e9, rel=0.01)
    # 4-bit AWQ checkpoints of this model weigh about 5.7 GB: 4-bit layers, 16-bit embeddings.
    assert llama.weight_bytes("awq") == pytest.approx(5.73e9, rel=0.02)
    assert llama.weight_bytes("q4_k_m") < llama.weight_bytes("q8_0") < llama.weight_bytes("fp16")


def test_usable_vram_from_the_recorded_h100() -> None:
    gpu = json.loads(H100_PROFILE.read_text())["probes"]["nvml"]["devices"][0]
    usable = usable_vram_bytes(gpu, 0.92)
    assert usable == int(85520809984 * 0.92) - 503316480, "the driver's reservation comes off"
    gpu["memory"]["free_bytes"] = 20 * GIB
    assert usable_vram_bytes(gpu, 0.92) == 20 * GIB, "never more than is free"


def test_safe_limits_both_ways() -> None:
    llama = shape("llama-3.1-8b")
    usable = 40 * GIB
    plan = plan_model(
        llama, usable_bytes=usable, quantization=None, max_model_len=8192, max_num_seqs=16
    )
    kv_budget = int((usable - llama.weight_bytes(None) - 2 * GIB) * 0.95)
    assert plan.kv_tokens == kv_budget // 131072
    assert plan.safe_max_model_len == min(8192, plan.kv_tokens // 16)
    assert plan.safe_max_num_seqs == plan.kv_tokens // 8192
    assert plan.fits and plan.problems == ()


def test_the_seed_pitfall_a_long_window_does_not_fit_a_batch() -> None:
    plan = plan_model(
        shape("llama-3.1-8b"),
        usable_bytes=60 * GIB,
        quantization=None,
        max_model_len=131072,
        max_num_seqs=16,
    )
    assert plan.fits, "one full-length sequence still fits"
    assert plan.safe_max_num_seqs < 16
    assert "at full length only" in plan.problems[0]
    assert plan.safe_max_model_len < 32768


def test_will_not_start_is_flagged() -> None:
    plan = plan_model(
        shape("llama-3.1-8b"),
        usable_bytes=12 * GIB,
        quantization=None,
        max_model_len=8192,
        max_num_seqs=8,
    )
    assert not plan.fits and plan.problems[0].startswith("will not start")
    plan = plan_model(
        shape("llama-3.1-8b"),
        usable_bytes=20 * GIB,
        quantization=None,
        max_model_len=131072,
        max_num_seqs=1,
    )
    assert not plan.fits and "lower it to" in plan.problems[0]


def test_tensor_parallel_spreads_weights_and_cache() -> None:
    one = plan_model(
        shape("qwen2.5-7b"),
        usable_bytes=20 * GIB,
        quantization=None,
        max_model_len=32768,
        max_num_seqs=8,
    )
    two = plan_model(
        shape("qwen2.5-7b"),
        usable_bytes=20 * GIB,
        quantization=None,
        max_model_len=32768,
        max_num_seqs=8,
        tensor_parallel_size=2,
    )
    assert two.kv_tokens > 2 * one.kv_tokens, "the weights are paid once across two GPUs"


def test_exact_weights_from_the_safetensors_index(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text((DATA / "qwen2.5-7b.json").read_text())
    index = {"metadata": {"total_size": 15231233024}, "weight_map": {}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    loaded, weights = load_shape(tmp_path)
    assert weights == 15231233024 and loaded.kv_heads == 4


def test_launch_commands_per_backend() -> None:
    config = make_config(
        [
            {
                "id": "v",
                "provider": "vllm",
                "path": "/m/v",
                "quantization": "awq",
                "api_base": "http://h:8001/v1",
                "enforce_eager": True,
                "tensor_parallel_size": 2,
            },
            {
                "id": "l",
                "provider": "llamacpp",
                "path": "/m/l.gguf",
                "api_base": "http://h:8002/v1",
            },
            {"id": "o", "provider": "ollama", "served_model_name": "llama3:8b"},
            {"id": "r", "provider": "litellm:anthropic/claude-x"},
        ],
    )
    inference = config.inference
    cmd = {
        m.id: launch_command(m, inference, max_model_len=4096, max_num_seqs=8)
        for m in config.models
    }
    assert cmd["v"] == (
        "vllm serve /m/v --served-model-name v --port 8001 --max-model-len 4096 "
        "--max-num-seqs 8 --gpu-memory-utilization 0.9 --tensor-parallel-size 2 "
        "--quantization awq --enforce-eager"
    )
    assert cmd["l"] == ("llama-server -m /m/l.gguf --alias l --port 8002 -c 32768 -np 8 -ngl 999")
    assert (
        cmd["o"] is not None and "OLLAMA_NUM_PARALLEL=8" in cmd["o"] and "num_ctx 4096" in cmd["o"]
    )
    assert cmd["r"] is None


def test_plan_command_on_the_recorded_h100(tmp_path: Path) -> None:
    model_dir = tmp_path / "llama"
    model_dir.mkdir()
    (model_dir / "config.json").write_text((DATA / "llama-3.1-8b.json").read_text())
    config = tmp_path / "c.yaml"
    config.write_text(
        "inference: {max_num_seqs: 64, gpu_memory_utilization: 0.92}\nmodels:\n"
        f"  - {{id: big, path: {model_dir}, max_model_len: 131072}}\n"
        f"  - {{id: cpp, provider: llamacpp, path: {model_dir}, max_model_len: 32768}}\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "turnout.sidecar.cli",
            "plan",
            "--config",
            str(config),
            "--profile",
            str(H100_PROFILE),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    big, cpp = json.loads(out.stdout)
    assert big["gpu"] == "0: NVIDIA H100 80GB HBM3"
    assert big["kv_bytes_per_token"] == 131072
    assert big["max_model_len"] == 131072 and big["safe_max_num_seqs"] < 64
    assert "--max-model-len 131072" in big["launch"]
    assert cpp["max_model_len"] == cpp["safe_max_model_len"] < 32768, "llama.cpp preallocates"
    assert cpp["route_with_effective_context"] == cpp["max_model_len"]
    assert f"-c {cpp['max_model_len'] * 64}" in cpp["launch"]
