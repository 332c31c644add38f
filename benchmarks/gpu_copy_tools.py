"""Host <-> GPU copy bandwidth measured by turnout with each tool it supports, side by side.

python benchmarks/gpu_copy_tools.py
"""

from __future__ import annotations

import json

from turnout.plugins.copy_bandwidth import measure_copy_bandwidth

if __name__ == "__main__":
    print(
        json.dumps(
            {tool: measure_copy_bandwidth(tool=tool) for tool in ("torch", "cupy")}, indent=2
        )
    )
