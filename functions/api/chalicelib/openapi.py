"""The OpenAPI document of what the API serves (a test compares it with the routes)."""

from __future__ import annotations

from typing import Any

from oblio import __version__

_ERROR = {"$ref": "#/components/responses/Error"}


def _op(summary: str, scope: str | None, ok: str = "200", params: list[str] | None = None,
        body: bool = False, idempotent: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {ok: {"description": "success"}}}
    if scope is not None:
        op["security"] = [{"apiKey": []}]
        op["x-oblio-scope"] = scope
        for code in ("401", "403", "422"):
            op["responses"][code] = _ERROR
    parameters = [{"name": p, "in": "query", "required": False, "schema": {"type": "string"}}
                  for p in params or []]
    if idempotent:
        parameters.append({"name": "Idempotency-Key", "in": "header", "required": False,
                           "schema": {"type": "string", "maxLength": 255}})
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"type": "object"}}}}
    return op


def _path_param(op: dict[str, Any], name: str) -> dict[str, Any]:
    op.setdefault("parameters", []).insert(0, {"name": name, "in": "path", "required": True,
                                               "schema": {"type": "string"}})
    op["responses"]["404"] = _ERROR
    return op


def _errors(op: dict[str, Any], *codes: str) -> dict[str, Any]:
    for code in codes:
        op["responses"][code] = _ERROR
    return op


PAGE = ["limit", "cursor"]


def document() -> dict[str, Any]:
    rid = "request_id"
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "oblio", "version": __version__,
                 "description": "GDPR data-subject rights for DynamoDB and S3"},
        "servers": [{"url": "/"}],
        "paths": {
            "/v1/health": {"get": _op("liveness and version", None)},
            "/v1/openapi.json": {"get": _op("this document", None)},
            "/v1/requests": {
                "post": _op("file a request (access, erasure, anonymisation, rectification, "
                            "restriction, objection; 200 for a dry run or a repeat)",
                            "dsr:write",
                            ok="202", body=True, idempotent=True),
                "get": _op("history, newest first", "dsr:read",
                           params=["type", "status", "overdue", *PAGE]),
            },
            "/v1/requests/{request_id}": {"get": _path_param(_op("one request", "dsr:read"),
                                                             rid)},
            "/v1/requests/{request_id}/cancel": {"post": _path_param(
                _op("cancel a request that has not finished", "dsr:write", idempotent=True),
                rid)},
            "/v1/requests/{request_id}/retry": {"post": _path_param(
                _op("run a failed request again from where it failed", "dsr:write",
                    idempotent=True), rid)},
            "/v1/requests/{request_id}/extend": {"post": _path_param(
                _op("extend the due date by 1 or 2 months with a reason", "dsr:write",
                    body=True, idempotent=True), rid)},
            "/v1/requests/{request_id}/download": {"get": _errors(_path_param(
                _op("an access request's archive: {url, expires_at}, a presigned URL valid "
                    "for minutes; 409 when the request is not an access request or not "
                    "finished, 410 once the archive has expired", "dsr:read"), rid),
                "409", "410")},
            "/v1/subjects": {"get": _op("where a subject appears", "dsr:read",
                                        params=["email", "phone", "external_id",
                                                "include_children"])},
            "/v1/consents": {
                "post": _op("record a consent grant or withdrawal (append-only): subject, "
                            "purpose, channel, status, source, policy_version, notice_hash, "
                            "proof, at", "consent:write", ok="201", body=True,
                            idempotent=True),
                "get": _op("a subject's current state per purpose and full history, oldest "
                           "first", "consent:read", params=["email", "phone", "external_id"]),
            },
            "/v1/consents/links": {"post": _op(
                "a signed one-click withdrawal URL for a subject and purpose", "consent:write",
                ok="201", body=True, idempotent=True)},
            "/v1/public/unsubscribe": {
                "get": _errors(_op("one-click withdrawal (signed token; answers a small HTML "
                                   "page; 400 for a link not signed as it is, 410 expired)",
                                   None, params=["token"]), "400", "410"),
                "post": _errors(_op("the same, for mail clients' one-click unsubscribe "
                                    "(RFC 8058)", None, params=["token"]), "400", "410"),
            },
            "/v1/public/requests": {"post": _errors(_op(
                "self-service: a person files an access, erasure or objection request for "
                "their own e-mail or phone ({tenant: public slug, type, subject}); it awaits "
                "the one-time code sent to it; 429 beyond the address's hourly limit", None,
                ok="202", body=True), "400", "404", "422", "429", "503")},
            "/v1/public/requests/{request_id}/verify": {"post": _errors(_path_param(_op(
                "self-service: the one-time code ({tenant, code}); 400 with the attempts left "
                "when wrong, the request cancelled after the last", None, body=True), rid),
                "400", "409", "410", "422")},
            "/v1/public/requests/{request_id}/download": {"get": _errors(_path_param(_op(
                "self-service access: the signed link sent to the person when their archive "
                "is ready; 302 to a presigned download of minutes, 400 for a link not signed "
                "as it is, 410 once the archive has expired", None, ok="302",
                params=["token"]), rid), "400", "410")},
            "/v1/requests/{request_id}/approve": {"post": _errors(_path_param(
                _op("let a verified self-service request awaiting approval run (dsr:erase "
                    "for an erasure)", "dsr:write", idempotent=True), rid), "409")},
            "/v1/requests/{request_id}/deny": {"post": _errors(_path_param(
                _op("refuse a self-service request awaiting approval, with a reason the "
                    "person is told (Art. 12(4))", "dsr:write", body=True, idempotent=True),
                rid), "409")},
            "/v1/audit": {"get": _op("audit entries, newest first", "audit:read",
                                     params=PAGE)},
            "/v1/audit/verify": {"get": _op("verify the hash chain", "audit:read")},
            "/v1/tenant": {"get": _op("the tenant's settings and children", "admin"),
                           "patch": _op("change settings: export_ttl_days (10, 14, 30), "
                                        "require_export_before_anonymisation, "
                                        "default_phone_region, purposes (consent), "
                                        "public_slug, selfservice_requires_approval, "
                                        "selfservice_due_pauses_until_verified, "
                                        "public_requests_per_hour", "admin", body=True,
                                        idempotent=True)},
            "/v1/bulk-erasures": {"post": _op(
                "a bulk erasure job: a presigned PUT for its CSV (or drop the CSV under "
                "bulk/<tenant>/ in the ingest bucket)", "dsr:erase", ok="201", body=True,
                idempotent=True),
                "get": _op("bulk jobs, newest first", "dsr:read", params=PAGE)},
            "/v1/bulk-erasures/{job_id}": {"get": _path_param(
                _op("a bulk job's progress, outcome and report URL", "dsr:read"), "job_id")},
            "/v1/retention-policies": {"get": _op(
                "the tenant's retention policies", "admin")},
            "/v1/retention-policies/{policy_id}": {"put": _path_param(_op(
                "create or replace a retention policy: table, date_attribute, older_than "
                "(ISO 8601 duration or a date), action (anonymise, delete, export_then_delete, "
                "export_only), filter, hold_attribute, enabled, description, scope (items, "
                "or subjects: everything of the subjects the items name); 201 when new",
                "admin", body=True, idempotent=True), "policy_id")},
            "/v1/retention-policies/{policy_id}/run": {"post": _errors(_path_param(_op(
                "run a policy now: {\"dry_run\": true} answers at once with what it would do "
                "(counts per table); otherwise 202 with the sweep id (a failed sweep is "
                "resumed); 409 while a sweep of the policy runs", "dsr:erase", ok="202",
                body=True, idempotent=True), "policy_id"), "409")},
            "/v1/retention-sweeps": {"get": _op("retention sweeps, newest first", "dsr:read",
                                                params=PAGE)},
            "/v1/retention-sweeps/{sweep_id}": {"get": _path_param(_op(
                "a sweep's progress, counts per table, AWS calls and report URL", "dsr:read"),
                "sweep_id")},
            "/v1/keys": {
                "post": _op("create an API key", "admin", ok="201", body=True,
                            idempotent=True),
                "get": _op("list API keys (never the keys themselves)", "admin"),
            },
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "the one error shape", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "error": {"type": "object", "required": ["code", "message", "details"],
                              "properties": {"code": {"type": "string"},
                                             "message": {"type": "string"},
                                             "details": {"type": "object"}}}}}}}}},
        },
    }
    from chalicelib import console  # the console's routes describe themselves

    doc["paths"].update(console.openapi_paths())
    return doc
