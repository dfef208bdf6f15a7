"""A bulk chunk's evidence: one audit entry per chunk committing to its subjects' certificates
(a Merkle root), and each subject's request record, suppression entries and SubjectErased
event exactly once however many times the chunk runs, whichever step a run dies after.
Verification recomputes each chunk's root from its stored certificates, page by page."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from oblio.control import audit, exports, records, suppression
from oblio.core import clock
from oblio.core.errors import TransientError
from oblio.jobs import bulk
from oblio.store import objects, outbound, shards
from oblio.store.models import AuditModel, BulkJobModel, RequestModel, SuppressionModel
from tests.unit import world

pytestmark = pytest.mark.usefixtures("provisioned")


def chunk_of(demo_map, t: Any, n: int, job_id: str = "01JOBEVIDENCE0000000000000") -> tuple[
        str, str, list[str]]:
    """A running job whose one chunk names `n` seeded people and one nobody."""
    emails = [f"ev.{i}@example.net" for i in range(n)]
    for e in emails:
        world.seed(demo_map, t.tenant_id, e)
    BulkJobModel(tenant_id=t.tenant_id, job_id=job_id, status="running",
                 created_at=clock.iso(), io={}).save()
    chunk = f"work/{t.tenant_id}/bulk/{job_id}/chunks/000000.json"
    lines = [*emails, "nobody.here@example.net"]
    objects.put_json(chunk, [{"line": i + 2, "identities": {"email": e}, "dry_run": False}
                             for i, e in enumerate(lines)])
    return job_id, chunk, emails


def chunk_entries(tenant_id: str) -> list[AuditModel]:
    page, _ = audit.entries(tenant_id, newest_first=False)
    return [m for m in page if m.action == "bulk_chunk_erased"]


def recorded(tenant_id: str, job_id: str) -> list[RequestModel]:
    return list(shards.query_tenant(RequestModel, tenant_id, RequestModel.sk.startswith("req#"),
                                    filter_condition=RequestModel.requested_by ==
                                    f"bulk:{job_id}"))


def assert_each_subject_once(t: Any, job_id: str, n: int,
                             events: list[dict[str, Any]]) -> None:
    recs = recorded(t.tenant_id, job_id)
    assert len(recs) == n and len({r.subject_ref for r in recs}) == n
    assert {r.request_id for r in recs} == {bulk.line_request_id(job_id, i + 2)
                                            for i in range(n)}
    (entry,) = chunk_entries(t.tenant_id)
    assert entry.details["count"] == n
    assert sorted(entry.details["subject_refs"]) == sorted(r.subject_ref for r in recs)
    # every record's suppression entries name it, once each (keyed by the identity's HMAC)
    sup = list(shards.query_tenant(SuppressionModel, t.tenant_id))
    by_request = Counter(s.request_id for s in sup)
    assert set(by_request) == {r.request_id for r in recs}
    assert all(c == records.to_json(r)["result"]["certificate"]["suppression_entries"]
               for r in recs for rid, c in by_request.items() if rid == r.request_id)
    erased = [e for e in events if e["detail-type"] == "SubjectErased"]
    assert Counter(e["detail"]["request_id"] for e in erased) == Counter(
        {r.request_id: 1 for r in recs})
    for r in recs:
        cert = records.to_json(r)["result"]["certificate"]
        assert cert["audit_entry"]["id"] == entry.seq
        leaf = {k: v for k, v in cert.items() if k not in ("audit_entry", "chunk")}
        assert audit.included(t.tenant_id, leaf, cert["chunk"])
    assert audit.verify(t.tenant_id)["valid"] is True


def test_a_chunk_appends_one_audit_entry_for_all_its_subjects(demo_map, t):
    job_id, chunk, emails = chunk_of(demo_map, t, 3)
    out = bulk.erase_chunk(t.tenant_id, job_id, chunk)
    assert (out["erased"], out["not_found"]) == (3, 1)
    (entry,) = chunk_entries(t.tenant_id)
    details = entry.details.as_dict() if hasattr(entry.details, "as_dict") else entry.details
    text = json.dumps(details, default=str)
    assert all(e not in text for e in emails)  # subject references only, no identity
    assert details["evidence"]["key"] == audit.evidence_key(t.tenant_id, job_id, chunk)
    assert_each_subject_once(t, job_id, 3, world.events())
    assert not [m for m in audit.entries(t.tenant_id)[0] if m.action == "erasure_completed"]


STEPS = [
    ("certificates stored", audit, "commit_chunk"),
    ("audit entry appended", suppression, "add_many"),
    ("suppression written", exports, "late_archives"),
    ("late archives deleted", records, "put_many"),
    ("request records written", outbound, "emit_many"),
]


@pytest.mark.parametrize(("after", "module", "name"), STEPS, ids=[s[0] for s in STEPS])
def test_a_chunk_that_dies_after_a_step_and_runs_again_records_each_subject_once(
        demo_map, t, monkeypatch, after, module, name):
    job_id, chunk, _ = chunk_of(demo_map, t, 3)

    def died(*args: Any, **kwargs: Any) -> Any:
        raise TransientError(f"the chunk worker died after: {after}")

    monkeypatch.setattr(module, name, died)
    with pytest.raises(TransientError):
        bulk.erase_chunk(t.tenant_id, job_id, chunk)
    monkeypatch.undo()
    first = world.events()
    out = bulk.erase_chunk(t.tenant_id, job_id, chunk)
    assert (out["erased"], out["failed"]) == (3, 0)
    assert_each_subject_once(t, job_id, 3, first + world.events())


def test_a_chunk_that_ran_to_its_end_and_is_run_again_records_nothing_twice(demo_map, t):
    job_id, chunk, _ = chunk_of(demo_map, t, 2)
    bulk.erase_chunk(t.tenant_id, job_id, chunk)
    # the job's record of the chunk lost (as if the worker died after recording it all)
    BulkJobModel.get(t.tenant_id, job_id).update(actions=[BulkJobModel.chunks_done.remove()])
    bulk.erase_chunk(t.tenant_id, job_id, chunk)
    assert_each_subject_once(t, job_id, 2, world.events())


def test_events_sent_before_a_crash_are_not_sent_again(demo_map, t, monkeypatch):
    """12 subjects: two PutEvents; the run dies after the first was recorded in the outbox.
    And what stays at-least-once: a death between a PutEvents and its record in the outbox
    sends that batch (at most 10 events) again, never the batches recorded."""
    job_id, chunk, _ = chunk_of(demo_map, t, 12)
    put, calls = outbound._put_batch, []

    def second_dies(entries: list[dict[str, Any]]) -> None:
        calls.append(len(entries))
        if len(calls) == 2:
            raise TransientError("EventBridge went away")
        put(entries)

    monkeypatch.setattr(outbound, "_put_batch", second_dies)
    with pytest.raises(TransientError):
        bulk.erase_chunk(t.tenant_id, job_id, chunk)
    monkeypatch.setattr(outbound, "_put_batch", put)
    first = world.events()
    assert len(first) == 10
    bulk.erase_chunk(t.tenant_id, job_id, chunk)
    assert_each_subject_once(t, job_id, 12, first + world.events())


class Killed(BaseException):
    """The worker's end from outside (its time up, its process gone): no handler runs."""


def test_the_outbox_is_recorded_every_ten_putevents_and_a_killed_worker_resends_at_most_those(
        t, monkeypatch):
    """250 events, 25 PutEvents: the outbox written 3 times (after 10, 20, and at the end),
    not 25. A worker killed at the 16th PutEvents had recorded the first 10: the rerun sends
    the other 15 batches, 5 of them again (at most OUTBOX_EVERY x 10 events twice), and
    never the ten recorded."""
    events = [("SubjectErased", {"request_id": f"R{i:03d}", "subject_ref": f"S{i:03d}"})
              for i in range(250)]
    box = f"work/{t.tenant_id}/bulk/OUTBOX/evidence/000000.outbox.json"
    writes, put = [], objects.put_json
    monkeypatch.setattr(objects, "put_json",
                        lambda key, data: (writes.append(list(data)), put(key, data)))
    assert outbound.emit_many(t.tenant_id, events, outbox=box) == 250
    assert [len(w) for w in writes] == [10, 20, 25]
    assert len(world.events()) == 250

    box, batches = box.replace("000000", "000001"), []
    real = outbound._put_batch

    def killed_at_16(entries: list[dict[str, Any]]) -> None:
        batches.append(entries)
        if len(batches) == 16:
            raise Killed
        real(entries)

    monkeypatch.setattr(outbound, "_put_batch", killed_at_16)
    with pytest.raises(Killed):
        outbound.emit_many(t.tenant_id, events, outbox=box)
    assert objects.get_json(box) == list(range(10))
    monkeypatch.setattr(outbound, "_put_batch", real)
    assert outbound.emit_many(t.tenant_id, events, outbox=box) == 150
    got = Counter(e["detail"]["request_id"] for e in world.events())
    assert set(got) == {f"R{i:03d}" for i in range(250)}
    assert {r for r, n in got.items() if n == 2} == {f"R{i:03d}" for i in range(100, 150)}


def test_a_chunk_counts_its_recording_calls_and_makes_them_per_chunk(demo_map, t):
    """12 subjects: one audit append, 2 PutEvents, one BatchWriteItem of request records and
    the suppression entries' few, no GetItem or PutItem per subject; the job's `io` has them."""
    from oblio.store import aws
    from tests.bench.typed import count_pynamodb

    count_pynamodb(aws)  # oblio's own tables' calls too
    job_id, chunk, _ = chunk_of(demo_map, t, 12)
    bulk.erase_chunk(t.tenant_id, job_id, chunk)
    calls = {k: int(v) for k, v in BulkJobModel.get(t.tenant_id, job_id).io.as_dict().items()}
    assert calls["events.PutEvents"] == 2
    assert calls["dynamodb.TransactWriteItems"] == 1  # the chunk's one audit append
    assert calls.get("dynamodb.PutItem", 0) == 0
    assert calls.get("dynamodb.GetItem", 0) <= 2  # the audit's HEAD and the append's marker


# -- verification --------------------------------------------------------------------------------

def erased_chunk(demo_map, t: Any, n: int = 3) -> tuple[str, list[dict[str, Any]]]:
    job_id, chunk, _ = chunk_of(demo_map, t, n)
    bulk.erase_chunk(t.tenant_id, job_id, chunk)
    world.events()
    key = audit.evidence_key(t.tenant_id, job_id, chunk)
    return key, objects.get_json(key)


def test_a_changed_certificate_inside_a_chunk_entry_is_detected(demo_map, t):
    key, certs = erased_chunk(demo_map, t)
    assert audit.verify(t.tenant_id)["certificates"] == 3
    certs[1]["tables"]["contacts"]["deleted"] = 0
    objects.put_json(key, certs)
    got = audit.verify(t.tenant_id)
    (entry,) = chunk_entries(t.tenant_id)
    assert (got["valid"], got["first_broken"]) == (False, entry.seq)
    assert got["problem"] == "a certificate of this chunk was changed"


def test_a_removed_certificate_or_evidence_object_is_detected(demo_map, t):
    key, certs = erased_chunk(demo_map, t)
    objects.put_json(key, certs[:-1])
    assert audit.verify(t.tenant_id)["problem"] == \
        "a certificate of this chunk was removed or added"
    objects.delete_prefix(key)
    assert audit.verify(t.tenant_id)["problem"] == \
        "the certificates of this chunk entry are missing"


def test_a_changed_root_breaks_the_chain(demo_map, t):
    erased_chunk(demo_map, t)
    (entry,) = chunk_entries(t.tenant_id)
    entry.details["evidence"]["merkle_root"] = "0" * 64
    entry.save()
    got = audit.verify(t.tenant_id)
    assert (got["valid"], got["first_broken"]) == (False, entry.seq)
    # and with the entry's hash recomputed, the stored certificates still disagree
    entry.hash = audit._digest(entry.prev_hash, audit._body(entry))
    entry.save()
    assert audit.verify(t.tenant_id)["valid"] is False


def test_a_certificate_not_in_its_chunk_is_not_included(demo_map, t):
    _, certs = erased_chunk(demo_map, t)
    rec = records.to_json(records.load(t.tenant_id, certs[0]["request_id"]))
    chunk = rec["result"]["certificate"]["chunk"]
    assert audit.included(t.tenant_id, certs[0], chunk)
    assert not audit.included(t.tenant_id, {**certs[0], "consent_records_deleted": 9}, chunk)
    assert not audit.included(t.tenant_id, certs[1], chunk)
    other = audit.append(t.tenant_id, "tenant_updated", actor="key_1")
    assert not audit.included(t.tenant_id, certs[0], {**chunk, "entry": other.id})


def test_verification_pages_through_chunk_certificates(demo_map, t):
    for n in range(3):
        job_id, chunk, _ = chunk_of(demo_map, t, 1, job_id=f"01JOBPAGES{n:016d}")
        bulk.erase_chunk(t.tenant_id, job_id, chunk)
    whole = audit.verify(t.tenant_id)
    assert (whole["valid"], whole["certificates"], whole["next_cursor"]) == (True, 3, None)
    pages, cursor = [], None
    while True:
        got = audit.verify(t.tenant_id, cursor=cursor, certificates_per_call=1)
        pages.append(got)
        cursor = got["next_cursor"]
        if cursor is None:
            break
    assert len(pages) == 3 and all(p["valid"] for p in pages)
    assert (pages[-1]["entries"], pages[-1]["certificates"]) == (whole["entries"], 3)
    by_limit = audit.verify(t.tenant_id, limit=1)
    assert by_limit["entries"] == 1 and by_limit["next_cursor"]


def test_a_requests_inclusion_answer_proves_its_certificate_in_its_chunk(demo_map, t):
    _, certs = erased_chunk(demo_map, t)
    got = records.inclusion(t.tenant_id, certs[2]["request_id"])
    assert got["included"] is True and got["chunk"]["index"] == 2
    (entry,) = chunk_entries(t.tenant_id)
    assert got["chunk"]["merkle_root"] == entry.details["evidence"]["merkle_root"]
    m = records.load(t.tenant_id, certs[2]["request_id"])
    m.result["evidence"]["digest"] = "0" * 64  # the record pointed at another certificate
    m.save()
    got = records.inclusion(t.tenant_id, certs[2]["request_id"])
    assert got["included"] is False and "does not hold" in got["reason"]
    view = records.to_json(records.load(t.tenant_id, certs[2]["request_id"]))["result"]
    assert view["certificate"] is None and view["evidence_problem"]


def test_a_bulk_lines_record_points_at_its_certificate_and_stays_under_one_write_unit(
        demo_map, t):
    """The certificate is kept once, in the chunk's evidence object (which the audit
    verification reads); the line's record keeps where it is and its digest. The answer
    shows the certificate read from there, and an evidence object changed under it shows
    no certificate rather than the changed one."""
    from oblio.store import units

    _, certs = erased_chunk(demo_map, t)
    m = records.load(t.tenant_id, certs[0]["request_id"])
    assert "certificate" not in m.result and units.item_size(m.serialize()) < 1024
    view = records.to_json(m)["result"]
    assert view["certificate"]["request_id"] == certs[0]["request_id"]
    assert view["totals"]["deleted"] == sum(c["deleted"] for c in view["tables"].values())
    assert view["verification"] == view["certificate"]["verification"]
    key = m.result["evidence"]["key"]
    stored = objects.get_json(key)
    stored[0]["tables"]["contacts"]["deleted"] = 99
    objects.put_json(key, stored)
    assert records.to_json(records.load(t.tenant_id, certs[0]["request_id"]))["result"][
        "certificate"] is None
