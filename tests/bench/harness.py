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


def calls(io: dict[str, Any]) -> dict[str, int]:
    """A result's AWS calls by `service.Operation`, without the meter's other figures
    (owners, units, cost, flags) that share its `io`."""
    return {k: v for k, v in io.items()
            if "." in k and isinstance(v, int) and not isinstance(v, bool)}


def timed_peak(fn: Any) -> tuple[Any, float, int]:
    """`fn()`'s result, its seconds, and the peak Python heap it allocated (tracemalloc)."""
    import time
    import tracemalloc

    tracemalloc.start()
    began = time.monotonic()
    try:
        out = fn()
        seconds = time.monotonic() - began
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, seconds, peak


def emit(result: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def local_stack(datamap: Any = None, tenants: tuple[str, ...] = (),
                sandboxes: bool = False) -> Any:
    """A started local stack without the demo data (each benchmark seeds its own), on free
    ports, optionally with another data map, more tenants, and each Lambda invocation in a
    worker process of its own (infra/local/sandboxes.py); the caller stops it."""
    from infra.local.stack import LocalStack, free_port

    stack = LocalStack(api_port=free_port(), aws_port=free_port(), demo=False, quiet=True,
                       write_state=False, datamap=datamap, tenants=tenants,
                       sandboxes=sandboxes)
    stack.start()
    return stack


def direct_writer() -> Any:
    """Write items straight into moto's in-process DynamoDB backend (bench loading only)."""
    from moto.dynamodb.models import dynamodb_backends

    from oblio.core.settings import get_settings
    from oblio.store.tables import to_ddb

    s = get_settings()
    backend = dynamodb_backends[s.account_id][s.region]

    def write(table: str, items: list[dict[str, Any]]) -> None:
        for item in items:
            backend.put_item(table, to_ddb(item))

    return write
