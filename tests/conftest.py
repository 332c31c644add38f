from __future__ import annotations

import os

os.environ.setdefault("TURNOUT_DISABLE_PLUGIN_AUTOLOAD", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

pytest_plugins = ["turnout.core.testing", "turnout.sidecar.testing"]
