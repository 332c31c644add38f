"""The hardware profile: every registered probe's answer in one versioned document."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pluggy

from turnout.core.errors import ConfigError
from turnout.core.plugins import ProviderRegistry, collect_providers
from turnout.core.providers import MemorySampler

PROFILE_SCHEMA_VERSION = 1


def collect_profile(pm: pluggy.PluginManager, *, measure: bool = False) -> dict[str, Any]:
    """Run each hardware probe once. A probe that raises is reported, not propagated."""
    probes: dict[str, Any] = {}
    for name, provider in sorted(collect_providers(pm).hardware_probes.items()):
        try:
            probes[name] = provider.factory().probe(measure=measure)
        except Exception as exc:
            probes[name] = {
                "available": False,
                "reason": f"probe failed: {type(exc).__name__}: {exc}",
            }
    return {
        "schema_version": PROFILE_SCHEMA_VERSION,
        "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "measured": measure,
        "probes": probes,
    }


def local_memory_sampler(registry: ProviderRegistry) -> MemorySampler | None:
    """The first hardware probe that can sample GPU memory (built-in: ``nvml``)."""
    for _, provider in sorted(registry.hardware_probes.items()):
        probe = provider.factory()
        if isinstance(probe, MemorySampler):
            return probe
    return None


def fetch_remote_memory(hardware_url: str, timeout_s: float = 2.0) -> list[dict[str, Any]]:
    """GPU memory as the sidecar on another host reports it (``GET /v1/hardware``). Blocking."""
    url = hardware_url.rstrip("/") + "/v1/hardware"
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        answer = json.load(response)
    memory = answer.get("memory")
    return memory if isinstance(memory, list) else []


def load_baselines(profile_path: str | None) -> dict[str, Any]:
    """Per-endpoint baselines from a stored profile (``turnout profile --baseline --out``)."""
    if profile_path is None:
        return {}
    try:
        profile = json.loads(Path(profile_path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"monitoring.profile: cannot read {profile_path}: {exc}") from None
    baselines = profile.get("baselines")
    return baselines if isinstance(baselines, dict) else {}
