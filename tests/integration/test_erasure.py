"""Erasure end to end, over HTTP against the local stack, checked the way a DPO would: what is
left in the tables and the buckets afterwards."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.local import lambdas
from infra.local.demo import NAMED
from infra.local.lambdas import Fault
from oblio.store import shards
from tests.integration import raw

MARIO = {"email": "mario.rossi@example.com"}
JEANNE = {"email": "jeanne.dupont@example.com"}


def counts(search: dict[str, Any]) -> dict[str, int]:
    return {t: v["count"] for t, v in search["tables"].items()}


def test_search_finds_mario_in_at_least_eight_tables(api):
    r = api.get("/v1/subjects", email="Mario.Rossi@Example.com ")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["found"] is True
    assert sum(1 for n in counts(body).values() if n) >= 8
    assert {p["table"] for p in body["pending_deliveries"]} == {"subscriptions",
                                                                "scheduled_recipients"}
    assert body["suppressed"] is False
    assert body["subject_ref"].startswith("s_")


def test_search_by_phone_in_national_form_uses_tenant_region(api):
    body = api.get("/v1/subjects", phone="333 123 4567").json()
    assert body["tables"]["contacts"]["count"] == 1


def test_dry_run_lists_what_would_go_and_changes_nothing(api):
    before = counts(api.get("/v1/subjects", **JEANNE).json())
    r = api.post("/v1/requests", {"type": "erasure", "subject": JEANNE, "dry_run": True})
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["dry_run"] is True and plan["changed"] == 0
    assert plan["tables"]["contacts"]["would_delete"] == 1
    assert plan["tables"]["tickets"]["would_anonymise"] == before["tickets"]
    assert plan["tables"]["tickets"]["action"] == "anonymise"
    assert all(plan["tables"][t]["matched"] == n for t, n in before.items())
    assert counts(api.get("/v1/subjects", **JEANNE).json()) == before


@pytest.fixture(scope="module")
def mario_erased(api, child_api, dm, aws_client) -> dict[str, Any]:
    """Mario erased by e-mail, and what a DPO would have noted first: Jeanne's and the child
    tenant's Mario's counts, his files and their versions, his tickets' keys."""
    before = {
        "jeanne": counts(api.get("/v1/subjects", **JEANNE).json()),
        "child": counts(child_api.get("/v1/subjects", **MARIO).json()),
        "files": raw.pointed_files(api, aws_client, dm, **MARIO),
        "tickets": api.get("/v1/subjects", **MARIO).json()["tables"]["tickets"]["keys"],
    }
    before["versions"] = [raw.versions(aws_client, b, k) for b, k in before["files"]]
    done = api.erase(MARIO, reason="asked by e-mail")
    return {"before": before, "done": done, "result": done["result"]}


def test_erasure_of_mario_completes_with_a_passed_verification(mario_erased):
    assert mario_erased["done"]["status"] == "completed", mario_erased["done"]
    assert mario_erased["result"]["verification"]["passed"] is True


def test_erasure_counts_the_profile_deleted_the_tickets_anonymised_and_the_files(
        mario_erased):
    result, before = mario_erased["result"], mario_erased["before"]
    assert len(before["files"]) >= 3  # photo, attachment, document
    assert result["tables"]["contacts"]["deleted"] == 1
    assert result["tables"]["tickets"]["anonymised"] == len(before["tickets"])
    assert result["totals"]["files_deleted"] == len(before["files"])


def test_erasure_certificate_names_the_request_and_its_audit_entry_and_no_identity(
        mario_erased):
    done = mario_erased["done"]
    cert = done["result"]["certificate"]
    assert cert["request_id"] == done["id"] and cert["tenant_id"] == "demo"
    assert cert["subject_ref"] == done["subject_ref"]
    assert cert["audit_entry"]["hash"] and cert["verification"]["passed"]
    assert "mario" not in json.dumps(done).lower()


def test_erasure_reads_by_query_and_writes_in_batches_without_a_scan(mario_erased):
    io = mario_erased["result"]["io"]
    assert io["dynamodb.Scan"] == 0
    assert io["dynamodb.Query"] >= 1 and io["dynamodb.BatchWriteItem"] >= 1
    # a subject's few file versions: one free DELETE each, no DeleteObjects (a PUT-class POST)
    assert io["s3.DeleteObject"] >= 1 and io.get("s3.DeleteObjects", 0) == 0


def test_erasure_counts_every_call_it_caused_by_owner_and_prices_them(mario_erased):
    """Not only the tenant's tables: oblio's own records, audit, work files, events and
    workflow are in the `io` too, each under its owner, with what they cost."""
    io = mario_erased["result"]["io"]
    assert io["complete"] is True
    tenant, oblio = io["by_owner"]["tenant"], io["by_owner"]["oblio"]
    assert tenant["dynamodb.BatchWriteItem"] >= 1 and tenant["s3.DeleteObject"] >= 1
    assert oblio["dynamodb.TransactWriteItems"] >= 1  # the audit entries
    assert oblio["stepfunctions.StartExecution"] == 1 and oblio["events.PutEvents"] >= 1
    for op, n in io.items():  # the flat view is the two owners added up
        if "." in op and op != "dynamodb.Scan":
            assert n == tenant.get(op, 0) + oblio.get(op, 0), op
    assert io["lambda"]["invocations"] >= 3  # the API, Work, Finish
    assert io["stepfunctions"]["express_executions"] == 1
    cost = io["cost_usd"]
    assert 0 < cost["tenant"] < cost["total"] and cost["oblio"] > 0
    assert cost["by_service"]["dynamodb"] > 0 and cost["by_service"]["lambda"] > 0
    assert cost["prices"].startswith("oblio.core.prices, us-east-1")


def test_an_erased_subject_is_found_nowhere_and_is_suppressed(api, mario_erased):
    after = api.get("/v1/subjects", **MARIO).json()
    assert after["found"] is False and after["suppressed"] is True


def test_erasure_deletes_every_version_of_every_file(aws_client, mario_erased):
    before = mario_erased["before"]
    assert before["versions"] == [2] * len(before["files"])
    assert [raw.versions(aws_client, b, k) for b, k in before["files"]] == \
        [0] * len(before["files"])


def test_erasure_keeps_ticket_shells_for_reporting(aws_client, mario_erased):
    """Without the text or the link to the contact."""
    for key in mario_erased["before"]["tickets"]:
        item = raw.get_item(aws_client, "demo-tickets", key)
        assert item is not None, key
        assert {"status", "channel", "reason", "created_at", "sla_resolution_min"} <= set(item)
        assert not {"subject", "description", "contact_id"} & set(item)


def test_erasure_leaves_jeanne_and_marios_copy_in_the_child_tenant_untouched(
        api, child_api, mario_erased):
    assert counts(api.get("/v1/subjects", **JEANNE).json()) == mario_erased["before"]["jeanne"]
    assert counts(child_api.get("/v1/subjects", **MARIO).json()) == \
        mario_erased["before"]["child"]


def test_the_audit_log_verifies_after_an_erasure(api, mario_erased):
    assert api.get("/v1/audit/verify").json()["valid"] is True


def test_erasure_emits_subject_erased_event_without_identity(api, subject, event_log):
    done = api.erase({"email": subject["email"]})
    mine = event_log.for_request(done["id"])
    assert {e["detail-type"] for e in mine} >= {"SubjectErased", "RequestCompleted"}
    raw = json.dumps(mine)
    assert subject["email"] not in raw and subject["phone"] not in raw
    assert all(e["detail"]["subject_ref"] == done["subject_ref"] for e in mine)


def test_include_children_erases_the_child_copy_with_a_parent_key(api, child_api, dm):
    from infra.local import demo

    email = "paola.neri@example.com"
    demo.seed_subject(dm, "demo", email, "+393351112233")
    demo.seed_subject(dm, "demo-child", email, "+393351112233")
    assert child_api.get("/v1/subjects", email=email).json()["found"] is True
    done = api.erase({"email": email}, include_children=True)
    assert done["status"] == "completed", done
    assert done["result"]["tenants"]["demo-child"]["tables"]["contacts"]["deleted"] == 1
    assert child_api.get("/v1/subjects", email=email).json()["found"] is False
    assert api.get("/v1/subjects", email=email).json()["found"] is False
    # the child tenant's audit log and suppression list record it too
    assert child_api.get("/v1/subjects", email=email).json()["suppressed"] is True


def test_child_key_cannot_fan_out_to_other_tenants(child_api):
    r = child_api.post("/v1/requests", {"type": "erasure", "subject": MARIO, "confirm": True,
                                        "include_children": True})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"


def test_unknown_subject_completes_with_zero_counts(api):
    done = api.erase({"email": "nobody.at.all@example.org"})
    assert done["status"] == "completed"
    assert done["result"]["found"] is False
    assert done["result"]["totals"]["matched"] == 0
    assert "no item" in done["result"]["message"]


def test_second_open_request_for_same_subject_is_the_same_request(api, subject, faults):
    body = {"type": "erasure", "subject": {"email": subject["email"]}, "confirm": True}
    faults.inject(Fault("work", delay=2.0))
    first = api.post("/v1/requests", body)
    second = api.post("/v1/requests", body)
    assert first.status_code == 202 and second.status_code == 200
    assert second.json()["id"] == first.json()["request_id"]
    assert second.json()["duplicate_of_open_request"] is True
    api.wait(first.json()["request_id"])


def test_idempotency_key_replays_the_first_answer_and_rejects_another_body(api, subject):
    body = {"type": "erasure", "subject": {"email": subject["email"]}, "dry_run": True}
    key = {"Idempotency-Key": f"idem-{subject['email']}"}
    a = api.post("/v1/requests", body, headers=key)
    b = api.post("/v1/requests", body, headers=key)
    assert a.status_code == b.status_code == 200
    assert a.json() == b.json()
    c = api.post("/v1/requests", {**body, "reason": "other"}, headers=key)
    assert c.status_code == 409
    assert c.json()["error"]["code"] == "idempotency_key_reused"


@pytest.fixture(scope="module")
def failed_then_retried(api, aws_client, settings, dm, stack) -> dict[str, Any]:
    """An erasure whose tickets task fails (after the other tables are done), as its record
    stood then, and the same request retried to its end. Its tables go one by one (the Map
    of a large request: no table is small enough to be applied inside Work)."""
    from infra.local import demo

    email = "failing.tables@example.net"
    seeded = demo.seed_subject(dm, "demo", email, "+393471230001")
    inline, settings.inline_unit_items = settings.inline_unit_items, 0
    lambdas.faults.inject(Fault("apply", "TableUnavailable", "the tickets table is unavailable",
                                when={"unit.table": "tickets"},
                                delay=1.5))  # the other tables finish first
    try:
        r = api.post("/v1/requests", {"type": "erasure", "subject": {"email": email},
                                      "confirm": True})
        failed = api.wait(r.json()["request_id"])
    finally:
        lambdas.faults.clear()
    sk = "req#" + failed["id"]
    key = {"pk": shards.key("demo", sk), "sk": sk}
    settings.inline_unit_items = inline
    table = settings.table("requests")
    units_failed = raw.get_item(aws_client, table, key)["units"]
    # the contact is gone, so search no longer reaches the tickets: the frozen plan does
    retried = api.post(f"/v1/requests/{failed['id']}/retry")
    done = api.wait(failed["id"]) if retried.status_code == 200 else None
    return {"email": email, "seeded": seeded, "failed": failed, "retried": retried,
            "done": done, "units_failed": units_failed,
            "units_done": raw.get_item(aws_client, table, key)["units"]}


def test_a_failed_table_task_fails_the_request_with_its_code(failed_then_retried):
    failed = failed_then_retried["failed"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "TableUnavailable"


def test_the_tables_done_before_a_failure_are_recorded_and_the_failed_one_is_not(
        failed_then_retried):
    done = {k for k in failed_then_retried["units_failed"] if k.startswith("demo/")}
    assert "demo/contacts" in done and "demo/tickets" not in done


def test_a_retried_request_completes_from_its_frozen_plan(api, failed_then_retried):
    assert failed_then_retried["retried"].status_code == 200, \
        failed_then_retried["retried"].text
    done = failed_then_retried["done"]
    assert done["status"] == "completed", done
    assert done["attempt"] == 2
    assert done["result"]["tables"]["contacts"]["deleted"] == 1
    assert done["result"]["tables"]["tickets"]["anonymised"] == \
        failed_then_retried["seeded"]["counts"]["tickets"]
    assert done["result"]["verification"]["passed"] is True
    assert api.get("/v1/subjects", email=failed_then_retried["email"]).json()["found"] is False


def test_a_retry_does_not_redo_the_tables_done_before_the_failure(failed_then_retried):
    # the tables done before the failure (under load a table can still be applying when the
    # tickets task fails and the Map stops: that one is not done, and the retry finishes it)
    before = {k: v for k, v in failed_then_retried["units_failed"].items()
              if k.startswith("demo/") and v.get("status") == "done"}
    after = failed_then_retried["units_done"]
    assert before and {k: after[k] for k in before} == before


def test_the_timeline_shows_the_failure_the_retry_and_the_end(failed_then_retried):
    events = [e["event"] for e in failed_then_retried["done"]["timeline"]]
    assert events.index("failed") < events.index("retry") < events.index("completed")


def test_a_table_task_retried_after_its_answer_was_lost_is_not_done_twice(
        api, subject, faults, event_log, stack_settings):
    """The contacts task deletes the profile and its photo, then fails as a timeout would;
    the state machine's Retry runs it again, which finds it done."""
    stack_settings(inline_unit_items=0)  # table by table (the Map of a large request)
    lost = Fault("apply", "TransientError", "the answer was lost", after=True,
                 when={"unit.table": "contacts"})
    faults.inject(lost)
    done = api.erase({"email": subject["email"]})
    assert lost.times == 0  # the task did fail once
    assert done["status"] == "completed", done
    assert done["attempt"] == 1  # retried inside the execution, not by the client
    contacts = done["result"]["tables"]["contacts"]
    assert (contacts["deleted"], contacts["files_deleted"]) == (1, 1)
    assert done["result"]["verification"]["passed"] is True
    kinds = [e["detail-type"] for e in event_log.for_request(done["id"])]
    assert sorted(kinds) == ["RequestCompleted", "SubjectErased"]


def test_a_small_request_run_twice_inside_work_is_not_done_twice(api, subject, faults,
                                                                event_log):
    """Work plans, applies every table and verifies, then fails as a timeout would (or an
    Express execution runs it again): the Retry runs it again, which reuses the plan, finds
    every table done and verifies again; the request completes once, with what the first run
    did."""
    lost = Fault("work", "TransientError", "the answer was lost", after=True)
    faults.inject(lost)
    done = api.erase({"email": subject["email"]})
    assert lost.times == 0  # Work did fail once
    assert done["status"] == "completed", done
    assert done["attempt"] == 1
    contacts = done["result"]["tables"]["contacts"]
    assert (contacts["deleted"], contacts["files_deleted"]) == (1, 1)
    assert done["result"]["tables"]["tickets"]["anonymised"] == subject["counts"]["tickets"]
    assert done["result"]["verification"]["passed"] is True
    kinds = [e["detail-type"] for e in event_log.for_request(done["id"])]
    assert sorted(kinds) == ["RequestCompleted", "SubjectErased"]


def test_cancel_a_queued_request(api, subject, faults):
    faults.inject(Fault("work", delay=2.0))
    r = api.post("/v1/requests", {"type": "erasure", "subject": {"email": subject["email"]},
                                  "confirm": True})
    rid = r.json()["request_id"]
    c = api.post(f"/v1/requests/{rid}/cancel")
    assert c.status_code == 200, c.text
    assert c.json()["status"] == "cancelled"
    again = api.post(f"/v1/requests/{rid}/cancel")
    assert again.status_code == 409


def test_request_history_filters_and_pages(api):
    r = api.get("/v1/requests", type="erasure", status="completed", limit=2)
    assert r.status_code == 200
    page = r.json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    assert all(i["type"] == "erasure" and i["status"] == "completed" for i in page["items"])
    nxt = api.get("/v1/requests", type="erasure", status="completed", limit=2,
                  cursor=page["next_cursor"]).json()
    assert not {i["id"] for i in nxt["items"]} & {i["id"] for i in page["items"]}
    created = [i["created_at"] for i in page["items"] + nxt["items"]]
    assert created == sorted(created, reverse=True)
    assert api.get("/v1/requests", overdue="true").json()["items"] == []
    assert api.get("/v1/requests", limit=0).status_code == 422
    assert api.get("/v1/requests", cursor="garbage").status_code == 422


def test_extend_moves_the_due_date_with_a_reason(api, subject, faults):
    faults.inject(Fault("work", delay=1.5))
    r = api.post("/v1/requests", {"type": "erasure", "subject": {"email": subject["email"]},
                                  "confirm": True})
    rid = r.json()["request_id"]
    due = r.json()["due_at"]
    assert api.post(f"/v1/requests/{rid}/extend", {"months": 3, "reason": "x"}
                    ).status_code == 422
    assert api.post(f"/v1/requests/{rid}/extend", {"months": 1}).status_code == 422
    ext = api.post(f"/v1/requests/{rid}/extend", {"months": 2, "reason": "complex request"})
    assert ext.status_code == 200, ext.text
    assert ext.json()["due_at"] > due and ext.json()["extension"]["months"] == 2
    api.wait(rid)


@pytest.mark.parametrize("body, field, code", [
    ({"type": "erasure", "confirm": True}, "subject", "invalid_field"),
    ({"type": "erasure", "subject": {}, "confirm": True}, "subject", "invalid_field"),
    ({"type": "erasure", "subject": {"email": "not-an-email"}, "confirm": True},
     "subject.email", "invalid_email"),
    ({"type": "erasure", "subject": {"phone": "12"}, "confirm": True}, "subject.phone",
     "invalid_phone"),
    ({"type": "erasure", "subject": {"fax": "1"}, "confirm": True}, "subject",
     "invalid_field"),
    ({"type": "erasure", "subject": MARIO}, "confirm", "confirmation_required"),
    ({"type": "erasure", "subject": MARIO, "confirm": "yes"}, "confirm", "invalid_field"),
    ({"type": "forget-me", "subject": MARIO}, "type", "invalid_type"),
])
def test_bad_requests_are_422_naming_the_field(api, body, field, code):
    r = api.post("/v1/requests", body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["details"]["field"] == field
    assert err["message"]
    assert "not-an-email" not in err["message"]


def test_a_misspelt_field_is_422_naming_it_and_the_field_meant_and_files_nothing(api):
    before = api.get("/v1/requests", limit=500).json()["items"]
    r = api.post("/v1/requests", {"type": "anonymisation", "subject": MARIO, "confirm": True,
                                  "tabels": ["tickets"]})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["details"]["field"] == "tabels"
    assert "tabels" in err["message"] and "did you mean 'tables'" in err["message"]
    after = api.get("/v1/requests", limit=500).json()["items"]
    assert [x["id"] for x in after] == [x["id"] for x in before]


def test_bad_json_is_400_in_the_error_shape(api):
    r = api.post("/v1/requests", raw="{not json")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "bad_request"


def test_authentication_and_scopes(api, anon, stack):
    from tests.client import Api

    assert anon.get("/v1/requests").status_code == 401
    assert anon.get("/v1/health").status_code == 200
    assert Api(stack.info["api_url"], "obl_wrong").get("/v1/requests").status_code == 401
    made = api.post("/v1/keys", {"scopes": ["dsr:read"], "name": "reader"})
    assert made.status_code == 201, made.text
    reader = Api(stack.info["api_url"], made.json()["api_key"])
    assert reader.get("/v1/subjects", **JEANNE).status_code == 200
    r = reader.post("/v1/requests", {"type": "erasure", "subject": JEANNE, "confirm": True})
    assert r.status_code == 403
    assert r.json()["error"]["details"]["required_scope"] == "dsr:erase"
    assert reader.get("/v1/audit").status_code == 403
    keys = api.get("/v1/keys").json()["items"]
    assert all("api_key" not in k for k in keys)


def test_tenant_isolation_no_endpoint_crosses_tenants(api, child_api, subject):
    done = api.erase({"email": subject["email"]})
    rid = done["id"]
    # the child tenant cannot see, cancel, retry or extend the parent's request
    assert child_api.get(f"/v1/requests/{rid}").status_code == 404
    assert child_api.post(f"/v1/requests/{rid}/cancel").status_code == 404
    assert child_api.post(f"/v1/requests/{rid}/retry").status_code == 404
    assert child_api.post(f"/v1/requests/{rid}/extend",
                          {"months": 1, "reason": "x"}).status_code == 404
    assert rid not in {i["id"] for i in child_api.get("/v1/requests", limit=500).json()["items"]}
    assert all(e.get("request_id") != rid
               for e in child_api.get("/v1/audit", limit=500).json()["items"])
    # the child's search sees its own data only: Jeanne lives in demo only
    assert child_api.get("/v1/subjects", **JEANNE).json()["found"] is False
    # a tenant id in the body does not widen the key: the body is refused, it names the field
    r = child_api.post("/v1/requests", {"type": "erasure", "subject": JEANNE,
                                        "confirm": True, "tenant_id": "demo"})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "tenant_id"
    assert api.get("/v1/subjects", **JEANNE).json()["found"] is True
    assert child_api.get("/v1/tenant").json()["tenant_id"] == "demo-child"


def test_audit_log_is_hash_chained_and_detects_tampering(api, aws_client, settings):
    ok = api.get("/v1/audit/verify").json()
    assert ok["valid"] is True and ok["entries"] > 0
    entries = api.get("/v1/audit", limit=3).json()["items"]
    assert entries[0]["id"] > entries[1]["id"]  # newest first
    victim = entries[1]
    ddb = aws_client("dynamodb")
    key = {"tenant_id": {"S": "demo"}, "seq": {"S": victim["id"]}}
    table = settings.table("audit")
    old = ddb.get_item(TableName=table, Key=key)["Item"]
    ddb.update_item(TableName=table, Key=key, UpdateExpression="SET #a = :a",
                    ExpressionAttributeNames={"#a": "action"},
                    ExpressionAttributeValues={":a": {"S": "nothing_happened"}})
    try:
        broken = api.get("/v1/audit/verify").json()
        assert broken["valid"] is False and broken["first_broken"] == victim["id"]
        assert broken["problem"] == "this entry (or the one before it) was changed"
    finally:
        ddb.put_item(TableName=table, Item=old)
    assert api.get("/v1/audit/verify").json()["valid"] is True


def test_no_log_line_or_execution_history_holds_an_identity(api, subject, logs, aws_client,
                                                            settings):
    api.get("/v1/subjects", email=subject["email"])
    done = api.erase({"email": subject["email"], "phone": subject["phone"]})
    assert done["status"] == "completed"
    text = "\n".join(logs.lines)
    assert "GET /v1/subjects?[query]" in text  # the API's access log is captured, redacted
    forbidden = [subject["email"], subject["phone"], subject["phone"][3:],
                 *(s.email for s in NAMED)]
    for value in forbidden:
        assert value not in text, f"an identity leaked into the logs: {value[:3]}..."
    sfn = aws_client("stepfunctions")
    arn = settings.state_machine_arn("erasure").replace(":stateMachine:", ":execution:")
    history = sfn.get_execution_history(executionArn=f"{arn}:{done['id']}-1")
    raw = json.dumps(history, default=str)
    assert subject["email"] not in raw and subject["phone"] not in raw


def test_openapi_document_is_served(anon):
    doc = anon.get("/v1/openapi.json").json()
    assert doc["openapi"] == "3.1.0" and "/v1/requests" in doc["paths"]
    body = doc["paths"]["/v1/requests"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/RequestBody"}
    assert "tables" in doc["components"]["schemas"]["AnonymisationRequest"]["properties"]
