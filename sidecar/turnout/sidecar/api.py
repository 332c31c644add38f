"""turnout's OpenAI-compatible endpoints, as Starlette routes shared by the sidecar and the
middleware. The router is looked up per request through ``get_router`` so both faces can build it
at their own time (the sidecar in its lifespan, the middleware on first use)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from turnout.core import (
    Attempt,
    Router,
    TurnoutError,
    UpstreamError,
    decode_body,
    detect_kind,
    parse_request,
)
from turnout.core.config import ROUTE_NAMES
from turnout.core.types import RequestKind
from turnout.sidecar.errors import error_event, error_response

GetRouter = Callable[[], Awaitable[Router]]
ENDPOINT_HEADER = "X-Turnout-Endpoint"
FALLBACKS_HEADER = "X-Turnout-Fallbacks"
ATTEMPTS_HEADER = "X-Turnout-Attempts"
REQUEST_ID_HEADER = "X-Request-ID"
CLIENT_CLOSED = 499
T = TypeVar("T")


def api_routes(get_router: GetRouter, prefix: str = "/v1") -> list[Route]:
    """Routes for the OpenAI-compatible API under ``prefix``."""

    async def chat(request: Request) -> Response:
        return await _serve(await get_router(), request, "chat")

    async def completions(request: Request) -> Response:
        return await _serve(await get_router(), request, "completion")

    async def models(request: Request) -> Response:
        return JSONResponse(models_listing(await get_router()))

    async def route(request: Request) -> Response:
        return await _explain(await get_router(), request)

    async def hardware(request: Request) -> Response:
        router = await get_router()
        profile = await asyncio.to_thread(router.hardware_profile)
        sampler = router.memory_sampler
        memory = await asyncio.to_thread(sampler.memory_sample) if sampler is not None else []
        return JSONResponse({"profile": profile, "memory": memory})

    return [
        Route(f"{prefix}/chat/completions", chat, methods=["POST"]),
        Route(f"{prefix}/completions", completions, methods=["POST"]),
        Route(f"{prefix}/models", models, methods=["GET"]),
        Route(f"{prefix}/route", route, methods=["POST"]),
        Route(f"{prefix}/hardware", hardware, methods=["GET"]),
    ]


def models_listing(router: Router) -> dict[str, object]:
    created = int(time.time())
    data: list[dict[str, object]] = [
        {"id": name, "object": "model", "created": created, "owned_by": "turnout"}
        for name in ROUTE_NAMES
    ]
    for model in router.config.models:
        data.append(
            {
                "id": model.id,
                "object": "model",
                "created": created,
                "owned_by": "turnout",
                "max_model_len": model.max_model_len,
                "effective_context": model.context_limit,
                "task_types": list(model.task_types),
            }
        )
    return {"object": "list", "data": data}


async def _serve(router: Router, http: Request, kind: RequestKind) -> Response:
    request_id = http.headers.get("x-request-id", "")
    try:
        request = parse_request(kind, decode_body(await http.body()), http.headers)
        request_id = request.request_id
        if request.stream:
            routed = await until_disconnect(http, router.stream(request))
            headers = _route_headers(routed.endpoint, routed.attempts, request_id)
            return StreamingResponse(
                _relay(routed), media_type="text/event-stream", headers=headers
            )
        done = await until_disconnect(http, router.complete(request))
        headers = _route_headers(done.endpoint, done.attempts, request_id)
        return Response(done.reply.body, done.reply.status, headers, done.reply.content_type)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    except Exception as exc:
        return error_response(exc, {REQUEST_ID_HEADER: request_id} if request_id else None)


class ClientGone(Exception):
    """The client hung up before its answer was ready."""


async def until_disconnect(http: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects first.

    Starlette does not cancel a handler whose client went away, so a request waiting in a queue
    or for a slow backend would hold its slot and its upstream connection. Cancelling releases
    both, and closes the upstream connection, which is how a backend learns to stop generating.
    """
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await http.receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone:
            task.uncancel()
            raise ClientGone from None
        raise
    finally:
        watcher.cancel()


async def _relay(routed: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The routed stream's events; a mid-stream failure ends it with one error event."""
    try:
        async for event in routed:
            yield event
    except (UpstreamError, TurnoutError) as exc:
        yield error_event(exc)


async def _explain(router: Router, http: Request) -> Response:
    try:
        data = decode_body(await http.body())
        request = parse_request(detect_kind(data), data, http.headers)
        decision = await router.decide(request)
    except Exception as exc:
        return error_response(exc)
    return JSONResponse({"request_id": request.request_id, **decision.as_dict()})


def _route_headers(endpoint: str, attempts: tuple[Attempt, ...], request_id: str) -> dict[str, str]:
    headers = {
        ENDPOINT_HEADER: endpoint,
        FALLBACKS_HEADER: str(len(attempts)),
        REQUEST_ID_HEADER: request_id,
    }
    if attempts:
        headers[ATTEMPTS_HEADER] = ", ".join(f"{a.endpoint}={a.reason}" for a in attempts)
    return headers
