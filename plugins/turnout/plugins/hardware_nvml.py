"""The ``nvml`` hardware probe: what the NVIDIA driver says about each GPU, and what a copy test
measures beside it.

Depends on nvidia-ml-py (``import pynvml``). No library, no driver or no GPU is an answer, not a
crash: the probe returns ``{"available": false, "reason": ...}``. Queries a GPU does not support
are listed under ``not_supported``. ``nvmlDeviceGetPcieThroughput`` samples for ~20 ms per
direction, so it runs only when measuring, never on a request path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from turnout.core import HardwareProbe, Provider, hookimpl
from turnout.plugins.copy_bandwidth import measure_copy_bandwidth

ARCHITECTURES = {
    2: "kepler",
    3: "maxwell",
    4: "pascal",
    5: "volta",
    6: "turing",
    7: "ampere",
    8: "ada",
    9: "hopper",
    10: "blackwell",
}
# Per-lane transfer rate (GT/s) and line-code efficiency of each PCIe generation.
PCIE_LANE_GT = {1: 2.5, 2: 5.0, 3: 8.0, 4: 16.0, 5: 32.0, 6: 64.0}
PCIE_ENCODING = {1: 8 / 10, 2: 8 / 10, 3: 128 / 130, 4: 128 / 130, 5: 128 / 130, 6: 242 / 256}


def pcie_spec_gbps(generation: int | None, width: int | None) -> float | None:
    """Bandwidth one direction of a link can carry by the spec, in GB/s (10^9 bytes)."""
    if generation not in PCIE_LANE_GT or not width:
        return None
    return round(PCIE_LANE_GT[generation] * width * PCIE_ENCODING[generation] / 8, 2)


class NvmlProbe:
    name = "nvml"

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml

    def probe(self, *, measure: bool = False) -> dict[str, Any]:
        nvml = self._nvml or _import_pynvml()
        if nvml is None:
            return {"available": False, "reason": "nvidia-ml-py is not installed"}
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            return {"available": False, "reason": f"NVML did not start: {exc}"}
        try:
            count = nvml.nvmlDeviceGetCount()
            devices = [_Device(nvml, i).read(measure) for i in range(count)]
            driver = _ask(nvml, [], nvml.nvmlSystemGetDriverVersion)
            cuda = _ask(nvml, [], nvml.nvmlSystemGetCudaDriverVersion_v2)
        finally:
            nvml.nvmlShutdown()
        if measure and devices:
            measured = measure_copy_bandwidth()
            for device in devices:
                _add_measured(device, measured)
        return {
            "available": count > 0,
            "reason": None if count else "no GPU found",
            "driver_version": driver,
            "cuda_driver_version": _cuda_version(cuda),
            "devices": devices,
        }

    def memory_sample(self) -> list[dict[str, Any]]:
        """Memory of every GPU: a few NVML calls (~0.1 ms each), for the live VRAM watch."""
        nvml = self._nvml or _import_pynvml()
        if nvml is None:
            return []
        try:
            nvml.nvmlInit()
        except nvml.NVMLError:
            return []
        try:
            samples = []
            for index in range(nvml.nvmlDeviceGetCount()):
                memory = _Device(nvml, index)._memory()
                if memory is not None:
                    samples.append({"index": index, **memory})
            return samples
        finally:
            nvml.nvmlShutdown()


class _Device:
    def __init__(self, nvml: Any, index: int) -> None:
        self.nvml = nvml
        self.index = index
        self.handle = nvml.nvmlDeviceGetHandleByIndex(index)
        self.not_supported: list[str] = []

    def ask(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return _ask(self.nvml, self.not_supported, fn, self.handle, *args, **kwargs)

    def ask_v2_memory(self) -> Any:
        version = getattr(self.nvml, "nvmlMemory_v2", None)
        if version is None:
            return None
        answer = _ask(
            self.nvml, [], self.nvml.nvmlDeviceGetMemoryInfo, self.handle, version=version
        )
        if answer is None:
            self.not_supported.append("nvmlDeviceGetMemoryInfo_v2")
        return answer

    def read(self, measure: bool) -> dict[str, Any]:
        n = self.nvml
        arch = self.ask(n.nvmlDeviceGetArchitecture)
        capability = self.ask(n.nvmlDeviceGetCudaComputeCapability)
        gen = self.ask(n.nvmlDeviceGetCurrPcieLinkGeneration)
        gen_max = self.ask(n.nvmlDeviceGetMaxPcieLinkGeneration)
        width = self.ask(n.nvmlDeviceGetCurrPcieLinkWidth)
        width_max = self.ask(n.nvmlDeviceGetMaxPcieLinkWidth)
        power = self.ask(n.nvmlDeviceGetPowerUsage)
        limit = self.ask(n.nvmlDeviceGetEnforcedPowerLimit)
        ecc = self.ask(n.nvmlDeviceGetEccMode)
        mig = self.ask(n.nvmlDeviceGetMigMode)
        util = self.ask(n.nvmlDeviceGetUtilizationRates)
        info: dict[str, Any] = {
            "index": self.index,
            "name": _text(self.ask(n.nvmlDeviceGetName)),
            "uuid": _text(self.ask(n.nvmlDeviceGetUUID)),
            "architecture": ARCHITECTURES.get(arch, f"unknown ({arch})") if arch else None,
            "compute_capability": f"{capability[0]}.{capability[1]}" if capability else None,
            "memory": self._memory(),
            "bar1": self._bar1(),
            "pcie": {
                "generation": {"current": gen, "max": gen_max},
                "width": {"current": width, "max": width_max},
                "spec_gbps_per_direction": {
                    "current": pcie_spec_gbps(gen, width),
                    "max": pcie_spec_gbps(gen_max, width_max),
                },
                "replay_counter": self.ask(n.nvmlDeviceGetPcieReplayCounter),
            },
            "utilization_percent": {"gpu": util.gpu, "memory": util.memory} if util else None,
            "power_watts": {"usage": _milli(power), "limit": _milli(limit)},
            "temperature_c": self.ask(n.nvmlDeviceGetTemperature, n.NVML_TEMPERATURE_GPU),
            "ecc_enabled": {"current": bool(ecc[0]), "pending": bool(ecc[1])} if ecc else None,
            "mig_enabled": {"current": bool(mig[0]), "pending": bool(mig[1])} if mig else None,
            "processes": self._processes(),
        }
        if measure:
            rx = self.ask(n.nvmlDeviceGetPcieThroughput, n.NVML_PCIE_UTIL_RX_BYTES)
            tx = self.ask(n.nvmlDeviceGetPcieThroughput, n.NVML_PCIE_UTIL_TX_BYTES)
            info["pcie"]["throughput_kbps"] = {"rx": rx, "tx": tx}
        info["not_supported"] = self.not_supported
        return info

    def _memory(self) -> dict[str, Any] | None:
        n = self.nvml
        v2 = self.ask_v2_memory()
        if v2 is not None and hasattr(v2, "reserved"):
            return {
                "api": "v2",
                "total_bytes": v2.total,
                "free_bytes": v2.free,
                "used_bytes": v2.used,
                "reserved_bytes": v2.reserved,
            }
        v1 = self.ask(n.nvmlDeviceGetMemoryInfo)
        if v1 is None:
            return None
        # The v1 API counts the driver's reservation as used.
        return {
            "api": "v1",
            "total_bytes": v1.total,
            "free_bytes": v1.free,
            "used_bytes": v1.used,
            "reserved_bytes": None,
        }

    def _bar1(self) -> dict[str, Any] | None:
        bar1 = self.ask(self.nvml.nvmlDeviceGetBAR1MemoryInfo)
        if bar1 is None:
            return None
        return {"total_bytes": bar1.bar1Total, "free_bytes": bar1.bar1Free}

    def _processes(self) -> list[dict[str, Any]]:
        running = self.ask(self.nvml.nvmlDeviceGetComputeRunningProcesses) or []
        return [{"pid": p.pid, "used_bytes": p.usedGpuMemory} for p in running]


def _ask(
    nvml: Any, not_supported: list[str], fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """One NVML query; an unsupported or failing one is None and its name is noted."""
    try:
        return fn(*args, **kwargs)
    except nvml.NVMLError:
        not_supported.append(getattr(fn, "__name__", str(fn)))
        return None
    except TypeError:
        # Older nvidia-ml-py has no ``version=`` argument: the caller falls back to v1.
        return None


def _add_measured(device: dict[str, Any], measured: dict[str, Any] | None) -> None:
    if measured is None:
        device["measured_bandwidth"] = {
            "available": False,
            "reason": "needs torch or cupy with CUDA",
        }
        return
    spec = device["pcie"]["spec_gbps_per_direction"]["current"]
    result: dict[str, Any] = {"available": True, **measured}
    if spec:
        result["pinned_h2d_vs_spec"] = round(measured["h2d_pinned_gbps"] / spec, 3)
        result["pinned_d2h_vs_spec"] = round(measured["d2h_pinned_gbps"] / spec, 3)
    device["measured_bandwidth"] = result


def _cuda_version(value: int | None) -> str | None:
    return f"{value // 1000}.{value % 1000 // 10}" if value else None


def _milli(value: int | None) -> float | None:
    return round(value / 1000, 1) if value is not None else None


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


@hookimpl(trylast=True)
def turnout_hardware_probes() -> Iterable[Provider[HardwareProbe]]:
    return [Provider("nvml", NvmlProbe, "NVIDIA GPUs through NVML")]
