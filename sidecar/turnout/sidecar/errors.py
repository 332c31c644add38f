"""The one place where turnout's exceptions become OpenAI-shaped HTTP answers.

Bodies are ``{"error": {"message", "type", "param", "code"}}``, as OpenAI's clients expect, so an
``openai`` client raises the matching error class. Unexpected exceptions become a generic 500
without their text (it may hold internal addresses); the log has the traceback.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from starlette.responses import Response

from turnout.core import InvalidRequest, NoEndpointAvailable, QueueFull, TurnoutError, UpstreamError

log = logging.getLogger(__name__)


def error_body(message: str, error_type: str, code: str | None, param: str | None = None) -> bytes:
    payload = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return json.dumps(payload).encode()


def error_response(exc: BaseException, headers: dict[str, str] | None = None) -> Response:
    """An HTTP response for any exception raised while serving a request."""
    headers = dict(headers or {})
    attempts = getattr(exc, "attempts", ())
    if attempts:
        headers["X-Turnout-Fallbacks"] = str(len(attempts))
        headers["X-Turnout-Attempts"] = ", ".join(f"{e}={r}" for e, r in attempts)
    if isinstance(exc, UpstreamError) and not exc.retryable:
        return Response(_upstream_body(exc), exc.status, headers, media_type="application/json")
    if isinstance(exc, TurnoutError):
        param = exc.param if isinstance(exc, InvalidRequest) else None
        if isinstance(exc, QueueFull):
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        if isinstance(exc, NoEndpointAvailable):
            headers.setdefault("Retry-After", "1")
        body = error_body(exc.message, exc.error_type, exc.code, param)
        return Response(body, exc.status, headers, media_type="application/json")
    log.exception("unexpected error while serving a request", exc_info=exc)
    body = error_body("internal error in turnout; see its log", "server_error", "internal_error")
    return Response(body, 500, headers, media_type="application/json")


def error_event(exc: BaseException) -> bytes:
    """An SSE event that ends a stream which failed after its first byte."""
    if isinstance(exc, UpstreamError):
        message = (
            f"the backend failed mid-stream ({exc.reason}); the output above is incomplete "
            "and was not retried, to avoid duplicating it"
        )
        body = error_body(message, "upstream_error", "stream_interrupted")
    else:
        log.exception("unexpected error while streaming", exc_info=exc)
        body = error_body(
            "internal error in turnout; see its log", "server_error", "internal_error"
        )
    return b"data: " + body + b"\n\n"


def _upstream_body(exc: UpstreamError) -> bytes:
    """The backend's own error when it is OpenAI-shaped, else one in that shape."""
    if exc.body:
        try:
            data: Any = json.loads(exc.body)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), dict | str):
            return exc.body
    message = f"the backend rejected the request (HTTP {exc.upstream_status})"
    return error_body(message, "invalid_request_error", None)
