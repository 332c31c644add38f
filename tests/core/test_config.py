"""Config loading: the seed loads unchanged, mistakes name file/line/key, secrets stay secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnout.core import ConfigError, Router, load_config
from turnout.core.testing import make_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEED_COPY = EXAMPLES / "seed.config.yaml"
SHARED_SEED = EXAMPLES.parent.parent / "shared" / "seed" / "router.config.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "router.config.yaml"
    path.write_text(text)
    return path


@pytest.mark.skipif(not SHARED_SEED.exists(), reason="no shared/ beside this checkout")
def test_seed_copy_is_the_seed_unchanged() -> None:
    assert SEED_COPY.read_bytes() == SHARED_SEED.read_bytes()


def test_seed_template_loads_unchanged_with_warnings() -> None:
    config, warnings = load_config(SEED_COPY)
    assert [m.id for m in config.models] == ["qwen-coder-32b", "llama-scout-17b", "phi-medium-14b"]
    assert [m.api_base for m in config.models] == [
        "http://localhost:8000/v1",
        "http://localhost:8001/v1",
        "http://localhost:8002/v1",
    ]
    assert config.circuit_breaker.failure_threshold == 5
    assert config.inference.gpu_memory_utilization == 0.92
    assert any("no api_base; assuming http://localhost:8000/v1" in w for w in warnings)
    assert any("assuming 'qwen-coder-32b' from its id" in w for w in warnings)


def test_example_config_is_valid_and_quiet() -> None:
    config, warnings = load_config(EXAMPLES / "router.config.yaml")
    assert warnings == []
    assert config.model("qwen-coder-32b").context_limit == 131072


def test_errors_name_file_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "models:\n  - id: a\n    max_model_len: lots\n    api_bse: x\nrouting:\n  defualt: a\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        f"{path}:3: models[0].max_model_len: expected an integer, got 'lots'",
        f"{path}:4: models[0].api_bse: unknown key; did you mean 'api_base'?",
        f"{path}:6: routing.defualt: unknown key; did you mean 'default'?",
    ]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - id: a\n    max_model_len: [1\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: not valid YAML"):
        load_config(path)


def test_cross_references_are_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "models:\n  - {id: alpha, max_model_len: 10}\nrouting:\n  fallback_order: [alpah]\n",
    )
    with pytest.raises(
        ConfigError,
        match=r"fallback_order\[0\]: no model has id 'alpah'; "
        r"did you mean 'alpha'\?",
    ):
        load_config(path)


def test_effective_context_cannot_exceed_window() -> None:
    with pytest.raises(ConfigError, match="effective_context .8192. is larger than max_model_len"):
        make_config([{"id": "a", "max_model_len": 4096, "effective_context": 8192}])


def test_secrets_come_from_env_and_never_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSTREAM_KEY", "sk-very-secret-value")
    path = write(
        tmp_path, "models:\n  - id: a\n    max_model_len: 10\n    api_key: ${UPSTREAM_KEY}\n"
    )
    config, _ = load_config(path)
    key = config.models[0].api_key
    assert key is not None and key.get_secret_value() == "sk-very-secret-value"
    assert "sk-very-secret-value" not in repr(config) + str(config)
    assert "sk-very-secret-value" not in config.model_dump_json()


def test_missing_env_var_is_named_without_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = write(
        tmp_path, "models:\n  - id: a\n    max_model_len: 10\n    api_key: ${NOT_SET_ANYWHERE}\n"
    )
    with pytest.raises(
        ConfigError,
        match=rf"{path}:4: models\[0\].api_key: environment variable "
        r"\$\{NOT_SET_ANYWHERE\} is not set",
    ):
        load_config(path)


def test_unknown_provider_and_tokenizer_fail_at_start() -> None:
    with pytest.raises(ConfigError, match=r"models\[0\].provider \(a\): unknown provider 'tgi'"):
        Router(make_config([{"id": "a", "provider": "tgi"}]))
    with pytest.raises(ConfigError, match=r"no tokenizer scheme named 'sentencepiece'"):
        Router(make_config([{"id": "a", "tokenizer": "sentencepiece:/x"}]))
    with pytest.raises(ConfigError, match=r"no classifier named 'rulez'; did you mean 'rules'"):
        Router(make_config([{"id": "a"}], routing={"classifier": "rulez"}))


def test_duplicate_and_reserved_ids_are_rejected() -> None:
    with pytest.raises(ConfigError, match="used twice"):
        make_config([{"id": "a"}, {"id": "a"}])
    with pytest.raises(ConfigError, match="reserved"):
        make_config([{"id": "auto"}])
