"""TurnoutMiddleware mounted in a Starlette app and in a FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import openai
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from turnout.core.testing import FakeUpstream, make_config
from turnout.sidecar.middleware import TurnoutMiddleware
from turnout.sidecar.testing import ServedApp


async def _ticker(request: Request) -> StreamingResponse:
    async def ticks() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"tick {i}\n".encode()

    return StreamingResponse(ticks(), media_type="text/plain")


def starlette_host() -> Starlette:
    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("host app")

    async def embeddings(request: Request) -> PlainTextResponse:
        return PlainTextResponse("host embeddings")

    return Starlette(
        routes=[
            Route("/", home),
            Route("/ticks", _ticker),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ]
    )


def fastapi_host() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    def home() -> PlainTextResponse:
        return PlainTextResponse("host app")

    @app.post("/v1/embeddings")
    def embeddings() -> PlainTextResponse:
        return PlainTextResponse("host embeddings")

    app.add_api_route("/ticks", _ticker)
    return app


@pytest.mark.parametrize("make_host", [starlette_host, fastapi_host])
def test_middleware_serves_prefix_and_passes_the_rest(
    make_host: Callable[[], ASGIApp],
    openai_upstream: Callable[..., FakeUpstream],
    serve_app: Callable[[ASGIApp], ServedApp],
    openai_client: Callable[[str], openai.OpenAI],
) -> None:
    upstream = openai_upstream("mounted")
    config = make_config([{"id": "m", "api_base": upstream.api_base}])
    served = serve_app(TurnoutMiddleware(make_host(), config=config, prefix="/v1"))

    client = openai_client(served.url)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-turnout-endpoint"] == "m"
    assert raw.parse().choices[0].message.content == "".join(upstream.words())
    streamed = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert [c.choices[0].delta.content for c in streamed] == upstream.words()

    with httpx.Client(base_url=served.url) as http:
        assert http.get("/").text == "host app"
        assert http.post("/v1/embeddings").text == "host embeddings", "unclaimed paths pass"
        with http.stream("GET", "/ticks") as response:
            assert list(response.iter_lines()) == ["tick 0", "tick 1", "tick 2"]
    assert upstream.hits == 2


def test_middleware_needs_config_or_router() -> None:
    with pytest.raises(TypeError, match="exactly one"):
        TurnoutMiddleware(starlette_host())
