"""The Grafana dashboard in examples/ queries only metrics turnout exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from turnout.core import Router
from turnout.core.testing import make_config

DASHBOARD = Path(__file__).resolve().parents[2] / "examples" / "grafana-dashboard.json"
SUFFIXES = ("_bucket", "_sum", "_count", "_total")


def test_every_queried_metric_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b((?:turnout|process)_[a-z_]+)\b", target["expr"])
    }
    assert len(queried) >= 15
    router = Router(make_config([{"id": "a", "provider": "vllm"}]))
    body, _ = router.sinks[0].render()  # type: ignore[misc]
    exported = set(re.findall(r"^# TYPE (\S+) ", body.decode(), re.MULTILINE))
    for name in sorted(queried):
        base = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), name)
        assert name in exported or base in exported, f"{name} is not exported by turnout"
