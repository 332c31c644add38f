"""The routing policy: the decision matrix as data, and the order candidates are tried in.

Without ``routing.rules`` the seed's matrix applies: code with max_tokens > 2048 goes to the code
model, reasoning over 32,000 prompt tokens to the long-context model, a latency target of 150 ms or
less to the fast model, everything else to ``routing.default``. Which model plays each part is
read from the config; what had to be guessed is returned as notes for ``check-config``.
"""

from __future__ import annotations

import re

from turnout.core.config import RuleConfig, TurnoutConfig
from turnout.core.types import Classification

SEED_CODE_MAX_TOKENS = 2048
SEED_LONG_PROMPT_TOKENS = 32_000
SEED_FAST_LATENCY_MS = 150
_CODE_NAME = re.compile(r"cod(e|er)\b|coder", re.IGNORECASE)


def default_rules(config: TurnoutConfig) -> tuple[list[RuleConfig], list[str]]:
    """The seed's decision matrix bound to this config's models, and notes on what was assumed."""
    rules: list[RuleConfig] = []
    notes: list[str] = []
    models = config.models

    code = next((m for m in models if "code" in m.task_types), None)
    if code is None:
        code = next((m for m in models if _CODE_NAME.search(m.id)), None)
        if code is not None:
            notes.append(f"no model declares task_types: [code]; assuming '{code.id}' from its id")
    if code is not None:
        rules.append(
            RuleConfig(route=code.id, task_type="code", max_tokens_over=SEED_CODE_MAX_TOKENS)
        )

    reasoning = [m for m in models if "reasoning" in m.task_types]
    if reasoning:
        long_id = max(reasoning, key=lambda m: m.context_limit).id
    else:
        long_id = config.default_model
        notes.append(
            f"no model declares task_types: [reasoning]; long reasoning goes to '{long_id}' "
            "(routing.default)"
        )
    rules.append(
        RuleConfig(route=long_id, task_type="reasoning", prompt_tokens_over=SEED_LONG_PROMPT_TOKENS)
    )

    timed = [m for m in models if m.latency_target_ms is not None]
    if timed:
        fast = min(timed, key=lambda m: m.latency_target_ms or 0)
    else:
        fast = min(models, key=lambda m: m.max_model_len)
        notes.append(
            f"no model sets latency_target_ms; assuming '{fast.id}' (smallest max_model_len) "
            f"is the fast model for latency targets <= {SEED_FAST_LATENCY_MS} ms"
        )
    rules.append(RuleConfig(route=fast.id, latency_target_ms_at_most=SEED_FAST_LATENCY_MS))
    notes.insert(0, "routing.rules not set: using the built-in decision matrix " + describe(rules))
    return rules, notes


def describe(rules: list[RuleConfig]) -> str:
    return "; ".join(f"{rule_text(r)} -> {r.route}" for r in rules)


def rule_text(rule: RuleConfig) -> str:
    parts = []
    if rule.task_type is not None:
        parts.append(f"task_type={rule.task_type}")
    if rule.max_tokens_over is not None:
        parts.append(f"max_tokens>{rule.max_tokens_over}")
    if rule.prompt_tokens_over is not None:
        parts.append(f"prompt_tokens>{rule.prompt_tokens_over}")
    if rule.latency_target_ms_at_most is not None:
        parts.append(f"latency_target_ms<={rule.latency_target_ms_at_most}")
    return " & ".join(parts) or "always"


def rule_matches(
    rule: RuleConfig, c: Classification, prompt_tokens: int, max_tokens: int | None
) -> bool:
    if rule.task_type is not None and rule.task_type != c.task_type:
        return False
    if rule.max_tokens_over is not None and (max_tokens or 0) <= rule.max_tokens_over:
        return False
    if rule.prompt_tokens_over is not None and prompt_tokens <= rule.prompt_tokens_over:
        return False
    if rule.latency_target_ms_at_most is not None and (
        c.latency_target_ms is None or c.latency_target_ms > rule.latency_target_ms_at_most
    ):
        return False
    return True


def candidate_order(
    config: TurnoutConfig,
    rules: list[RuleConfig],
    c: Classification,
    prompt_tokens: int,
    max_tokens: int | None,
    pinned: str | None = None,
) -> list[tuple[str, str]]:
    """Every model once, most preferred first, each with why it stands where it does.

    Order: the pinned model, the classifier's own preference, matching rules, models declaring the
    task type, ``routing.default``, ``routing.fallback_order``, then the rest as a last resort.
    """
    order: dict[str, str] = {}

    def add(model_id: str, why: str) -> None:
        order.setdefault(model_id, why)

    if pinned is not None:
        add(pinned, "pinned by the request")
    for model_id in c.preferred:
        add(model_id, "preferred by the classifier")
    for i, rule in enumerate(rules):
        if rule_matches(rule, c, prompt_tokens, max_tokens):
            add(rule.route, f"rule {i}: {rule_text(rule)}")
    for m in config.models:
        if c.task_type in m.task_types:
            add(m.id, f"serves {c.task_type}")
    add(config.default_model, "routing.default")
    for model_id in config.routing.fallback_order:
        add(model_id, "routing.fallback_order")
    for m in config.models:
        add(m.id, "last resort")
    return _share_tokenizer_first(config, list(order.items()))


# Groups whose members stand equal: the config expresses no preference among them.
_EQUAL_STANDING = ("serves ", "last resort")


def _share_tokenizer_first(
    config: TurnoutConfig, order: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Within a group of equal standing, models sharing the first choice's tokenizer go first:
    their count is the one already made, and it is exact for them too."""
    if not order:
        return order
    spec = {m.id: m.tokenizer for m in config.models}
    lead = spec[order[0][0]]
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(order):
        why = order[i][1]
        j = i
        while j < len(order) and order[j][1] == why:
            j += 1
        group = order[i:j]
        if why.startswith(_EQUAL_STANDING):
            group.sort(key=lambda item: spec[item[0]] != lead)
        out.extend(group)
        i = j
    return out
