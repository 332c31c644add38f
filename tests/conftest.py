from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import openai
import pytest

os.environ.setdefault("TURNOUT_DISABLE_PLUGIN_AUTOLOAD", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

pytest_plugins = ["turnout.core.testing", "turnout.sidecar.testing"]


@pytest.fixture
def openai_client() -> Iterator[Callable[[str], openai.OpenAI]]:
    """Official openai clients for a turnout base URL, closed after the test (no leaked sockets)."""
    made: list[openai.OpenAI] = []

    def make(base_url: str) -> openai.OpenAI:
        client = openai.OpenAI(base_url=base_url + "/v1", api_key="client-key", max_retries=0)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
