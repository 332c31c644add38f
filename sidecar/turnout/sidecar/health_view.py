"""``GET /health``: turnout's own state and, per endpoint, active health and passive outcomes
side by side (they answer different questions: does it answer a probe, do real requests work)."""

from __future__ import annotations

import datetime
from typing import Any

from turnout.core import Router


def health_report(router: Router) -> dict[str, Any]:
    endpoints = []
    for endpoint in router.models:
        health = router.health.states[endpoint]
        slots = router.admission.endpoints[endpoint]
        cooling = router.board.cooling_s(endpoint)
        endpoints.append(
            {
                "id": endpoint,
                "routable": router.unroutable(endpoint) is None,
                "health": {
                    "status": health.status,
                    "detail": health.detail,
                    "checked_at": _iso(health.checked_at),
                    "last_error": health.last_error,
                },
                "breaker": router.board.breaker(endpoint).state,
                "overloaded_for_s": round(cooling, 1) if cooling is not None else None,
                "degraded": router.vram.degraded(endpoint),
                "in_flight": slots.in_flight,
                "queued": slots.queued,
                "slots": slots.slots,
                "effective_context": router.limits[endpoint],
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
