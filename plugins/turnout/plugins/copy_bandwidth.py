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
    nbytes: int = DEFAULT_BYTES, repeats: int = REPEATS, tool: str | None = None
) -> dict[str, Any] | None:
    """Best-of-``repeats`` GB/s for pinned and pageable copies both ways, on GPU 0, with
    ``tool`` ("torch" or "cupy"; default: the first that is installed and sees a GPU)."""
    for name, measure in (("torch", _with_torch), ("cupy", _with_cupy)):
        if tool in (None, name):
            result = measure(nbytes, repeats)
            if result is not None:
                return result
    return None


def _with_torch(nbytes: int, repeats: int) -> dict[str, Any] | None:
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


def _with_cupy(nbytes: int, repeats: int) -> dict[str, Any] | None:
    try:
        import cupy
        import numpy
    except ImportError:
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return None
    except cupy.cuda.runtime.CUDARuntimeError:
        return None
    to_device, to_host = 1, 2  # cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost
    result: dict[str, Any] = {
        "bytes": nbytes,
        "repeats": repeats,
        "tool": f"cupy {cupy.__version__}",
    }
    gpu = cupy.empty(nbytes, dtype=cupy.uint8)
    pinned = cupy.cuda.alloc_pinned_memory(nbytes)
    pageable = numpy.empty(nbytes, dtype=numpy.uint8)
    for label, host_ptr in (("pinned", pinned.ptr), ("pageable", pageable.ctypes.data)):
        for direction, kind, dst, src in (
            ("h2d", to_device, gpu.data.ptr, host_ptr),
            ("d2h", to_host, host_ptr, gpu.data.ptr),
        ):
            best = float("inf")
            cupy.cuda.runtime.memcpy(dst, src, nbytes, kind)
            for _ in range(repeats):
                start, end = cupy.cuda.Event(), cupy.cuda.Event()
                start.record()
                cupy.cuda.runtime.memcpy(dst, src, nbytes, kind)
                end.record()
                end.synchronize()
                best = min(best, cupy.cuda.get_elapsed_time(start, end) / 1000)
            result[f"{direction}_{label}_gbps"] = round(nbytes / best / 1e9, 2)
    return result
