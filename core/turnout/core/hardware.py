"""The hardware profile: every registered probe's answer in one versioned document."""

from __future__ import annotations

import time
from typing import Any

import pluggy

from turnout.core.plugins import collect_providers

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
