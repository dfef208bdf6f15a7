"""Erasure benchmark: the cost of erasing one subject at two table sizes.

    python -m tests.bench.erasure                      # 1,000 and 100,000 contacts
    python -m tests.bench.erasure --sizes 1000 --subjects 3
    python -m tests.bench.erasure --example hr         # the HR example: 1,000 and 10,000
                                                       # employees in one table (examples/hr)

Each size runs in a fresh process with its own local stack (moto server, real ASL execution,
requests over HTTP). The demo tables are filled with `size` generated contacts and their
items (loaded straight into moto's memory, which takes seconds instead of minutes), then
`--subjects` named subjects with the full set of items are erased one by one through the API.
Printed per erased subject: wall time, AWS calls by operation (from the request's `io`: every
call, oblio's own included), the tenant's DynamoDB calls divided by the minimum the plan needs,
Scan calls (must be 0), and the request's meter: Step Functions executions and transitions,
Lambda invocations, calls by owner and service, DynamoDB units and `cost_usd`. The call
counts must not grow with the table size; the wall time in moto does, because moto answers an
index Query by walking the whole table (DynamoDB does not).

With `--example hr` the stack runs the HR map (single-table design, key templates, files by
prefix, an author role, payslips retained by law): the table holds `size` employees of tenant
acme (profile, three payslips, a review for one in three) and each subject is an employee
with a profile, three payslips with PDFs, five files, a review about her and one she wrote.
Its minimum counts what the result says was done: one BatchWriteItem per 25 deletes, one
BatchGetItem per 100 rewritten items plus one UpdateItem each (anonymised shells, the review
she wrote, payslips retained without her name), one BatchGetItem per 100 items read back by
each group of the verification, and one Query per find value (plan and fresh search).
"""

from __future__ import annotations

import argparse
import math
import resource
import time
from collections import Counter
from typing import Any

from tests.bench.harness import calls, direct_writer, emit, local_stack, run_sizes


def minimum_calls(dm: Any, result: dict[str, Any], kinds: set[str],
                  action: str = "erase") -> int:
    """DynamoDB calls the plan cannot do without: one Query per lookup (planning and the
    verification's fresh search), one BatchWriteItem per 25 deletes, one BatchGetItem per 100
    items read back (apply for shells, verify for all), one UpdateItem per shell."""
    from oblio.pipeline import rules

    n = result["queries_planned"]
    n += sum(1 for t in dm.tables.values() for f in t.find if f.identity in kinds)
    for name, c in result["tables"].items():
        matched = c["matched"]
        if not matched:
            continue
        if rules.table_mode(dm, name, action) == "delete":
            n += math.ceil(matched / 25)
        else:
            n += math.ceil(matched / 100) + matched
        n += math.ceil(matched / 100)  # verification read-back
    return n


def minimum_calls_done(dm: Any, result: dict[str, Any], kinds: set[str]) -> int:
    """The HR example's minimum (see the module's doc), from what the result counted."""
    n = result["queries_planned"]
    n += sum(1 for t in dm.tables.values() for f in t.find if f.identity in kinds)
    for name, c in result["tables"].items():
        if not c["matched"]:
            continue
        t = dm.tables[name]
        rewritten = c["anonymised"] + (c["retained"] if any(
            a.erase is not None for a in t.attributes.values()) else 0)
        n += math.ceil(c["deleted"] / 25) + math.ceil(rewritten / 100) + rewritten
        groups = 1 + len(t.roles) if t.roles else 1  # the verification reads each group back
        n += groups
    return n


HR_MAP = "examples/hr/map.yaml"


def run_hr(size: int, subjects: int) -> dict[str, Any]:
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("hr_generate",
                                                  root / "examples" / "hr" / "generate.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    stack = local_stack(datamap=root / HR_MAP, tenants=("acme",))
    try:
        from oblio.core import datamap
        from oblio.store import aws
        from tests.client import Api

        dm = datamap.current()
        write = direct_writer()
        t0 = time.monotonic()
        batch: list[dict[str, Any]] = []
        loaded = 0
        for item in gen.rows("acme", size):
            batch.append(item)
            if len(batch) == 1000:
                write(gen.TABLE, batch)
                loaded, batch = loaded + len(batch), []
        write(gen.TABLE, batch)
        loaded += len(batch)
        load_s = time.monotonic() - t0
        api = Api(stack.info["api_url"], stack.info["tenants"]["acme"]["api_key"])
        s3 = aws.client("s3")
        rows = []
        for i in range(subjects):
            emp, email = f"B{i:04d}", f"bench.subject.{i}@example.com"
            mine = [*gen.employee("acme", emp, f"Bench Subject {i}", email, "Milano",
                                  files=True),
                    gen.review("acme", emp, "E0002", "Grace Hopper", f"B{i}-about", "ok"),
                    gen.review("acme", "E0002", emp, f"Bench Subject {i}", f"B{i}-by", "ok")]
            write(gen.TABLE, mine)
            for key in gen.files("acme", mine):
                s3.put_object(Bucket=gen.BUCKET, Key=key, Body=gen.PDF)
            t = time.monotonic()
            done = api.erase({"email": email}, timeout=1800)
            wall = time.monotonic() - t
            assert done["status"] == "completed", done
            rows.append({"wall_s": wall, **_counted(done["result"]["io"]),
                         "items": done["result"]["totals"]["matched"],
                         "ddb_min": minimum_calls_done(dm, done["result"], {"email"}),
                         "retained": done["result"]["totals"]["retained"],
                         "files_deleted": done["result"]["totals"]["files_deleted"]})
        return {"size": size, "table_items": loaded, "load_s": load_s, "rows": rows,
                "example": "hr",
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    finally:
        stack.stop()


def _counted(io: dict[str, Any]) -> dict[str, Any]:
    """What a request's `io` says: every call, the tenant's DynamoDB calls (what the plan's
    minimum counts), and the meter's figures (owners, units, Lambda, Step Functions, cost)."""
    ops = calls(io)
    tenant = (io.get("by_owner") or {}).get("tenant", ops)
    return {"io": ops, "scans": ops.get("dynamodb.Scan", 0),
            "ddb_calls": sum(v for k, v in tenant.items() if k.startswith("dynamodb.")),
            "meter": {k: io.get(k) for k in ("by_owner", "dynamodb_units", "lambda",
                                             "stepfunctions", "cost_usd", "complete")}}


def run_one(size: int, subjects: int) -> dict[str, Any]:
    stack = local_stack()
    try:
        from infra.local import demo
        from oblio.core import datamap
        from oblio.core.settings import get_settings
        from tests.client import Api

        dm = datamap.load(get_settings().datamap)
        t0 = time.monotonic()
        loaded = demo.seed(dm, ["demo"], size, writer=direct_writer())
        load_s = time.monotonic() - t0
        api = Api(stack.info["api_url"], stack.info["tenants"]["demo"]["api_key"])
        rows = []
        for i in range(subjects):
            email = f"bench.subject.{i}@example.com"
            demo.seed_subject(dm, "demo", email, f"+39333{i:07d}")
            t = time.monotonic()
            done = api.erase({"email": email}, timeout=1800)
            wall = time.monotonic() - t
            assert done["status"] == "completed", done
            rows.append({"wall_s": wall, **_counted(done["result"]["io"]),
                         "items": done["result"]["totals"]["matched"],
                         "ddb_min": minimum_calls(dm, done["result"], {"email"})})
        items_total = sum(v for k, v in loaded.items() if k != "files")
        return {"size": size, "table_items": items_total, "load_s": load_s, "rows": rows,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    finally:
        stack.stop()


def report(results: list[dict[str, Any]]) -> None:
    hr = bool(results and results[0].get("example") == "hr")
    unit = "employees" if hr else "contacts"
    print("\noblio erasure benchmark (local stack: moto server, real ASL, HTTP API)"
          + (": HR example, single-table design (examples/hr/map.yaml)" if hr else ""))
    print(f"{unit:>9} {'items':>9} {'subj.':>5} {'items/subj':>10} {'wall s':>7} "
          f"{'ddb calls':>9} {'minimum':>7} {'ratio':>5} {'Scan':>4} {'peak MB':>7}")
    for r in results:
        rows = r["rows"]
        n = len(rows)
        wall = sum(x["wall_s"] for x in rows) / n
        calls = sum(x["ddb_calls"] for x in rows) / n
        low = sum(x["ddb_min"] for x in rows) / n
        print(f"{r['size']:>9} {r['table_items']:>9} {n:>5} "
              f"{sum(x['items'] for x in rows) / n:>10.1f} {wall:>7.2f} {calls:>9.1f} "
              f"{low:>7.1f} {calls / low:>5.2f} {sum(x['scans'] for x in rows):>4} "
              f"{r['peak_rss_mb']:>7.0f}")
    for r in results:
        ops: Counter[str] = Counter()
        for x in r["rows"]:
            ops.update(x["io"])
        n = len(r["rows"])
        print(f"\n{r['size']} {unit}: AWS calls per erased subject, by operation")
        for op, v in sorted(ops.items()):
            print(f"  {op:<28} {v / n:>7.1f}")
    for r in results:
        _meter_report(r, unit)
    if len(results) > 1:
        a, b = results[0], results[-1]
        ca = sum(x["ddb_calls"] for x in a["rows"]) / len(a["rows"])
        cb = sum(x["ddb_calls"] for x in b["rows"]) / len(b["rows"])
        print(f"\nDynamoDB calls per subject at {b['size']} vs {a['size']} {unit}: "
              f"{cb / ca:.2f}x (table {b['table_items'] / a['table_items']:.0f}x larger)")


def _meter_report(r: dict[str, Any], unit: str) -> None:
    """Per erased subject: transitions, Lambda, calls by owner and service, units, cost."""
    rows = [x["meter"] for x in r["rows"] if x.get("meter", {}).get("cost_usd")]
    if not rows:
        return
    n = len(rows)

    def mean(get: Any) -> float:
        return sum(get(m) for m in rows) / n

    print(f"\n{r['size']} {unit}: the request's meter (its `io`), per erased subject"
          f" ({sum(1 for m in rows if m['complete'])}/{n} complete)")
    print(f"  Step Functions: {mean(lambda m: m['stepfunctions']['express_executions']):.1f} "
          f"Express, {mean(lambda m: m['stepfunctions']['standard_executions']):.1f} Standard "
          f"executions, {mean(lambda m: m['stepfunctions']['transitions']):.1f} Standard "
          f"transitions; Lambda {mean(lambda m: m['lambda']['invocations']):.1f} invocations, "
          f"{mean(lambda m: m['lambda']['gb_seconds']):.3f} GB-s (moto's time)")
    for owner in ("tenant", "oblio"):
        by: Counter[str] = Counter()
        for m in rows:
            for op, v in m["by_owner"][owner].items():
                by[op.split(".")[0]] += v
        units = {k: mean(lambda m, k=k, o=owner: m["dynamodb_units"][o][k]) for k in ("read", "write")}
        print(f"  {owner:<6} calls by service: " + ", ".join(
            f"{k} {v / n:.1f}" for k, v in sorted(by.items()))
            + f"; DynamoDB units read {units['read']:.1f}, write {units['write']:.1f}")
    cost = {k: mean(lambda m, k=k: m["cost_usd"][k]) for k in ("total", "tenant", "oblio")}
    services: Counter[str] = Counter()
    for m in rows:
        services.update(m["cost_usd"]["by_service"])
    print(f"  cost_usd {cost['total']:.6f} (tenant {cost['tenant']:.6f}, oblio "
          f"{cost['oblio']:.6f}): " + ", ".join(f"{k} {v / n:.6f}"
                                              for k, v in sorted(services.items()))
          + f"  [{rows[0]['cost_usd']['prices']}; units "
          f"{rows[0]['dynamodb_units']['source']}]")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", help="table sizes (default 1000,100000; with --example hr "
                                    "1000,10000 employees)")
    p.add_argument("--subjects", type=int, default=5)
    p.add_argument("--example", choices=["demo", "hr"], default="demo")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one is not None:
        run = run_hr if args.example == "hr" else run_one
        emit(run(args.one, args.subjects))
        return
    sizes = args.sizes or ("1000,10000" if args.example == "hr" else "1000,100000")
    results = run_sizes("tests.bench.erasure", sizes, "--subjects", str(args.subjects),
                        "--example", args.example)
    report(results)


if __name__ == "__main__":
    main()
