"""The ``turnout`` command, run as users run it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def turnout(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnout.sidecar.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_valid_and_invalid(tmp_path: Path) -> None:
    ok = turnout("check-config", str(EXAMPLES / "router.config.yaml"))
    assert ok.returncode == 0 and "valid (3 models" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - id: a\n    max_model_len: -1\n")
    result = turnout("check-config", str(bad))
    assert result.returncode == 2
    assert f"{bad}:3: models[0].max_model_len" in result.stderr


def test_check_config_never_prints_secrets(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  - id: a\n    max_model_len: 100\n    api_key: ${T_KEY}\n")
    env_result = subprocess.run(
        [sys.executable, "-m", "turnout.sidecar.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "T_KEY": "sk-planted-42"},
    )
    assert env_result.returncode == 0
    assert "sk-planted-42" not in env_result.stdout + env_result.stderr


def test_route_explains_without_sending(tmp_path: Path) -> None:
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "def f(): pass"}],
        "max_tokens": 4000,
    }
    result = turnout(
        "route", "--config", str(EXAMPLES / "router.config.yaml"), "-", stdin=json.dumps(body)
    )
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["classification"]["task_type"] == "code"
    assert decision["order"][0] == "qwen-coder-32b"
    assert all("verdict" in c for c in decision["candidates"])


def test_serve_says_when_no_backend_answers(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "c.yaml"
    config.write_text(
        "models:\n  - {id: lonely, max_model_len: 100, api_base: 'http://127.0.0.1:9/v1'}\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "turnout.sidecar.cli",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    assert json.load(r)["status"] == "unavailable", "its one backend is down"
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("turnout serve did not come up")
                time.sleep(0.1)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    assert "no backend answered" in stderr
    assert "lonely at http://127.0.0.1:9/v1 does not answer" in stderr
