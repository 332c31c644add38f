"""From a model's shape and this host's measured memory to safe backend limits.

A context window is not usable context: every token a sequence holds costs KV-cache bytes in every
layer, so a 128K window can run out of memory at 32K when eight sequences run at once. The planner
computes weight bytes and KV bytes per token from ``config.json``, takes the VRAM the profile
*measured* (free, minus the driver's reservation, within ``gpu_memory_utilization``), and returns
the largest ``max_model_len`` for a given ``max_num_seqs`` and the reverse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIB = 1024**3
# Weight bytes per parameter for the quantized linear layers; embeddings stay 16-bit.
BYTES_PER_PARAM = {
    "fp32": 4.0,
    "float32": 4.0,
    "fp16": 2.0,
    "float16": 2.0,
    "bf16": 2.0,
    "bfloat16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "q8_0": 8.5 / 8,
    # 4-bit with a 16-bit scale and a 4-bit zero point per group of 128 weights.
    "awq": (4 + 20 / 128) / 8,
    "gptq": (4 + 20 / 128) / 8,
    # llama.cpp k-quants, average bits per weight of the mixed types in each preset.
    "q4_k_m": 4.85 / 8,
    "q4_k_s": 4.58 / 8,
    "q5_k_m": 5.69 / 8,
    "q6_k": 6.56 / 8,
    "q4_0": 4.5 / 8,
}
# CUDA context, activations at the batch peak, CUDA graphs: held outside the KV cache.
RUNTIME_OVERHEAD_BYTES = 2 * GIB
# Headroom kept free of KV blocks for allocator fragmentation.
FRAGMENTATION_MARGIN = 0.05
_NOT_GATED = {"falcon", "gpt2", "gpt_neox", "gptj", "bloom", "opt", "mpt", "gpt_bigcode"}


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a transformer that decide its memory."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    gated_mlp: bool
    tied_embeddings: bool
    max_position: int | None
    dtype: str
    experts: int = 1
    kv_latent_dim: int | None = None  # multi-head latent attention (DeepSeek V2/V3)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        """Read a Hugging Face ``config.json`` (Llama, Qwen, Mistral, Phi, Falcon, DeepSeek...)."""
        text = config.get("text_config") or config
        hidden = _first(text, "hidden_size", "n_embd", "d_model")
        heads = _first(text, "num_attention_heads", "n_head", "num_heads")
        kv_heads = text.get("num_key_value_heads") or text.get("n_head_kv")
        if kv_heads is None:
            kv_heads = 1 if text.get("multi_query") else heads
        latent = None
        if text.get("kv_lora_rank"):
            latent = int(text["kv_lora_rank"]) + int(text.get("qk_rope_head_dim", 0))
        return cls(
            layers=_first(text, "num_hidden_layers", "n_layer", "num_layers"),
            hidden=hidden,
            heads=heads,
            kv_heads=int(kv_heads),
            head_dim=int(text.get("head_dim") or hidden // heads),
            intermediate=int(
                text.get("moe_intermediate_size")
                or text.get("intermediate_size")
                or text.get("ffn_hidden_size")
                or 4 * hidden
            ),
            vocab=_first(text, "vocab_size"),
            gated_mlp=text.get("model_type") not in _NOT_GATED,
            tied_embeddings=bool(text.get("tie_word_embeddings", False)),
            max_position=text.get("max_position_embeddings"),
            dtype=str(text.get("torch_dtype") or config.get("torch_dtype") or "bfloat16"),
            experts=int(
                text.get("num_local_experts")
                or text.get("n_routed_experts")
                or text.get("num_experts")
                or 1
            ),
            kv_latent_dim=latent,
        )

    @property
    def linear_params(self) -> int:
        """Parameters of the attention and MLP matrices: the ones quantization shrinks."""
        attention = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        mlp = (3 if self.gated_mlp else 2) * self.hidden * self.intermediate * self.experts
        return self.layers * (attention + mlp)

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def params(self) -> int:
        return self.linear_params + self.embedding_params

    def kv_bytes_per_token(self, kv_dtype_bytes: float = 2.0) -> int:
        """KV-cache bytes one token holds across all layers (K and V, or the MLA latent)."""
        per_layer = self.kv_latent_dim if self.kv_latent_dim else 2 * self.kv_heads * self.head_dim
        return int(self.layers * per_layer * kv_dtype_bytes)

    def weight_bytes(self, quantization: str | None) -> int:
        full = BYTES_PER_PARAM.get(self.dtype.lower(), 2.0)
        linear = BYTES_PER_PARAM.get((quantization or "").lower(), full)
        return int(self.linear_params * linear + self.embedding_params * min(full, 2.0))


@dataclass(frozen=True)
class Plan:
    """Limits for one model on one GPU budget. Token counts are per tensor-parallel group."""

    weight_bytes: int
    kv_bytes_per_token: int
    budget_bytes: int
    kv_budget_bytes: int
    kv_tokens: int
    safe_max_model_len: int
    safe_max_num_seqs: int
    problems: tuple[str, ...]

    @property
    def fits(self) -> bool:
        return self.kv_tokens > 0 and not any(p.startswith("will not start") for p in self.problems)


def usable_vram_bytes(gpu: dict[str, Any], gpu_memory_utilization: float) -> int:
    """What a backend may take on this GPU: its share of the total, but never more than is free.

    NVML's v2 ``free`` already excludes the driver's reservation and other processes' memory.
    """
    memory = gpu["memory"]
    total, free = int(memory["total_bytes"]), int(memory["free_bytes"])
    reserved = int(memory.get("reserved_bytes") or 0)
    return max(0, min(int(total * gpu_memory_utilization) - reserved, free))


def plan_model(
    shape: ModelShape,
    *,
    usable_bytes: int,
    quantization: str | None,
    max_model_len: int,
    max_num_seqs: int,
    tensor_parallel_size: int = 1,
    weight_bytes: int | None = None,
) -> Plan:
    """Safe limits for ``shape`` with ``usable_bytes`` on each of ``tensor_parallel_size`` GPUs."""
    tp = max(1, tensor_parallel_size)
    weights = weight_bytes if weight_bytes is not None else shape.weight_bytes(quantization)
    kv_per_token = shape.kv_bytes_per_token()
    kv_budget = int(
        (usable_bytes * tp - weights - RUNTIME_OVERHEAD_BYTES * tp) * (1 - FRAGMENTATION_MARGIN)
    )
    kv_tokens = max(0, kv_budget // kv_per_token)
    window = min(max_model_len, shape.max_position or max_model_len)
    safe_len = min(window, kv_tokens // max(1, max_num_seqs))
    safe_seqs = kv_tokens // max(1, max_model_len)
    problems: list[str] = []
    if kv_budget <= 0:
        problems.append(
            f"will not start: weights ({weights / GIB:.1f} GiB) and runtime overhead exceed the "
            f"usable {usable_bytes * tp / GIB:.1f} GiB"
        )
    elif kv_tokens < max_model_len:
        problems.append(
            f"will not start: max_model_len {max_model_len} needs {max_model_len} tokens of KV "
            f"cache but only {kv_tokens} fit; lower it to {kv_tokens} or less"
        )
    elif safe_seqs < max_num_seqs:
        problems.append(
            f"at full length only {safe_seqs} of max_num_seqs {max_num_seqs} sequences fit in the "
            f"KV cache (the rest wait or are preempted); for {max_num_seqs} sequences keep prompts "
            f"under {safe_len} tokens"
        )
    if shape.max_position is not None and max_model_len > shape.max_position:
        problems.append(
            f"max_model_len {max_model_len} exceeds the model's max_position_embeddings "
            f"{shape.max_position}"
        )
    return Plan(
        weights,
        kv_per_token,
        usable_bytes,
        kv_budget,
        kv_tokens,
        safe_len,
        safe_seqs,
        tuple(problems),
    )


def load_shape(model_dir: str | Path) -> tuple[ModelShape, int | None]:
    """The shape from ``config.json`` and, when a safetensors index says, the exact weight bytes."""
    folder = Path(model_dir)
    config = json.loads((folder / "config.json").read_text())
    index = folder / "model.safetensors.index.json"
    weight_bytes = None
    if index.exists():
        weight_bytes = json.loads(index.read_text()).get("metadata", {}).get("total_size")
    return ModelShape.from_config(config), weight_bytes


def _first(config: dict[str, Any], *keys: str) -> int:
    for key in keys:
        if config.get(key) is not None:
            return int(config[key])
    raise KeyError(f"config.json has none of {', '.join(keys)}")
