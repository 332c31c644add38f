"""The ``estimate`` tokenizer: no vocabulary, just turnout's calibrated length estimate.

It marks a model whose tokenizer is not available here; turnout counts it with the same estimate it
uses as the first stage for every model, calibrated from the usage that model's backend reports.
"""

from __future__ import annotations

from collections.abc import Iterable

from turnout.core import ModelConfig, Provider, RouteRequest, TokenCount, Tokenizer, hookimpl
from turnout.core.tokens import estimate_request_tokens


class EstimateTokenizer:
    name = "estimate"
    exact = False

    async def count(self, request: RouteRequest) -> TokenCount:
        return TokenCount(estimate_request_tokens(request), self.name, exact=False)


_SHARED = EstimateTokenizer()


def _build(argument: str, model: ModelConfig) -> EstimateTokenizer:
    return _SHARED


@hookimpl(trylast=True)
def turnout_tokenizers() -> Iterable[Provider[Tokenizer]]:
    return [Provider("estimate", _build, "character/byte-length estimate, calibrated per model")]
