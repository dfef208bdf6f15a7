"""The contract holds under bad input, at the API's edge (issue 16): nothing echoed, nothing
kept, no 500, no surprise. Each test acts as a client over HTTP and checks what the local AWS
holds with its own boto3 clients."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests as http

from tests.client import Api
from tests.integration import raw

DEEP = "[" * 5000 + "]" * 5000
DEEP_OBJECT = '{"a":' * 5000 + "1" + "}" * 5000


def _scan(aws_client: Any, table: str) -> str:
    """Everything a table of oblio's own holds, as text (a test may scan a small table)."""
    pages = aws_client("dynamodb").get_paginator("scan").paginate(TableName=table)
    return json.dumps([i for page in pages for i in page["Items"]])


def _error(r: http.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    if code is not None:
        assert body["error"]["code"] == code, body
    return dict(body["error"])


# -- 1. idempotency records hold no personal data and no secret ----------------------------------


def test_a_replayed_dry_run_is_run_again_and_its_plan_is_not_kept(api, subject, aws_client,
                                                                  settings):
    body = {"type": "erasure", "subject": {"email": subject["email"]}, "dry_run": True}
    key = {"Idempotency-Key": f"dry-{subject['external_id']}"}
    first = api.post("/v1/requests", body, headers=key)
    assert first.status_code == 200 and first.json()["found"] is True
    assert subject["email"] in first.text  # the plan names the blacklist item by its e-mail
    kept = _scan(aws_client, settings.table("idempotency"))
    assert subject["email"] not in kept and subject["email"].split("@")[0] not in kept
    api.erase({"email": subject["email"]})
    again = api.post("/v1/requests", body, headers=key)
    assert again.status_code == 200, again.text
    assert again.json()["found"] is False  # what is true now, not the first answer
    assert subject["email"] not in again.text
    other = api.post("/v1/requests", {**body, "reason": "other"}, headers=key)
    _error(other, 409, "idempotency_key_reused")


def test_a_new_api_key_is_never_kept_nor_replayed(api, aws_client, settings):
    key = {"Idempotency-Key": "new-key-once"}
    first = api.post("/v1/keys", {"scopes": ["dsr:read"], "name": "replay"}, headers=key)
    assert first.status_code == 201, first.text
    secret, key_id = first.json()["api_key"], first.json()["key_id"]
    assert secret not in _scan(aws_client, settings.table("idempotency"))
    again = api.post("/v1/keys", {"scopes": ["dsr:read"], "name": "replay"}, headers=key)
    err = _error(again, 409, "secret_not_replayed")
    assert err["details"] == {"key_id": key_id}
    assert secret not in again.text
    listed = api.get("/v1/keys").json()["items"]
    assert sum(1 for k in listed if k.get("name") == "replay") == 1  # made once


# -- 3. one error shape for what no route answers ----------------------------------------------


def test_an_unknown_route_is_404_in_the_one_shape_and_never_echoes_the_key(api, anon):
    for client in (api, anon):
        r = client.get("/v1/nope")
        err = _error(r, 404, "not_found")
        assert "obl_" not in r.text and "Authorization" not in r.text
        assert "openapi" in err["message"]
    r = api.post("/v1/nope/mario.rossi@example.com", {})
    _error(r, 404, "not_found")
    assert "mario" not in r.text


def test_a_wrong_method_is_405_and_an_unsupported_media_type_415_in_the_one_shape(api):
    r = http.delete(api.base + "/v1/health", headers={"Authorization": f"Bearer {api.key}"},
                    timeout=30)
    _error(r, 405, "method_not_allowed")
    assert r.headers["Allow"] == "GET"
    r = http.post(api.base + "/v1/requests", data="<a>mario.rossi@example.com</a>",
                  headers={"Authorization": f"Bearer {api.key}",
                           "Content-Type": "application/x-mario-rossi"}, timeout=30)
    err = _error(r, 415, "unsupported_media_type")
    assert "mario" not in r.text and "application/json" in err["message"]


# -- 4. no 500 --------------------------------------------------------------------------------


def _write_operations(api: Api) -> list[tuple[str, str, bool, str | None]]:
    """Every (method, path, takes a JSON body, scope) of a write, from the served document,
    with made-up ids in the path (a file upload takes a body, but not JSON)."""
    doc = api.get("/v1/openapi.json").json()
    ids = {"request_id": "01M8Y1D9R7P27Y66MV7B6K406B", "policy_id": "no-such-policy",
           "job_id": "01M8Y1D9R7P27Y66MV7B6K406B", "sweep_id": "01M8Y1D9R7P27Y66MV7B6K406B",
           "backfill_id": "01M8Y1D9R7P27Y66MV7B6K406B",
           "key_id": "key_01M8Y1D9R7P27Y66MV7B6K406B", "tenant_id": "no-such-tenant"}
    return [(method, path.format(**ids),
             "application/json" in op.get("requestBody", {}).get("content", {}),
             op.get("x-oblio-scope"))
            for path, ops in doc["paths"].items() for method, op in ops.items()
            if method in ("post", "put", "patch", "delete")]


@pytest.mark.parametrize("deep", [DEEP, DEEP_OBJECT], ids=["list", "object"])
def test_json_nested_5000_deep_is_400_on_every_json_endpoint(api, anon, stack, deep, logs):
    before = len(logs.lines)
    operator = Api(stack.info["api_url"], stack.info["operator_key"])
    operations = _write_operations(api)
    assert sum(1 for _, _, takes, _ in operations if takes) >= 12
    for method, path, takes_json, scope in operations:
        client = anon if path.startswith("/v1/public/") else \
            operator if scope == "operator" else api
        r = http.request(method.upper(), client.base + path, data=deep,
                         headers=client._headers(), timeout=60)
        if takes_json:
            _error(r, 400, "body_too_deep")
        else:  # a route that reads no body ignores it: never a 500
            assert r.status_code < 500, (method, path, r.text)
    assert not any("Traceback" in line or "RecursionError" in line
                   for line in logs.lines[before:])


@pytest.mark.parametrize("scopes", [5, True, -1, 1.5, {"admin": 1}, "admin", [], ["root"]])
def test_bad_scopes_are_422_and_make_no_key(api, scopes):
    r = api.post("/v1/keys", {"scopes": scopes})
    assert _error(r, 422, "invalid_field")["details"]["field"] == "scopes"


@pytest.mark.parametrize("path", ["/v1/requests", "/v1/audit", "/v1/audit/verify",
                                  "/v1/bulk-erasures", "/v1/retention-sweeps"])
@pytest.mark.parametrize("cursor", ["eyJzayI6IDV9", "eyJzayI6ICJ4In0=", "zzz", "%00"])
def test_a_crafted_list_cursor_is_422_naming_the_cursor(api, path, cursor):
    r = api.get(path, cursor=cursor)
    assert _error(r, 422)["details"]["field"] == "cursor"


def test_the_chains_verification_pages_on_its_own_cursor_and_refuses_one_made_up(api,
                                                                                  subject):
    """A verification cursor carries the chain's state so far (an entry's hash, counts); one
    a client makes up from what `GET /v1/audit` shows (the newest entry's id and hash, the
    count) is refused: before cursors were signed it answered `valid: true` over entries it
    never checked."""
    import base64

    for type_ in ("access", "restriction"):
        r = api.post("/v1/requests", {"type": type_, "subject": {"email": subject["email"]}})
        assert r.status_code in (200, 202), r.text
    whole = api.get("/v1/audit/verify").json()
    assert whole["valid"] is True and whole["entries"] >= 2
    got, pages = api.get("/v1/audit/verify", limit=1).json(), 1
    while got["next_cursor"]:
        assert got["valid"] is True
        r = api.get("/v1/audit/verify", limit=1, cursor=got["next_cursor"])
        assert r.status_code == 200, r.text
        got, pages = r.json(), pages + 1
    assert (got["valid"], got["entries"]) == (True, whole["entries"]) and pages >= 2
    newest = api.get("/v1/audit", limit=1).json()["items"][0]
    state = {"a": newest["id"], "p": newest["hash"], "n": whole["entries"], "c": 0}
    forged = base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")
    r = api.get("/v1/audit/verify", cursor=forged)
    assert _error(r, 422)["details"]["field"] == "cursor"
    assert newest["hash"] not in r.text


def test_a_cursor_the_api_gave_out_still_pages(api, subject):
    for type_ in ("access", "restriction"):  # two requests, two audit entries at least
        r = api.post("/v1/requests", {"type": type_, "subject": {"email": subject["email"]}})
        assert r.status_code in (200, 202), r.text
    for path in ("/v1/requests", "/v1/audit"):
        first = api.get(path, limit=1).json()
        assert first["next_cursor"], path
        second = api.get(path, limit=1, cursor=first["next_cursor"])
        assert second.status_code == 200, second.text
        assert second.json()["items"] != first["items"]


@pytest.mark.parametrize("months", [1.0, True, "1", 3, 0, None])
def test_extend_takes_only_1_or_2_months(api, subject, months):
    r = api.post("/v1/requests", {"type": "access", "subject": {"email": subject["email"]}})
    rid = r.json().get("request_id") or r.json()["id"]
    r = api.post(f"/v1/requests/{rid}/extend", {"months": months, "reason": "busy"})
    assert _error(r, 422)["details"]["field"] == "months"


# -- 5. loose types --------------------------------------------------------------------------


def test_a_misspelt_field_is_refused_and_changes_nothing(api, subject):
    r = api.post("/v1/requests", {"type": "anonymisation", "subject": {"email": subject["email"]},
                                  "tabels": ["tickets"], "confirm": True})
    err = _error(r, 422, "invalid_field")
    assert err["details"] == {"field": "tabels", "did_you_mean": "tables"}
    assert api.get("/v1/subjects", email=subject["email"]).json()["found"] is True


@pytest.mark.parametrize("body, field", [
    ({"scopes": {"admin": 1}}, "scopes"),
    ({"scopes": ["dsr:read"], "children": "x"}, "children"),
    ({"scopes": ["dsr:read"], "children": 1}, "children"),
    ({"scopes": ["dsr:read"], "name": 5}, "name"),
])
def test_loose_types_of_a_key_are_refused(api, body, field):
    assert _error(api.post("/v1/keys", body), 422)["details"]["field"] == field


@pytest.mark.parametrize("purposes", [0, "", [], {}, [0], "marketing"])
def test_objection_purposes_of_the_wrong_type_do_not_fall_back_to_marketing(api, subject,
                                                                             purposes):
    r = api.post("/v1/requests", {"type": "objection", "subject": {"email": subject["email"]},
                                  "purposes": purposes})
    assert _error(r, 422)["details"]["field"] == "purposes"


# -- 6. caller input never echoed -------------------------------------------------------------

EMAIL = "careless.client@example.org"


@pytest.mark.parametrize("path, body, field", [
    ("/v1/consents", {"subject": {"email": "x@example.net"}, "purpose": EMAIL,
                      "channel": "web", "status": "granted"}, "purpose"),
    ("/v1/requests", {"type": "access", "subject": {"email": "x@example.net"}, EMAIL: 1},
     "body"),
    ("/v1/requests", {"type": "access", "subject": {EMAIL: "x"}}, "subject"),
    ("/v1/requests", {"type": "objection", "subject": {"email": "x@example.net"},
                      "purposes": ["marketing", EMAIL]}, "purposes"),
    ("/v1/requests", {"type": "anonymisation", "subject": {"email": "x@example.net"},
                      "tables": ["tickets", EMAIL], "dry_run": True}, "tables"),
    ("/v1/requests", {"type": "rectification", "subject": {"email": "x@example.net"},
                      "changes": {EMAIL: "x"}}, "changes"),
    ("/v1/keys", {"scopes": ["dsr:read", EMAIL]}, "scopes"),
    ("/v1/consents/links", {"subject": {"email": "x@example.net"}, "purpose": EMAIL},
     "purpose"),
])
def test_an_error_never_repeats_what_the_caller_sent(api, path, body, field):
    r = api.post(path, body)
    err = _error(r, 422)
    assert err["details"]["field"] == field
    assert "careless" not in r.text, r.text


@pytest.mark.parametrize("path", ["/v1/requests/{}", "/v1/requests/{}/cancel",
                                  "/v1/bulk-erasures/{}", "/v1/retention-sweeps/{}",
                                  "/v1/retention-policies/{}/run"])
def test_a_path_id_is_neither_echoed_nor_logged(api, path, logs):
    before = len(logs.lines)
    url = path.format(EMAIL)
    r = api.post(url, {"dry_run": True}) if path.endswith(("/cancel", "/run")) else api.get(url)
    if "retention-policies" in path:  # a name the admin chooses: a bad input
        assert _error(r, 422, "invalid_id")["details"]["field"] == "policy_id"
    else:  # an id oblio gives out: one not of its form names nothing
        assert "26-character" in _error(r, 404, "not_found")["message"]
    assert "careless" not in r.text
    assert not [line for line in logs.lines[before:] if "careless" in line]
    assert any("[redacted]" in line for line in logs.lines[before:])


def test_an_unknown_policy_filter_attribute_is_not_repeated(api):
    r = api.put("/v1/retention-policies/echo", {"table": "contacts", "older_than": "P18M",
                                                "action": "anonymise",
                                                "filter": {EMAIL: "x"}})
    assert _error(r, 422)["details"]["field"] == "filter"
    assert "careless" not in r.text


# -- 7. the scope before the lookup ------------------------------------------------------------


@pytest.mark.parametrize("action", ["approve", "deny"])
def test_a_key_without_dsr_write_cannot_tell_existing_ids_from_unknown_ones(api, subject,
                                                                            action):
    made = api.post("/v1/keys", {"scopes": ["dsr:read"], "name": f"reader-{action}"})
    reader = Api(api.base, made.json()["api_key"])
    r = api.post("/v1/requests", {"type": "access", "subject": {"email": subject["email"]}})
    existing = r.json().get("request_id") or r.json()["id"]
    unknown = "01M8Y1D9R7P27Y66MV7B6K406B"
    body = {"reason": "no"} if action == "deny" else {}
    answers = [reader.post(f"/v1/requests/{rid}/{action}", body) for rid in (existing, unknown)]
    assert [a.status_code for a in answers] == [403, 403]
    assert answers[0].json() == answers[1].json()


# -- 8. irreversible only with confirmation; policies can be deleted --------------------------


def _sweeps(api: Api) -> list[str]:
    return [s["sweep_id"] for s in api.get("/v1/retention-sweeps", limit=500).json()["items"]]


@pytest.mark.parametrize("body", [None, {}, {"dry_run": False}, {"confirm": False}])
def test_a_sweep_does_not_run_without_confirm(api, body):
    before = _sweeps(api)
    r = api.post("/v1/retention-policies/inactive-contacts/run", body)
    err = _error(r, 422, "confirmation_required")
    assert err["details"]["field"] == "confirm" and "dry_run" in err["message"]
    assert _sweeps(api) == before  # nothing started


def test_a_run_with_no_body_at_all_runs_nothing(api):
    before = _sweeps(api)
    r = http.post(api.base + "/v1/retention-policies/inactive-contacts/run",
                  headers={"Authorization": f"Bearer {api.key}"}, timeout=60)
    _error(r, 422, "confirmation_required")
    assert _sweeps(api) == before


@pytest.mark.parametrize("older_than", ["2099-01-01", "2999-12-31"])
def test_a_cutoff_after_today_is_refused(api, older_than):
    r = api.put("/v1/retention-policies/future", {"table": "contacts",
                                                  "older_than": older_than,
                                                  "action": "anonymise"})
    err = _error(r, 422, "cutoff_in_future")
    assert err["details"]["field"] == "older_than"
    ids = [p["id"] for p in api.get("/v1/retention-policies").json()["items"]]
    assert "future" not in ids


def test_a_policy_can_be_deleted(api, aws_client, settings):
    r = api.put("/v1/retention-policies/to-delete", {"table": "contacts",
                                                     "older_than": "P10Y",
                                                     "action": "anonymise"})
    assert r.status_code == 201, r.text
    gone = http.delete(api.base + "/v1/retention-policies/to-delete",
                       headers=api._headers(), timeout=60)
    assert gone.status_code == 200, gone.text
    assert gone.json()["id"] == "to-delete" and gone.json()["deleted"] is True
    ids = [p["id"] for p in api.get("/v1/retention-policies").json()["items"]]
    assert "to-delete" not in ids
    assert raw.get_item(aws_client, settings.table("retention"),
                        {"tenant_id": "demo", "sk": "policy#to-delete"}) is None
    again = http.delete(api.base + "/v1/retention-policies/to-delete",
                        headers=api._headers(), timeout=60)
    _error(again, 404, "not_found")
    assert api.post("/v1/retention-policies/to-delete/run", {"dry_run": True}).status_code \
        == 404
    actions = [e["action"] for e in api.get("/v1/audit", limit=20).json()["items"]]
    assert "retention_policy_deleted" in actions


# -- 13. what people see ---------------------------------------------------------------------


def test_exported_files_keep_their_extension_and_the_archive_is_a_zip(api, subject):
    import io
    import zipfile

    r = api.post("/v1/requests", {"type": "access", "subject": {"email": subject["email"]}})
    done = api.wait(r.json()["request_id"])
    assert done["status"] == "completed", done
    d = api.get(f"/v1/requests/{done['id']}/download").json()
    assert "data-export-" in d["url"] and ".zip" in d["url"]  # the name it is saved under
    z = zipfile.ZipFile(io.BytesIO(http.get(d["url"], timeout=30).content))
    exported = [n for n in z.namelist() if "/files/" in f"/{n}"]
    wanted = {k.rsplit(".", 1)[-1] for k in subject["files"] if "." in k.rsplit("/", 1)[-1]}
    assert wanted, subject["files"]
    assert {n.rsplit(".", 1)[-1] for n in exported} == wanted
    assert not [n for n in exported if n.endswith(".bin")]
