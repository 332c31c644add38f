"""``GET /health``: turnout's own state and, per endpoint, active health and passive outcomes
side by side (they answer different questions: does it answer a probe, do real requests work)."""

from __future__ import annotations

import datetime
from typing import Any

from turnout.core import Router


def health_report(router: Router) -> dict[str, Any]:
    state = router.snapshot()
    endpoints = []
    for endpoint, live in state["endpoints"].items():
        health = router.health.states[endpoint]
        cooling = router.board.cooling_s(endpoint)
        endpoints.append(
            {
                "id": endpoint,
                "routable": live["unroutable"] is None,
                "health": {
                    "status": health.status,
                    "detail": health.detail,
                    "checked_at": _iso(health.checked_at),
                    "last_error": health.last_error,
                },
                "breaker": live["breaker"],
                "overloaded_for_s": round(cooling, 1) if cooling is not None else None,
                "degraded": live["degraded"],
                "in_flight": live["in_flight"],
                "queued": live["queued"],
                "slots": live["slots"],
                "effective_context": live["effective_context"],
                "backend": live["backend"],
            }
        )
    routable = [e["routable"] for e in endpoints]
    status = "ok" if all(routable) else "degraded" if any(routable) else "unavailable"
    shared = router.shared.status() if router.shared is not None else {"backend": "memory"}
    return {"status": status, "shared_state": shared, "endpoints": endpoints}


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="seconds")
