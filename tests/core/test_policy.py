"""The seed's decision matrix, rules as data, the classifier's heuristic and request parsing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from turnout.core import InvalidRequest, Router, load_config, parse_request
from turnout.core.testing import make_config
from turnout.core.tokens import estimate_text_tokens
from turnout.plugins.rules import RulesClassifier

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed.config.yaml"


def chat(text: str, **extra: Any) -> Any:
    return parse_request(
        "chat", {"model": "auto", "messages": [{"role": "user", "content": text}], **extra}
    )


@pytest.fixture(scope="module")
def seed_router() -> Router:
    return Router(load_config(SEED).config)


@pytest.mark.parametrize(
    ("text", "extra", "first"),
    [
        ("x", {"max_tokens": 3000, "turnout": {"task_type": "code"}}, "qwen-coder-32b"),
        ("x", {"max_tokens": 1000, "turnout": {"task_type": "code"}}, "llama-scout-17b"),
        ("word " * 33_000, {"turnout": {"task_type": "reasoning"}}, "llama-scout-17b"),
        ("x", {"turnout": {"latency_target_ms": 120}}, "phi-medium-14b"),
        ("x", {"turnout": {"latency_target_ms": 400}}, "llama-scout-17b"),
    ],
)
def test_seed_decision_matrix(
    seed_router: Router, text: str, extra: dict[str, Any], first: str
) -> None:
    assert asyncio.run(seed_router.decide(chat(text, **extra))).order[0] == first


def test_fallback_never_repeats_an_endpoint(seed_router: Router) -> None:
    order = asyncio.run(
        seed_router.decide(chat("x", max_tokens=3000, turnout={"task_type": "code"}))
    ).order
    assert order == ("qwen-coder-32b", "llama-scout-17b", "phi-medium-14b")


def test_pinned_model_leads_then_falls_back(seed_router: Router) -> None:
    request = parse_request(
        "chat", {"model": "phi-medium-14b", "messages": [{"role": "user", "content": "x"}]}
    )
    decision = asyncio.run(seed_router.decide(request))
    assert decision.pinned == "phi-medium-14b"
    assert decision.order[0] == "phi-medium-14b" and len(decision.order) == 3


def test_rules_as_data_override_the_matrix() -> None:
    config = make_config(
        [{"id": "a"}, {"id": "b"}],
        routing={"default": "a", "rules": [{"task_type": "extraction", "route": "b"}]},
    )
    decision = asyncio.run(Router(config).decide(chat("Extract the names as JSON")))
    assert decision.classification.task_type == "extraction"
    assert decision.order[0] == "b" and decision.candidates[0].why.startswith("rule 0")


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("```python\nprint(1)\n```", "code"),
        ("def add(a, b):\n    return a + b", "code"),
        ("Please refactor this function", "code"),
        ("Extract every date from this letter", "extraction"),
        ("Why does the sky look blue? Think step by step.", "reasoning"),
        ("Good morning! How are you?", "chat"),
    ],
)
def test_heuristic_task_types(text: str, task: str) -> None:
    result = RulesClassifier().classify(chat(text))
    assert (result.task_type, result.source) == (task, "heuristic")


def test_declared_task_type_wins_over_content() -> None:
    result = RulesClassifier().classify(chat("def f(): pass", turnout={"task_type": "chat"}))
    assert (result.task_type, result.source) == ("chat", "declared")


def test_response_format_json_means_extraction() -> None:
    request = chat("hello", response_format={"type": "json_object"})
    assert RulesClassifier().classify(request).task_type == "extraction"


def test_estimate_counts_ascii_and_wide_text() -> None:
    assert estimate_text_tokens("a" * 400) == 100
    assert estimate_text_tokens("汉" * 100) == 100
    assert 100 < estimate_text_tokens("a" * 400 + "汉" * 10) <= 111


def test_hints_from_headers_and_their_errors() -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "x"}]}
    request = parse_request(
        "chat", body, {"x-turnout-task-type": "code", "x-turnout-latency-target-ms": "80"}
    )
    assert (request.hints.task_type, request.hints.latency_target_ms) == ("code", 80)
    with pytest.raises(InvalidRequest, match="X-Turnout-Task-Type"):
        parse_request("chat", body, {"x-turnout-task-type": "poetry"})
    with pytest.raises(InvalidRequest, match="X-Turnout-Latency-Target-Ms"):
        parse_request("chat", body, {"x-turnout-latency-target-ms": "-3"})


def test_request_parsing_keeps_unknown_fields_for_the_backend() -> None:
    request = parse_request(
        "completion",
        {"model": "auto", "prompt": ["a", "b"], "best_of": 2, "turnout": {"task_type": "chat"}},
    )
    assert request.body == {"model": "auto", "prompt": ["a", "b"], "best_of": 2}
    assert request.text == "a\nb"


def test_max_completion_tokens_counts_as_max_tokens() -> None:
    assert chat("x", max_completion_tokens=77).max_tokens == 77
