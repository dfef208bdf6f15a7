"""What a request says it did is what it did: the files of an item put on legal hold after
the plan stay with it, an item gone since the plan is counted gone (not updated, not
anonymised), and the audit log says an erasure completed only once all it claims is done."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from oblio.control import audit, exports, records, suppression
from oblio.core import datamap
from oblio.core.errors import TransientError
from oblio.core.settings import DEMO_DATAMAP
from oblio.pipeline import apply, evidence, plan, verify
from oblio.store import aws
from oblio.store import tables as store
from tests.unit import world

pytestmark = pytest.mark.usefixtures("provisioned")
EMAIL = "mario@example.com"
PHONE = "+393331234567"


def _map(edit: Any) -> datamap.DataMap:
    data = copy.deepcopy(yaml.safe_load(DEMO_DATAMAP.read_text()))
    data["version"] = 2
    edit(data)
    return datamap.parse(data)


def _hold_documents(d: dict[str, Any]) -> None:
    d["tables"]["documents"]["legal_hold"] = {"attribute": "legal_hold",
                                              "reason": "litigation hold"}
    d["tables"]["documents"]["attributes"]["legal_hold"] = {"category": "non_personal"}


def _versions(bucket: str, key: str) -> list[dict[str, Any]]:
    resp = aws.client("s3").list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in resp.get("Versions", []) if v["Key"] == key]


def _run(t: Any, rid: str, action: str, between: Any = None) -> dict[str, Any]:
    """The workflow's steps, with `between` run after the plan and before the apply."""
    units = plan.plan(rid, t.tenant_id, action)["units"]
    if between is not None:
        between()
    for u in units:
        apply.apply(rid, t.tenant_id, action, u)
    verify.verify(rid, t.tenant_id, action)
    evidence.finish(rid, t.tenant_id, action)
    return records.to_json(records.load(t.tenant_id, rid))


def test_a_document_put_on_hold_after_the_plan_keeps_its_file(t, monkeypatch):
    dm = _map(_hold_documents)
    monkeypatch.setattr(datamap, "current", lambda: dm)
    world.seed(dm, t.tenant_id, EMAIL, PHONE, "CRM-1")
    bucket = dm.buckets["files"]
    doc = next(i for i in world.items("demo-documents", t.tenant_id) if i.get("s3_key"))
    rid = world.new_request(t, "erasure", {"email": EMAIL}, action="erase")

    view = _run(t, rid, "erase", lambda: store.batch_put(
        "demo-documents", [{**doc, "legal_hold": True}]))

    res = view["result"]
    assert [i for i in world.items("demo-documents", t.tenant_id)
            if i["document_id"] == doc["document_id"]]
    # the item on hold keeps its file, every version, and the certificate says so
    assert _versions(bucket, doc["s3_key"])
    (hold,) = res["certificate"]["holds"]
    assert hold["table"] == "documents" and hold["held"] == 1 and hold["files_held"] == 1
    assert hold["reasons"] == {"litigation hold": 1}
    assert res["tables"]["documents"]["files_deleted"] == 0
    assert "not touched" in res["message"]
    # the subject's other files went
    contacts = res["tables"]["contacts"]
    assert contacts["deleted"] == 1 and contacts["files_deleted"] >= 1
    # the item on hold, and its file, stay by design: the verification does not call them
    # left (before: completed_with_errors, the held document counted remaining)
    v = res["verification"]
    assert (view["status"], v["passed"], v["remaining"], v["files_remaining"]) == (
        "completed", True, {}, 0)
    assert v["checked"]["exempt"]["held"] == 1


def test_a_rectification_of_an_item_deleted_since_the_plan_counts_it_gone(demo_map, t):
    world.seed(demo_map, t.tenant_id, EMAIL, PHONE, "CRM-1")
    (c,) = [i for i in world.items("demo-contacts", t.tenant_id) if i.get("email") == EMAIL]
    rid = world.new_request(t, "rectification", {"email": EMAIL}, action="rectify",
                            changes={"first_name": "Marius"})

    view = _run(t, rid, "rectify", lambda: store.batch_delete(
        "demo-contacts", [{"tenant_id": t.tenant_id, "contact_id": c["contact_id"]}]))

    res = view["result"]
    assert not [i for i in world.items("demo-contacts", t.tenant_id)
                if i["contact_id"] == c["contact_id"]]  # nothing was written back
    contacts = res["tables"]["contacts"]
    assert contacts["matched"] == 1 and contacts["updated"] == 0 and contacts["gone"] == 1
    assert res["totals"]["gone"] == 1
    assert "no longer there" in res["message"]


def test_an_erasure_does_not_count_a_ticket_deleted_since_the_plan_as_anonymised(demo_map, t):
    world.seed(demo_map, t.tenant_id, EMAIL, PHONE, "CRM-1")
    tickets = world.items("demo-tickets", t.tenant_id)
    assert len(tickets) >= 1
    gone = tickets[0]
    rid = world.new_request(t, "erasure", {"email": EMAIL}, action="erase")

    view = _run(t, rid, "erase", lambda: store.batch_delete(
        "demo-tickets", [{"tenant_id": t.tenant_id, "ticket_id": gone["ticket_id"]}]))

    cert = view["result"]["certificate"]["tables"]["tickets"]
    assert cert["matched"] == len(tickets) and cert["gone"] == 1
    assert cert["anonymised"] == len(tickets) - 1


def test_an_apply_run_again_counts_its_anonymised_items_not_gone(demo_map, t):
    world.seed(demo_map, t.tenant_id, EMAIL, PHONE, "CRM-1")
    rid = world.new_request(t, "erasure", {"email": EMAIL}, action="erase")
    units = plan.plan(rid, t.tenant_id, "erase")["units"]
    (tickets,) = [u for u in units if u["table"] == "tickets"]
    first = apply.apply(rid, t.tenant_id, "erase", tickets)
    m = records.load(t.tenant_id, rid)
    dm = evidence.frozen_map(m)
    again = apply.apply_unit(dm, "erase", apply.Unit(t.tenant_id, "tickets"),
                             apply.unit_manifest_of(m, apply.Unit(t.tenant_id, "tickets")),
                             t.keys, m.subject_ref or "", marker=rid)
    assert again["anonymised"] == first["anonymised"] >= 1 and "gone" not in again


def _erased_until_finish(demo_map: Any, t: Any) -> str:
    world.seed(demo_map, t.tenant_id, EMAIL, PHONE, "CRM-1")
    rid = world.new_request(t, "erasure", {"email": EMAIL}, action="erase")
    for u in plan.plan(rid, t.tenant_id, "erase")["units"]:
        apply.apply(rid, t.tenant_id, "erase", u)
    verify.verify(rid, t.tenant_id, "erase")
    return rid


def _actions(t: Any, rid: str) -> list[str]:
    page, _ = audit.entries(t.tenant_id)
    return [e["action"] for e in map(audit.to_json, page) if e.get("request_id") == rid]


def _boom(*a: Any, **k: Any) -> Any:
    raise TransientError("throttled")


@pytest.mark.parametrize("failing", ["suppression", "late_archives"])
def test_no_erasure_completed_entry_before_what_it_claims_is_done(demo_map, t, monkeypatch,
                                                                  failing):
    rid = _erased_until_finish(demo_map, t)
    with monkeypatch.context() as patch:
        if failing == "suppression":
            patch.setattr(suppression, "add", _boom)
        else:
            patch.setattr(exports, "late_archives", _boom)
        with pytest.raises(TransientError):
            evidence.finish(rid, t.tenant_id, "erase")
    assert "erasure_completed" not in _actions(t, rid)

    # the step retried (as the state machine's Retry does): one entry, after the rest
    assert evidence.finish(rid, t.tenant_id, "erase") == {"status": "completed"}
    assert _actions(t, rid).count("erasure_completed") == 1
    view = records.to_json(records.load(t.tenant_id, rid))
    assert view["result"]["suppression_entries"] >= 1
    assert view["result"]["certificate"]["late_archives"] == {"found": 0, "deleted": 0,
                                                              "left": 0}


def test_what_lies_under_a_held_item_s_prefix_is_spared_too(monkeypatch: Any) -> None:
    """A held item owns the prefix u/1/: an object or a narrower prefix under it, named by
    another item of the unit, is the held item's file too (S3 prefixes are plain string
    prefixes), and stays."""
    from types import SimpleNamespace

    from oblio.pipeline import apply, find

    manifest = {"s3": [["b", "u/1/doc.pdf"], ["b", "u/2/doc.pdf"]], "templated": [],
                "prefixes": [["b", "u/1/"], ["b", "u/1/x/"], ["b", "u/2/"]]}
    monkeypatch.setattr(find, "s3_refs", lambda *a, **k: [])
    monkeypatch.setattr(find, "file_refs",
                        lambda *a, **k: {"templated": [], "prefixes": [("b", "u/1/")]})
    kept, files, prefixes = apply.spare_held(None, SimpleNamespace(files=[object()]),  # type: ignore[arg-type]
                                             "tn", manifest, [{"id": "held"}])
    assert kept["s3"] == [("b", "u/2/doc.pdf")] and kept["prefixes"] == [("b", "u/2/")]
    assert (files, prefixes) == (1, 2)
