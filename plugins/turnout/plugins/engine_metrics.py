"""Reading an inference engine's own Prometheus metrics into turnout's names.

vLLM, SGLang and llama.cpp each name the same quantities their own way; values over several label
sets (engines, models) are summed.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

# Each engine's name for the same quantities; values of several label sets are summed.
ENGINE_METRICS = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",  # a 0-1 fraction, whatever the name says
    "vllm:prefix_cache_queries_total": "prefix_cache_queries",
    "vllm:prefix_cache_hits_total": "prefix_cache_hits",
    "sglang:num_running_reqs": "running",
    "sglang:num_queue_reqs": "waiting",
    "sglang:token_usage": "kv_cache_usage",
    "llamacpp:requests_processing": "running",
    "llamacpp:requests_deferred": "waiting",
    "llamacpp:kv_cache_usage_ratio": "kv_cache_usage",
}


def engine_load(text: str) -> dict[str, float]:
    load: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = ENGINE_METRICS.get(sample.name)
            if key is not None:
                load[key] = load.get(key, 0.0) + float(sample.value)
    return load
