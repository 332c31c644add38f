"""A hardware profile as a few readable lines for ``turnout profile``."""

from __future__ import annotations

from typing import Any

GB = 1e9
GIB = 1024**3


def render_profile(profile: dict[str, Any]) -> str:
    lines: list[str] = []
    probes = profile.get("probes", {})
    host = probes.get("host")
    if host:
        ram = host.get("memory_bytes", {})
        lines.append(
            f"host   {host.get('cpu_model') or host.get('machine')}: {host.get('logical_cores')} "
            f"cores ({host.get('usable_cores')} usable); flags: {' '.join(host.get('flags') or [])}"
            f"; RAM {ram.get('total', 0) / GIB:.1f} GiB, {ram.get('available', 0) / GIB:.1f} "
            "available"
        )
    gpus = probes.get("nvml")
    if gpus is not None and not gpus.get("available"):
        lines.append(f"gpu    none: {gpus.get('reason')}")
    for device in (gpus or {}).get("devices", []):
        lines.extend(_gpu_lines(device))
    apple = probes.get("apple") or {}
    if apple.get("available"):
        cores = apple["cores"]
        lines.append(
            f"apple  {apple['chip']}: {cores['performance']}P+{cores['efficiency']}E cores; "
            f"unified memory {apple['memory_bytes'] / GIB:.0f} GiB, GPU working set about "
            f"{(apple['gpu_working_set_bytes'] or 0) / GIB:.0f} GiB"
        )
    for name, answer in probes.items():
        if name not in ("host", "nvml", "apple"):
            lines.append(f"{name}: {answer}")
    for endpoint, levels in (profile.get("baselines") or {}).items():
        for level in levels.values():
            if "ttft_s" not in level:
                lines.append(f"{endpoint:>6} c={level['concurrency']}: failed {level['errors']}")
                continue
            lines.append(
                f"{endpoint} c={level['concurrency']}: TTFT p50 "
                f"{level['ttft_s']['p50'] * 1000:.0f} ms, decode "
                f"{level['decode_tokens_per_s']} tok/s per request, "
                f"{level['output_tokens_per_s']} tok/s out in all"
            )
    return "\n".join(lines)


def _gpu_lines(d: dict[str, Any]) -> list[str]:
    out = [
        f"gpu {d['index']}  {d['name']} ({d['architecture']}, compute {d['compute_capability']})"
    ]
    mem = d.get("memory") or {}
    if mem:
        reserved = mem.get("reserved_bytes")
        out.append(
            f"       memory {mem['total_bytes'] / GB:.1f} GB total, {mem['free_bytes'] / GB:.1f} "
            f"free, {mem['used_bytes'] / GB:.1f} used"
            + (f", {reserved / GB:.2f} reserved by the driver" if reserved is not None else "")
            + f" (NVML {mem['api']})"
        )
    pcie = d["pcie"]
    gen, width, spec = pcie["generation"], pcie["width"], pcie["spec_gbps_per_direction"]
    out.append(
        f"       PCIe gen{gen['current']} x{width['current']} (max gen{gen['max']} "
        f"x{width['max']}): {spec['current']} GB/s per direction by the spec"
    )
    measured = d.get("measured_bandwidth")
    if measured and measured.get("available"):
        out.append(
            f"       measured: pinned h2d {measured['h2d_pinned_gbps']} GB/s "
            f"({measured.get('pinned_h2d_vs_spec', 0):.0%} of spec), d2h "
            f"{measured['d2h_pinned_gbps']}; pageable h2d {measured['h2d_pageable_gbps']}, d2h "
            f"{measured['d2h_pageable_gbps']} ({measured['tool']})"
        )
    elif measured:
        out.append(f"       measured: not available ({measured['reason']})")
    power = d.get("power_watts") or {}
    out.append(
        f"       {d.get('temperature_c')} C, {power.get('usage')} W of {power.get('limit')} W, "
        f"ECC {_flag(d.get('ecc_enabled'))}, MIG {_flag(d.get('mig_enabled'))}, "
        f"{len(d.get('processes') or [])} processes"
    )
    return out


def _flag(state: dict[str, bool] | None) -> str:
    if state is None:
        return "n/a"
    return "on" if state["current"] else "off"
