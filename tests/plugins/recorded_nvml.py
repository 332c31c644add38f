"""A recorded NVIDIA device: answers pynvml's calls from what a real H100 answered.

``tests/data/nvml-h100.json`` holds every NVML query of one H100 80GB HBM3 (driver 580), call by
call, idle and with a process holding 20 GiB. This stands in for the ``pynvml`` module (same
function names, arguments, return shapes and exceptions) so the real ``NvmlProbe`` runs on CI,
which has no GPU.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

RECORDING = Path(__file__).resolve().parents[1] / "data" / "nvml-h100.json"


class NVMLError(Exception):
    pass


class RecordedNvml:
    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = 0
    NVML_PCIE_UTIL_TX_BYTES = 0
    NVML_PCIE_UTIL_RX_BYTES = 1
    nvmlMemory_v2 = 33554472

    def __init__(self, *, under_load: bool = False, unsupported: tuple[str, ...] = ()) -> None:
        recording = json.loads(RECORDING.read_text())
        self._system = recording["system"]
        self._device = dict(recording["devices"][0])
        if under_load:
            self._device.update(recording["under_load_20GiB_held_by_torch"])
        for name in unsupported:
            self._device[name] = {"error": "NVMLError_NotSupported"}
        self.calls: list[str] = []

    def _answer(self, table: dict[str, Any], key: str) -> Any:
        self.calls.append(key)
        entry = table[key]
        if "error" in entry:
            raise NVMLError(entry.get("message", entry["error"]))
        return _shape(entry["value"])

    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")

    def nvmlShutdown(self) -> None:
        self.calls.append("nvmlShutdown")

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: int, version: int | None = None) -> Any:
        key = (
            "nvmlDeviceGetMemoryInfo_v2"
            if version == self.nvmlMemory_v2
            else "nvmlDeviceGetMemoryInfo"
        )
        return self._answer(self._device, key)

    def nvmlDeviceGetPcieThroughput(self, handle: int, counter: int) -> Any:
        suffix = "RX" if counter == self.NVML_PCIE_UTIL_RX_BYTES else "TX"
        return self._answer(self._device, f"nvmlDeviceGetPcieThroughput[{suffix}]")

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> Any:
        return self._answer(self._device, "nvmlDeviceGetTemperature")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("nvmlSystem") or name == "nvmlDeviceGetCount":

            def system_query() -> Any:
                return self._answer(self._system, name)

            system_query.__name__ = name
            return system_query
        if name.startswith("nvmlDevice"):

            def device_query(handle: int) -> Any:
                return self._answer(self._device, name)

            device_query.__name__ = name
            return device_query
        raise AttributeError(name)


def _shape(value: Any) -> Any:
    """JSON back into pynvml's shapes: structs as attribute objects, pairs as tuples."""
    if isinstance(value, dict):
        return SimpleNamespace(**value)
    if isinstance(value, list):
        items = [
            ast.literal_eval(v) if isinstance(v, str) and v.startswith("{") else v for v in value
        ]
        if all(isinstance(v, dict) for v in items) and items:
            return [SimpleNamespace(**v) for v in items]
        return tuple(items)
    return value
