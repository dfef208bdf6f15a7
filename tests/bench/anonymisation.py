"""Anonymisation benchmark: subjects of 10-odd and 1,000-odd items, at two table sizes.

    python -m tests.bench.anonymisation
    python -m tests.bench.anonymisation --sizes 1000,10000 --heavy 1000

Each table size runs in a fresh process with its own local stack. A rewritten item costs one
UpdateItem (DynamoDB has no batched update), so the figure to watch is UpdateItem calls
against the items the map rewrites, and DynamoDB calls against the plan's minimum; neither may
grow with the table.
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

from tests.bench.erasure import minimum_calls
from tests.bench.harness import calls, direct_writer, emit, local_stack, run_sizes


def add_tickets(dm: Any, email: str, n: int) -> None:
    """Give the subject `n` more tickets (each rewritten by anonymisation)."""
    from oblio.pipeline import find
    from oblio.store import tables as store

    contact = find.walk(dm, "demo", {"email": email}).items["contacts"][0]
    store.batch_put(dm.tables["tickets"].table, [
        {"tenant_id": "demo", "ticket_id": f"heavy_{email}_{i:06d}",
         "contact_id": contact["contact_id"], "subject": "Where is my parcel?",
         "description": "A long text that names the subject", "status": "closed",
         "channel": "email", "reason": "delivery", "created_at": "2026-01-01T10:00:00Z",
         "sla_first_response_min": 30} for i in range(n)])


def run_one(size: int, heavy: int) -> dict[str, Any]:
    stack = local_stack()
    try:
        from infra.local import demo
        from oblio.core import datamap
        from tests.client import Api

        dm = datamap.current()
        demo.seed(dm, ["demo"], size, writer=direct_writer())
        api = Api(stack.info["api_url"], stack.info["tenants"]["demo"]["api_key"])
        rows = []
        for label, extra in (("small", 0), ("heavy", heavy)):
            email = f"anon.{label}@example.com"
            demo.seed_subject(dm, "demo", email, "+393330000001")
            add_tickets(dm, email, extra)
            t = time.monotonic()
            r = api.post("/v1/requests", {"type": "anonymisation", "confirm": True,
                                          "subject": {"email": email}})
            done = api.wait(r.json()["request_id"], timeout=600)
            wall = time.monotonic() - t
            assert done["status"] == "completed", done
            res = done["result"]
            io = calls(res["io"])
            rows.append({"subject": label, "items": res["totals"]["matched"], "wall_s": wall,
                         "io": io, "rewritten": res["totals"]["anonymised"],
                         "ddb": sum(v for k, v in io.items() if k.startswith("dynamodb.")),
                         "ddb_min": minimum_calls(dm, res, {"email"}, "anonymise")})
        return {"size": size, "rows": rows,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    finally:
        stack.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--heavy", type=int, default=1000)
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one is not None:
        emit(run_one(args.one, args.heavy))
        return
    results = run_sizes("tests.bench.anonymisation", args.sizes, "--heavy", str(args.heavy))
    print("\noblio anonymisation benchmark (local stack: moto server, real ASL, HTTP API)")
    print(f"{'contacts':>9} {'subject':>8} {'items':>6} {'wall s':>7} {'UpdateItem':>10} "
          f"{'rewritten':>9} {'ddb calls':>9} {'minimum':>7} {'ratio':>5} {'Scan':>4}")
    for r in results:
        size = r["size"]
        for x in r["rows"]:
            print(f"{size:>9} {x['subject']:>8} {x['items']:>6} {x['wall_s']:>7.2f} "
                  f"{x['io'].get('dynamodb.UpdateItem', 0):>10} {x['rewritten']:>9} "
                  f"{x['ddb']:>9} {x['ddb_min']:>7} {x['ddb'] / x['ddb_min']:>5.2f} "
                  f"{x['io'].get('dynamodb.Scan', 0):>4}")
        for x in r["rows"]:
            print(f"  {size} contacts, {x['subject']} subject: " + ", ".join(
                f"{k}={v}" for k, v in sorted(x["io"].items())))


if __name__ == "__main__":
    main()
