"""Bulk evidence benchmark: what recording a bulk job's subjects costs oblio, per subject.

    python -m tests.bench.evidence --subjects 200 --chunk 100
    python -m tests.bench.evidence --subjects 200 --chunk 100 --before 166659c   # the default

In-process AWS (moto's mock, as the unit tests run it), a tenant with `--subjects` demo
subjects, one bulk job of them cut into chunks of `--chunk`, every chunk erased by the chunk
task (`jobs.bulk.erase_chunk`). Every AWS call is counted at botocore (all clients, PynamoDB's
too); printed per subject: audit appends (entries a job's chunks add to the chain), oblio's
own write calls (PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems on
oblio's tables), GetItem, PutEvents, and the evidence objects written (S3 PutObject under
evidence/). The same run is made on the code of `--before` (a git commit, extracted with
`git archive` into a temporary folder; `--before ''` skips it), then both are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


def _tables_of(op: str, params: dict[str, Any]) -> list[str]:
    if op == "BatchWriteItem" or op == "BatchGetItem":
        return list(params.get("RequestItems", {}))
    if op == "TransactWriteItems":
        return [next(iter(i.values()))["TableName"] for i in params.get("TransactItems", [])]
    return [params["TableName"]] if "TableName" in params else []


def measure(subjects: int, chunk: int) -> dict[str, Any]:
    """One run in this process (the code on sys.path): figures per subject."""
    import botocore.client

    import tests.unit.conftest as unit  # sets the environment before oblio is imported
    from oblio.core import clock, datamap
    from oblio.core.settings import get_settings
    from oblio.jobs import bulk
    from oblio.store import objects
    from oblio.store.models import AuditModel, BulkJobModel
    from tests.unit import world

    calls: Counter[str] = Counter()
    counting = [False]
    own = get_settings().table("requests").rsplit("requests", 1)[0]
    real = botocore.client.BaseClient._make_api_call

    def counted(self: Any, op: str, params: dict[str, Any]) -> Any:
        if counting[0]:
            service = self.meta.service_model.service_name
            if service == "dynamodb":
                mine = any(t.startswith(own) for t in _tables_of(op, params))
                if op in WRITES and mine:
                    calls["oblio_writes"] += 1
                if op == "GetItem":
                    calls["GetItem"] += 1
            elif service == "events" and op == "PutEvents":
                calls["PutEvents"] += 1
            elif service == "s3" and op == "PutObject" and \
                    str(params.get("Key", "")).startswith("evidence/"):
                calls["evidence_objects"] += 1
        return real(self, op, params)

    botocore.client.BaseClient._make_api_call = counted  # type: ignore[method-assign]
    with unit._fresh_aws(), world.provisioned():
        dm = datamap.current()
        t = world.new_tenant("bench")
        emails = [f"bench.{i}@example.net" for i in range(subjects)]
        for e in emails:
            world.seed(dm, t.tenant_id, e)
        job_id = "01JBENCHEV0000000000000000"
        BulkJobModel(tenant_id=t.tenant_id, job_id=job_id, status="running",
                     created_at=clock.iso(), io={}).save()
        keys = []
        for n, start in enumerate(range(0, subjects, chunk)):
            key = f"work/{t.tenant_id}/bulk/{job_id}/chunks/{n:06d}.json"
            objects.put_json(key, [{"line": i + 2, "identities": {"email": emails[i]},
                                    "dry_run": False}
                                   for i in range(start, min(start + chunk, subjects))])
            keys.append(key)
        before = sum(1 for m in AuditModel.query(t.tenant_id) if m.seq.isdigit())
        counting[0] = True
        erased = sum(bulk.erase_chunk(t.tenant_id, job_id, k)["erased"] for k in keys)
        counting[0] = False
        appends = sum(1 for m in AuditModel.query(t.tenant_id) if m.seq.isdigit()) - before
    botocore.client.BaseClient._make_api_call = real  # type: ignore[method-assign]
    per = {k: round(v / subjects, 3) for k, v in calls.items()}
    return {"subjects": subjects, "chunk": chunk, "erased": erased, "audit_appends": appends,
            "oblio_writes_per_subject": per.get("oblio_writes", 0.0),
            "getitem_per_subject": per.get("GetItem", 0.0),
            "putevents_per_subject": per.get("PutEvents", 0.0),
            "evidence_objects": calls.get("evidence_objects", 0)}


def _run(tree: Path, subjects: int, chunk: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OBLIO_", "MOTO_"))}
    env["PYTHONPATH"] = os.pathsep.join(str(tree / p) for p in ("layers/common", "functions",
                                                                "."))
    code = (f"import sys; sys.path[:0] = {[str(tree / 'layers/common'), str(tree)]!r};"
            f"sys.path.insert(0, {str(ROOT)!r});"  # this benchmark's own module
            "from tests.bench import evidence as b;"
            f"import json; print('RESULT ' + json.dumps(b.measure({subjects}, {chunk})))")
    # the benchmark module comes from this tree, the code under test from `tree`
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=tree, check=False)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not line:
        sys.exit(f"the run on {tree} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(line[0][len("RESULT "):])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subjects", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--before", default="166659c",
                    help="the git commit to compare with ('' to skip)")
    a = ap.parse_args()
    rows = []
    if a.before:
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", a.before],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            rows.append((f"before ({a.before})", _run(Path(tmp), a.subjects, a.chunk)))
    rows.append(("after (this tree)", _run(ROOT, a.subjects, a.chunk)))
    cols = ("audit_appends", "oblio_writes_per_subject", "getitem_per_subject",
            "putevents_per_subject", "evidence_objects")
    print(f"{a.subjects} subjects in chunks of {a.chunk}")
    print(f"{'':22}" + "".join(f"{c:>26}" for c in cols))
    for name, r in rows:
        print(f"{name:22}" + "".join(f"{r[c]:>26}" for c in cols))
    print("RESULT " + json.dumps(dict(rows)))


if __name__ == "__main__":
    main()
