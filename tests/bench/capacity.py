"""Capacity model: a bulk erasure of 1,000,000 subjects of one tenant on AWS.

    python -m tests.bench.capacity                     # the defaults below
    python -m tests.bench.capacity --calls calls.json  # per-subject calls measured by bulk.py
    python -m tests.bench.capacity --audit per-subject # the audit chain as it is today

It takes the AWS calls a bulk subject makes (measured by `tests/bench/bulk.py`, which runs this
model with its own figures) and the account's default limits, and prints how long the job
takes, which limit binds, and what it costs per subject. Every assumption is printed with its
value; each can be changed on the command line. It is arithmetic, not a measurement on AWS.

The rates it compares (subjects a second):
- workers: the chunk workers running at once (one per chunk, capped by `bulk_concurrency`
  and the account's Lambda concurrency less a reserve) each erase one subject after another,
  every call a round trip;
- audit: a tenant's hash chain takes one append at a time (a consistent read of its head,
  then a conditional transaction): per subject today, per chunk once evidence is batched;
- oblio's partitions: the requests and suppression tables spread a tenant over `SHARDS`
  partitions of 1,000 write units a second each (before sharding: one);
- the consent ledger: each identity's records read consistently, over the tenant's `SHARDS`
  partitions of 3,000 read units a second each (keyed by the tenant alone before: one);
- the tenant's own tables: the writes on them, over as many partitions as their keys spread
  to (the demo map keys by tenant; a table keyed per subject spreads over many);
- a table's on-demand ceiling (40,000 write units a second, the account default).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: AWS calls per bulk subject on the local stack: the job's `io.per_subject` (every call of
#: its validation, chunks and report) of `tests/bench/bulk.py --subjects 1000`, whose generated
#: demo contacts have fewer items than the typical subject (`items_per_subject` prices the
#: tenant's writes) and a file for one in eight (its versions listed before its deletion, a
#: HEAD after it)
MEASURED = {"dynamodb.Query": 18.4, "dynamodb.BatchGetItem": 0.09, "dynamodb.GetItem": 0.02,
            "dynamodb.BatchWriteItem": 0.34, "dynamodb.UpdateItem": 0.6,
            "dynamodb.TransactWriteItems": 0.01, "events.PutEvents": 0.1,
            "s3.ListObjectVersions": 0.13, "s3.DeleteObject": 0.04, "s3.DeleteObjects": 0.01,
            "s3.PutObject": 0.03, "s3.GetObject": 0.01, "s3.HeadObject": 0.14}
#: S3 operations on the tenant's own files (listing their versions, deleting them, the
#: verification's HEAD of each; a few HEADs are oblio's checks of its work files); the other
#: S3 calls are on oblio's work bucket (chunks, evidence, outbox, report)
#: what the bulk issue (18) asks of 1,000,000 subjects of one tenant on AWS
MINUTES_ASKED = 30
COST_ASKED = 0.000015
OBLIO_ASKED = 0.000004
FILE_OPS = ("s3.ListObjectVersions", "s3.DeleteObjects", "s3.DeleteObject", "s3.HeadObject")

def _prices() -> dict[str, float]:
    """The model's prices, from the one price table (`oblio.core.prices`)."""
    from oblio.core.prices import PRICES as P

    return {"dynamodb.write_unit": P["dynamodb.write_unit"].usd,
            "dynamodb.read_unit": P["dynamodb.read_unit"].usd,
            "lambda.gb_second": P["lambda.gb_second"].usd,
            "lambda.request": P["lambda.request"].usd, "events.event": P["events.entry"].usd,
            "s3.put": P["s3.put_class"].usd, "s3.get": P["s3.get_class"].usd,
            "states.express_request": P["stepfunctions.express_request"].usd,
            "states.express_gb_second": P["stepfunctions.express_gb_second"].usd,
            "states.standard_transition": P["stepfunctions.standard_transition"].usd}


PRICES = _prices()


def _s3_price(operation: str) -> str | None:
    from oblio.core.prices import s3_class

    k = s3_class(operation.removeprefix("s3."))
    return k.replace("_class", "") if k else None


def _memory_gb(function: str) -> float:
    from infra.catalogue import CATALOGUE

    return CATALOGUE.function(function).memory_mb / 1024


def _setting(name: str) -> int:
    """oblio's own default (`oblio.core.settings`), so that the model runs what ships."""
    from oblio.core.settings import Settings

    return int(Settings.model_fields[name].default)


@dataclass
class Assumptions:
    subjects: int = 1_000_000
    chunk: int = field(default_factory=lambda: _setting("bulk_chunk_size"))
    bulk_concurrency: int = field(default_factory=lambda: _setting("bulk_concurrency"))
    lambda_concurrency: int = 1_000       # the account's default concurrent executions
    lambda_reserve: int = 100             # left for the API and single requests
    call_ms: float = 6.0                  # one DynamoDB round trip from Lambda, same region
    events_ms: float = 20.0               # one EventBridge PutEvents round trip
    compute_ms: float = 4.0               # Python work per subject between calls
    lookup_concurrency: int = field(       # a chunk's lines looked up at once (Query, GetItem)
        default_factory=lambda: _setting("bulk_lookup_concurrency"))
    audit: str = "per-chunk"              # "per-subject" (today) or "per-chunk"
    audit_append_ms: float = 20.0         # one append: consistent read + conditional 2-item tx
    shards: int = 16                      # oblio's tenant partitions (store.shards.SHARDS)
    partition_wcu: float = 1_000.0        # write units a second one partition takes
    table_wcu: float = 40_000.0           # on-demand table ceiling (account default)
    partition_rcu: float = 3_000.0        # read units a second one partition takes
    table_rcu: float = 40_000.0           # on-demand table ceiling (account default)
    ledger_shards: int = 16               # the consent ledger's tenant partitions (by identity;
    #                                       before: 1, the tenant's one partition key)
    items_per_subject: int = 17           # the demo map's typical subject
    tenant_partitions: int = 64           # partitions the tenant's items spread over
    request_wcu: float = 1.0              # a bulk line's request record: under 1 KB (it
    #                                       points at its certificate in the chunk's evidence)
    suppression_wcu: float = 2.6          # suppression entries per subject
    audit_wcu_per_append: float = 4.0     # two items, transactional (x2)
    bulk_line_wcu: float = 0.0            # bulk lines live in S3 parts, not a table
    read_units_per_query: float = 0.5     # the tenant's: eventually consistent, under 4 KB
    ledger_queries: float = 2.6           # the consent ledger's Query per identity: oblio's,
    #                                       consistent (a read unit each, not half)
    archive_index_reads: float = 5.2      # the archive index item of each identity, read
    #                                       consistent twice (the plan, and again after the
    #                                       suppression entries): a read unit each, found or not
    lambda_gb: float = field(              # the chunk worker's memory (the catalogue's)
        default_factory=lambda: _memory_gb("bulk_chunk"))
    event_entries: float = 1.0            # EventBridge entries a subject sends (SubjectErased),
    #                                       billed each however many a PutEvents carries
    express_limit_s: float = 300.0        # an Express child's limit
    validate_rows_s: float = 25_000.0     # the validator's rows a second (streamed)
    report_rows_s: float = 50_000.0       # the report's merged lines a second
    calls: dict[str, float] = field(default_factory=lambda: dict(MEASURED))


def model(a: Assumptions) -> dict[str, Any]:
    """The job's time (minutes), its binding limit, and its cost per subject."""
    ddb_calls = sum(n for op, n in a.calls.items() if op.startswith("dynamodb."))
    events = sum(n for op, n in a.calls.items() if op.startswith("events."))
    lookups = sum(n for op, n in a.calls.items()
                  if op in ("dynamodb.Query", "dynamodb.GetItem", "dynamodb.BatchGetItem"))
    # a chunk looks its lines up `lookup_concurrency` at once; its writes are batched
    subject_s = (lookups * a.call_ms / max(1, a.lookup_concurrency)
                 + (ddb_calls - lookups) * a.call_ms + events * a.events_ms
                 + a.compute_ms) / 1000
    chunks = math.ceil(a.subjects / a.chunk)
    workers = max(1, min(chunks, a.bulk_concurrency, a.lambda_concurrency - a.lambda_reserve))
    appends_per_subject = 1.0 if a.audit == "per-subject" else 1.0 / a.chunk
    oblio_wcu = (a.request_wcu + a.suppression_wcu + a.bulk_line_wcu)  # on sharded tables
    tenant_wcu = float(a.items_per_subject)  # one delete (or update) per item, under 1 KB
    rates = {
        "chunk workers": workers / subject_s,
        "audit chain": 1000 / a.audit_append_ms / appends_per_subject,
        "oblio's partitions (requests, suppression)":
            min(a.shards * a.partition_wcu, a.table_wcu) / max(a.request_wcu, a.suppression_wcu),
        # every identity's ledger read consistently (its records deleted when there are any)
        "the consent ledger's partitions (consistent reads)":
            min(a.ledger_shards * a.partition_rcu, a.table_rcu) / max(a.ledger_queries, 1e-9),
        "the tenant's table partitions":
            min(a.tenant_partitions * a.partition_wcu, a.table_wcu) / tenant_wcu,
    }
    binding = min(rates, key=lambda k: rates[k])
    rate = rates[binding]
    erase_s = a.subjects / rate
    total_s = a.subjects / a.validate_rows_s + erase_s + a.subjects / a.report_rows_s
    # a chunk's worker, slowed to the binding rate when another limit binds
    chunk_s = a.chunk * max(subject_s, workers / rate)

    # the worker time a subject is billed for: its own, or longer when another limit binds
    # and the workers wait on it (throttled, retrying)
    billed_s = chunk_s / a.chunk
    # the workers that reach the binding rate without waiting
    needed = max(1, math.ceil(rate * subject_s))
    price = PRICES
    c = a.calls
    # the tenant's tables: a delete (or update) per item under 1 KB, the searches' queries
    tenant_queries = max(c.get("dynamodb.Query", 0.0) - a.ledger_queries, 0.0)
    cost_tenant = (tenant_wcu * price["dynamodb.write_unit"]
                   + tenant_queries * a.read_units_per_query * price["dynamodb.read_unit"])
    # the tenant's files (their versions listed before and after, deleted) and oblio's work
    # files, each S3 call at its class's price
    s3 = {op: n * (price[k] if (k := _s3_price(op)) else 0.0)
          for op, n in c.items() if op.startswith("s3.")}
    cost_files = sum(v for op, v in s3.items() if op in FILE_OPS)
    work_files = sum(v for op, v in s3.items() if op not in FILE_OPS)
    own_reads = (a.ledger_queries + a.archive_index_reads + a.read_units_per_query
                 * (c.get("dynamodb.GetItem", 0.0) + c.get("dynamodb.BatchGetItem", 0.0)))
    audit_wcu = a.audit_wcu_per_append * appends_per_subject
    # what the contract has every subject pay whatever the code: her items' writes and the
    # searches, her files' listing and check, her suppression entries, record, ledger, event
    contract = ((oblio_wcu * price["dynamodb.write_unit"]) + a.ledger_queries
                * price["dynamodb.read_unit"] + a.event_entries * price["events.event"])
    cost_own = (contract + audit_wcu * price["dynamodb.write_unit"]
                + (own_reads - a.ledger_queries) * price["dynamodb.read_unit"] + work_files
                # a worker is billed while it waits on the binding limit too
                + billed_s * a.lambda_gb * price["lambda.gb_second"]
                + (price["lambda.request"] + price["states.express_request"]) / a.chunk
                + 8 * price["states.standard_transition"] / a.subjects)
    cost_oblio = cost_files + cost_own  # the "oblio's share": all but the tables
    return {"rates": rates, "binding": binding, "subjects_per_s": rate, "workers": workers,
            "chunks": chunks, "subject_ms": subject_s * 1000, "chunk_s": chunk_s,
            "billed_ms": billed_s * 1000, "workers_needed": needed,
            "express_margin": a.express_limit_s / chunk_s, "minutes": total_s / 60,
            "cost_per_subject": cost_tenant + cost_oblio, "cost_tenant": cost_tenant,
            "cost_files": cost_files, "cost_own": cost_own, "cost_oblio": cost_oblio,
            "cost_floor": cost_tenant + s3.get("s3.ListObjectVersions", 0.0)
            + s3.get("s3.HeadObject", 0.0) + contract,
            "cost_job": (cost_tenant + cost_oblio) * a.subjects}


def summary(title: str, out: dict[str, Any]) -> None:
    print(f"  {title:<52} {out['minutes']:>7.1f} min, ${out['cost_per_subject']:.7f}/subject"
          f" (oblio ${out['cost_oblio']:.7f}), binds: {out['binding']}")


def report(a: Assumptions) -> dict[str, Any]:
    """Print the assumptions and the model's answer, then the same job under other
    assumptions (audit per subject, oblio's tables unsharded, the tenant's tables keyed by
    tenant alone); return the answer."""
    out = model(a)
    print(f"\ncapacity model: a bulk erasure of {a.subjects:,} subjects of one tenant on AWS")
    print("assumptions (change any with --NAME VALUE):")
    for f in fields(a):
        if f.name != "calls":
            print(f"  {f.name:<24} {getattr(a, f.name)}")
    print("  calls per subject:     "
          + ", ".join(f"{op} {n:g}" for op, n in sorted(a.calls.items())))
    from oblio.core.prices import AS_OF, REGION

    print(f"  prices (oblio.core.prices: {REGION}, on-demand, USD, as of {AS_OF}): "
          + ", ".join(f"{k} {v:.3g}" for k, v in PRICES.items()))
    print("rates, subjects a second:")
    for name, r in sorted(out["rates"].items(), key=lambda kv: kv[1]):
        print(f"  {name:<52} {r:>10,.0f}{'   <- binds' if name == out['binding'] else ''}")
    print(f"{out['chunks']} chunks, {out['workers']} workers, {out['subject_ms']:.0f} ms a "
          f"subject, a chunk {out['chunk_s']:.0f} s (Express limit {a.express_limit_s:.0f} s: "
          f"{out['express_margin']:.1f}x margin)")
    print(f"time: {out['minutes']:.1f} min (validation, erasure, report), binding limit: "
          f"{out['binding']}")
    print(f"a subject is billed {out['billed_ms']:.0f} ms of worker time; "
          f"{out['workers_needed']} workers reach the binding rate without waiting (a "
          f"tenant's bulk_max_concurrency)")
    print(f"cost: ${out['cost_per_subject']:.7f} per subject (the tenant's tables "
          f"${out['cost_tenant']:.7f}; oblio's share ${out['cost_oblio']:.7f}: the tenant's "
          f"files ${out['cost_files']:.7f}, oblio's own ${out['cost_own']:.7f}), "
          f"${out['cost_job']:.2f} for the job")
    print("against what the bulk issue asks: "
          + "; ".join(f"{name} {got} (asked {asked}): {'reached' if ok else 'NOT reached'}"
                      for name, got, asked, ok in (
                          ("time", f"{out['minutes']:.1f} min", f"under {MINUTES_ASKED} min",
                           out["minutes"] < MINUTES_ASKED),
                          ("cost a subject", f"${out['cost_per_subject']:.7f}",
                           f"at most ${COST_ASKED:.6f}", out["cost_per_subject"] <= COST_ASKED),
                          ("oblio's share", f"${out['cost_oblio']:.7f}",
                           f"at most ${OBLIO_ASKED:.6f}", out["cost_oblio"] <= OBLIO_ASKED))))
    print(f"the floor, what the contract has a subject cost whatever the code: "
          f"${out['cost_floor']:.7f} (her {a.items_per_subject} items' writes and the searches, "
          "a listing of each file's versions and a HEAD after, a suppression entry and a consistent ledger "
          "read per identity, her request record, one SubjectErased event)")
    print("the same job if:")
    base = asdict(a)
    for title, change in (
            ("the audit chain took one append per subject (before)", {"audit": "per-subject"}),
            ("oblio's requests and suppression were one partition", {"shards": 1}),
            ("the consent ledger were keyed by tenant alone (before)", {"ledger_shards": 1}),
            ("the tenant's tables were keyed by tenant alone", {"tenant_partitions": 1}),
            ("bulk_concurrency were 4 (before sizing)", {"bulk_concurrency": 4}),
            ("a chunk looked its lines up one after another", {"lookup_concurrency": 1}),
            ("a subject had no file", {"calls": {op: n for op, n in a.calls.items()
                                                 if op not in FILE_OPS}}),
            (f"bulk_concurrency were the {out['workers_needed']} workers needed",
             {"bulk_concurrency": out["workers_needed"]})):
        summary(title, model(Assumptions(**{**base, **change})))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Assumptions()
    for f in fields(defaults):
        if f.name != "calls":
            p.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(defaults, f.name)),
                           default=getattr(defaults, f.name))
    p.add_argument("--calls", help="a JSON file of calls per subject by service.Operation")
    args = vars(p.parse_args(argv))
    calls = args.pop("calls")
    a = Assumptions(**args)
    if calls:
        with open(calls) as fh:
            a.calls = {k: float(v) for k, v in json.load(fh).items()}
    report(a)


if __name__ == "__main__":
    main()
