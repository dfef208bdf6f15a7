"""What the benchmarks share: each table size runs in a fresh process (moto's state is
global to a process), started with a clean environment, and hands back one JSON result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def run_sizes(module: str, sizes: str, *args: str) -> list[dict[str, Any]]:
    """Run `python -m module --one SIZE *args` for each size; collect their RESULT lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OBLIO_", "MOTO_"))}
    results = []
    for size in [int(s) for s in sizes.split(",")]:
        print(f"running {size} contacts ...", flush=True)
        out = subprocess.run([sys.executable, "-m", module, "--one", str(size), *args],
                             capture_output=True, text=True, env=env, check=False)
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if out.returncode or not line:
            sys.exit(f"the {size} run failed:\n{out.stderr[-3000:]}")
        results.append(json.loads(line[0][len("RESULT "):]))
    return results


def emit(result: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(result), flush=True)
