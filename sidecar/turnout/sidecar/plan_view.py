"""``turnout plan``: per model, what fits on this host's GPU and the command that launches it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from turnout.core import TurnoutConfig
from turnout.core.launch import launch_command
from turnout.core.planner import GIB, load_shape, plan_model, usable_vram_bytes

# These allocate every slot's full context up front (vLLM and SGLang page it on demand), so the
# per-sequence context must be what fits when all slots are full.
FIXED_SLOT_CONTEXT = ("llamacpp", "ollama")
LOCAL = ("vllm", "sglang", "llamacpp", "ollama", "mlx")


def plan_config(config: TurnoutConfig, profile: dict[str, Any]) -> list[dict[str, Any]]:
    """Per model: limits, problems, launch command, and the context turnout will route with."""
    gpus = (profile.get("probes", {}).get("nvml") or {}).get("devices") or []
    gpu = gpus[0] if gpus else None
    inference = config.inference
    seqs = inference.max_num_seqs or 1
    entries = []
    for model in config.models:
        provider = inference.engine_of(model)
        entry: dict[str, Any] = {"id": model.id, "provider": provider}
        max_len, problems = model.max_model_len, []
        shape_dir = Path(model.path) if model.path else None
        if provider not in LOCAL:
            problems.append("served elsewhere: nothing to plan on this host")
        elif gpu is None:
            problems.append("no GPU in the profile: limits are the config's, not checked")
        elif shape_dir is None or not (shape_dir / "config.json").exists():
            problems.append(f"no config.json under path '{model.path}': limits not checked")
        else:
            shape, exact_weights = load_shape(shape_dir)
            usable = usable_vram_bytes(gpu, inference.gpu_memory_utilization)
            quantization = model.quantization or inference.quantization
            plan = plan_model(
                shape,
                usable_bytes=usable,
                quantization=quantization,
                max_model_len=model.max_model_len,
                max_num_seqs=seqs,
                tensor_parallel_size=model.tensor_parallel_size,
                weight_bytes=exact_weights,
            )
            fits = plan.safe_max_model_len if provider in FIXED_SLOT_CONTEXT else plan.kv_tokens
            max_len = max(1, min(model.max_model_len, fits))
            problems.extend(plan.problems)
            if provider in FIXED_SLOT_CONTEXT and max_len < model.max_model_len:
                problems.append(
                    f"{provider} allocates all {seqs} slots up front: context per slot lowered "
                    f"to {max_len}"
                )
            entry.update(
                gpu=f"{gpu['index']}: {gpu['name']}",
                weight_gib=round(plan.weight_bytes / GIB, 2),
                kv_bytes_per_token=plan.kv_bytes_per_token,
                usable_vram_gib=round(usable / GIB, 2),
                kv_cache_gib=round(plan.kv_budget_bytes / GIB, 2),
                kv_cache_tokens=plan.kv_tokens,
                safe_max_model_len=plan.safe_max_model_len,
                safe_max_num_seqs=plan.safe_max_num_seqs,
            )
        entry["max_num_seqs"] = seqs
        entry["configured_max_model_len"] = model.max_model_len
        entry["max_model_len"] = max_len
        entry["route_with_effective_context"] = min(model.context_limit, max_len)
        entry["problems"] = problems
        entry["launch"] = launch_command(model, inference, max_model_len=max_len, max_num_seqs=seqs)
        entries.append(entry)
    return entries


def render_plan(entries: list[dict[str, Any]]) -> str:
    lines = []
    for e in entries:
        lines.append(f"{e['id']} ({e['provider']})" + (f" on GPU {e['gpu']}" if "gpu" in e else ""))
        if "kv_bytes_per_token" in e:
            lines.append(
                f"  weights {e['weight_gib']} GiB; KV {e['kv_bytes_per_token'] / 1024:.0f} KiB "
                f"per token; usable VRAM {e['usable_vram_gib']} GiB -> KV cache "
                f"{e['kv_cache_gib']} GiB = {e['kv_cache_tokens']:,} tokens"
            )
            lines.append(
                f"  at max_num_seqs {e['max_num_seqs']}: safe max_model_len "
                f"{e['safe_max_model_len']:,}; at max_model_len "
                f"{e['configured_max_model_len']:,}: safe max_num_seqs {e['safe_max_num_seqs']}"
            )
        for problem in e["problems"]:
            lines.append(f"  ! {problem}")
        lines.append(f"  routes with effective_context {e['route_with_effective_context']:,}")
        if e["launch"]:
            lines.append(f"  launch: {e['launch']}")
    return "\n".join(lines)
