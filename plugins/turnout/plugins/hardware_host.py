"""The ``host`` hardware probe: CPU model, cores, the instruction sets inference cares about, RAM.

CPU-side inference (llama.cpp, vLLM's CPU backend) runs several times faster with AVX-512 or AMX
than with AVX2 alone, so the flags are part of the profile.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

from turnout.core import HardwareProbe, Provider, hookimpl

FLAGS_THAT_MATTER = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "sve",
    "sve2",
)


def parse_cpuinfo(text: str) -> tuple[str | None, list[str]]:
    """The CPU model name and the inference-relevant flags from /proc/cpuinfo's text."""
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and model is None:
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return model, [f for f in FLAGS_THAT_MATTER if f in flags]


class HostProbe:
    name = "host"

    def __init__(self, cpuinfo_path: str = "/proc/cpuinfo") -> None:
        self._cpuinfo = Path(cpuinfo_path)

    def probe(self, *, measure: bool = False) -> dict[str, Any]:
        try:
            model, flags = parse_cpuinfo(self._cpuinfo.read_text())
        except OSError:
            model, flags = platform.processor() or None, []
        memory = psutil.virtual_memory()
        return {
            "cpu_model": model,
            "machine": platform.machine(),
            "logical_cores": os.cpu_count(),
            "physical_cores": psutil.cpu_count(logical=False),
            "usable_cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "flags": flags,
            "memory_bytes": {"total": memory.total, "available": memory.available},
        }


@hookimpl(trylast=True)
def turnout_hardware_probes() -> Iterable[Provider[HardwareProbe]]:
    return [Provider("host", HostProbe, "CPU model, cores, instruction sets, RAM")]
