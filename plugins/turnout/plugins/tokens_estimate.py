"""The ``estimate`` tokenizer: a length-based count that needs no vocabulary.

Byte-level BPE vocabularies give English text about four characters a token and CJK text about one
token a character; this estimate follows that split. Exact counts come from the model's own
tokenizer; this one is the fallback and the cheap first stage.
"""

from __future__ import annotations

from collections.abc import Iterable

from turnout.core import ModelConfig, Provider, RouteRequest, TokenCount, hookimpl
from turnout.core.providers import Tokenizer

ASCII_CHARS_PER_TOKEN = 4.0
# Chat formats add a few tokens per message (role markers) and a few to prime the reply.
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3


def estimate_text_tokens(text: str) -> int:
    """Tokens in ``text``, estimated from its character and UTF-8 byte counts."""
    chars = len(text)
    if text.isascii():
        return -(-chars // int(ASCII_CHARS_PER_TOKEN))
    extra_bytes = len(text.encode("utf-8", "surrogatepass")) - chars
    wide = min(chars, extra_bytes // 2 + (extra_bytes % 2))
    return -(-(chars - wide) // int(ASCII_CHARS_PER_TOKEN)) + wide


class EstimateTokenizer:
    name = "estimate"

    def count(self, request: RouteRequest) -> TokenCount:
        tokens = estimate_text_tokens(request.text)
        if request.kind == "chat":
            tokens += TOKENS_PER_MESSAGE * len(request.messages) + TOKENS_PER_REPLY
        return TokenCount(tokens=tokens, tokenizer=self.name, exact=False)


_SHARED = EstimateTokenizer()


def _build(argument: str, model: ModelConfig) -> EstimateTokenizer:
    return _SHARED


@hookimpl(trylast=True)
def turnout_tokenizers() -> Iterable[Provider[Tokenizer]]:
    return [Provider("estimate", _build, "character/byte-length estimate, no vocabulary")]
