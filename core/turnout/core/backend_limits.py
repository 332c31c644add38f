"""The context each backend itself enforces, read once at start.

A config can promise more than the server serves (a vLLM started with a smaller
``--max-model-len``): where the backend says less, the smaller wins and the mismatch is logged.
"""

from __future__ import annotations

import asyncio
import logging

from turnout.core.config import ModelConfig
from turnout.core.providers import Dispatcher

log = logging.getLogger("turnout.core.router")
TIMEOUT_S = 3.0


async def adopt_backend_limits(
    models: dict[str, ModelConfig], dispatchers: dict[str, Dispatcher], limits: dict[str, int]
) -> None:
    """Lower ``limits`` in place where a backend reports a smaller context than configured."""

    async def ask(model_id: str) -> int | None:
        try:
            return await asyncio.wait_for(
                dispatchers[model_id].context_limit(models[model_id]), TIMEOUT_S
            )
        except Exception:
            return None

    answers = await asyncio.gather(*(ask(model_id) for model_id in models))
    for model_id, backend_limit in zip(models, answers, strict=True):
        configured = models[model_id].context_limit
        if backend_limit is None or backend_limit == configured:
            continue
        if backend_limit < configured:
            limits[model_id] = backend_limit
        log.warning(
            "%s: the backend serves %d tokens of context, the config says %d; routing with %d",
            model_id,
            backend_limit,
            configured,
            limits[model_id],
        )
