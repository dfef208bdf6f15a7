"""Search through a shadow index vs a canonically stored subject (issue 17 part 3).

    python -m tests.bench.typed                    # 1,000 and 10,000 people
    python -m tests.bench.typed --sizes 1000 --repeat 5

For each size, two fresh processes, each with its own local stack (moto server, HTTP API) on
the map of tests/integration/typed/map.yaml:

- `typed`: the map as it is (`stored: as_typed`; the indexes keyed by the shadows
  `_oblio_<attribute>`); the people and orders are stored as typed ("  Bench.Subject@
  Example.COM ", "06 ...") WITH their shadows, as the backfill leaves them;
- `canonical`: the same map with `stored: canonical` (the indexes keyed by the attributes
  themselves); the same people stored canonically, no shadows.

The tables are filled with `size` people (half of them with an order), loaded straight into
moto's memory; then one subject with a profile, an order of hers and a guest order by her
e-mail is searched `--repeat` times by e-mail and by phone: over HTTP (wall time, the walk's
`queries` of the answer) and in-process through the same domain call the API makes (every
AWS call it causes, by operation: the walk's Queries, the suppression and consent reads, the
audit append). Printed: both modes side by side; the calls must be equal (a shadow costs
nothing at search time), Scan must be 0. The project has no price table yet, so no cost in
dollars is printed: the calls are the cost.
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from tests.bench.harness import direct_writer, emit, local_stack, run_module

ROOT = Path(__file__).resolve().parents[2]
TYPED_MAP = ROOT / "tests" / "integration" / "typed" / "map.yaml"
EMAIL, PHONE_E164, PHONE_TYPED = "bench.subject@example.com", "+33611223344", "06 11 22 33 44"


def map_for(mode: str) -> Path:
    """The map file of a mode: the typed map, or a copy of it stored canonically."""
    if mode == "typed":
        return TYPED_MAP
    raw = yaml.safe_load(TYPED_MAP.read_text())
    raw = copy.deepcopy(raw)
    for t in raw["tables"].values():
        for a in t["attributes"].values():
            a.pop("stored", None)
            a.pop("region", None)
    path = Path(tempfile.mkdtemp()) / "canonical.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def person(i: int, typed: bool) -> dict[str, Any]:
    email, phone = f"person.{i}@example.com", f"+336{i:08d}"
    item: dict[str, Any] = {"tenant_id": "acme", "person_id": f"p-{i}", "name": f"P {i}"}
    if typed:
        digits = f"{i:08d}"
        item.update(email=f"  Person.{i}@Example.COM ", _oblio_email=email,
                    phone="06 " + " ".join(digits[k:k + 2] for k in range(0, 8, 2)),
                    _oblio_phone=phone)
    else:
        item.update(email=email, phone=phone)
    return item


def order(i: int, person_id: str | None, email: str, typed: bool) -> dict[str, Any]:
    item: dict[str, Any] = {"tenant_id": "acme", "order_id": f"o-{i}", "total": i % 97}
    if person_id:
        item["person_id"] = person_id
    if typed:
        item.update(buyer_email=f" {email.upper()}", _oblio_buyer_email=email)
    else:
        item["buyer_email"] = email
    return item


def count_pynamodb(aws: Any) -> None:
    """Count the calls of oblio's own tables too (PynamoDB's clients: the suppression list,
    the consent ledger, the audit log), as a request's `io` does."""
    from pynamodb.models import Model

    from oblio.store import models

    for m in vars(models).values():
        if isinstance(m, type) and issubclass(m, Model) and m is not Model and \
                getattr(m, "Meta", None) is not None and hasattr(m.Meta, "table_name"):
            aws.count_calls(m._get_connection().connection.client)


def run_one(size: int, mode: str, repeat: int) -> dict[str, Any]:
    typed = mode == "typed"
    stack = local_stack(datamap=map_for(mode), tenants=("acme",))
    try:
        from oblio.control.tenants import authenticate
        from oblio.core.bodies import SubjectQuery
        from oblio.rights import search
        from oblio.store import aws
        from tests.client import Api

        write = direct_writer()
        t0 = time.monotonic()
        people = [person(i, typed) for i in range(size)]
        orders = [order(i, f"p-{i}", f"person.{i}@example.com", typed)
                  for i in range(0, size, 2)]
        for start in range(0, size, 1000):
            write("typed-people", people[start:start + 1000])
        write("typed-orders", orders)
        load_s = time.monotonic() - t0
        # the subject: her profile, an order of hers, a guest order by her e-mail
        her = {"tenant_id": "acme", "person_id": "p-bench", "name": "Bench Subject"}
        her.update({"email": "  Bench.Subject@Example.COM ", "_oblio_email": EMAIL,
                    "phone": PHONE_TYPED, "_oblio_phone": PHONE_E164} if typed else
                   {"email": EMAIL, "phone": PHONE_E164})
        write("typed-people", [her])
        write("typed-orders", [order(10**9, "p-bench", EMAIL, typed),
                               order(10**9 + 1, None, EMAIL, typed)])
        key = stack.info["tenants"]["acme"]["api_key"]
        api = Api(stack.info["api_url"], key)
        principal = authenticate(f"Bearer {key}")
        count_pynamodb(aws)
        rows = []
        for by, value in (("email", EMAIL), ("phone", "+33 6 11 22 33 44")):
            for _ in range(repeat):
                t = time.monotonic()
                got = api.get("/v1/subjects", **{by: value})
                wall = time.monotonic() - t
                assert got.status_code == 200, got.text
                answer = got.json()
                with aws.counting() as io:
                    again = search.search(principal, SubjectQuery(**{by: value}))
                assert again["total"] == answer["total"]
                rows.append({"by": by, "wall_s": wall, "queries": answer["queries"],
                             "found": answer["total"], "io": dict(io.calls)})
        return {"size": size, "mode": mode, "load_s": load_s, "rows": rows,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    finally:
        stack.stop()


def report(results: list[dict[str, Any]]) -> None:
    print("\noblio search benchmark: identities stored as typed (through the shadow index) vs "
          "stored canonically\n(local stack: moto server, HTTP API; calls counted in-process "
          "on the same domain call)")
    print(f"{'people':>7} {'mode':>9} {'by':>5} {'found':>5} {'queries':>7} {'AWS calls':>9} "
          f"{'ddb':>4} {'Scan':>4} {'wall ms':>8} {'peak MB':>7}")
    for r in results:
        for by in ("email", "phone"):
            rows = [x for x in r["rows"] if x["by"] == by]
            calls = [sum(x["io"].values()) for x in rows]
            ddb = [sum(v for k, v in x["io"].items() if k.startswith("dynamodb.")) for x in rows]
            scans = sum(x["io"].get("dynamodb.Scan", 0) for x in rows)
            print(f"{r['size']:>7} {r['mode']:>9} {by:>5} {rows[0]['found']:>5} "
                  f"{rows[0]['queries']:>7} {statistics.mean(calls):>9.1f} "
                  f"{statistics.mean(ddb):>4.0f} {scans:>4} "
                  f"{1000 * statistics.median(x['wall_s'] for x in rows):>8.1f} "
                  f"{r['peak_rss_mb']:>7.0f}")
    for r in results:
        ops: Counter[str] = Counter()
        for x in r["rows"]:
            ops.update(x["io"])
        n = len(r["rows"])
        print(f"\n{r['size']} people, {r['mode']}: AWS calls per search, by operation")
        for op, v in sorted(ops.items()):
            print(f"  {op:<30} {v / n:>5.1f}")
    by_size: dict[int, dict[str, dict[str, Any]]] = {}
    for r in results:
        by_size.setdefault(r["size"], {})[r["mode"]] = r
    for size, modes in sorted(by_size.items()):
        if {"typed", "canonical"} <= set(modes):
            a = [sum(x["io"].values()) for x in modes["typed"]["rows"]]
            b = [sum(x["io"].values()) for x in modes["canonical"]["rows"]]
            print(f"\n{size} people: calls per search through the shadow index "
                  f"{statistics.mean(a):.1f}, canonically stored {statistics.mean(b):.1f}"
                  f" ({'the same' if a == b else 'DIFFERENT'})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--one", type=int)
    p.add_argument("--mode", choices=("typed", "canonical"))
    args = p.parse_args()
    if args.one:
        emit(run_one(args.one, args.mode, args.repeat))
        return
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for mode in ("typed", "canonical"):
            print(f"running {size} {mode} ...", flush=True)
            results.append(run_module("tests.bench.typed", "--one", str(size), "--mode", mode,
                                      "--repeat", str(args.repeat)))
    report(results)


if __name__ == "__main__":
    main()
