"""What the benchmarks share: each table size runs in a fresh process (moto's state is
global to a process), started with a clean environment, and hands back one JSON result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def run_module(module: str, *args: str) -> dict[str, Any]:
    """Run `python -m module *args` in a fresh process; its RESULT line, parsed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OBLIO_", "MOTO_"))}
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                         text=True, env=env, check=False)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not line:
        sys.exit(f"{module} {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(line[0][len("RESULT "):])
    return result


def run_sizes(module: str, sizes: str, *args: str) -> list[dict[str, Any]]:
    """Run `python -m module --one SIZE *args` for each size; collect their results."""
    results = []
    for size in [int(s) for s in sizes.split(",")]:
        print(f"running {size} ...", flush=True)
        results.append(run_module(module, "--one", str(size), *args))
    return results


def emit(result: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(result), flush=True)
