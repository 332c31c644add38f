"""Hardware probes: NVML through a recorded H100 (CI has no GPU), the no-driver path for real,
and the host probe on this machine."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pluggy
import pytest

from turnout.core import Provider, hookimpl
from turnout.core.hardware import PROFILE_SCHEMA_VERSION, collect_profile
from turnout.plugins.hardware_apple import AppleProbe
from turnout.plugins.hardware_host import HostProbe, parse_cpuinfo
from turnout.plugins.hardware_nvml import NvmlProbe, pcie_spec_gbps

from .recorded_nvml import RecordedNvml


def test_recorded_h100_idle() -> None:
    nvml = RecordedNvml()
    result = NvmlProbe(nvml).probe()
    assert result["available"] and result["driver_version"] == "580.159.04"
    assert result["cuda_driver_version"] == "13.0"
    (gpu,) = result["devices"]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"
    assert (gpu["architecture"], gpu["compute_capability"]) == ("hopper", "9.0")
    assert gpu["memory"] == {
        "api": "v2",
        "total_bytes": 85520809984,
        "free_bytes": 85017493504,
        "used_bytes": 0,
        "reserved_bytes": 503316480,
    }
    assert gpu["pcie"]["generation"] == {"current": 5, "max": 5}
    assert gpu["pcie"]["width"] == {"current": 16, "max": 16}
    assert gpu["pcie"]["spec_gbps_per_direction"]["current"] == 63.02
    assert gpu["ecc_enabled"] == {"current": True, "pending": True}
    assert gpu["mig_enabled"] == {"current": False, "pending": False}
    assert gpu["power_watts"] == {"usage": 115.3, "limit": 700.0}
    assert gpu["processes"] == [] and gpu["not_supported"] == []
    assert "nvmlDeviceGetPcieThroughput[RX]" not in nvml.calls, "the 20 ms sampler stays off"
    assert nvml.calls[0] == "nvmlInit" and nvml.calls[-1] == "nvmlShutdown"


def test_recorded_h100_under_load_shows_the_process_and_reservation() -> None:
    (gpu,) = NvmlProbe(RecordedNvml(under_load=True)).probe()["devices"]
    assert gpu["memory"]["used_bytes"] == 23103078400
    assert gpu["memory"]["reserved_bytes"] == 503316480
    assert gpu["processes"] == [{"pid": 413, "used_bytes": 23091740672}]


def test_unsupported_queries_are_listed_not_fatal() -> None:
    nvml = RecordedNvml(unsupported=("nvmlDeviceGetEccMode", "nvmlDeviceGetMemoryInfo_v2"))
    (gpu,) = NvmlProbe(nvml).probe()["devices"]
    assert gpu["ecc_enabled"] is None
    assert gpu["memory"]["api"] == "v1" and gpu["memory"]["reserved_bytes"] is None
    assert gpu["memory"]["used_bytes"] == 503316480, "v1 counts the reservation as used"
    assert "nvmlDeviceGetEccMode" in gpu["not_supported"]


def test_measure_reads_pcie_counters_and_reports_missing_copy_tool() -> None:
    pytest.importorskip("pynvml")
    nvml = RecordedNvml()
    (gpu,) = NvmlProbe(nvml).probe(measure=True)["devices"]
    assert gpu["pcie"]["throughput_kbps"] == {"rx": 519, "tx": 2165}
    if "torch" not in sys.modules:
        assert gpu["measured_bandwidth"]["available"] is False


def test_no_driver_is_an_answer_not_a_crash() -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver")
    result = NvmlProbe().probe()
    assert result == {"available": False, "reason": result["reason"]}
    assert result["reason"].startswith("NVML did not start")


@pytest.mark.parametrize(
    ("gen", "width", "gbps"),
    [(5, 16, 63.02), (4, 16, 31.51), (3, 8, 7.88), (2, 16, 8.0), (6, 16, 121.0), (None, 16, None)],
)
def test_pcie_spec_bandwidth(gen: int | None, width: int, gbps: float | None) -> None:
    assert pcie_spec_gbps(gen, width) == gbps


def test_cpuinfo_parsing_x86_and_arm() -> None:
    x86 = "processor\t: 0\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu sse avx2 avx512f amx_tile\n"
    assert parse_cpuinfo(x86) == ("AMD EPYC 9654", ["avx2", "avx512f", "amx_tile"])
    arm = "processor\t: 0\nFeatures\t: fp asimd sve\nCPU part\t: 0xd40\n"
    assert parse_cpuinfo(arm) == (None, ["asimd", "sve"])


def test_host_probe_reads_this_machine() -> None:
    host = HostProbe().probe()
    assert host["logical_cores"] >= 1
    assert 0 < host["memory_bytes"]["available"] <= host["memory_bytes"]["total"]


def test_profile_command_emits_versioned_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "turnout.sidecar.cli", "profile", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    profile = json.loads(out.stdout)
    assert profile["schema_version"] == PROFILE_SCHEMA_VERSION
    assert set(profile["probes"]) >= {"host", "nvml", "apple"}


def test_a_failing_probe_is_reported_not_raised(
    register_plugin: Callable[..., Any], turnout_plugin_manager: pluggy.PluginManager
) -> None:
    class Broken:
        def probe(self, *, measure: bool = False) -> dict[str, object]:
            raise OSError("sensor unplugged")

    class Plugin:
        @hookimpl
        def turnout_hardware_probes(self) -> list[Provider[Broken]]:
            return [Provider("broken", Broken)]

    register_plugin(Plugin())
    profile = collect_profile(turnout_plugin_manager)
    assert profile["probes"]["broken"] == {
        "available": False,
        "reason": "probe failed: OSError: sensor unplugged",
    }


# sysctl's output format ("key: value" per line), written for this test: no Mac was at hand to
# record one. The values are those of a 32 GB M2 Max.
SYSCTL_M2_MAX = """machdep.cpu.brand_string: Apple M2 Max
hw.memsize: 34359738368
hw.physicalcpu: 12
hw.perflevel0.physicalcpu: 8
hw.perflevel1.physicalcpu: 4
hw.optional.arm64: 1
"""


def test_apple_probe_reads_sysctl() -> None:
    asked: list[list[str]] = []

    def run(args: list[str]) -> str:
        asked.append(args)
        return SYSCTL_M2_MAX

    result = AppleProbe(run, system="Darwin").probe()
    assert asked[0][0] == "sysctl" and "hw.memsize" in asked[0]
    assert result["chip"] == "Apple M2 Max" and result["apple_silicon"] is True
    assert result["cores"] == {"total": 12, "performance": 8, "efficiency": 4}
    assert result["unified_memory_bytes"] == 34359738368
    assert result["gpu_working_set_bytes"] == 34359738368 * 3 // 4


def test_apple_probe_elsewhere_says_so() -> None:
    assert AppleProbe(system="Linux").probe() == {"available": False, "reason": "not macOS"}
    broken = AppleProbe(lambda args: "", system="Darwin").probe()
    assert broken == {"available": False, "reason": "sysctl did not report hw.memsize"}
