"""Retention sweep benchmark.

    python -m tests.bench.retention                    # 10,000 and 100,000 contacts
    python -m tests.bench.retention --sizes 10000

For each table size (a fresh local stack each, in its own process): the demo tenant's tables
are filled with `size` generated contacts and their items (activity spread over four years),
a policy anonymises the contacts inactive for 38 months (about 20% of them), and it is run
through the API twice: a dry run (answered at once) and a real sweep (the state machine: the
sweep index queried bucket by bucket, chunk manifests, a Distributed Map through the engine,
the report). Printed: candidates per second, AWS calls per candidate by operation (from the
sweep's `io`; Scan must be 0), the peak memory (tracemalloc) of a dry run's find and of one
chunk, each run in a process of its own as a Lambda would (moto serves from the benchmark's
process, so its memory is not counted), and, for contrast, the declared Scan fallback's dry run on the e-mail sends: its
Scan calls grow with the table, where the index's calls grow with the candidates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
from typing import Any

from tests.bench.harness import calls, direct_writer, emit, local_stack, run_sizes

POLICY = {"table": "contacts", "date_attribute": "last_activity_at", "older_than": "P38M",
          "action": "anonymise", "hold_attribute": "legal_hold"}
SCAN_POLICY = {"table": "email_sends", "older_than": "P24M", "action": "export_only"}


def _wait(api: Any, sweep_id: str) -> dict[str, Any]:
    while True:
        sweep = api.get(f"/v1/retention-sweeps/{sweep_id}").json()
        if sweep["status"] in ("completed", "completed_with_errors", "failed"):
            return sweep
        time.sleep(0.5)


def _peak(fn: Any) -> tuple[Any, float]:
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def measure(kind: str) -> None:
    """One step alone in this process (what --measure runs), as a Lambda would run it: moto
    serves from the parent process, so only oblio's own memory is traced here."""
    from oblio.control.tenants import get_tenant
    from oblio.core import datamap
    from oblio.jobs import retention
    from oblio.store import aws

    datamap.current()
    get_tenant("demo")
    aws.client("dynamodb").describe_limits()
    aws.client("s3").list_buckets()
    if kind == "find":
        out, peak = _peak(lambda: retention.dry_run("demo", "bench"))
    else:
        out, peak = _peak(lambda: retention.apply_chunk("demo", "PROBE", kind))
    emit({"result": out, "peak_mb": peak})


def _in_own_process(kind: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "tests.bench.retention", "--measure", kind],
                         capture_output=True, text=True, env=dict(os.environ), check=False)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not line:
        raise RuntimeError(f"the measured step failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(line[0][len("RESULT "):])
    return result


def run_one(size: int, scan_up_to: int) -> dict[str, Any]:
    stack = local_stack()
    try:
        from infra.local import demo
        from oblio.core import datamap
        from oblio.jobs import retention
        from tests.client import Api

        dm = datamap.current()
        t = time.monotonic()
        demo.seed(dm, ["demo"], size, writer=direct_writer())
        seed_s = time.monotonic() - t
        api = Api(stack.info["api_url"], stack.info["tenants"]["demo"]["api_key"])
        for pid, body in (("bench", POLICY), ("bench-scan", SCAN_POLICY)):
            r = api.put(f"/v1/retention-policies/{pid}", body)
            assert r.status_code in (200, 201), r.text
        # the find alone, in this process, through the same finder as a sweep
        measured = _in_own_process("find")
        dry_direct, find_peak = measured["result"], measured["peak_mb"]
        t = time.monotonic()
        dry = api.post("/v1/retention-policies/bench/run", {"dry_run": True}).json()
        dry_s = time.monotonic() - t
        assert dry["tables"] == dry_direct["tables"]
        t = time.monotonic()
        started = api.post("/v1/retention-policies/bench/run", {"confirm": True}).json()
        sweep = _wait(api, started["sweep_id"])
        sweep_s = time.monotonic() - t
        assert sweep["status"] == "completed", sweep
        counts = sweep["tables"]["contacts"]
        assert counts["anonymised"] == dry["tables"]["contacts"]["would_anonymise"]
        scan: dict[str, Any] = {"io": {}, "tables": {"email_sends": {"candidates": None}}}
        scan_s = 0.0
        if size <= scan_up_to:
            # in-process: moto answers each Scan page by walking the table, beyond an API
            # call's timeout at 100,000 contacts
            t = time.monotonic()
            scan = retention.dry_run("demo", "bench-scan")
            scan_s = time.monotonic() - t
        return {"contacts": size, "seed_s": seed_s, "dry_s": dry_s, "sweep_s": sweep_s,
                "counts": counts, "io": calls(sweep["io"]), "meter": sweep["io"],
                "dry_io": calls(dry["io"]),
                "chunks": sweep["chunks"], "find_peak_mb": find_peak,
                "chunk_peak_mb": _chunk_peak(dm), "scan_s": scan_s,
                "scan_io": calls(scan["io"]), "scan_candidates":
                    scan["tables"]["email_sends"]["candidates"]}
    finally:
        stack.stop()


def _chunk_peak(dm: Any) -> float:
    """One chunk (newer contacts, not touched by the sweep) applied in its own process."""
    from oblio.core import clock
    from oblio.pipeline import find
    from oblio.store import objects
    from oblio.store import tables as store
    from oblio.store.models import RetentionSweepModel

    t = dm.tables["contacts"]
    items = list(store.query_below(t.table, "by_sweep", ("sweep_bucket", "demo#2026-10"),
                                   ("last_activity_at", "9999"), 500)[0])
    RetentionSweepModel(tenant_id="demo", sk="run#PROBE", sweep_id="PROBE", policy_id="probe",
                        policy={**POLICY, "finder": "index"}, status="running",
                        cutoff=clock.iso(), created_at=clock.iso(), counts={}, io={}).save()
    key = "work/demo/sweeps/PROBE/chunks/000000.json"
    objects.put_json(key, {"keys": [find.key_of(t, i) for i in items],
                           "s3": find.s3_refs(dm, t, items)})
    return float(_in_own_process(key)["peak_mb"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--scan-up-to", type=int, default=100_000,
                   help="run the Scan fallback's dry run at sizes up to this")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    p.add_argument("--measure", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        measure(args.measure)
        return
    if args.one is not None:
        emit(run_one(args.one, args.scan_up_to))
        return
    results = run_sizes("tests.bench.retention", args.sizes, "--scan-up-to",
                        str(args.scan_up_to))
    print("\noblio retention sweep benchmark (local stack: moto server, real ASL, HTTP API)")
    print("policy: anonymise contacts inactive for 38 months (legal holds skipped)")
    print(f"{'contacts':>8} {'candidates':>10} {'on hold':>7} {'anonymised':>10} {'chunks':>6} "
          f"{'dry s':>6} {'sweep s':>7} {'cand/s':>7} {'calls/cand':>10} {'Scan':>4} "
          f"{'find MB':>7} {'chunk MB':>8}")
    for r in results:
        c = r["counts"]
        n = max(1, c["anonymised"])
        made = sum(v for k, v in r["io"].items() if "." in k and k != "dynamodb.Scan"
                    and not k.endswith("capacity_units"))
        print(f"{r['contacts']:>8} {c['candidates']:>10} {c['on_hold']:>7} "
              f"{c['anonymised']:>10} {r['chunks']:>6} {r['dry_s']:>6.1f} {r['sweep_s']:>7.1f} "
              f"{n / r['sweep_s']:>7.0f} {made / n:>10.3f} {r['io'].get('dynamodb.Scan', 0):>4} "
              f"{r['find_peak_mb']:>7.1f} {r['chunk_peak_mb']:>8.1f}")
    for r in results:
        n = max(1, r["counts"]["anonymised"])
        print(f"\n{r['contacts']} contacts: AWS calls per candidate (find, chunks, report)")
        for op, v in sorted(r["io"].items()):
            if not op.endswith("capacity_units"):
                print(f"  {op:<30} {v:>7} {v / n:>8.4f}")
        print(f"  dry run: {r['dry_io'].get('dynamodb.Query', 0)} Query, "
              f"{r['dry_io'].get('dynamodb.Scan', 0)} Scan")
    print("\nthe declared Scan fallback (e-mail sends, no sweep index), dry run:")
    for r in results:
        if r["scan_candidates"] is None:
            continue
        print(f"  {r['contacts']:>8} contacts: {r['scan_io'].get('dynamodb.Scan', 0):>5} Scan "
              f"calls for {r['scan_candidates']} candidates, {r['scan_s']:.1f} s")


if __name__ == "__main__":
    main()
