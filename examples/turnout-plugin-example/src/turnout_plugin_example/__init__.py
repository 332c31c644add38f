"""An example turnout plugin: the ``by-length`` classifier."""

from __future__ import annotations

from collections.abc import Iterable

from turnout.core import Classification, Provider, RouteRequest, TurnoutConfig, hookimpl
from turnout.core.providers import ClassifierFactory

LONG_PROMPT_CHARS = 2000


class LengthClassifier:
    """Long prompts are reasoning, short ones chat; a declared task type wins."""

    def classify(self, request: RouteRequest) -> Classification:
        hints = request.hints
        if hints.task_type is not None:
            return Classification(hints.task_type, "declared", hints.latency_target_ms)
        long = len(request.text) > LONG_PROMPT_CHARS
        return Classification(
            task_type="reasoning" if long else "chat",
            source="classifier",
            latency_target_ms=hints.latency_target_ms,
            reason=f"prompt is {'over' if long else 'under'} {LONG_PROMPT_CHARS} characters",
        )


def _build(config: TurnoutConfig) -> LengthClassifier:
    return LengthClassifier()


@hookimpl
def turnout_classifiers() -> Iterable[Provider[ClassifierFactory]]:
    return [Provider("by-length", _build, "long prompts are reasoning, short ones chat")]
