"""An independent check of `turnout profile --measure`, run by hand on a GPU host.

It shares no code with turnout's probe: copies are timed with the wall clock around
``torch.cuda.synchronize()`` (not CUDA events), over 1 GiB, averaged rather than best-of, and
memory/PCIe figures come from ``nvidia-smi`` rather than NVML's Python bindings.

    python benchmarks/gpu_bandwidth_check.py
"""

from __future__ import annotations

import json
import subprocess
import time

import torch

NBYTES = 1 << 30
ROUNDS = 10


def timed_gbps(target: torch.Tensor, source: torch.Tensor) -> float:
    target.copy_(source)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(ROUNDS):
        target.copy_(source, non_blocking=True)
    torch.cuda.synchronize()
    return NBYTES * ROUNDS / (time.perf_counter() - started) / 1e9


def main() -> None:
    gpu = torch.empty(NBYTES, dtype=torch.uint8, device="cuda")
    out: dict[str, object] = {}
    for label, pinned in (("pinned", True), ("pageable", False)):
        host = torch.empty(NBYTES, dtype=torch.uint8, pin_memory=pinned)
        out[f"h2d_{label}_gbps"] = round(timed_gbps(gpu, host), 2)
        out[f"d2h_{label}_gbps"] = round(timed_gbps(host, gpu), 2)
    free, total = torch.cuda.mem_get_info()
    out["torch_mem_get_info"] = {"free": free, "total": total}
    fields = (
        "name,memory.total,memory.reserved,memory.used,memory.free,pcie.link.gen.current,"
        "pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max"
    )
    smi = subprocess.run(
        ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
    )
    out["nvidia_smi"] = dict(
        zip(fields.split(","), (v.strip() for v in smi.stdout.split(",")), strict=False)
    )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
