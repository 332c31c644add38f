"""Measured latency per endpoint: recent time to first token and time per output token.

Percentiles over a window of recent successful requests, not means: one slow answer should not
move the estimate much, and a tail that grows should. Until an endpoint has ``MIN_SAMPLES``
answers, its estimate comes from the stored hardware baseline (or is unknown).
"""

from __future__ import annotations

from collections import deque

WINDOW = 200
MIN_SAMPLES = 5


class LatencyStats:
    def __init__(self) -> None:
        self._ttft: dict[str, deque[float]] = {}
        self._per_token: dict[str, deque[float]] = {}

    def observe(
        self, endpoint: str, latency_s: float, ttft_s: float | None, completion_tokens: int | None
    ) -> None:
        if ttft_s is not None:
            self._ttft.setdefault(endpoint, deque(maxlen=WINDOW)).append(ttft_s)
        if completion_tokens:
            # For an answer that was not streamed, the whole latency counts as generation: an
            # upper bound on the time per token.
            generating = latency_s - (ttft_s or 0.0)
            window = self._per_token.setdefault(endpoint, deque(maxlen=WINDOW))
            window.append(max(generating, 0.0) / completion_tokens)

    def estimate_s(self, endpoint: str, max_tokens: int) -> float | None:
        """p90 time to first token plus ``max_tokens`` at the p90 time per token; None until
        enough answers were seen."""
        per_token = self._per_token.get(endpoint)
        if per_token is None or len(per_token) < MIN_SAMPLES:
            return None
        ttft = self._ttft.get(endpoint)
        first = _p90(ttft) if ttft and len(ttft) >= MIN_SAMPLES else 0.0
        return first + max_tokens * _p90(per_token)

    def samples(self, endpoint: str) -> int:
        return len(self._per_token.get(endpoint, ()))


def _p90(values: deque[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
