"""The built-in ``rules`` classifier: the caller's declared task type, else a cheap content check.

It only decides *what* a request is (task type, latency target); which endpoint serves that is the
routing policy's job (``routing.rules``), so a third-party classifier can replace this one and keep
the user's decision matrix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from turnout.core import Classification, Provider, RouteRequest, TurnoutConfig, hookimpl
from turnout.core.config import TaskType
from turnout.core.providers import Classifier

# Only the head of the last user turn is read: the instruction usually leads, and the cost stays
# in microseconds whatever the prompt's length.
SCAN_CHARS = 4000

_CODE_SYNTAX = re.compile(
    r"```|^\s*(def|class|import|from|fn|func|package|public|#include)\b|=>|;\s*$|\)\s*\{",
    re.MULTILINE,
)
_EXTRACTION = re.compile(
    r"\b(extract|parse|json|schema|fields?|key[- ]value|entities|tabulate|fill in)\b", re.IGNORECASE
)
_CODE_WORDS = re.compile(
    r"\b(code|function|refactor|debug|bug|compile|stack ?trace|regex|python|javascript|"
    r"typescript|rust|golang|java|sql|unit tests?|api)\b",
    re.IGNORECASE,
)
_REASONING = re.compile(
    r"\b(why|prove|proof|reason|step[- ]by[- ]step|analy[sz]e|compare|derive|plan|"
    r"think|trade-?offs?|evaluate|solve)\b",
    re.IGNORECASE,
)


class RulesClassifier:
    """Declared hints win; otherwise the first matching pattern names the task type."""

    def classify(self, request: RouteRequest) -> Classification:
        hints = request.hints
        if hints.task_type is not None:
            return Classification(
                task_type=hints.task_type,
                source="declared",
                latency_target_ms=hints.latency_target_ms,
                reason="declared by the caller",
            )
        task, reason = guess_task_type(request)
        return Classification(
            task_type=task,
            source="heuristic",
            latency_target_ms=hints.latency_target_ms,
            reason=reason,
        )


def guess_task_type(request: RouteRequest) -> tuple[TaskType, str]:
    response_format = request.body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        return "extraction", f"response_format is {response_format['type']}"
    text = _last_user_text(request)[:SCAN_CHARS]
    if _CODE_SYNTAX.search(text):
        return "code", "the prompt contains code"
    if _EXTRACTION.search(text):
        return "extraction", "the prompt asks to extract or structure data"
    if _CODE_WORDS.search(text):
        return "code", "the prompt talks about code"
    if _REASONING.search(text):
        return "reasoning", "the prompt asks for reasoning"
    return "chat", "no stronger signal: chat"


def _last_user_text(request: RouteRequest) -> str:
    for message in reversed(request.messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(
                    p.get("text", "") for p in content if isinstance(p, dict) and p.get("text")
                )
    return request.text


def _build(config: TurnoutConfig) -> RulesClassifier:
    return RulesClassifier()


@hookimpl(trylast=True)
def turnout_classifiers() -> Iterable[Provider[Classifier]]:
    return [Provider("rules", _build, "declared task type, else a content heuristic")]
