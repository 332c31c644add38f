"""The sidecar: turnout as its own OpenAI-compatible HTTP service.

``create_app(config)`` returns a Starlette app whose lifespan builds the one :class:`Router`
(plugins, dispatchers, pooled connections) and closes it on shutdown.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import pluggy
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from turnout.core import Router, TurnoutConfig
from turnout.sidecar.api import api_routes

log = logging.getLogger("turnout")


def create_app(
    config: TurnoutConfig,
    *,
    plugin_manager: pluggy.PluginManager | None = None,
    check_backends: bool = True,
) -> Starlette:
    """The sidecar app for ``config``. With ``check_backends`` the start logs which backends
    answer, so a router in front of nothing says so rather than failing request by request."""
    holder: dict[str, Router] = {}

    async def get_router() -> Router:
        return holder["router"]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        router = Router(config, plugin_manager=plugin_manager)
        await router.start()
        holder["router"] = router
        app.state.router = router
        if check_backends:
            await log_backend_reachability(router)
        try:
            yield
        finally:
            await router.close()

    async def health(request: Request) -> Response:
        router = holder.get("router")
        if router is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        endpoints = [
            {"id": model_id, "degraded": router.vram.degraded(model_id)}
            for model_id in router.models
        ]
        return JSONResponse({"status": "ok", "endpoints": endpoints})

    routes = [
        *api_routes(get_router),
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def log_backend_reachability(router: Router) -> None:
    reports = await router.check_endpoints()
    down = {i: r for i, r in reports.items() if not r.healthy}
    for model_id, report in reports.items():
        state = "answers" if report.healthy else f"does not answer ({report.detail})"
        log.info("backend %s at %s %s", model_id, router.models[model_id].api_base, state)
    if len(down) == len(reports):
        log.warning(
            "no backend answered. turnout is up, but requests will get 503 until one does: start "
            "the backends at the api_base addresses above, or point the config at running ones"
        )
