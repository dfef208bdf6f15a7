"""Erasure end to end, over HTTP against the local stack, checked the way a DPO would: what is
left in the tables and the buckets afterwards."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.local import lambdas
from infra.local.demo import NAMED

MARIO = {"email": "mario.rossi@example.com"}
JEANNE = {"email": "jeanne.dupont@example.com"}


def counts(search: dict[str, Any]) -> dict[str, int]:
    return {t: v["count"] for t, v in search["tables"].items()}


def files_of(dm: Any, aws_client: Any, tenant: str, email: str) -> list[str]:
    """The S3 keys of the subject's photo, attachments and documents, read from the tables."""
    from oblio.core.settings import get_settings  # noqa: F401
    from oblio.pipeline import find

    fp = find.walk(dm, tenant, {"email": email})
    return [k for name, items in fp.items.items()
            for _, k in find.s3_refs(dm, dm.tables[name], items)]


def versions(aws_client: Any, bucket: str, key: str) -> int:
    resp = aws_client("s3").list_object_versions(Bucket=bucket, Prefix=key)
    return len([v for v in resp.get("Versions", []) + resp.get("DeleteMarkers", [])
                if v["Key"] == key])


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


def test_erasure_of_mario_end_to_end(api, child_api, dm, aws_client):
    jeanne_before = counts(api.get("/v1/subjects", **JEANNE).json())
    child_before = counts(child_api.get("/v1/subjects", **MARIO).json())
    files = files_of(dm, aws_client, "demo", MARIO["email"])
    assert len(files) >= 3  # photo, attachment, document
    bucket = dm.buckets["files"]
    assert all(versions(aws_client, bucket, k) == 2 for k in files)
    tickets_before = api.get("/v1/subjects", **MARIO).json()["tables"]["tickets"]["keys"]

    done = api.erase(MARIO, reason="asked by e-mail")

    assert done["status"] == "completed", done
    result = done["result"]
    assert result["verification"]["passed"] is True
    assert result["tables"]["contacts"]["deleted"] == 1
    assert result["tables"]["tickets"]["anonymised"] == len(tickets_before)
    assert result["totals"]["files_deleted"] == len(files)
    cert = result["certificate"]
    assert cert["request_id"] == done["id"] and cert["tenant_id"] == "demo"
    assert cert["subject_ref"] == done["subject_ref"]
    assert cert["audit_entry"]["hash"] and cert["verification"]["passed"]
    assert "mario" not in json.dumps(done).lower()
    io = result["io"]
    assert io["dynamodb.Scan"] == 0
    assert io["dynamodb.Query"] >= 1 and io["dynamodb.BatchWriteItem"] >= 1
    assert io["s3.DeleteObjects"] >= 1
    # nothing left: search, tables, every version of every file
    after = api.get("/v1/subjects", **MARIO).json()
    assert after["found"] is False and after["suppressed"] is True
    assert all(versions(aws_client, bucket, k) == 0 for k in files)
    # the ticket shells stay for reporting, without the text or the link to the contact
    ddb = aws_client("dynamodb")
    for key in tickets_before:
        item = ddb.get_item(TableName="demo-tickets", Key={
            "tenant_id": {"S": "demo"}, "ticket_id": {"S": key["ticket_id"]}})["Item"]
        assert {"status", "channel", "reason", "created_at", "sla_resolution_min"} <= set(item)
        assert not {"subject", "description", "contact_id"} & set(item)
    # others untouched: Jeanne, and Mario's copy in the child tenant
    assert counts(api.get("/v1/subjects", **JEANNE).json()) == jeanne_before
    assert counts(child_api.get("/v1/subjects", **MARIO).json()) == child_before
    assert api.get("/v1/audit/verify").json()["valid"] is True


def test_erasure_emits_subject_erased_event_without_identity(api, subject, event_log):
    done = api.erase({"email": subject["email"]})
    mine = event_log.for_request(done["id"])
    assert {e["detail-type"] for e in mine} >= {"SubjectErased", "RequestCompleted"}
    raw = json.dumps(mine)
    assert subject["email"] not in raw and subject["phone"] not in raw
    assert all(e["detail"]["subject_ref"] == done["subject_ref"] for e in mine)


def test_include_children_erases_the_child_copy_with_a_parent_key(api, child_api, dm,
                                                                  aws_client):
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


def test_second_open_request_for_same_subject_is_the_same_request(api, subject):
    body = {"type": "erasure", "subject": {"email": subject["email"]}, "confirm": True}
    lambdas.faults.inject(lambdas.Fault("plan", delay=2.0))
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


def test_failure_in_a_table_task_then_retry_resumes_without_redoing(api, subject,
                                                                     aws_client):
    lambdas.faults.inject(lambdas.Fault("apply", "TableUnavailable",
                                        "the tickets table is unavailable",
                                        when={"unit.table": "tickets"},
                                        delay=1.5))  # the other tables finish first
    r = api.post("/v1/requests", {"type": "erasure", "subject": {"email": subject["email"]},
                                  "confirm": True})
    failed = api.wait(r.json()["request_id"])
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "TableUnavailable"
    ddb = aws_client("dynamodb")
    from oblio.core.settings import get_settings

    key = {"tenant_id": {"S": "demo"}, "sk": {"S": "req#" + failed["id"]}}
    table = get_settings().table("requests")
    units_before = ddb.get_item(TableName=table, Key=key)["Item"]["units"]["M"]
    done_before = {k: v for k, v in units_before.items() if k.startswith("demo/")}
    assert "demo/contacts" in done_before and "demo/tickets" not in done_before
    # the contact is gone, so search no longer reaches the tickets: the frozen plan does

    retried = api.post(f"/v1/requests/{failed['id']}/retry")
    assert retried.status_code == 200, retried.text
    done = api.wait(failed["id"])
    assert done["status"] == "completed", done
    assert done["attempt"] == 2
    units_after = ddb.get_item(TableName=table, Key=key)["Item"]["units"]["M"]
    # the tables done before the failure were not done again
    assert {k: units_after[k] for k in done_before} == done_before
    assert done["result"]["tables"]["contacts"]["deleted"] == 1
    assert done["result"]["tables"]["tickets"]["anonymised"] == subject["counts"]["tickets"]
    assert done["result"]["verification"]["passed"] is True
    assert api.get("/v1/subjects", email=subject["email"]).json()["found"] is False
    events = [e["event"] for e in done["timeline"]]
    assert events.index("failed") < events.index("retry") < events.index("completed")


def test_cancel_a_queued_request(api, subject):
    lambdas.faults.inject(lambdas.Fault("plan", delay=2.0))
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


def test_extend_moves_the_due_date_with_a_reason(api, subject):
    lambdas.faults.inject(lambdas.Fault("plan", delay=1.5))
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
    ({"type": "erasure", "subject": {"fax": "1"}, "confirm": True}, "subject.fax",
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


def test_audit_log_is_hash_chained_and_detects_tampering(api, aws_client):
    from oblio.core.settings import get_settings

    ok = api.get("/v1/audit/verify").json()
    assert ok["valid"] is True and ok["entries"] > 0
    entries = api.get("/v1/audit", limit=3).json()["items"]
    assert entries[0]["id"] > entries[1]["id"]  # newest first
    victim = entries[1]
    ddb = aws_client("dynamodb")
    key = {"tenant_id": {"S": "demo"}, "seq": {"S": victim["id"]}}
    table = get_settings().table("audit")
    old = ddb.get_item(TableName=table, Key=key)["Item"]
    ddb.update_item(TableName=table, Key=key, UpdateExpression="SET #a = :a",
                    ExpressionAttributeNames={"#a": "action"},
                    ExpressionAttributeValues={":a": {"S": "nothing_happened"}})
    try:
        broken = api.get("/v1/audit/verify").json()
        assert broken == {"valid": False, "entries": broken["entries"],
                          "first_broken": victim["id"]}
    finally:
        ddb.put_item(TableName=table, Item=old)
    assert api.get("/v1/audit/verify").json()["valid"] is True


def test_no_log_line_or_execution_history_holds_an_identity(api, subject, logs, aws_client):
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
    from oblio.core.settings import get_settings

    arn = get_settings().state_machine_arn("erasure").replace(":stateMachine:", ":execution:")
    history = sfn.get_execution_history(executionArn=f"{arn}:{done['id']}-1")
    raw = json.dumps(history, default=str)
    assert subject["email"] not in raw and subject["phone"] not in raw


def test_openapi_document_is_served(anon):
    doc = anon.get("/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/v1/requests" in doc["paths"]
