"""The plugin contract: one test per hook (test_hook_<name>), and the plugin manager's rules."""

from __future__ import annotations

import asyncio
import sys
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pluggy
import pytest

from turnout.core import (
    Candidate,
    Classification,
    HealthReport,
    ModelConfig,
    PluginError,
    Provider,
    RouteEvent,
    Router,
    RouteRequest,
    Timeouts,
    TokenCount,
    TurnoutConfig,
    UpstreamError,
    UpstreamReply,
    create_plugin_manager,
    hookimpl,
    parse_request,
)
from turnout.core.plugins import collect_providers
from turnout.core.testing import FakeUpstream, make_config

REPO = Path(__file__).resolve().parents[2]


def chat(text: str = "hello", **extra: Any) -> RouteRequest:
    return parse_request(
        "chat", {"model": "auto", "messages": [{"role": "user", "content": text}], **extra}
    )


def three_models(**routing: Any) -> TurnoutConfig:
    return make_config(
        [
            {"id": "a", "api_base": "http://127.0.0.1:9/v1"},
            {"id": "b", "api_base": "http://127.0.0.1:9/v1"},
            {"id": "c", "api_base": "http://127.0.0.1:9/v1"},
        ],
        routing={"default": "a", "fallback_order": ["b", "c"], **routing},
    )


def test_hook_turnout_classifiers(
    turnout_plugin_manager: pluggy.PluginManager, register_plugin: Callable[..., Any]
) -> None:
    class Everything:
        def classify(self, request: RouteRequest) -> Classification:
            return Classification(
                "extraction", "classifier", reason="all is extraction", preferred=("c",)
            )

    class Plugin:
        @hookimpl
        def turnout_classifiers(self) -> Iterable[Provider[Any]]:
            return [Provider("everything", lambda config: Everything())]

    register_plugin(Plugin())
    router = Router(three_models(classifier="everything"), plugin_manager=turnout_plugin_manager)
    decision = asyncio.run(router.decide(chat()))
    assert decision.classification.task_type == "extraction"
    assert decision.order[0] == "c"
    assert decision.candidates[0].why == "preferred by the classifier"


def test_hook_turnout_tokenizers(
    turnout_plugin_manager: pluggy.PluginManager, register_plugin: Callable[..., Any]
) -> None:
    class Words:
        exact = True

        def __init__(self, argument: str) -> None:
            self.name = f"words:{argument}"
            self.weight = int(argument)

        async def count(self, request: RouteRequest) -> TokenCount:
            return TokenCount(len(request.text.split()) * self.weight, self.name, exact=True)

    class Plugin:
        @hookimpl
        def turnout_tokenizers(self) -> Iterable[Provider[Any]]:
            return [Provider("words", lambda argument, model: Words(argument))]

    register_plugin(Plugin())

    def models(limit: int) -> TurnoutConfig:
        return make_config(
            [
                {
                    "id": "heavy",
                    "api_base": "http://127.0.0.1:9/v1",
                    "tokenizer": "words:100",
                    "max_model_len": limit,
                },
                {
                    "id": "light",
                    "api_base": "http://127.0.0.1:9/v1",
                    "tokenizer": "words:1",
                    "max_model_len": limit,
                },
            ],
            routing={"default": "heavy"},
        )

    # "one two three" is estimated at 11 tokens. With a window of 14 that is near the limit, so
    # each model's own tokenizer counts: 300 for heavy (dropped), 3 for light.
    near = Router(models(14), plugin_manager=turnout_plugin_manager)
    decision = asyncio.run(near.decide(chat("one two three", max_tokens=1)))
    by_id = {c.endpoint: c for c in decision.candidates}
    assert (by_id["heavy"].prompt_tokens, by_id["light"].prompt_tokens) == (300, 3)
    assert by_id["heavy"].tokenizer == "words:100" and by_id["heavy"].exact
    assert decision.order == ("light",)
    # Far below a 4,096 window the estimate settles it and no tokenizer runs.
    far = Router(models(4096), plugin_manager=turnout_plugin_manager)
    decision = asyncio.run(far.decide(chat("one two three", max_tokens=1)))
    assert {(c.tokenizer, c.exact) for c in decision.candidates} == {("estimate", False)}
    assert decision.order == ("heavy", "light")


def test_hook_turnout_dispatchers(
    turnout_plugin_manager: pluggy.PluginManager, register_plugin: Callable[..., Any]
) -> None:
    sent: list[str] = []

    class InProcess:
        async def start(self) -> None: ...
        async def close(self) -> None: ...

        async def send(
            self, model: ModelConfig, request: RouteRequest, timeouts: Timeouts
        ) -> UpstreamReply:
            sent.append(model.id)
            return UpstreamReply(200, b'{"choices": []}', "application/json", {"prompt_tokens": 2})

        async def open_stream(
            self, model: ModelConfig, request: RouteRequest, timeouts: Timeouts
        ) -> Any:
            raise UpstreamError(
                "this dispatcher does not stream",
                endpoint=model.id,
                reason="http_400",
                status=400,
                retryable=False,
            )

        async def check_health(self, model: ModelConfig) -> HealthReport:
            return HealthReport(True, "in process", 0.0)

        async def context_limit(self, model: ModelConfig) -> int | None:
            return None

        async def backend_metrics(self, model: ModelConfig) -> dict[str, float] | None:
            return None

    class Plugin:
        @hookimpl
        def turnout_dispatchers(self) -> Iterable[Provider[Any]]:
            return [Provider("in-process", lambda config: InProcess())]

    register_plugin(Plugin())
    config = make_config([{"id": "local", "provider": "in-process"}])
    router = Router(config, plugin_manager=turnout_plugin_manager)
    done = asyncio.run(router.complete(chat()))
    assert sent == ["local"] and done.endpoint == "local"
    assert done.reply.usage == {"prompt_tokens": 2}


def _registers(
    pm: pluggy.PluginManager, register: Callable[..., Any], hook: str, attr: str
) -> None:
    marker = object()
    plugin = type("P", (), {hook: hookimpl(lambda self: [Provider("third-party", marker)])})()
    register(plugin)
    registry = collect_providers(pm)
    assert getattr(registry, attr)["third-party"].factory is marker


def test_hook_turnout_breakers(
    turnout_plugin_manager: pluggy.PluginManager, register_plugin: Callable[..., Any]
) -> None:
    _registers(turnout_plugin_manager, register_plugin, "turnout_breakers", "breakers")


def test_hook_turnout_hardware_probes(
    turnout_plugin_manager: pluggy.PluginManager, register_plugin: Callable[..., Any]
) -> None:
    _registers(
        turnout_plugin_manager, register_plugin, "turnout_hardware_probes", "hardware_probes"
    )


def test_hook_turnout_metrics_sinks(
    turnout_plugin_manager: pluggy.PluginManager, register_plugin: Callable[..., Any]
) -> None:
    _registers(turnout_plugin_manager, register_plugin, "turnout_metrics_sinks", "metrics_sinks")


def test_hook_turnout_rank_endpoints(
    turnout_plugin_manager: pluggy.PluginManager, register_plugin: Callable[..., Any]
) -> None:
    seen: list[list[str]] = []

    class Reverse:
        @hookimpl
        def turnout_rank_endpoints(
            self, request: RouteRequest, classification: Classification, candidates: list[Candidate]
        ) -> list[Candidate]:
            seen.append([c.endpoint for c in candidates])
            return list(reversed(candidates))[:2]

    register_plugin(Reverse())
    decision = asyncio.run(
        Router(three_models(), plugin_manager=turnout_plugin_manager).decide(chat())
    )
    assert seen == [["a", "b", "c"]]
    assert decision.order == ("c", "b")


def test_hook_turnout_record(
    turnout_plugin_manager: pluggy.PluginManager,
    register_plugin: Callable[..., Any],
    openai_upstream: Callable[..., FakeUpstream],
) -> None:
    events: list[RouteEvent] = []

    class Recorder:
        @hookimpl
        def turnout_record(self, event: RouteEvent) -> None:
            events.append(event)

    register_plugin(Recorder())
    broken, good = openai_upstream("broken", mode="status:503"), openai_upstream("good")
    config = make_config(
        [{"id": "broken", "api_base": broken.api_base}, {"id": "good", "api_base": good.api_base}]
    )

    async def run() -> None:
        router = Router(config, plugin_manager=turnout_plugin_manager)
        await router.start()
        try:
            await router.complete(chat(max_tokens=64, turnout={"task_type": "chat"}))
        finally:
            await router.close()

    asyncio.run(run())
    (event,) = events
    assert (event.endpoint, event.outcome, event.status) == ("good", "ok", 200)
    assert [(a.endpoint, a.reason, a.status) for a in event.attempts] == [
        ("broken", "http_503", 503)
    ]
    assert (event.prompt_tokens, event.completion_tokens) == (7, good.chunks)
    assert event.max_tokens == 64 and event.task_type == "chat" and event.latency_s > 0


def test_hook_turnout_configure(
    turnout_plugin_manager: pluggy.PluginManager, register_plugin: Callable[..., Any]
) -> None:
    received: list[TurnoutConfig] = []

    class Late:
        @hookimpl
        def turnout_configure(self, config: TurnoutConfig) -> None:
            received.append(config)

    config = three_models()
    Router(config, plugin_manager=turnout_plugin_manager)
    register_plugin(Late())  # registered after start: historic, so still called
    assert received == [config]


def test_two_plugins_claiming_one_name_is_an_error_naming_both(
    turnout_plugin_manager: pluggy.PluginManager, register_plugin: Callable[..., Any]
) -> None:
    class Impostor:
        @hookimpl
        def turnout_classifiers(self) -> Iterable[Provider[Any]]:
            return [Provider("rules", lambda config: None)]

    register_plugin(Impostor(), name="impostor")
    with pytest.raises(
        PluginError, match="'rules' is claimed by both 'turnout.plugins.rules' and 'impostor'"
    ):
        collect_providers(turnout_plugin_manager)


def test_unknown_hook_is_rejected_at_start(
    turnout_plugin_manager: pluggy.PluginManager, register_plugin: Callable[..., Any]
) -> None:
    class Typo:
        @hookimpl
        def turnout_clasifiers(self) -> list[Any]:
            return []

    register_plugin(Typo(), name="typo")
    with pytest.raises(pluggy.PluginValidationError):
        turnout_plugin_manager.check_pending()


def _install_entry_point(root: Path, dist: str, name: str, value: str) -> None:
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[turnout]\n{name} = {value}\n")


def test_broken_plugin_fails_with_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_turnout_plugin.py").write_text("import not_a_real_module_anywhere\n")
    _install_entry_point(tmp_path, "broken_turnout_plugin", "broken", "broken_turnout_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"plugin 'broken' \(broken_turnout_plugin\) failed"):
        create_plugin_manager(load_entry_points=True)


def test_autoload_switch_skips_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_turnout_plugin.py").write_text("raise RuntimeError('loaded')\n")
    _install_entry_point(tmp_path, "broken_turnout_plugin", "broken", "broken_turnout_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TURNOUT_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert create_plugin_manager().get_plugin("broken") is None


def test_example_package_switches_classifier_by_config_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = REPO / "examples" / "turnout-plugin-example"
    declared = tomllib.loads((example / "pyproject.toml").read_text())
    ((name, value),) = declared["project"]["entry-points"]["turnout"].items()
    _install_entry_point(tmp_path, "turnout_plugin_example", name, value)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(example / "src"))
    monkeypatch.delitem(sys.modules, "turnout_plugin_example", raising=False)

    pm = create_plugin_manager(load_entry_points=True)
    config = three_models(classifier="by-length")
    decision = asyncio.run(Router(config, plugin_manager=pm).decide(chat("x" * 2500)))
    assert decision.classification.task_type == "reasoning"
    assert decision.classification.reason == "prompt is over 2000 characters"


def test_every_hook_has_a_test_and_documentation() -> None:
    from turnout.core import hookspecs

    hooks = [n for n in dir(hookspecs) if n.startswith("turnout_")]
    assert len(hooks) == 9
    tests = Path(__file__).read_text()
    readme = (REPO / "README.md").read_text()
    for hook in hooks:
        assert f"def test_hook_{hook}(" in tests, f"{hook} has no test_hook_{hook}"
        assert f"`{hook}`" in readme, f"{hook} is not documented in README.md"
        assert getattr(hookspecs, hook).__doc__, f"{hook} has no docstring"
