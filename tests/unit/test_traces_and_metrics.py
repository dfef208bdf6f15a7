"""Traces and metrics say something about the work, never about a subject: every task
function is one traced invocation annotated with the ids of its request, job or sweep; a
metric is one EMF line with request types and statuses as dimensions; a bulk chunk's
erasures are one metric line, not one a subject."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from oblio.core import observability
from oblio.core.boundary import BulkEvent, TaskEvent, task

FUNCTIONS = Path(__file__).parents[2] / "functions"
TASKS = sorted(p.name for p in FUNCTIONS.iterdir() if (p / "handler.py").exists()
               and p.name != "api")


def _metric_lines(out: str, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if f'"{name}"' in line]


def test_a_count_is_one_line_with_its_number_and_dimensions(capsys):
    observability.count("RequestsCompleted", 3, type="erasure", status="completed")

    (line,) = _metric_lines(capsys.readouterr().out, "RequestsCompleted")
    assert line["RequestsCompleted"] == [3.0]
    assert (line["type"], line["status"]) == ("erasure", "completed")
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "oblio"


@pytest.fixture
def annotations(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    got: dict[str, Any] = {}
    monkeypatch.setattr(observability.tracer, "put_annotation",
                        lambda key, value: got.__setitem__(key, value))
    return got


def test_the_boundary_annotates_the_trace_with_the_works_ids_only(annotations):
    @task
    def step(ev: TaskEvent) -> dict[str, Any]:
        return {"ok": True}

    step({"request_id": "R1", "tenant_id": "acme", "action": "erase",
          "unit": {"tenant_id": "acme", "table": "contacts"},
          "email": "mario.rossi@example.com"}, None)

    assert annotations == {"request_id": "R1", "tenant_id": "acme", "action": "erase",
                           "table": "contacts"}


def test_a_chunks_trace_names_the_job_and_the_chunk(annotations):
    @task(BulkEvent)
    def step(ev: BulkEvent) -> dict[str, Any]:
        return {}

    step({"tenant_id": "acme", "job_id": "J1",
          "chunk": "work/acme/bulk/J1/chunks/000003.json"}, None)

    assert annotations == {"tenant_id": "acme", "job_id": "J1", "chunk": "000003"}


@pytest.mark.parametrize("name", TASKS)
def test_every_task_function_is_one_traced_invocation(name):
    handler = importlib.import_module(f"{name}.handler").handler
    chain, fn = [], handler
    while fn is not None:
        chain.append(fn.__code__.co_filename)
        fn = getattr(fn, "__wrapped__", None)
    assert any(f.endswith("tracing/tracer.py") for f in chain), name


def test_tracing_is_off_outside_lambda():
    assert observability.tracer.disabled  # and annotations are no-ops
    observability.annotate(request_id="R1")


@pytest.fixture
def bulk_world(aws):
    from oblio.control import tenants
    from oblio.core.settings import get_settings
    from oblio.store import aws as oblio_aws
    from oblio.store import tables as store

    s = get_settings()
    for b in ("work", "exports"):
        oblio_aws.client("s3").create_bucket(
            Bucket=s.bucket(b), CreateBucketConfiguration={"LocationConstraint": s.region})
    oblio_aws.client("events").create_event_bus(Name=s.event_bus)
    tenants.create_tenant("acme", "Acme")
    emails = [f"bulk.{i}@example.net" for i in range(3)]
    store.batch_put("demo-contacts", [
        {"tenant_id": "acme", "contact_id": f"c{i}", "email": e, "first_name": "Ann",
         "last_name": "Lee"} for i, e in enumerate(emails)])
    return emails


def test_a_bulk_chunk_counts_its_erasures_in_one_metric_line(bulk_world, capsys):
    from oblio.core import clock
    from oblio.jobs import bulk, chunks
    from oblio.store import objects
    from oblio.store.models import BulkJobModel

    BulkJobModel(tenant_id="acme", job_id="J1", status="running", created_at=clock.iso(),
                 io={}).save()
    key = chunks.Work("acme", "bulk", "J1").chunk(0)
    objects.put_json(key, [{"line": i + 2, "identities": {"email": e}, "dry_run": False}
                           for i, e in enumerate(bulk_world)]
                     + [{"line": 5, "identities": {"email": "nobody@example.net"},
                         "dry_run": False}])
    capsys.readouterr()

    out = bulk.erase_chunk("acme", "J1", key)

    assert (out["erased"], out["not_found"]) == (3, 1)
    (line,) = _metric_lines(capsys.readouterr().out, "RequestsCompleted")
    assert line["RequestsCompleted"] == [3.0] and line["status"] == "completed"
    assert bulk.erase_chunk("acme", "J1", key)["skipped"] is True
    assert _metric_lines(capsys.readouterr().out, "RequestsCompleted") == []


def test_a_tasks_ids_do_not_outlive_it_nor_reach_another_thread():
    """The console printed a bulk job's id on lines of an unrelated request (issue 16, 13)."""
    import io
    import logging
    import threading

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(observability.logger.registered_formatter)
    observability.logger.addHandler(handler)

    @task(BulkEvent)
    def chunk(ev: BulkEvent) -> dict[str, Any]:
        observability.logger.info("chunk line")
        return {}

    @task
    def plan(ev: TaskEvent) -> dict[str, Any]:
        observability.logger.info("plan line")
        return {}

    chunk({"tenant_id": "acme", "job_id": "J-STALE"}, None)
    plan({"request_id": "R2", "tenant_id": "acme"}, None)
    seen: list[str] = []
    inside, done = threading.Event(), threading.Event()

    @task(BulkEvent)
    def slow(ev: BulkEvent) -> dict[str, Any]:
        inside.set()
        done.wait(5)
        return {}

    worker = threading.Thread(target=slow, args=({"tenant_id": "acme", "job_id": "J-OTHER"},
                                                 None))
    worker.start()
    inside.wait(5)
    observability.logger.info("api line")  # the API's thread, while the chunk runs
    done.set()
    worker.join()
    observability.logger.removeHandler(handler)
    lines = {json.loads(line)["message"]: json.loads(line)
             for line in out.getvalue().splitlines() if line.startswith("{")}
    seen = list(lines)
    assert {"chunk line", "plan line", "api line"} <= set(seen)
    assert lines["chunk line"]["job_id"] == "J-STALE"
    assert "job_id" not in lines["plan line"] and lines["plan line"]["request_id"] == "R2"
    assert "job_id" not in lines["api line"] and "request_id" not in lines["api line"]
