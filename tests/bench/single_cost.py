"""What one single request costs on AWS: an erasure, an anonymisation and an access export of
the demo map's typical subject, each run once on the local stack (moto server, real ASL,
requests over HTTP), its calls counted and priced.

    python -m tests.bench.single_cost                     # this tree
    python -m tests.bench.single_cost --before /work/main # and another tree, side by side

Counted per request, from submission to its end: Step Functions state transitions and
Lambda invocations (from the execution's history), every AWS call by service and operation
(every botocore call of the process: the API's and the tasks'; the local stack's own
plumbing, SQS polling and DynamoDB Streams, left out), the work bucket's manifest objects
written, S3 version listings, and the writes of the request record with the write units
each took (the record's size read back after each write, by DynamoDB's item-size rules: an update
is billed by the larger of the item's sizes before and after).

Priced with `oblio.core.prices` (the one price table, its region and date). Read units are estimated (1 per GetItem / Query /
BatchGetItem item, halved for eventually consistent reads); write units per item written
(ceil of KB; twice in a transaction). Lambda and Express durations are modelled from the
calls (typical AWS latencies in `LATENCY_MS`, not moto's), since moto's own durations say
nothing about AWS. A state machine whose catalogue entry says `aws_type="EXPRESS"` is priced
as Express (per request and GB-second at 64 MB), others per state transition.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

try:
    from oblio.core import prices as _prices  # the one price table
except ImportError:  # measuring an older tree (--before): its child prices nothing
    _prices = None  # type: ignore[assignment]

#: dollars per unit, by the names this bench prices with (from `oblio.core.prices`)
PRICES: dict[str, Any] = {} if _prices is None else {
    "_source": f"oblio.core.prices, {_prices.REGION}, as of {_prices.AS_OF}",
    "sfn.standard_transition": _prices.PRICES["stepfunctions.standard_transition"].usd,
    "sfn.express_request": _prices.PRICES["stepfunctions.express_request"].usd,
    "sfn.express_gb_second": _prices.PRICES["stepfunctions.express_gb_second"].usd,
    "lambda.request": _prices.PRICES["lambda.request"].usd,
    "lambda.gb_second": _prices.PRICES["lambda.gb_second"].usd,
    "dynamodb.write_unit": _prices.PRICES["dynamodb.write_unit"].usd,
    "dynamodb.read_unit": _prices.PRICES["dynamodb.read_unit"].usd,
    "s3.put_class": _prices.PRICES["s3.put_class"].usd,
    "s3.get_class": _prices.PRICES["s3.get_class"].usd,
    "kms.request": _prices.PRICES["kms.request"].usd,
    "events.entry": _prices.PRICES["events.entry"].usd,
    "ses.email": _prices.PRICES["ses.email"].usd,
}

#: typical latencies of one call made from a Lambda in the same region (milliseconds), for
#: the duration model; plus a warm invocation's own overhead
LATENCY_MS: dict[str, float] = {"dynamodb": 6, "s3": 20, "kms": 8, "events": 15, "ses": 40,
                                "sns": 30, "stepfunctions": 20, "secretsmanager": 10,
                                "_invocation": 30}

S3_PUT_CLASS = frozenset() if _prices is None else _prices.S3_PUT_CLASS
LEFT_OUT = {"sqs", "dynamodbstreams"}


class Meter:
    """Counts every botocore call of the process while `on` (but the bench's own)."""

    def __init__(self) -> None:
        self.on = False
        self.calls: Counter[str] = Counter()
        self.read_units = 0.0
        self.write_units = 0.0
        self.record_writes = 0
        self.record_write_units = 0
        self.manifests = 0
        self.listings = 0
        self.requests_table = ""
        self.work_bucket = ""
        self.own: Any = None  # the bench's own clients, never counted
        self.own_sfn: Any = None
        self.last: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def install(self) -> None:
        import botocore.client

        original = botocore.client.BaseClient._make_api_call
        meter = self

        def counted(client: Any, operation: str, params: dict[str, Any]) -> Any:
            result = original(client, operation, params)
            if meter.on and client is not meter.own and client is not meter.own_sfn:
                meter.count(client.meta.service_model.service_name, operation, params)
            return result

        botocore.client.BaseClient._make_api_call = counted  # type: ignore[method-assign]

    def count(self, service: str, op: str, params: dict[str, Any]) -> None:
        if service in LEFT_OUT:
            return
        with self._lock:
            self.calls[f"{service}.{op}"] += 1
            if service == "dynamodb":
                self.last = params
                self._dynamodb(op, params)
            elif service == "s3":
                if op == "PutObject" and params.get("Bucket") == self.work_bucket \
                        and str(params.get("Key", "")).endswith(".json") \
                        and "/export/" not in str(params.get("Key", "")):
                    self.manifests += 1
                if op == "ListObjectVersions":
                    self.listings += 1

    def _dynamodb(self, op: str, params: dict[str, Any]) -> None:
        consistent = 1.0 if params.get("ConsistentRead") else 0.5
        if op in ("GetItem", "Query", "Scan"):
            self.read_units += consistent
        elif op == "BatchGetItem":
            self.read_units += sum(len(r["Keys"]) for r in params["RequestItems"].values()) \
                * 0.5
        elif op == "BatchWriteItem":
            self.write_units += sum(len(r) for r in params["RequestItems"].values())
        elif op == "TransactWriteItems":
            self.write_units += 2 * len(params["TransactItems"])
            for t in params["TransactItems"]:
                body = next(iter(t.values()))
                if body.get("TableName") == self.requests_table:
                    self._record_write(body.get("Key") or body.get("Item") or {}, 2)
        elif op in ("PutItem", "UpdateItem", "DeleteItem"):
            if params.get("TableName") == self.requests_table:
                self._record_write(params.get("Key") or params.get("Item") or {}, 1)
            else:
                self.write_units += 1

    def _record_write(self, key: dict[str, Any], factor: int) -> None:
        sk = key.get("sk", {}).get("S", "")
        units = 1
        if sk.startswith("req#"):
            self.record_writes += 1
            if os.environ.get("BENCH_TRACE"):
                print("record write", sorted(set((self.last or {}).get(
                    "ExpressionAttributeNames", {}).values()))[:8], file=sys.stderr)
            item = self.own.get_item(TableName=self.requests_table,
                                     Key={"pk": key["pk"], "sk": key["sk"]},
                                     ConsistentRead=True).get("Item") or {}
            units = max(1, math.ceil(item_size(item) / 1024))
            self.record_write_units += units
        self.write_units += units * factor

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.read_units = self.write_units = 0.0
            self.record_writes = self.record_write_units = self.manifests = self.listings = 0


def _units_module() -> Any:
    """DynamoDB's item-size rules (`oblio.store.units`, which imports nothing of oblio's):
    the measured tree's, or this tree's file when an older tree has none (`--before`)."""
    try:
        from oblio.store import units
    except ImportError:
        import importlib.util

        path = Path(__file__).resolve().parents[2] / "layers/common/oblio/store/units.py"
        spec = importlib.util.spec_from_file_location("bench_units", path)
        assert spec and spec.loader
        units = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(units)
    return units


def item_size(item: dict[str, Any]) -> int:
    size: int = _units_module().item_size(item)
    return size


def history(sfn: Any, arn: str) -> dict[str, int]:
    """State transitions and Lambda invocations of an execution (its history events)."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events += page["events"]
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    return {"transitions": sum(1 for e in events if e["type"].endswith("StateEntered")),
            "lambda": sum(1 for e in events if e["type"] in ("LambdaFunctionScheduled",
                                                             "TaskScheduled"))}


def price(row: dict[str, Any], express: bool, memory_mb: int = 512) -> dict[str, float]:
    """The request's cost by part, from its counts."""
    calls: Counter[str] = Counter(row["calls"])
    # lambda.Invoke is the state machine's call, not a function's
    task_ms = sum(v * LATENCY_MS.get(k.split(".")[0], 10) for k, v in calls.items()
                  if not k.startswith("lambda."))
    task_ms += LATENCY_MS["_invocation"] * (row["lambda"] + 1)
    gb_s = task_ms / 1000 * memory_mb / 1024
    out = {"lambda": (row["lambda"] + 1) * PRICES["lambda.request"]
           + gb_s * PRICES["lambda.gb_second"]}
    if express:
        duration_s = math.ceil((task_ms + 20 * row["transitions"]) / 100) / 10
        out["stepfunctions"] = PRICES["sfn.express_request"] \
            + duration_s * 64 / 1024 * PRICES["sfn.express_gb_second"]
    else:
        out["stepfunctions"] = row["transitions"] * PRICES["sfn.standard_transition"]
    out["dynamodb"] = row["write_units"] * PRICES["dynamodb.write_unit"] \
        + row["read_units"] * PRICES["dynamodb.read_unit"]
    s3_put = sum(v for k, v in calls.items() if k.startswith("s3.")
                 and k.split(".", 1)[1] in S3_PUT_CLASS)
    s3_get = sum(v for k, v in calls.items() if k.startswith("s3.")) - s3_put
    out["s3"] = s3_put * PRICES["s3.put_class"] + s3_get * PRICES["s3.get_class"]
    out["kms"] = sum(v for k, v in calls.items() if k.startswith("kms.")) * PRICES["kms.request"]
    out["events"] = row.get("events_entries", calls.get("events.PutEvents", 0)) \
        * PRICES["events.entry"]
    out["ses"] = sum(v for k, v in calls.items() if k.startswith("ses")) * PRICES["ses.email"]
    out["total"] = sum(out.values())
    return out


KINDS = (("erasure", "erasure", {"confirm": True}),
         ("anonymisation", "anonymisation", {"confirm": True}),
         ("export", "access_export", {}))


def run_one(size: int, notify: bool = False) -> dict[str, Any]:
    import boto3

    from tests.bench.harness import direct_writer, local_stack

    meter = Meter()
    meter.install()
    stack = local_stack()
    try:
        from infra.catalogue import CATALOGUE
        from infra.local import demo
        from oblio.core import datamap
        from oblio.core.settings import get_settings
        from tests.client import Api

        s = get_settings()
        dm = datamap.load(s.datamap)
        demo.seed(dm, ["demo"], size, writer=direct_writer())
        meter.own = boto3.client("dynamodb", region_name=s.region)
        sfn = meter.own_sfn = boto3.client("stepfunctions", region_name=s.region)
        meter.requests_table = s.table("requests")
        meter.work_bucket = s.bucket("work")
        api = Api(stack.info["api_url"], stack.info["tenants"]["demo"]["api_key"])
        rows = {}
        for i, (kind, machine, extra) in enumerate(KINDS):
            email = f"cost.{kind}@example.com"
            demo.seed_subject(dm, "demo", email, f"+39333{i:07d}")
            time.sleep(0.5)
            meter.reset()
            meter.on = True
            if kind == "export" and notify:  # SES: $0.0001 an e-mail, alone near the target
                extra = {"notify_email": "dpo@tenant.example"}
            r = api.post("/v1/requests", {"type": "access" if kind == "export" else kind,
                                          "subject": {"email": email}, **extra})
            assert r.status_code == 202, r.text
            rid = r.json()["request_id"]
            from oblio.store import shards  # the requests table is keyed by tenant shard

            key = {"pk": {"S": shards.key("demo", f"req#{rid}")}, "sk": {"S": f"req#{rid}"}}
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                item = meter.own.get_item(TableName=meter.requests_table, Key=key,
                                          ConsistentRead=True)["Item"]
                if item["status"]["S"] not in ("received", "queued", "running", "finishing"):
                    break
                time.sleep(0.3)
            arn = item["execution_arn"]["S"]
            while time.monotonic() < deadline and \
                    sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
                time.sleep(0.2)  # what the last task does after the status is written
            meter.on = False
            assert item["status"]["S"] == "completed", item["status"]
            h = history(sfn, arn)
            sm = CATALOGUE.state_machine(machine)
            rows[kind] = {"calls": dict(meter.calls), **h,
                          "manifests": meter.manifests, "listings": meter.listings,
                          "record_writes": meter.record_writes,
                          "record_write_units": meter.record_write_units,
                          "record_kb": round(item_size(item) / 1024, 1),
                          "read_units": meter.read_units, "write_units": meter.write_units,
                          "express": getattr(sm, "aws_type", "STANDARD") == "EXPRESS",
                          "items": _items(item)}
        return rows
    finally:
        stack.stop()


def _items(item: dict[str, Any]) -> int:
    from oblio.store.tables import from_ddb

    result = from_ddb(item).get("result") or {}
    totals = result.get("totals") or {}
    return int(totals.get("matched") or (result.get("export") or {}).get("items") or 0)


def child(tree: Path, size: int, notify: bool = False) -> dict[str, Any]:
    """Run the measurement in a fresh process, on the code of `tree`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OBLIO_", "MOTO_"))}
    env["PYTHONPATH"] = os.pathsep.join(str(tree / p) for p in ("layers/common", "functions",
                                                                 ""))
    here = Path(__file__).resolve()
    out = subprocess.run([sys.executable, str(here), "--one", str(size),
                          *(["--notify"] if notify else [])], cwd=tree,
                         capture_output=True, text=True, env=env, check=False)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not line:
        sys.exit(f"{tree}: failed\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(line[0][len("RESULT "):])
    return result


COLUMNS = ("transitions", "lambda", "manifests", "listings", "record_writes",
           "record_write_units")


def report(label: str, rows: dict[str, Any]) -> dict[str, float]:
    print(f"\n{label}")
    print(f"  {'request':<14} {'items':>5} {'trans.':>6} {'lambda':>6} {'manif.':>6} "
          f"{'lists':>5} {'rec.wr':>6} {'rec.WRU':>7} {'rec.KB':>6} {'SFN':>5} "
          f"{'cost $':>9}   by part")
    totals = {}
    for kind, r in rows.items():
        p = price(r, r["express"])
        totals[kind] = p["total"]
        parts = " ".join(f"{k}={v:.6f}" for k, v in p.items() if k != "total" and v)
        print(f"  {kind:<14} {r['items']:>5} {r['transitions']:>6} {r['lambda']:>6} "
              f"{r['manifests']:>6} {r['listings']:>5} {r['record_writes']:>6} "
              f"{r['record_write_units']:>7} {r['record_kb']:>6} "
              f"{'EXPR' if r['express'] else 'STD':>5} {p['total']:>9.6f}   {parts}")
    for kind, r in rows.items():
        calls = ", ".join(f"{k} {v}" for k, v in sorted(r["calls"].items()))
        print(f"  {kind} calls: {calls}")
    return totals


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", type=Path, help="another tree (e.g. main's worktree) to "
                                               "measure first, with the same bench")
    p.add_argument("--contacts", type=int, default=200, help="demo contacts in the tables")
    p.add_argument("--notify", action="store_true",
                   help="the export e-mails the requester (SES, $0.0001 an e-mail)")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one is not None:
        print("RESULT " + json.dumps(run_one(args.one, args.notify)), flush=True)
        return
    print(f"prices: {PRICES['_source']}")
    here = Path(__file__).resolve().parents[2]
    before = report(f"before: {args.before}", child(args.before.resolve(), args.contacts, args.notify)) \
        if args.before else None
    after = report(f"after: {here}", child(here, args.contacts, args.notify))
    target = 0.00012
    for kind, cost in after.items():
        was = f"{before[kind]:.6f} -> " if before else ""
        print(f"  {kind:<14} ${was}{cost:.6f}  target ${target}: "
              f"{'reached' if cost <= target else 'NOT reached'}")


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    main()
