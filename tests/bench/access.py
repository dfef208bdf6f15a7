"""Access export benchmark: one subject with 10, 1,000 and 10,000 items.

    python -m tests.bench.access                         # 10, 1,000 and 10,000 items
    python -m tests.bench.access --sizes 10,1000 --contacts 1000 --file-kb 512

Each size runs in a fresh process with its own local stack (moto server, real ASL execution,
requests over HTTP). The demo tables hold `--contacts` generated contacts (other people), and
one subject with `size` items: a profile with a photo, a ticket whose first message has an
attachment, a document, an e-mail send, and as many e-mail events and ticket messages as make
up the rest. The subject's access export runs through the API.

Printed per size: wall time of the request, AWS calls by operation (the request's `io`), the
archive's size and parts, and the peak memory of the package step. The package step runs in a
process of its own, as a Lambda would (moto serves S3 from the benchmark's process, so memory
measured there would count moto's copy of the archive as well): its peak traced by tracemalloc
once its clients are warm, and its maximum RSS. The peak must stay flat as the items grow.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from tests.bench.harness import calls, direct_writer, emit, local_stack, run_sizes, timed_peak

EMAIL = "heavy.subject@example.com"


def heavy_subject(dm: Any, items: int, file_kb: int) -> dict[str, int]:
    """One subject with `items` items in all (at least 5) and three files of `file_kb` KiB."""
    from oblio.store import aws

    t, bucket = "demo", dm.buckets["files"]
    blob = (b"%PDF bench " * (file_kb * 103))[: file_kb * 1024]
    s3 = aws.client("s3")
    keys = {k: f"{t}/{k}/heavy/{k}.bin" for k in ("photos", "attachments", "documents")}
    for key in keys.values():
        s3.put_object(Bucket=bucket, Key=key, Body=blob)
    rows: dict[str, list[dict[str, Any]]] = {
        "contacts": [{"tenant_id": t, "contact_id": "c_heavy", "email": EMAIL,
                      "phone": "+393339998877", "first_name": "Heavy", "last_name": "Subject",
                      "city": "Torino", "country": "IT", "photo_key": keys["photos"],
                      "created_at": "2024-01-01T00:00:00Z", "restricted": False}],
        "tickets": [{"tenant_id": t, "ticket_id": "t_heavy", "contact_id": "c_heavy",
                     "subject": "Where is my parcel?", "description": "It did not arrive",
                     "status": "open", "channel": "email", "reason": "delivery",
                     "created_at": "2026-01-01T10:00:00Z", "assignee": "agent.bianchi"}],
        "documents": [{"tenant_id": t, "document_id": "d_heavy", "contact_id": "c_heavy",
                       "title": "Signed contract", "kind": "contract",
                       "s3_key": keys["documents"], "uploaded_at": "2025-01-01T00:00:00Z"}],
        "email_sends": [{"tenant_id": t, "send_id": "s_heavy", "recipient_email": EMAIL,
                         "contact_id": "c_heavy", "campaign_id": "camp-001",
                         "subject_line": "Our autumn news", "status": "delivered",
                         "sent_at": "2026-10-01T08:00:00Z"}],
        "ticket_messages": [], "email_events": [],
    }
    rest = max(items - 4, 1)
    for i in range(rest):
        if i % 2 == 0:
            rows["ticket_messages"].append({
                "tenant_id": t, "message_id": f"m_heavy_{i:06d}", "ticket_id": "t_heavy",
                "author_type": "customer" if i % 4 == 0 else "agent",
                "body": f"Message {i}: hello, this is Heavy Subject writing about my parcel.",
                "attachment_key": keys["attachments"] if i == 0 else None,
                "sent_at": f"2026-01-{1 + i % 28:02d}T10:{i % 60:02d}:00Z"})
        else:
            rows["email_events"].append({
                "tenant_id": t, "event_id": f"e_heavy_{i:06d}", "send_id": "s_heavy",
                "type": "open" if i % 3 else "click", "at": "2026-10-01T09:00:00Z",
                "url": "https://shop.example/autumn", "ip_address": "203.0.113.7",
                "user_agent": "Mozilla/5.0 (bench)"})
    write = direct_writer()
    for table, items_ in rows.items():
        write(dm.tables[table].table, [{k: v for k, v in i.items() if v is not None}
                                       for i in items_])
    return {k: len(v) for k, v in rows.items()}


def package_in_its_own_process(request_id: str, tenant_id: str, measured: list[Any]) -> Any:
    out = subprocess.run([sys.executable, "-m", "tests.bench.access", "--package", request_id,
                          tenant_id], capture_output=True, text=True, env=dict(os.environ),
                         check=False)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not line:
        raise RuntimeError(f"the package step failed:\n{out.stderr[-3000:]}")
    data = json.loads(line[0][len("RESULT "):])
    measured.append(data)
    return data["result"]


def package_step(request_id: str, tenant_id: str) -> None:
    """The package step alone, in this process, measured (what --package runs)."""
    from oblio.access import package
    from oblio.control import records
    from oblio.control.tenants import get_tenant
    from oblio.core.settings import get_settings
    from oblio.pipeline import work
    from oblio.store import aws
    from oblio.store.models import ConsentModel

    # warm what a warm Lambda has before it starts: clients, the tenant, the frozen map
    m = records.load(tenant_id, request_id)
    get_tenant(tenant_id)
    work.frozen_map(m)
    aws.client("s3").head_bucket(Bucket=get_settings().bucket("exports"))
    aws.client("dynamodb").describe_limits()
    ConsentModel._get_connection().connection.client  # noqa: B018 - the ledger's client
    result, wall, peak = timed_peak(lambda: package.package(request_id, tenant_id))
    emit({"result": result, "peak_traced_mb": peak / 2**20, "package_s": wall,
          "max_rss_mb": _peak_rss_mb()})


def _peak_rss_mb() -> float:
    """This process's peak RSS since it started (ru_maxrss would count the parent's before
    exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(items: int, contacts: int, file_kb: int) -> dict[str, Any]:
    stack = local_stack()
    try:
        from infra.local import demo
        from oblio.access import package
        from oblio.core import datamap
        from tests.client import Api

        dm = datamap.current()
        demo.seed(dm, ["demo"], contacts, writer=direct_writer())
        rows = heavy_subject(dm, items, file_kb)
        measured: list[Any] = []
        package.package = lambda rid, tid: package_in_its_own_process(rid, tid, measured)
        api = Api(stack.info["api_url"], stack.info["tenants"]["demo"]["api_key"])
        t = time.monotonic()
        r = api.post("/v1/requests", {"type": "access", "subject": {"email": EMAIL},
                                      "notify_email": "dpo@tenant.example"})
        done = api.wait(r.json()["request_id"], timeout=3600)
        wall = time.monotonic() - t
        assert done["status"] == "completed", done
        res = done["result"]
        assert res["export"]["items"] == sum(rows.values()), (res["export"], rows)
        io = calls(res["io"])
        return {"items": res["export"]["items"], "wall_s": wall, "io": io,
                "size": res["export"]["size"], "files": res["export"]["files"],
                "package": measured[-1]}
    finally:
        stack.stop()


def report(results: list[dict[str, Any]]) -> None:
    print("\noblio access export benchmark (local stack: moto server, real ASL, HTTP API)")
    print(f"{'items':>7} {'wall s':>7} {'archive KB':>10} {'parts':>5} {'files':>5} "
          f"{'package s':>9} {'pkg peak MiB':>12} {'pkg RSS MiB':>11} {'ddb calls':>9} "
          f"{'s3 calls':>8} {'Scan':>4}")
    for r in results:
        p, io = r["package"], r["io"]
        ddb = sum(v for k, v in io.items() if k.startswith("dynamodb."))
        s3 = sum(v for k, v in io.items() if k.startswith("s3."))
        print(f"{r['items']:>7} {r['wall_s']:>7.2f} {r['size'] / 1024:>10.1f} "
              f"{p['result'].get('parts', io.get('s3.UploadPart', 0)):>5} {r['files']:>5} "
              f"{p['package_s']:>9.2f} {p['peak_traced_mb']:>12.2f} {p['max_rss_mb']:>11.0f} "
              f"{ddb:>9} {s3:>8} {io.get('dynamodb.Scan', 0):>4}")
    for r in results:
        print(f"\n{r['items']} items: AWS calls by operation")
        for op, v in sorted(Counter(r["io"]).items()):
            print(f"  {op:<30} {v:>7}")
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(f"\npackage peak memory at {b['items']} items vs {a['items']}: "
              f"{b['package']['peak_traced_mb'] / a['package']['peak_traced_mb']:.2f}x "
              f"(archive {b['size'] / a['size']:.1f}x larger, "
              f"{b['items'] / a['items']:.0f}x the items)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10,1000,10000", help="items of the subject")
    p.add_argument("--contacts", type=int, default=1000, help="other people in the tables")
    p.add_argument("--file-kb", type=int, default=256, help="size of each of the 3 files")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    p.add_argument("--package", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.package:
        package_step(*args.package)
        return
    if args.one is not None:
        emit(run_one(args.one, args.contacts, args.file_kb))
        return
    results = run_sizes("tests.bench.access", args.sizes, "--contacts", str(args.contacts),
                        "--file-kb", str(args.file_kb))
    report(results)


if __name__ == "__main__":
    main()
