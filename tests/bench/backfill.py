"""Shadow backfill benchmark (identities stored as typed).

    python -m tests.bench.backfill                      # 10,000 and 100,000 items
    python -m tests.bench.backfill --sizes 10000 --segments 4

For each table size (a fresh local stack each, in its own process, on the typed example map
`examples/typed/map.yaml`): the stream poller is stopped (this measures the backfill alone),
and two tables of tenant acme are filled with `size` items each, holding e-mails (and, in
contacts, phones; 1 in 50 is "n/a") as people type them, without shadows: `typed-contacts`,
a pooled table keyed by the tenant (the backfill reads the tenant's partition with a Query),
and `acme-typed-leads`, the tenant's own (silo) table keyed per item (a Scan in `--segments`
parallel segments). For each table, through the API: POST /v1/backfills {"tables": [...]}
(the state machine: a Map over the segments, pages of OBLIO_BACKFILL_PAGE_SIZE, conditional
writes, checkpoints) polled to its end, then the same again, which must write nothing.
Printed: items per second (items read / the backfill's own elapsed time), AWS calls per item
by operation (from the backfill's `io`: the table's Query or Scan, the shadows' UpdateItem,
one checkpoint UpdateItem per page on oblio's table), and the peak memory (tracemalloc) of
one Scan segment run in a process of its own, as a Lambda would (moto serves from the
benchmark's process, so its memory is not counted; that segment reads every page of its
share of the leads table and writes nothing, the shadows being right by then).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from tests.bench.harness import direct_writer, emit, local_stack, run_sizes

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "examples" / "typed" / "map.yaml"
TABLE = "typed-contacts"
LEADS = "acme-typed-leads"


def _leads(n: int) -> list[dict[str, Any]]:
    return [{"lead_id": f"l-{i:07d}", "email": f" Lead.{i}@Example.COM",
             "note": "met at a fair"} for i in range(n)]


def _items(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        phone = "n/a" if i % 50 == 0 else f"06 12 {i // 10000 % 100:02d} " \
                                             f"{i // 100 % 100:02d} {i % 100:02d}"
        out.append({"tenant_id": "acme", "contact_id": f"c-{i:07d}",
                    "email": f"  Person.{i}@Example.COM ", "phone": phone,
                    "name": f"Person {i}"})
    return out


def _wait(api: Any, backfill_id: str) -> dict[str, Any]:
    while True:
        out = api.get(f"/v1/backfills/{backfill_id}").json()
        if out["status"] in ("completed", "completed_with_errors", "failed"):
            return out
        time.sleep(0.5)


def measure(segments: int) -> None:
    """One segment alone in this process, under tracemalloc (what --measure runs)."""
    from oblio.control.tenants import Principal, get_tenant
    from oblio.core import datamap
    from oblio.core.bodies import BackfillBody
    from oblio.jobs import backfill
    from oblio.store import aws, workflows

    datamap.current()
    get_tenant("acme")
    aws.client("dynamodb").describe_limits()
    workflows.start = lambda *a, **k: "not started"  # type: ignore[assignment]
    started = backfill.create(Principal("acme", "key_bench", frozenset({"admin"}), False),
                              BackfillBody(tables=["leads"], segments=segments))
    tracemalloc.start()
    try:
        t = time.monotonic()
        while backfill.run_segment("acme", started["backfill_id"], LEADS, 0) != {"done": True}:
            pass
        seconds = time.monotonic() - t
        peak = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    row = backfill._segment_rows("acme", started["backfill_id"])[0]
    emit({"peak_mb": peak, "seconds": seconds,
          "counts": {k: int(v) for k, v in (row.counts.as_dict()).items()}})


def _in_own_process(segments: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "tests.bench.backfill", "--measure",
                          str(segments)], capture_output=True, text=True,
                         env=dict(os.environ), check=False)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not line:
        raise RuntimeError(f"the measured segment failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(line[0][len("RESULT "):])
    return result


def run_one(size: int, segments: int) -> dict[str, Any]:
    stack = local_stack(datamap=MAP, tenants=("acme",))
    try:
        from oblio.core.settings import get_settings
        from tests.client import Api

        if stack._streams is not None:
            stack._streams.stop()  # the backfill alone: no consumer shadowing the seed
        write = direct_writer()
        t = time.monotonic()
        write(TABLE, _items(size))
        write(LEADS, _leads(size))
        seed_s = time.monotonic() - t
        api = Api(stack.info["api_url"], stack.info["tenants"]["acme"]["api_key"])
        runs = []
        for table, how in (("contacts", "Query"), ("leads", "Scan")):
            for label in ("first", "again"):
                t = time.monotonic()
                r = api.post("/v1/backfills", {"tables": [table], "segments": segments})
                assert r.status_code == 202, r.text
                out = _wait(api, r.json()["backfill_id"])
                wall = time.monotonic() - t
                assert out["status"] == "completed", out
                assert out["counts"]["items_read"] == size, out["counts"]
                if label == "again":
                    assert out["counts"]["items_written"] == 0, out["counts"]
                runs.append({"table": table, "how": how, "label": label, "wall_s": wall,
                             **out})
        mem = _in_own_process(segments)
        return {"items": size, "segments": segments, "seed_s": seed_s,
                "page_size": get_settings().backfill_page_size, "runs": runs, "memory": mem}
    finally:
        stack.stop()


def _ops(io: dict[str, Any]) -> dict[str, int]:
    """The calls of a run's `io` by `service.Operation` (its other parts: owners, units,
    Lambda, Step Functions, cost)."""
    return {k: v for k, v in io.items() if "." in k and isinstance(v, int)}


def _calls(io: dict[str, Any]) -> int:
    return sum(_ops(io).values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    p.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        measure(args.measure)
        return
    if args.one is not None:
        emit(run_one(args.one, args.segments))
        return
    results = run_sizes("tests.bench.backfill", args.sizes, "--segments", str(args.segments))
    print("\noblio shadow backfill benchmark (local stack: moto server, real ASL, HTTP API)")
    print(f"{'items':>7} {'table':>8} {'read':>5} {'run':>5} {'segs':>4} {'page':>4} "
          f"{'elapsed s':>9} {'items/s':>8} {'written':>7} {'right':>6} {'unparsable':>10} "
          f"{'calls':>6} {'calls/item':>10} {'seg MB':>6}")
    for r in results:
        for run in r["runs"]:
            c = run["counts"]
            n = max(1, c["items_read"])
            print(f"{r['items']:>7} {run['table']:>8} {run['how']:>5} {run['label']:>5} "
                  f"{run['segments']['total']:>4} {r['page_size']:>4} "
                  f"{run['elapsed_seconds']:>9.1f} {n / max(run['elapsed_seconds'], 1e-9):>8.0f}"
                  f" {c['items_written']:>7} {c['already_right']:>6} "
                  f"{c['values_unparsable']:>10} {_calls(run['io']):>6} "
                  f"{_calls(run['io']) / n:>10.4f} {r['memory']['peak_mb']:>6.1f}")
    for r in results:
        for run in r["runs"]:
            n = max(1, run["counts"]["items_read"])
            print(f"\n{r['items']} items, {run['table']} ({run['how']}), {run['label']} run: "
                  f"AWS calls by operation (per item read)")
            for op, v in sorted(_ops(run["io"]).items()):
                print(f"  {op:<30} {v:>7} {v / n:>8.4f}")
            cost = run["io"].get("cost_usd") or {}
            if cost:
                print(f"  cost_usd {cost.get('total', 0):.6f} (the tenant's tables "
                      f"{cost.get('tenant', 0):.6f}, oblio's {cost.get('oblio', 0):.6f}), "
                      f"{cost.get('total', 0) / n:.9f} per item read; complete: "
                      f"{run['io'].get('complete')}")
        m = r["memory"]
        print(f"  one leads Scan segment alone (1 of {r['segments']}, "
              f"{m['counts']['items_read']} items read, in its own process): peak "
              f"{m['peak_mb']:.1f} MB, {m['seconds']:.1f} s")


if __name__ == "__main__":
    main()
