"""``tiktoken:<encoding>``: OpenAI's BPE encodings, loaded without any download.

tiktoken fetches its BPE files from the internet on first use, which fails offline and on
air-gapped GPU hosts. turnout looks for the file, under the name tiktoken caches it by, in
``TIKTOKEN_CACHE_DIR`` when set, else in the folder that litellm's package ships (found without
importing litellm), and loads it from there; otherwise it stops with how to provide it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from turnout.core import (
    ConfigError,
    ModelConfig,
    Provider,
    RouteRequest,
    TokenCount,
    Tokenizer,
    hookimpl,
)
from turnout.core.tokens import off_loop_if_large

BLOB = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
ENCODINGS = ("cl100k_base", "o200k_base", "p50k_base", "r50k_base")
# Chat format of OpenAI's models: 3 tokens frame each message, 3 prime the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3
_LOCK = threading.Lock()


def cache_file_name(encoding: str) -> str:
    """The name tiktoken caches an encoding's BPE file under (SHA-1 of its URL)."""
    return hashlib.sha1(BLOB.format(encoding).encode()).hexdigest()


def bpe_folders() -> list[Path]:
    folders = []
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        folders.append(Path(os.environ["TIKTOKEN_CACHE_DIR"]))
    spec = importlib.util.find_spec("litellm")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            folders.append(Path(root) / "litellm_core_utils" / "tokenizers")
    return folders


def load_encoding(encoding: str) -> Any:
    if encoding not in ENCODINGS:
        raise ConfigError(f"unknown tiktoken encoding '{encoding}'; known: {', '.join(ENCODINGS)}")
    name = cache_file_name(encoding)
    folder = next((f for f in bpe_folders() if (f / name).is_file()), None)
    if folder is None:
        raise ConfigError(
            f"tiktoken encoding '{encoding}' is not available offline: no file {name} in "
            f"TIKTOKEN_CACHE_DIR or an installed package. On a connected machine run "
            f"`python -c \"import tiktoken; tiktoken.get_encoding('{encoding}')\"` with "
            "TIKTOKEN_CACHE_DIR set, then copy that folder here and point TIKTOKEN_CACHE_DIR at it"
        )
    import tiktoken

    # tiktoken reads the cache folder from the environment at load time; hold it only for the load.
    with _LOCK:
        before = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
        try:
            return tiktoken.get_encoding(encoding)
        finally:
            if before is None:
                del os.environ["TIKTOKEN_CACHE_DIR"]
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = before


class TiktokenTokenizer:
    exact = True

    def __init__(self, encoding: str) -> None:
        self.name = f"tiktoken:{encoding}"
        self._encoding = load_encoding(encoding)

    def encode_count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))

    def _count(self, request: RouteRequest) -> TokenCount:
        if request.kind == "chat":
            tokens = TOKENS_PER_REPLY
            for message in request.messages:
                tokens += TOKENS_PER_MESSAGE + self.encode_count(str(message.get("role", "")))
                tokens += self.encode_count(_text(message))
                if message.get("name"):
                    tokens += 1 + self.encode_count(str(message["name"]))
        else:
            tokens = self.encode_count(request.text)
        return TokenCount(tokens, self.name, exact=True)

    async def count(self, request: RouteRequest) -> TokenCount:
        return await off_loop_if_large(self._count, request)


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return str(content or "")


_LOADED: dict[str, TiktokenTokenizer] = {}


def _build(argument: str, model: ModelConfig) -> TiktokenTokenizer:
    encoding = argument or "cl100k_base"
    if encoding not in _LOADED:
        _LOADED[encoding] = TiktokenTokenizer(encoding)
    return _LOADED[encoding]


@hookimpl(trylast=True)
def turnout_tokenizers() -> Iterable[Provider[Tokenizer]]:
    return [Provider("tiktoken", _build, "OpenAI BPE encodings from local files (no download)")]
