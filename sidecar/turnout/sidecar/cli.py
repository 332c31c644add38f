"""The ``turnout`` command: serve, check-config, route."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from turnout.core import (
    ConfigError,
    LoadedConfig,
    Router,
    RouteRequest,
    TokenCount,
    TurnoutConfig,
    TurnoutError,
    decode_body,
    detect_kind,
    load_config,
    parse_request,
)

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print("turnout: invalid config:\n  " + "\n  ".join(exc.problems), file=sys.stderr)
        return EXIT_INVALID
    except TurnoutError as exc:
        print(f"turnout: {exc.message}", file=sys.stderr)
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="turnout", description="Route OpenAI-style requests to the model endpoint that fits."
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the OpenAI-compatible sidecar")
    serve.add_argument("--config", required=True, type=Path, help="router.config.yaml")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(func=_serve)

    check = sub.add_parser("check-config", help="validate a config; exit 2 when invalid")
    check.add_argument("path", type=Path)
    check.set_defaults(func=_check_config)

    route = sub.add_parser("route", help="explain how a request would be routed (sends nothing)")
    route.add_argument("--config", required=True, type=Path)
    route.add_argument("body", help="a JSON request body file, or - for standard input")
    route.set_defaults(func=_route)

    tokens = sub.add_parser("tokens", help="count a prompt in every configured model's tokenizer")
    tokens.add_argument("--config", required=True, type=Path)
    tokens.add_argument("prompt", help="a text file or an OpenAI JSON body; - for standard input")
    tokens.add_argument("--json", action="store_true")
    tokens.set_defaults(func=_tokens)

    profile = sub.add_parser("profile", help="probe this host's hardware (GPUs via NVML, CPU, RAM)")
    profile.add_argument("--json", action="store_true", help="print the versioned JSON profile")
    profile.add_argument(
        "--measure", action="store_true", help="also measure copy bandwidth (needs torch or cupy)"
    )
    profile.add_argument(
        "--baseline",
        action="store_true",
        help="also measure each configured endpoint (needs --config): TTFT, tokens/s at c=1, 16",
    )
    profile.add_argument("--config", type=Path, help="router.config.yaml, for --baseline")
    profile.add_argument("--out", type=Path, help="also write the JSON profile to this file")
    profile.set_defaults(func=_profile)

    plan = sub.add_parser("plan", help="safe limits and launch commands for each model")
    plan.add_argument("--config", required=True, type=Path)
    plan.add_argument(
        "--profile", type=Path, help="a `turnout profile --json` file (default: probe)"
    )
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(func=_plan)
    return parser


def _load(path: Path) -> LoadedConfig:
    loaded = load_config(path)
    for warning in loaded.warnings:
        print(f"turnout: warning: {warning}", file=sys.stderr)
    return loaded


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from turnout.sidecar.app import create_app

    config = _load(args.config).config
    level = config.monitoring.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Router(config)  # fail on plugin or provider errors before binding the port
    app = create_app(config)
    print(f"turnout: serving on http://{args.host}:{args.port}/v1", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=config.monitoring.log_level)
    return EXIT_OK


def _check_config(args: argparse.Namespace) -> int:
    loaded = _load(args.path)
    Router(loaded.config)  # providers named in the config must exist
    models = ", ".join(m.id for m in loaded.config.models)
    print(f"{args.path}: valid ({len(loaded.config.models)} models: {models})")
    return EXIT_OK


def _route(args: argparse.Namespace) -> int:
    config = _load(args.config).config
    raw = sys.stdin.buffer.read() if args.body == "-" else Path(args.body).read_bytes()
    data = decode_body(raw)
    request = parse_request(detect_kind(data), data)
    decision = asyncio.run(Router(config).decide(request))
    print(json.dumps(decision.as_dict(), indent=2))
    return EXIT_OK


def _tokens(args: argparse.Namespace) -> int:
    from turnout.core.tokens import estimate_request_tokens

    config = _load(args.config).config
    raw = sys.stdin.buffer.read() if args.prompt == "-" else Path(args.prompt).read_bytes()
    try:
        data = decode_body(raw)
        request = parse_request(detect_kind(data), data)
    except TurnoutError:
        text = raw.decode("utf-8", "replace")
        request = parse_request("completion", {"model": "auto", "prompt": text})
    router = Router(config)
    counts = asyncio.run(_count_all(router, request))
    rows = [
        {
            "model": model_id,
            "tokenizer": c.tokenizer,
            "tokens": c.tokens,
            "exact": c.exact,
            "effective_context": router.limits[model_id],
        }
        for model_id, c in counts.items()
    ]
    if args.json:
        print(json.dumps({"estimate": estimate_request_tokens(request), "models": rows}, indent=2))
        return EXIT_OK
    print(f"{'model':<24} {'tokens':>8}  {'exact':<5}  {'context':>8}  tokenizer")
    for row in rows:
        print(
            f"{row['model']:<24} {row['tokens']:>8}  {str(row['exact']).lower():<5}  "
            f"{row['effective_context']:>8}  {row['tokenizer']}"
        )
    return EXIT_OK


async def _count_all(router: Router, request: RouteRequest) -> dict[str, TokenCount]:
    return {
        model_id: await tokenizer.count(request)
        for model_id, tokenizer in router.tokenizers.items()
    }


def _profile(args: argparse.Namespace) -> int:
    from turnout.core import create_plugin_manager
    from turnout.core.hardware import collect_profile
    from turnout.sidecar.profile_view import render_profile

    profile = collect_profile(create_plugin_manager(), measure=args.measure)
    if args.baseline:
        if args.config is None:
            print("turnout: --baseline needs --config", file=sys.stderr)
            return EXIT_INVALID
        profile["baselines"] = asyncio.run(_baselines(_load(args.config).config))
    if args.out is not None:
        args.out.write_text(json.dumps(profile, indent=2))
    print(json.dumps(profile, indent=2) if args.json else render_profile(profile))
    return EXIT_OK


async def _baselines(config: TurnoutConfig) -> dict[str, object]:
    from turnout.core.baseline import measure_baselines

    router = Router(config)
    await router.start()
    try:
        return await measure_baselines(router)
    finally:
        await router.close()


def _plan(args: argparse.Namespace) -> int:
    from turnout.core import create_plugin_manager
    from turnout.core.hardware import collect_profile
    from turnout.sidecar.plan_view import plan_config, render_plan

    config = _load(args.config).config
    if args.profile is not None:
        profile = json.loads(args.profile.read_text())
    else:
        profile = collect_profile(create_plugin_manager())
    entries = plan_config(config, profile)
    print(json.dumps(entries, indent=2) if args.json else render_plan(entries))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
