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
from turnout.sidecar.health_view import health_report

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
        return JSONResponse(health_report(router))

    async def metrics(request: Request) -> Response:
        router = holder.get("router")
        if router is None:
            return Response(status_code=503)
        return metrics_response(router)

    routes = [
        *api_routes(get_router),
        Route("/health", health, methods=["GET"]),
        Route(config.monitoring.metrics_endpoint, metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def metrics_response(router: Router) -> Response:
    """The first sink that renders an exposition (built-in: prometheus)."""
    for sink in router.sinks:
        rendered = sink.render()
        if rendered is not None:
            body, content_type = rendered
            return Response(body, media_type=content_type)
    return Response("no metrics sink renders here\n", status_code=404, media_type="text/plain")


async def log_backend_reachability(router: Router) -> None:
    states = router.health.states
    for model_id, state in states.items():
        verdict = "answers" if state.status == "healthy" else f"does not answer ({state.detail})"
        log.info("backend %s at %s %s", model_id, router.models[model_id].api_base, verdict)
    if all(state.status == "unhealthy" for state in states.values()):
        log.warning(
            "no backend answered. turnout is up, but requests will get 503 until one does: start "
            "the backends at the api_base addresses above, or point the config at running ones"
        )
