"""One fault run: the local stack with a fault plan, a world of targets and bystanders, N
concurrent clients filing erasures, anonymisations and access exports (each create with its
Idempotency-Key) and one bulk job, then the checks, all from raw reads of the local AWS made by
clients the plan never faults:

- residue 0: no item of a target still holds her e-mail, phone or external id, none of her
  files keeps a version (erased and anonymised subjects, bulk subjects);
- collateral 0: every other item and object version of the data map's tables and buckets is
  as it was (the access subjects' too: an export changes nothing);
- per request: exactly one `<type>_completed` audit entry, one SubjectErased (erasure) or
  SubjectAnonymised (anonymisation) and one RequestCompleted event;
- certificates equal to the truth: each table's `matched` and the files deleted are the counts
  the world was seeded with, themselves checked against the snapshots' difference;
- the bulk job's counts equal to the truth, one SubjectErased per bulk subject;
- the audit chain verifies; every request `completed`, no client retry on `failed`.

`run(...)` returns the figures; tests/faults/test_small.py asserts them, tests/faults/run.py
prints them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import requests as http
from botocore.config import Config

TERMINAL = ("completed", "failed", "cancelled", "rejected")
BULK_TERMINAL = ("completed", "completed_with_errors", "failed")


@dataclass
class Figures:
    requests: int = 0
    completed: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    create_errors: list[str] = field(default_factory=list)
    create_retries: int = 0
    #: why the API answered 503: what it logged of each fault (`_ApiFaults`)
    api_faults: list[dict[str, Any]] = field(default_factory=list)
    injected: dict[str, int] = field(default_factory=dict)
    residue: list[str] = field(default_factory=list)
    collateral: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    wrong_certificates: list[str] = field(default_factory=list)
    bulk: dict[str, Any] = field(default_factory=dict)
    bulk_wrong: list[str] = field(default_factory=list)
    audit_chain: dict[str, Any] = field(default_factory=dict)
    not_completed: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    def failures(self) -> list[str]:
        """What is not as it must be, one line each (empty: the run passed)."""
        out = [f"request {r}" for r in self.not_completed]
        out += [f"create answered {e}" for e in self.create_errors]
        out += [f"residue: {r}" for r in self.residue]
        out += [f"collateral: {c}" for c in self.collateral]
        out += [f"duplicate/missing: {d}" for d in self.duplicates]
        out += [f"certificate: {w}" for w in self.wrong_certificates]
        out += [f"bulk: {b}" for b in self.bulk_wrong]
        if not self.audit_chain.get("valid"):
            out.append(f"audit chain: {self.audit_chain}")
        return out

    def summary(self) -> str:
        rows = [
            ("requests", self.requests),
            ("completed", f"{self.completed} ({dict(self.statuses)})"),
            ("client create retries (5xx/transport)", self.create_retries),
            # a figure: a client retries a 503 (a create's counts in create errors too)
            ("API 503s (faults that outlasted retries)", len(self.api_faults)),
            ("faults injected (retries absorbed)",
             f"{sum(self.injected.values())} {self.injected}"),
            ("residue", len(self.residue)), ("collateral", len(self.collateral)),
            ("duplicates or missing evidence", len(self.duplicates)),
            ("wrong certificates", len(self.wrong_certificates)),
            ("bulk", f"{self.bulk} wrong: {len(self.bulk_wrong)}"),
            ("audit chain", self.audit_chain), ("wall time", f"{self.wall_seconds:.0f}s"),
        ]
        lines = [f"{k:<40} {v}" for k, v in rows]
        fails = self.failures()
        lines += [f"  API 503: {f}" for f in self.api_faults[:10]]
        lines.append(f"{'result':<40} {'PASS' if not fails else 'FAIL'}")
        lines += [f"  - {f}" for f in fails[:40]]
        if len(fails) > 40:
            lines.append(f"  ... and {len(fails) - 40} more")
        return "\n".join(lines)


def plan(task: float, throttle: float, s3: float, seed: int) -> dict[str, Any]:
    """The fault plan of the suite's three levers (partial batches and deletes at half the
    throttle and S3 rates)."""
    return {"seed": seed, "task": {"before": task / 2, "after": task / 2},
            "dynamodb": {"throttle": throttle, "partial_batch": throttle / 2},
            "s3": {"slowdown": s3, "partial_delete": s3}}


class Raw:
    """Reads of the local AWS with clients the fault plan leaves alone."""

    def __init__(self, endpoint: str, region: str) -> None:
        cfg = Config(user_agent_extra="oblio-no-faults", retries={"max_attempts": 10})
        s = boto3.session.Session()
        self.ddb = s.client("dynamodb", endpoint_url=endpoint, region_name=region,
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=cfg)
        self.s3 = s.client("s3", endpoint_url=endpoint, region_name=region,
                           aws_access_key_id="testing", aws_secret_access_key="testing",
                           config=cfg)
        self.sqs = s.client("sqs", endpoint_url=endpoint, region_name=region,
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=cfg)

    def items(self, table: str) -> dict[str, str]:
        keys = [k["AttributeName"] for k in
                self.ddb.describe_table(TableName=table)["Table"]["KeySchema"]]
        out: dict[str, str] = {}
        for page in self.ddb.get_paginator("scan").paginate(TableName=table,
                                                             ConsistentRead=True):
            for item in page["Items"]:
                key = json.dumps({k: item[k] for k in keys}, sort_keys=True)
                out[key] = json.dumps(item, sort_keys=True)
        return out

    def versions(self, bucket: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for v in page.get("Versions", []):
                out.setdefault(v["Key"], set()).add(f"{v['VersionId']}:{v['ETag']}")
            for d in page.get("DeleteMarkers", []):
                out.setdefault(d["Key"], set()).add(f"{d['VersionId']}:marker")
        return out


def snapshot(raw: Raw, tables: list[str], buckets: list[str]) -> dict[str, Any]:
    return {"items": {t: raw.items(t) for t in tables},
            "objects": {b: raw.versions(b) for b in buckets}}


def run(task: float = 0.2, throttle: float = 0.2, s3: float = 0.1, requests: int = 70,
        bulk: int = 200, seed: int = 7, clients: int = 5, bystanders: int = 60,
        timeout: float = 1800, chunk_size: int | None = None,
        say: Any = print) -> Figures:
    """Start a local stack under the plan, build the world, run the clients, check."""
    os.environ["OBLIO_LOCAL_SCHEDULE_SECONDS"] = "0"
    if chunk_size:  # read by the bulk job where it knows the setting; harmless where not
        os.environ["OBLIO_BULK_CHUNK_SIZE"] = str(chunk_size)
    from infra.local import faults as local_faults
    from infra.local.stack import LocalStack, configure_environment, free_port

    aws_port, api_port = free_port(), free_port()
    configure_environment(aws_port)
    counts_file = Path(os.environ.get("OBLIO_LOCAL_FAULTS_COUNTS",
                                      f"/tmp/oblio-faults-{aws_port}.json"))
    os.environ["OBLIO_LOCAL_FAULTS_COUNTS"] = str(counts_file)
    stack = LocalStack(api_port=api_port, aws_port=aws_port, demo_contacts=bystanders,
                       quiet=True, write_state=False,
                       faults=json.dumps(plan(task, throttle, s3, seed)))
    t0 = time.monotonic()
    stack.start()
    try:
        with local_faults.suspended():
            world = _world(stack, requests, bulk, seed)
        say(f"world: {len(world['requests'])} requests, {len(world['bulk'])} bulk subjects, "
            f"{sum(len(v) for v in world['before']['items'].values())} items, "
            f"{sum(len(v) for v in world['before']['objects'].values())} files; "
            f"faults on ({time.monotonic() - t0:.0f}s)")
        figures = Figures(requests=len(world["requests"]))
        with _api_faults(figures):
            _drive(stack, world, clients, timeout, figures, say)
        injector = local_faults.active()
        figures.injected = dict(injector.snapshot()["injected"]) if injector else {}
        with local_faults.suspended():
            _check(stack, world, figures)
        figures.wall_seconds = time.monotonic() - t0
        return figures
    finally:
        stack.stop()


class _ApiFaults(logging.Handler):
    """Keeps what the API logged of each fault it answered 503 for (the AWS code, operation and
    botocore's retry account: `oblio.core.boundary.fault_of`), in place of the log's lines."""

    def __init__(self, figures: Figures) -> None:
        super().__init__(logging.WARNING)
        self.figures = figures

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "transient error":
            self.figures.api_faults.append({k: getattr(record, k, None) for k in FAULT_FIELDS})


FAULT_FIELDS = ("raised", "cause", "code", "operation", "status", "attempts",
                "max_attempts_reached", "retry_quota_reached")


@contextlib.contextmanager
def _api_faults(figures: Figures) -> Iterator[None]:
    """oblio's warnings go to `_ApiFaults` instead of its log while the clients run (whatever
    the caller's `logging.disable`, which is put back after)."""
    log = logging.getLogger("oblio")
    handlers, keep = log.handlers[:], _ApiFaults(figures)
    disabled = logging.root.manager.disable
    for h in handlers:
        log.removeHandler(h)
    log.addHandler(keep)
    logging.disable(min(disabled, logging.INFO))
    try:
        yield
    finally:
        logging.disable(disabled)
        log.removeHandler(keep)
        for h in handlers:
            log.addHandler(h)


def _world(stack: Any, requests: int, bulk: int, seed: int) -> dict[str, Any]:
    from infra.local import demo
    from oblio.core import datamap
    from oblio.core.settings import get_settings

    settings = get_settings()
    dm = datamap.load(settings.datamap)
    raw = Raw(stack.info["aws_endpoint_url"], stack.info["region"])
    tables = sorted({t.table for t in dm.tables.values()})
    buckets = sorted(set(dm.buckets.values()))
    base = snapshot(raw, tables, buckets)
    rng = random.Random(seed)
    n_anon = max(1, requests // 7)
    n_access = max(1, requests // 7)
    kinds = ["anonymisation"] * n_anon + ["access"] * n_access
    kinds += ["erasure"] * max(1, requests - len(kinds))
    rng.shuffle(kinds)
    reqs = []
    for i, kind in enumerate(kinds):
        email = f"fs{i:04d}.{kind}@faults.example.org"
        phone = f"+39348{seed % 100:02d}{i:05d}"
        ext = f"FS-{seed}-{i:05d}-X"
        seeded = demo.seed_subject(dm, "demo", email, phone, external_id=ext)
        reqs.append({"kind": kind, "email": email, "phone": phone, "external_id": ext,
                     "counts": seeded["counts"], "files": seeded["files"],
                     "key": str(uuid.uuid4())})
    bulk_subjects = []
    for i in range(bulk):
        email = f"fsbulk{i:05d}@faults.example.org"
        seeded = demo.seed_subject(dm, "demo", email, None)
        bulk_subjects.append({"email": email, "phone": None, "external_id": None,
                              "counts": seeded["counts"], "files": seeded["files"]})
    before = snapshot(raw, tables, buckets)
    # the truth the certificates are held to is the seeding's, checked against the snapshots
    seeded_items = sum(sum(v for k, v in s["counts"].items() if k != "files")
                       for s in [*reqs, *bulk_subjects])
    new_items = sum(len(before["items"][t]) - len(base["items"][t]) for t in tables)
    assert seeded_items == new_items, (seeded_items, new_items)
    # each subject's items and files, by the id namespace seed_subject gives her (from the
    # snapshots: the truth the certificates are held to)
    new_keys = {t: set(before["items"][t]) - set(base["items"][t]) for t in tables}
    new_files = {b: set(before["objects"][b]) - set(base["objects"][b]) for b in buckets}
    for s in [*reqs, *bulk_subjects]:
        ns = "demo_" + hashlib.sha256(s["email"].encode()).hexdigest()[:6] + "_"
        marks = [ns, *(json.dumps(i)[1:-1] for i in _identities(s))]
        s["owned"] = {t: {k for k in new_keys[t]
                          if any(m in before["items"][t][k] for m in marks)}
                      for t in tables}
        s["owned_files"] = {f for b in buckets for f in new_files[b] if ns in f}
        owned = sum(len(v) for v in s["owned"].values())
        want = sum(v for k, v in s["counts"].items() if k != "files")
        assert owned == want and len(s["owned_files"]) == s["counts"].get("files", 0), (
            s["email"], owned, want, len(s["owned_files"]))
    return {"dm": dm, "raw": raw, "tables": tables, "buckets": buckets, "before": before,
            "requests": reqs, "bulk": bulk_subjects, "new_keys": new_keys,
            "new_files": new_files, "settings": settings}


def _drive(stack: Any, world: dict[str, Any], clients: int, timeout: float,
           figures: Figures, say: Any) -> None:
    from tests.client import Api

    api = Api(stack.info["api_url"], stack.info["tenants"]["demo"]["api_key"])
    deadline = time.monotonic() + timeout
    lock = threading.Lock()

    def create(body: dict[str, Any], key: str) -> dict[str, Any] | None:
        for attempt in range(4):  # a client retries a 5xx with the same Idempotency-Key
            try:
                r = api.post("/v1/requests", body, headers={"Idempotency-Key": key})
            except http.RequestException as exc:
                answer = f"{type(exc).__name__}"
            else:
                if r.status_code in (200, 201, 202):
                    return dict(r.json())
                answer = f"{r.status_code} {r.text[:200]}"
            with lock:
                figures.create_errors.append(f"{body['type']} (attempt {attempt + 1}): "
                                             f"{answer}")
                figures.create_retries += 1
            time.sleep(0.5 * 2 ** attempt)
        return None

    def one(req: dict[str, Any]) -> None:
        body: dict[str, Any] = {"type": req["kind"], "subject": {"email": req["email"]}}
        if req["kind"] != "access":
            body["confirm"] = True
        made = create(body, req["key"])
        if made is None:
            req["final"] = {"status": "not created"}
            return
        req["id"] = made["request_id"]
        while time.monotonic() < deadline:
            got = api.get(f"/v1/requests/{req['id']}")
            if got.status_code == 200 and got.json()["status"] in TERMINAL:
                req["final"] = got.json()
                return
            time.sleep(1.0)
        req["final"] = {"status": "timed out"}

    def bulk_job() -> dict[str, Any]:
        if not world["bulk"]:
            return {}
        r = api.post("/v1/bulk-erasures", {})
        assert r.status_code == 201, r.text
        job = r.json()
        content = ("email\n" + "\n".join(s["email"] for s in world["bulk"]) + "\n").encode()
        for attempt in range(4):
            put = http.put(job["upload_url"], data=content, timeout=60)
            if put.status_code == 200:
                break
            time.sleep(0.5 * 2 ** attempt)
        while time.monotonic() < deadline:
            got = api.get(f"/v1/bulk-erasures/{job['job_id']}").json()
            if got["status"] in BULK_TERMINAL:
                return dict(got)
            time.sleep(2.0)
        return {"status": "timed out", **job}

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients + 1) as pool:
        job_future = pool.submit(bulk_job)
        list(pool.map(one, world["requests"]))
        say(f"requests done in {time.monotonic() - t0:.0f}s")
        world["job"] = job_future.result()
    say(f"bulk done in {time.monotonic() - t0:.0f}s: {world['job'].get('status')}")
    world["api"] = api


def _identities(s: dict[str, Any]) -> list[str]:
    return [v for v in (s["email"], s.get("phone"), s.get("external_id")) if v]


def _check(stack: Any, world: dict[str, Any], figures: Figures) -> None:
    raw, api = world["raw"], world["api"]
    after = snapshot(raw, world["tables"], world["buckets"])
    before = world["before"]
    reqs = world["requests"]
    for r in reqs:
        status = r["final"].get("status")
        figures.statuses[status] += 1
        if status == "completed":
            figures.completed += 1
        else:
            err = r["final"].get("error")
            figures.not_completed.append(f"{r['kind']} {r.get('id')}: {status} {err}")
    # residue: no identity of an erased / anonymised / bulk subject in any item; no version
    # of their files
    targets = [r for r in reqs if r["kind"] != "access"] + world["bulk"]
    all_after = [(t, k, v) for t in world["tables"] for k, v in after["items"][t].items()]
    for s in targets:
        for ident in _identities(s):
            needle = json.dumps(ident)[1:-1]
            hits = [f"{t} {k}" for t, k, v in all_after if needle in v]
            figures.residue += [f"{s['email'][:4]}.. identity in {h}" for h in hits]
        for f in s["owned_files"]:
            for b in world["buckets"]:
                if after["objects"][b].get(f):
                    figures.residue.append(f"file {f} keeps {len(after['objects'][b][f])} "
                                           "versions")
    # collateral: every item and version not of a target is as it was
    changeable = {t: set().union(*(s["owned"][t] for s in targets)) for t in world["tables"]}
    target_files = set().union(*(s["owned_files"] for s in targets))
    for t in world["tables"]:
        for k, v in before["items"][t].items():
            if k in changeable[t]:
                continue
            now = after["items"][t].get(k)
            if now != v:
                figures.collateral.append(f"{t} {k}: {'gone' if now is None else 'changed'}")
    for b in world["buckets"]:
        for key, versions in before["objects"][b].items():
            if key in target_files:
                continue
            if after["objects"][b].get(key) != versions:
                figures.collateral.append(f"s3://{b}/{key}: versions changed")
    # certificates against the truth
    for r in reqs:
        if r["kind"] == "access" or r["final"].get("status") != "completed":
            continue
        result = r["final"].get("result") or {}
        tables = result.get("tables", {})
        for name, n in r["counts"].items():
            if name == "files":
                got = result.get("totals", {}).get("files_deleted")
            else:
                got = tables.get(name, {}).get("matched")
            if got != n:
                figures.wrong_certificates.append(f"{r['kind']} {r['id']} {name}: {got} "
                                                  f"!= {n}")
        if not (result.get("certificate") or {}):
            figures.wrong_certificates.append(f"{r['kind']} {r['id']}: no certificate")
    # events, once each
    # a request says completed before its Finish sends its events (a send a fault failed is
    # sent by the step's retry, seconds later): read until each completed one has its
    # RequestCompleted, then until the queue is quiet (a duplicate still shows)
    completed = {r["id"] for r in reqs
                 if r.get("id") and r["final"].get("status") == "completed"}
    events = _events(raw, world["settings"], completed)
    by_req: dict[str, Counter[str]] = {}
    by_ref: Counter[str] = Counter()
    for e in events:
        d = e.get("detail", {})
        if d.get("request_id"):
            by_req.setdefault(d["request_id"], Counter())[e["detail-type"]] += 1
        if e["detail-type"] == "SubjectErased" and d.get("subject_ref"):
            by_ref[d["subject_ref"]] += 1
    audit = _audit(api)
    completions = Counter(a.get("request_id") for a in audit
                          if str(a.get("action", "")).endswith("_completed"))
    for r in reqs:
        if not r.get("id"):
            continue
        seen = by_req.get(r["id"], Counter())
        want = {"RequestCompleted": 1} if r["final"].get("status") == "completed" else {}
        if r["kind"] == "erasure" and want:
            want["SubjectErased"] = 1
        if r["kind"] == "anonymisation" and want:
            want["SubjectAnonymised"] = 1
        for kind, n in want.items():
            if seen[kind] != n:
                figures.duplicates.append(f"{r['kind']} {r['id']}: {seen[kind]} {kind}")
        if seen["RequestFailed"]:
            figures.duplicates.append(f"{r['kind']} {r['id']}: RequestFailed sent")
        if want and r["kind"] != "access" and completions[r["id"]] != 1:
            figures.duplicates.append(f"{r['kind']} {r['id']}: {completions[r['id']]} "
                                      "audit completion entries")
    # bulk: its counts against the truth, each subject's evidence once
    job = world.get("job") or {}
    if world["bulk"]:
        counts = job.get("counts") or {k: v for k, v in job.items()
                                        if isinstance(v, int) and not isinstance(v, bool)}
        figures.bulk = {"status": job.get("status"), "subjects": len(world["bulk"]),
                        **{k: v for k, v in counts.items() if isinstance(v, int)}}
        if job.get("status") != "completed":
            figures.bulk_wrong.append(f"job {job.get('job_id')} {job.get('status')}: "
                                      f"{json.dumps(job)[:300]}")
        erased = counts.get("erased", job.get("erased"))
        if erased != len(world["bulk"]):
            figures.bulk_wrong.append(f"erased {erased} != {len(world['bulk'])}")
        # a chunk's subjects are committed to by one audit entry of the chunk (its Merkle
        # root and their references): each subject in exactly one entry, each chunk once
        chunk_entries = [a for a in audit if a.get("action") == "bulk_chunk_erased"
                         and (a.get("details") or {}).get("job_id") == job.get("job_id")]
        per_chunk = Counter((a.get("details") or {}).get("chunk") for a in chunk_entries)
        if any(n != 1 for n in per_chunk.values()):
            figures.bulk_wrong.append(f"chunks with more than one audit entry: "
                                      f"{sorted(c for c, n in per_chunk.items() if n != 1)}")
        refs = Counter(ref for a in chunk_entries
                       for ref in (a.get("details") or {}).get("subject_refs") or [])
        if len(refs) != len(world["bulk"]) or any(n != 1 for n in refs.values()):
            figures.bulk_wrong.append(f"{sum(refs.values())} subjects committed to by "
                                      f"{len(chunk_entries)} chunk entries, {len(refs)} "
                                      f"distinct (want one each of {len(world['bulk'])})")
        dup_events = [ref for ref in refs if by_ref[ref] != 1]
        if dup_events:
            figures.bulk_wrong.append(f"{len(dup_events)} bulk subjects without exactly one "
                                      "SubjectErased")
    figures.audit_chain = dict(api.get("/v1/audit/verify").json())


def _events(raw: Raw, settings: Any, completed: set[str],
            wait: float = 60.0) -> list[dict[str, Any]]:
    """The events the queue got: read until every request of `completed` has its
    RequestCompleted (for at most `wait` seconds) and then three quiet polls."""
    url = raw.sqs.get_queue_url(QueueName=f"{settings.resource_prefix}-events")["QueueUrl"]
    seen: list[dict[str, Any]] = []
    quiet = 0
    until = time.monotonic() + wait

    def missing() -> bool:
        told = {e.get("detail", {}).get("request_id") for e in seen
                if e.get("detail-type") == "RequestCompleted"}
        return bool(completed - told) and time.monotonic() < until

    while quiet < 3 or missing():
        msgs = raw.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                       WaitTimeSeconds=1).get("Messages", [])
        if not msgs:
            quiet += 1
            continue
        quiet = 0
        seen += [json.loads(m["Body"]) for m in msgs]
        raw.sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
    return seen


def _audit(api: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        body = api.get("/v1/audit", **params).json()
        out += body.get("items", [])
        cursor = body.get("next_cursor")
        if not cursor:
            return out
