"""The ``apple`` hardware probe: chip and unified memory on macOS, from ``sysctl``.

On Apple Silicon the GPU shares system memory; Metal lets one process wire about three quarters of
it by default (MLX follows that limit), which is the budget for weights and KV cache.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Callable, Iterable
from typing import Any

from turnout.core import HardwareProbe, Provider, hookimpl

SYSCTL_KEYS = (
    "machdep.cpu.brand_string",
    "hw.memsize",
    "hw.physicalcpu",
    "hw.perflevel0.physicalcpu",
    "hw.perflevel1.physicalcpu",
    "hw.optional.arm64",
)
GPU_WORKING_SET_SHARE = 0.75

Runner = Callable[[list[str]], str]


def parse_sysctl(text: str) -> dict[str, str]:
    """``key: value`` lines, as ``sysctl key ...`` prints them."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    return values


def _run(args: list[str]) -> str:
    return subprocess.run(args, capture_output=True, text=True, timeout=5, check=False).stdout


class AppleProbe:
    name = "apple"

    def __init__(self, run: Runner = _run, system: str | None = None) -> None:
        self._run = run
        self._system = system or platform.system()

    def probe(self, *, measure: bool = False) -> dict[str, Any]:
        if self._system != "Darwin":
            return {"available": False, "reason": "not macOS"}
        values = parse_sysctl(self._run(["sysctl", *SYSCTL_KEYS]))
        if "hw.memsize" not in values:
            return {"available": False, "reason": "sysctl did not report hw.memsize"}
        memory = int(values["hw.memsize"])
        apple_silicon = values.get("hw.optional.arm64") == "1"
        return {
            "available": True,
            "chip": values.get("machdep.cpu.brand_string"),
            "apple_silicon": apple_silicon,
            "cores": {
                "total": _int(values.get("hw.physicalcpu")),
                "performance": _int(values.get("hw.perflevel0.physicalcpu")),
                "efficiency": _int(values.get("hw.perflevel1.physicalcpu")),
            },
            "unified_memory_bytes": memory if apple_silicon else None,
            "memory_bytes": memory,
            "gpu_working_set_bytes": int(memory * GPU_WORKING_SET_SHARE) if apple_silicon else None,
        }


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


@hookimpl(trylast=True)
def turnout_hardware_probes() -> Iterable[Provider[HardwareProbe]]:
    return [Provider("apple", AppleProbe, "Apple Silicon chip and unified memory (macOS)")]
