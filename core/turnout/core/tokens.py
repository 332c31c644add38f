"""Counting prompt tokens: the cheap estimate every candidate gets, its per-endpoint calibration,
and running exact tokenizers off the event loop when a prompt is large.

Byte-level BPE vocabularies give English about four characters a token and CJK about one token a
character; the estimate follows that split and then learns each endpoint's real ratio from the
counts its tokenizer or its backend report.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from turnout.core.types import RouteRequest, TokenCount

ASCII_CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3
# Above this many characters an exact tokenizer runs in a worker thread, not on the event loop.
OFF_LOOP_CHARS = 16_000
CALIBRATION_WEIGHT = 0.2
CALIBRATION_BOUNDS = (0.25, 4.0)


def estimate_text_tokens(text: str) -> int:
    """Tokens in ``text``, estimated from its character and UTF-8 byte counts (microseconds)."""
    chars = len(text)
    if text.isascii():
        return -(-chars // ASCII_CHARS_PER_TOKEN)
    extra_bytes = len(text.encode("utf-8", "surrogatepass")) - chars
    wide = min(chars, extra_bytes // 2 + extra_bytes % 2)
    return -(-(chars - wide) // ASCII_CHARS_PER_TOKEN) + wide


def estimate_request_tokens(request: RouteRequest) -> int:
    tokens = estimate_text_tokens(request.text)
    if request.kind == "chat":
        tokens += TOKENS_PER_MESSAGE * len(request.messages) + TOKENS_PER_REPLY
    return tokens


class Calibration:
    """Per endpoint, an exponential average of real tokens over estimated tokens."""

    def __init__(self) -> None:
        self._ratio: dict[str, float] = {}

    def factor(self, endpoint: str) -> float:
        return self._ratio.get(endpoint, 1.0)

    def calibrated(self, endpoint: str, raw_estimate: int) -> int:
        return math.ceil(raw_estimate * self.factor(endpoint))

    def observe(self, endpoint: str, raw_estimate: int, real: int) -> None:
        if raw_estimate <= 0 or real <= 0:
            return
        low, high = CALIBRATION_BOUNDS
        ratio = min(high, max(low, real / raw_estimate))
        before = self._ratio.get(endpoint)
        self._ratio[endpoint] = (
            ratio if before is None else before + CALIBRATION_WEIGHT * (ratio - before)
        )


async def off_loop_if_large(
    count: Callable[[RouteRequest], TokenCount], request: RouteRequest
) -> TokenCount:
    """Run a blocking tokenizer inline for short prompts, in a thread for long ones."""
    if len(request.text) > OFF_LOOP_CHARS:
        return await asyncio.to_thread(count, request)
    return count(request)
