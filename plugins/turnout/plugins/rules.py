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
# in tens of microseconds whatever the prompt's length. Words are matched as a set, phrases as
# substrings: both run in C, unlike a scan with many alternations.
SCAN_CHARS = 2000
_CODE_MARKERS = ("```", "=>", "#include", "();", "){", "};")
_CODE_LINE = re.compile(
    r"^[ \t]*(?:def|class|import|from|fn|func|package|public|const|let)[ \t]", re.MULTILINE
)
_WORD = re.compile(r"[a-z]+")
_EXTRACTION_WORDS = frozenset(
    "extract parse json schema field fields entities entity tabulate csv yaml".split()
)
_EXTRACTION_PHRASES = ("key-value", "key value", "fill in")
_CODE_WORDS = frozenset(
    "code function refactor debug bug compile regex python javascript typescript rust golang "
    "java sql api stacktrace".split()
)
_CODE_PHRASES = ("stack trace", "unit test")
_REASONING_WORDS = frozenset(
    "why prove proof reason reasoning analyze analyse compare derive plan think tradeoff "
    "tradeoffs evaluate solve".split()
)
_REASONING_PHRASES = ("step by step", "step-by-step", "trade-off")


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
    if any(marker in text for marker in _CODE_MARKERS) or _CODE_LINE.search(text):
        return "code", "the prompt contains code"
    low = text.lower()
    words = set(_WORD.findall(low))
    if words & _EXTRACTION_WORDS or any(p in low for p in _EXTRACTION_PHRASES):
        return "extraction", "the prompt asks to extract or structure data"
    if words & _CODE_WORDS or any(p in low for p in _CODE_PHRASES):
        return "code", "the prompt talks about code"
    if words & _REASONING_WORDS or any(p in low for p in _REASONING_PHRASES):
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
