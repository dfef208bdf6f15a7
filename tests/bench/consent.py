"""Consent ledger benchmark: recording consent events, and reading one subject's state among
them as the ledger grows.

    python -m tests.bench.consent                       # 10,000 events over 1,000 subjects
    python -m tests.bench.consent --events 2000 --subjects 200 --concurrency 4

One fresh process with its own local stack (moto server, the HTTP API). Events are recorded
through `POST /v1/consents` by `--concurrency` clients at once (grants and withdrawals of the
tenant's purposes, spread over `--subjects` subjects, each named by e-mail, some also by
phone). Printed: writes per second and the AWS calls each write made; at each checkpoint of
the ledger's size, the DynamoDB calls of one read of a subject's state and history (the same
subject every time, and the subject with the most events) and the API's read latency. The
calls per read must not grow with the ledger: a read is one Query per identity on the
subject's own keys.

moto copies every table a transaction names before it runs it (to roll back), which would
make each write cost in proportion to the ledger; `infra/local/moto_transactions.py` copies
only the items the transaction names, as DynamoDB's cost does not depend on the table.
"""

from __future__ import annotations

import argparse
import random
import resource
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.bench.harness import emit, local_stack, run_module

PURPOSES = ("marketing", "newsletter", "analytics", "profiling")
CHANNELS = ("web", "email", "sms")


def _plan(events: int, subjects: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(events):
        n = rng.randrange(subjects)
        subject = {"email": f"bench.consent.{n}@example.com"}
        if n % 3 == 0:
            subject["phone"] = f"+39333{n:07d}"
        out.append({"subject": subject, "purpose": rng.choice(PURPOSES),
                    "channel": rng.choice(CHANNELS),
                    "status": "granted" if rng.random() < 0.7 else "withdrawn",
                    "source": "bench", "policy_version": "2026-01",
                    "proof": {"submission_id": f"s-{i}"}})
    return out


def _read_cost(email: str) -> dict[str, Any]:
    from oblio.control import ledger, tenants
    from oblio.store import aws

    tenant = tenants.get_tenant("demo")
    with aws.counting() as io:
        got = ledger.subject_ledger(tenant, {"email": email})
    return {"ddb_calls": sum(v for k, v in io.calls.items() if k.startswith("dynamodb.")),
            "scans": io.calls.get("dynamodb.Scan", 0), "events": len(got["history"])}


def run_one(events: int, subjects: int, concurrency: int, checkpoints: list[int]
            ) -> dict[str, Any]:
    from infra.local import moto_transactions
    stack = local_stack()
    moto_transactions.install()
    try:
        from tests.client import Api

        api = Api(stack.info["api_url"], stack.info["tenants"]["demo"]["api_key"])
        plan = _plan(events, subjects)
        probe = plan[0]["subject"]["email"]
        per_subject = Counter(e["subject"]["email"] for e in plan)
        busiest = per_subject.most_common(1)[0][0]

        def write(body: dict[str, Any]) -> int:
            return api.post("/v1/consents", body).status_code

        rows, done, write_s = [], 0, 0.0
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for checkpoint in [c for c in checkpoints if c <= events] or [events]:
                batch = plan[done:checkpoint]
                t0 = time.monotonic()
                codes = Counter(pool.map(write, batch))
                write_s += time.monotonic() - t0
                assert set(codes) == {201}, codes
                done = checkpoint
                t0 = time.monotonic()
                r = api.get("/v1/consents", email=probe)
                read_ms = (time.monotonic() - t0) * 1000
                assert r.status_code == 200, r.text
                rows.append({"ledger_events": done, "probe": _read_cost(probe),
                             "busiest": _read_cost(busiest), "read_ms": read_ms})
        # what one write costs, by operation (the domain call, in-process)
        from oblio.control.tenants import Principal
        from oblio.rights import consent
        from oblio.store import aws

        principal = Principal("demo", "bench", frozenset({"consent:write"}), False)
        with aws.counting() as io:
            for body in plan[:50]:
                consent.record(principal, body)
        per_write = {k: v / 50 for k, v in sorted(io.calls.items())}
        return {"events": events, "subjects": subjects, "concurrency": concurrency,
                "write_s": write_s, "writes_per_s": events / write_s, "rows": rows,
                "per_write": per_write, "probe_expected": per_subject[probe],
                "busiest_expected": per_subject[busiest],
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    finally:
        moto_transactions.uninstall()
        stack.stop()


def report(r: dict[str, Any]) -> None:
    print("\noblio consent ledger benchmark (local stack: moto server, HTTP API)")
    print(f"{r['events']} events over {r['subjects']} subjects, {r['concurrency']} clients: "
          f"{r['write_s']:.1f} s, {r['writes_per_s']:.0f} writes/s")
    print("AWS calls per write: " + ", ".join(f"{k} {v:.2f}" for k, v in r["per_write"].items()))
    print(f"\n{'ledger events':>13} {'probe: events':>13} {'ddb calls':>9} "
          f"{'busiest: events':>15} {'ddb calls':>9} {'Scan':>4} {'API read ms':>11}")
    for row in r["rows"]:
        p, b = row["probe"], row["busiest"]
        print(f"{row['ledger_events']:>13} {p['events']:>13} {p['ddb_calls']:>9} "
              f"{b['events']:>15} {b['ddb_calls']:>9} {p['scans'] + b['scans']:>4} "
              f"{row['read_ms']:>11.1f}")
    first, last = r["rows"][0], r["rows"][-1]
    print(f"\ncalls per read at {last['ledger_events']} vs {first['ledger_events']} events: "
          f"{last['probe']['ddb_calls'] / first['probe']['ddb_calls']:.2f}x (ledger "
          f"{last['ledger_events'] / first['ledger_events']:.0f}x larger)")
    assert last["probe"]["events"] == r["probe_expected"], "the probe's history is incomplete"
    print(f"peak memory {r['peak_rss_mb']:.0f} MB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--subjects", type=int, default=1_000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--checkpoints", default="100,1000,10000")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    checkpoints = sorted({*(int(c) for c in args.checkpoints.split(",")), args.events})
    opts = ["--events", str(args.events), "--subjects", str(args.subjects),
            "--concurrency", str(args.concurrency),
            "--checkpoints", ",".join(map(str, checkpoints))]
    if args.one:
        emit(run_one(args.events, args.subjects, args.concurrency, checkpoints))
        return
    print(f"running {args.events} events ...", flush=True)
    report(run_module("tests.bench.consent", "--one", *opts))


if __name__ == "__main__":
    main()
