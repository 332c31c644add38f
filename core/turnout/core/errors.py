"""turnout's exceptions: one root, a few typed children.

They carry what the edge (sidecar, middleware) needs to answer in OpenAI's error shape: an HTTP
status, an OpenAI error ``type`` and ``code``. Only the edge turns them into responses.
"""

from __future__ import annotations


class TurnoutError(Exception):
    """Root of every error turnout raises on purpose."""

    status: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigError(TurnoutError):
    """The configuration cannot be used; the message names the file, line and key."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class PluginError(TurnoutError):
    """A plugin is broken or two plugins claim one provider name; the message names them."""


class InvalidRequest(TurnoutError):
    """The client's request is malformed or asks for something impossible."""

    status = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.param = param


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than the configured limit."""

    status = 413
    code = "payload_too_large"


class ModelNotFound(InvalidRequest):
    """The request names a model that is neither an endpoint nor a route."""

    status = 404
    code = "model_not_found"


class ContextLengthExceeded(InvalidRequest):
    """No candidate's effective context holds the prompt plus max_tokens."""

    code = "context_length_exceeded"


class NoEndpointAvailable(TurnoutError):
    """Every candidate failed or is unavailable; ``attempts`` says what happened to each."""

    status = 503
    error_type = "service_unavailable"
    code = "no_endpoint_available"

    def __init__(self, message: str, *, attempts: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.attempts = attempts


class QueueFull(TurnoutError):
    """Every candidate's queue is full: backpressure, the client should retry later."""

    status = 429
    error_type = "rate_limit_error"
    code = "queue_full"

    def __init__(
        self, message: str, *, retry_after_s: float, attempts: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.attempts = attempts


class DeadlineExceeded(TurnoutError):
    """The request's deadline passed before an endpoint could answer."""

    status = 504
    error_type = "timeout_error"
    code = "deadline_exceeded"

    def __init__(self, message: str, *, attempts: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.attempts = attempts


class UpstreamError(TurnoutError):
    """One endpoint failed one attempt.

    ``retryable`` tells the router whether the next candidate may be tried (connection refused,
    timeout, 5xx, 429) or whether the request itself was at fault and the answer goes back to the
    client as the backend gave it (``status``, ``body``).
    """

    error_type = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        reason: str,
        status: int | None = None,
        retryable: bool = True,
        body: bytes | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.reason = reason
        self.upstream_status = status
        self.retryable = retryable
        self.body = body
        self.retry_after_s = retry_after_s
        self.status = status if (status is not None and not retryable) else 502


class BreakerOpen(TurnoutError):
    """An endpoint's circuit breaker refused the call: fail fast, try the next candidate."""

    error_type = "upstream_error"
    code = "breaker_open"


def upstream_status_error(
    endpoint: str, status: int, body: bytes, retry_after: str | None = None
) -> UpstreamError:
    """Classify a backend's non-2xx answer: may the next candidate be tried?

    429 and 5xx are the endpoint's trouble (overloaded or broken), and so are 401/403/404: a wrong
    key or model name in turnout's config is not the client's fault. Any other 4xx is the request's
    fault and goes back to the client as the backend said it.
    """
    if status == 429:
        reason = "rate_limited"
    elif status >= 500:
        reason = f"http_{status}"
    elif status in (401, 403, 404, 408):
        reason = f"http_{status}"
    else:
        return UpstreamError(
            f"{endpoint} rejected the request (HTTP {status})",
            endpoint=endpoint,
            reason=f"http_{status}",
            status=status,
            retryable=False,
            body=body,
        )
    return UpstreamError(
        f"{endpoint} answered HTTP {status}",
        endpoint=endpoint,
        reason=reason,
        status=status,
        retryable=True,
        body=body,
        retry_after_s=_seconds(retry_after),
    )


def _seconds(retry_after: str | None) -> float | None:
    if retry_after is None:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        return None
