"""Backend launch commands carrying the planner's limits.

Each backend spells the same limits differently: vLLM's ``--max-model-len`` is per sequence,
llama.cpp's ``-c`` is the total over all ``-np`` slots, Ollama takes ``num_ctx`` per model and
``OLLAMA_NUM_PARALLEL`` from the environment.
"""

from __future__ import annotations

import shlex
from urllib.parse import urlsplit

from turnout.core.config import InferenceConfig, ModelConfig


def launch_command(
    model: ModelConfig, inference: InferenceConfig, *, max_model_len: int, max_num_seqs: int
) -> str | None:
    """The command that starts ``model``'s backend with these limits; None for remote providers."""
    provider = inference.engine_of(model)
    weights = model.path or model.upstream_model
    port = str(urlsplit(model.api_base or "").port or 8000)
    quantization = model.quantization or inference.quantization
    if provider == "vllm":
        args = [
            "vllm",
            "serve",
            weights,
            "--served-model-name",
            model.upstream_model,
            "--port",
            port,
            "--max-model-len",
            str(max_model_len),
            "--max-num-seqs",
            str(max_num_seqs),
            "--gpu-memory-utilization",
            str(inference.gpu_memory_utilization),
            "--tensor-parallel-size",
            str(model.tensor_parallel_size),
        ]
        if quantization:
            args += ["--quantization", quantization]
        if model.dtype:
            args += ["--dtype", model.dtype]
        if model.enforce_eager:
            args.append("--enforce-eager")
        return shlex.join(args)
    if provider == "sglang":
        args = [
            "python",
            "-m",
            "sglang.launch_server",
            "--model-path",
            weights,
            "--served-model-name",
            model.upstream_model,
            "--port",
            port,
            "--context-length",
            str(max_model_len),
            "--max-running-requests",
            str(max_num_seqs),
            "--mem-fraction-static",
            str(inference.gpu_memory_utilization),
            "--tp",
            str(model.tensor_parallel_size),
        ]
        return shlex.join(args)
    if provider == "llamacpp":
        args = [
            "llama-server",
            "-m",
            weights,
            "--alias",
            model.upstream_model,
            "--port",
            port,
            "-c",
            str(max_model_len * max_num_seqs),
            "-np",
            str(max_num_seqs),
            "-ngl",
            "999",
        ]
        return shlex.join(args)
    if provider == "ollama":
        return (
            f"OLLAMA_NUM_PARALLEL={max_num_seqs} ollama serve   # and in the Modelfile of "
            f"{model.upstream_model}: PARAMETER num_ctx {max_model_len}"
        )
    if provider == "mlx":
        return shlex.join(["mlx_lm.server", "--model", weights, "--port", port])
    return None
