"""``TurnoutMiddleware``: turnout's API mounted into an existing ASGI app.

Pure ASGI (not Starlette's base HTTP middleware class, which buffers streamed bodies and breaks
context variables):
HTTP requests under ``prefix`` that match turnout's routes are served by turnout; everything else,
streaming and websockets included, reaches the host app untouched. The router is built on the
host's lifespan startup when the server sends one, else on the first request.
"""

from __future__ import annotations

import asyncio

import pluggy
from starlette.routing import Router as RouteTable
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from turnout.core import Router, TurnoutConfig
from turnout.sidecar.api import api_routes


class TurnoutMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        config: TurnoutConfig | None = None,
        router: Router | None = None,
        prefix: str = "/v1",
        plugin_manager: pluggy.PluginManager | None = None,
    ) -> None:
        if (config is None) == (router is None):
            raise TypeError("TurnoutMiddleware needs exactly one of config= or router=")
        self.app = app
        self.prefix = prefix.rstrip("/")
        self._config = config
        self._plugin_manager = plugin_manager
        self._router = router
        self._owns_router = router is None
        self._started = router is not None
        self._lock = asyncio.Lock()
        self._routes = RouteTable(routes=api_routes(self.get_router, self.prefix), default=app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._watch_lifespan(receive), send)
        elif scope["type"] == "http" and _under(scope["path"], self.prefix):
            await self._routes(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def metrics_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An ASGI app serving turnout's metrics, for the host to mount where it likes."""
        from turnout.sidecar.app import metrics_response

        router = await self.get_router()
        await metrics_response(router)(scope, receive, send)

    async def get_router(self) -> Router:
        """The shared router, started on first use."""
        if not self._started:
            async with self._lock:
                if not self._started:
                    assert self._config is not None
                    router = Router(self._config, plugin_manager=self._plugin_manager)
                    await router.start()
                    self._router, self._started = router, True
        assert self._router is not None
        return self._router

    async def aclose(self) -> None:
        if self._owns_router and self._router is not None:
            await self._router.close()
            self._router, self._started = None, False

    def _watch_lifespan(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.get_router()
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
            return message

        return wrapped


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")
