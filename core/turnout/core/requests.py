"""Turning an OpenAI-style body into a :class:`RouteRequest`, or a clear 400 saying what to fix.

Validation is strict where OpenAI's API is (``max_tokens: "100"`` is an error, not a 100) and open
where backends extend it: unknown top-level fields pass through to the backend (vLLM, for one,
has many of its own).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from turnout.core.config import TaskType
from turnout.core.errors import InvalidRequest
from turnout.core.types import RequestKind, RouteRequest, RoutingHints

HINTS_KEY = "turnout"
TASK_HEADER = "x-turnout-task-type"
LATENCY_HEADER = "x-turnout-latency-target-ms"
TIMEOUT_HEADER = "x-turnout-timeout-ms"
REQUEST_ID_HEADER = "x-request-id"
MAX_TOKENS_CEILING = 100_000_000

TokenLimit = Annotated[StrictInt, Field(ge=1, le=MAX_TOKENS_CEILING)]


class _Hints(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task_type: TaskType | None = None
    latency_target_ms: Annotated[StrictInt, Field(ge=1, le=3_600_000)] | None = None
    timeout_ms: Annotated[StrictInt, Field(ge=1, le=3_600_000)] | None = None


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: StrictStr
    text: StrictStr | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: StrictStr | list[_TextPart] | None = None


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: Annotated[StrictStr, Field(min_length=1)]
    max_tokens: TokenLimit | None = None
    stream: StrictBool = False
    stream_options: dict[str, Any] | None = None
    n: Annotated[StrictInt, Field(ge=1, le=128)] | None = None
    stop: StrictStr | Annotated[list[StrictStr], Field(max_length=16)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    turnout: _Hints | None = None


class _ChatBody(_Common):
    messages: Annotated[list[_Message], Field(min_length=1)]
    max_completion_tokens: TokenLimit | None = None


class _CompletionBody(_Common):
    prompt: StrictStr | Annotated[list[StrictStr], Field(min_length=1)]


def decode_body(raw: bytes) -> dict[str, Any]:
    """Parse the JSON body; anything but a JSON object is a 400."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest("the request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return data


def parse_request(
    kind: RequestKind, data: dict[str, Any], headers: Mapping[str, str] | None = None
) -> RouteRequest:
    """Validate a decoded body (and turnout's headers) into a :class:`RouteRequest`."""
    headers = headers or {}
    schema: type[_Common] = _ChatBody if kind == "chat" else _CompletionBody
    try:
        parsed = schema.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from None
    hints = _hints(parsed.turnout, headers)
    body = {k: v for k, v in data.items() if k != HINTS_KEY}
    max_tokens = parsed.max_tokens
    if isinstance(parsed, _ChatBody):
        max_tokens = parsed.max_completion_tokens or max_tokens
        messages = tuple(body["messages"])
        text = "\n".join(_message_text(m) for m in parsed.messages)
    else:
        assert isinstance(parsed, _CompletionBody)
        messages = ()
        prompt = parsed.prompt
        text = prompt if isinstance(prompt, str) else "\n".join(prompt)
    return RouteRequest(
        kind=kind,
        model=parsed.model,
        body=body,
        text=text,
        stream=parsed.stream,
        max_tokens=max_tokens,
        messages=messages,
        hints=hints,
        request_id=headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex,
    )


def detect_kind(data: Mapping[str, Any]) -> RequestKind:
    """For endpoints that take either shape (``/v1/route``): messages means chat."""
    return "chat" if "messages" in data else "completion"


def _message_text(message: _Message) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(part.text for part in content if part.text)


def _hints(block: _Hints | None, headers: Mapping[str, str]) -> RoutingHints:
    task = block.task_type if block else None
    latency = block.latency_target_ms if block else None
    header_task = headers.get(TASK_HEADER)
    if task is None and header_task:
        try:
            task = _Hints(task_type=header_task).task_type  # type: ignore[arg-type]
        except ValidationError:
            raise InvalidRequest(
                f"header X-Turnout-Task-Type: '{header_task}' is not one of "
                "code, reasoning, extraction, chat",
                param="X-Turnout-Task-Type",
            ) from None
    if latency is None:
        latency = _header_ms(headers, LATENCY_HEADER, "X-Turnout-Latency-Target-Ms")
    timeout = block.timeout_ms if block else None
    if timeout is None:
        timeout = _header_ms(headers, TIMEOUT_HEADER, "X-Turnout-Timeout-Ms")
    return RoutingHints(task_type=task, latency_target_ms=latency, timeout_ms=timeout)


def _header_ms(headers: Mapping[str, str], key: str, name: str) -> int | None:
    """A milliseconds header (1 to an hour), or None when absent; anything else is a 400."""
    raw = headers.get(key)
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 3_600_000:
        raise InvalidRequest(
            f"header {name}: expected milliseconds as a whole number from 1 to 3600000", param=name
        )
    return int(raw)


def _invalid(exc: ValidationError) -> InvalidRequest:
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"])
    if err["type"] == "missing":
        message = f"'{loc}' is required"
    elif err["type"] == "extra_forbidden":
        message = f"'{loc}' is not a known field"
    else:
        message = f"'{loc}': {err['msg']}"
        if "input" in err and not isinstance(err["input"], dict | list):
            message += f" (got {json.dumps(err['input'])[:80]})"
    more = len(exc.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return InvalidRequest(message, param=loc)
