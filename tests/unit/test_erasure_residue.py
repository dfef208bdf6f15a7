"""What an erasure used to leave behind (issue 16, item 10): the subject's unexpired
access-export archives, and the items past their DynamoDB TTL that DynamoDB had not deleted
yet (with the items reached only through them). The steps run in-process as Step Functions
runs them; the checks read the raw tables and buckets."""

from __future__ import annotations

from typing import Any

import pytest

from oblio.control import records
from oblio.core import clock
from oblio.pipeline import apply, plan, verify
from oblio.store import aws
from tests.unit import world

pytestmark = pytest.mark.usefixtures("provisioned")

MARIO = {"email": "mario@example.com"}


@pytest.fixture
def mario(demo_map, t) -> dict[str, Any]:
    return world.seed(demo_map, t.tenant_id, "mario@example.com", "+393331234567", "CRM-1")


def _contact_id(tenant_id: str) -> str:
    (c,) = [i for i in world.items("demo-contacts", tenant_id)
            if i.get("email") == "mario@example.com"]
    return str(c["contact_id"])


def _exports_bucket() -> str:
    from oblio.core.settings import get_settings

    return get_settings().bucket("exports")


def finished_export(t: Any, identities: dict[str, str], *, days_left: int,
                    indexed: bool = True) -> str:
    """A finished access request of the subject whose archive (two versions) is in S3 and
    expires in `days_left` days (negative: already expired), in the archive index unless
    not `indexed` (an export made before oblio kept the index)."""
    from datetime import timedelta

    from oblio.control import exports
    from oblio.control.exports import archive_key
    from oblio.store.models import RequestModel, plain

    rid = world.new_request(t, "access", identities, action="export")
    expires = clock.iso(clock.now() + timedelta(days=days_left))
    m = records.load(t.tenant_id, rid)
    m.update(actions=[RequestModel.status.set("completed"),
                      RequestModel.result.set({"export": {"expires_at": expires},
                                               "expires_at": expires})])
    if indexed:  # as the package step does before it writes the archive
        exports.index_archive(t.tenant_id, rid, plain(m.identity_refs) or {}, m.subject_ref,
                              expires)
    s3 = aws.client("s3")
    for body in (b"PK first", b"PK second"):
        s3.put_object(Bucket=_exports_bucket(), Key=archive_key(t.tenant_id, rid), Body=body)
    return rid


# -- archives --------------------------------------------------------------------------------

def test_erasure_deletes_every_version_of_the_subjects_unexpired_archive_and_counts_it(
        t, mario):
    rid_export = finished_export(t, MARIO, days_left=10)
    rid = world.new_request(t, "erasure", MARIO, action="erase")
    done = world.run(rid, t.tenant_id, "erase")
    assert world.versions(_exports_bucket(), f"exports/{t.tenant_id}/{rid_export}") == []
    cert = done["result"]["certificate"]
    assert cert["archives_deleted"] == 1
    assert cert["verification"]["passed"] is True
    assert cert["verification"]["checked"]["archives"] == {"objects": 1, "left": 0}
    # the plan keeps references only: the tenant and the access request's id
    assert records.plan_of(records.load(t.tenant_id, rid))["archives"] == [
        {"tenant_id": t.tenant_id, "request_id": rid_export}]


def test_an_archive_asked_by_phone_goes_with_an_erasure_asked_by_email(t, mario):
    rid_export = finished_export(t, {"phone": "+393331234567"}, days_left=3)
    rid = world.new_request(t, "erasure", MARIO, action="erase")
    done = world.run(rid, t.tenant_id, "erase")
    assert world.versions(_exports_bucket(), f"exports/{t.tenant_id}/{rid_export}") == []
    assert done["result"]["certificate"]["archives_deleted"] == 1


def test_another_subjects_archive_is_not_touched(demo_map, t, mario):
    world.seed(demo_map, t.tenant_id, "luigi@example.com", "+393339876543", "CRM-2")
    luigi = finished_export(t, {"email": "luigi@example.com"}, days_left=10)
    rid = world.new_request(t, "erasure", MARIO, action="erase")
    done = world.run(rid, t.tenant_id, "erase")
    assert done["result"]["certificate"]["archives_deleted"] == 0
    assert world.versions(_exports_bucket(), f"exports/{t.tenant_id}/{luigi}")


def test_an_archive_past_its_expiry_that_s3_still_holds_goes_too(t, mario):
    # S3's lifecycle rule deletes an expired archive a day or two later: until then it is a
    # copy of everything about her, and the erasure deletes it
    rid_export = finished_export(t, MARIO, days_left=-1)
    rid = world.new_request(t, "erasure", MARIO, action="erase")
    done = world.run(rid, t.tenant_id, "erase")
    assert done["result"]["certificate"]["archives_deleted"] == 1
    assert world.versions(_exports_bucket(), f"exports/{t.tenant_id}/{rid_export}") == []


def test_an_archive_the_lifecycle_rule_deleted_is_not_counted(t, mario):
    rid_export = finished_export(t, MARIO, days_left=-1)
    s3 = aws.client("s3")
    key = f"exports/{t.tenant_id}/{rid_export}.zip"
    for v in s3.list_object_versions(Bucket=_exports_bucket(), Prefix=key)["Versions"]:
        s3.delete_object(Bucket=_exports_bucket(), Key=key, VersionId=v["VersionId"])
    rid = world.new_request(t, "erasure", MARIO, action="erase")
    done = world.run(rid, t.tenant_id, "erase")
    assert done["result"]["certificate"]["archives_deleted"] == 0
    assert done["result"]["certificate"]["verification"]["passed"] is True


def test_an_archive_made_before_the_index_is_found_by_the_tenants_first_look_up(t, mario):
    from oblio.store.models import ARCHIVE_INDEX_BUILT, ArchiveIndexModel
    from oblio.store.shards import key

    # a tenant of an earlier release: no index mark, its exports only in its request records
    ArchiveIndexModel(key(t.tenant_id, ARCHIVE_INDEX_BUILT), ARCHIVE_INDEX_BUILT).delete()
    rid_export = finished_export(t, {"phone": "+393331234567"}, days_left=5, indexed=False)
    rid = world.new_request(t, "erasure", MARIO, action="erase")
    done = world.run(rid, t.tenant_id, "erase")
    assert done["result"]["certificate"]["archives_deleted"] == 1
    assert world.versions(_exports_bucket(), f"exports/{t.tenant_id}/{rid_export}") == []
    # the tenant is marked: the next look-ups read the index only
    assert ArchiveIndexModel.get(key(t.tenant_id, ARCHIVE_INDEX_BUILT),
                                 ARCHIVE_INDEX_BUILT).built_at


def test_verification_fails_when_an_archive_is_left(t, mario):
    rid_export = finished_export(t, MARIO, days_left=10)
    rid = world.new_request(t, "erasure", MARIO, action="erase")
    for u in plan.plan(rid, t.tenant_id, "erase")["units"]:
        if u["table"] != "_archives":
            apply.apply(rid, t.tenant_id, "erase", u)
    assert verify.verify(rid, t.tenant_id, "erase") == {"passed": False}
    outcome = records.units_of(records.load(t.tenant_id, rid))["_verification"]
    assert outcome["checked"]["archives"] == {"objects": 1, "left": 1}
    assert world.versions(_exports_bucket(), f"exports/{t.tenant_id}/{rid_export}")


# -- items past their TTL ------------------------------------------------------------------

def _expire_a_ticket(t: Any) -> tuple[str, list[str]]:
    """One of Mario's tickets soft-deleted with its purge_at in the past (DynamoDB has not
    deleted it yet); its id and its messages' ids."""
    from oblio.store import tables as store

    cid = _contact_id(t.tenant_id)
    ticket = next(i for i in world.items("demo-tickets", t.tenant_id)
                  if i.get("contact_id") == cid)
    past = int(clock.now().timestamp()) - 86_400
    store.batch_put("demo-tickets", [{**ticket, "deleted_at": "2026-01-01T00:00:00Z",
                                      "purge_at": past}])
    messages = [i["message_id"] for i in world.items("demo-ticket-messages", t.tenant_id)
                if i.get("ticket_id") == ticket["ticket_id"]]
    assert messages
    return ticket["ticket_id"], messages


def test_erasure_reaches_a_ticket_past_its_ttl_and_the_messages_found_through_it(t, mario):
    ticket_id, messages = _expire_a_ticket(t)
    rid = world.new_request(t, "erasure", MARIO, action="erase")
    done = world.run(rid, t.tenant_id, "erase")
    left = [i for i in world.items("demo-ticket-messages", t.tenant_id)
            if i.get("message_id") in messages]
    assert left == []
    (shell,) = [i for i in world.items("demo-tickets", t.tenant_id)
                if i["ticket_id"] == ticket_id]
    assert "contact_id" not in shell and "description" not in shell  # the anonymised shell
    cert = done["result"]["certificate"]
    assert cert["expired_items_included"] >= 1
    assert cert["verification"]["passed"] is True


def test_anonymisation_reaches_a_ticket_past_its_ttl(t, mario):
    _, messages = _expire_a_ticket(t)
    rid = world.new_request(t, "anonymisation", MARIO, action="anonymise")
    done = world.run(rid, t.tenant_id, "anonymise")
    for i in world.items("demo-ticket-messages", t.tenant_id):
        if i.get("message_id") in messages:
            assert "body" not in i
    assert done["result"]["certificate"]["expired_items_included"] >= 1


def test_search_still_hides_items_past_their_ttl(demo_map, t, mario):
    from oblio.pipeline import find

    ticket_id, _ = _expire_a_ticket(t)
    shown = find.walk(demo_map, t.tenant_id, MARIO)
    assert ticket_id not in {i["ticket_id"] for i in shown.items.get("tickets", [])}
    seen = find.walk(demo_map, t.tenant_id, MARIO, include_expired=True)
    assert ticket_id in {i["ticket_id"] for i in seen.items["tickets"]} and seen.expired >= 1


# -- bulk erasure --------------------------------------------------------------------------

def test_a_bulk_erasure_deletes_the_archive_and_the_items_past_their_ttl(t, mario):
    from tests.unit.test_bulk_jobs import report_rows, run_job

    rid_export = finished_export(t, MARIO, days_left=10)
    _, messages = _expire_a_ticket(t)
    job = run_job(t, b"email\nmario@example.com\n")
    assert (job["status"], job["erased"]) == ("completed", 1)
    assert world.versions(_exports_bucket(), f"exports/{t.tenant_id}/{rid_export}") == []
    assert [i for i in world.items("demo-ticket-messages", t.tenant_id)
            if i.get("message_id") in messages] == []
    (row,) = report_rows(job)
    cert = records.to_json(records.load(t.tenant_id, row["request_id"]))["result"][
        "certificate"]
    assert cert["archives_deleted"] == 1 and cert["expired_items_included"] >= 1
    assert cert["verification"]["passed"] is True
    assert cert["verification"]["checked"]["archives"] == {"objects": 1, "left": 0}


def test_an_archive_an_earlier_erasure_deleted_is_not_counted_again(t, mario):
    finished_export(t, MARIO, days_left=10)
    first = world.new_request(t, "erasure", MARIO, action="erase")
    assert world.run(first, t.tenant_id, "erase")["result"]["certificate"][
        "archives_deleted"] == 1
    again = world.new_request(t, "erasure", MARIO, action="erase")
    done = world.run(again, t.tenant_id, "erase")
    cert = done["result"]["certificate"]
    assert cert["archives_deleted"] == 0 and cert["found"] is False
    assert done["result"]["verification"]["passed"] is None  # nothing to verify
