"""The OpenAPI document of what the API serves (a test compares it with the routes)."""

from __future__ import annotations

from typing import Any

from chalice import Chalice

from oblio import __version__
from oblio.control.tenants import OPERATOR
from oblio.core.bodies import PATH_IDS, Query, Tagged, schema_of

_ERROR = {"$ref": "#/components/responses/Error"}
#: 409 of an idempotent write (and of the operations whose summary names another 409)
_CONFLICT = {"$ref": "#/components/responses/Conflict"}
#: the pages a person sees after following a link: HTML, not the JSON error shape
_PAGE = {"$ref": "#/components/responses/Page"}
#: where the document keeps the schemas of the bodies (and the models they nest)
REF = "#/components/schemas/{model}"


def _op(summary: str, scope: str | None, ok: str = "200") -> dict[str, Any]:
    """An operation as written by hand: what it does, the scope it needs, its success status.
    Its body, query parameters and Idempotency-Key come from the route's own declaration
    (`edge.api` / `edge.idempotent_write`), in `document`."""
    op: dict[str, Any] = {"summary": summary, "responses": {ok: {"description": "success"}}}
    if scope is not None:
        op["security"] = [{"apiKey": []}]
        op["x-oblio-scope"] = scope
        for code in ("401", "403", "422"):
            op["responses"][code] = _ERROR
    return op


def _path_param(op: dict[str, Any], name: str) -> dict[str, Any]:
    op.setdefault("parameters", []).insert(0, {"name": name, "in": "path", "required": True,
                                               "schema": {"type": "string"}})
    op["responses"]["404"] = _ERROR
    return op


def _errors(op: dict[str, Any], *codes: str) -> dict[str, Any]:
    for code in codes:
        op["responses"][code] = _CONFLICT if code == "409" else _ERROR
    return op


def _pages(op: dict[str, Any], *codes: str) -> dict[str, Any]:
    """A link route for people: its answers (the codes given) are HTML pages."""
    for code in codes:
        op["responses"][code] = _PAGE
    return op


def _answers(op: dict[str, Any], schema: dict[str, Any], *codes: str) -> dict[str, Any]:
    """The JSON schema of the success answers `codes` (e.g. 202 and 200 of a filing)."""
    for code in codes:
        op["responses"][code] = {"description": op["responses"].get(code, {}).get(
            "description", "success"), "content": {"application/json": {"schema": schema}}}
    return op


#: the answer of POST /v1/requests: 202 for a new request; 200 for a repeat (the open
#: request) or a dry run (its plan)
_FILED = {"type": "object", "required": ["status"],
          "properties": {"request_id": {"type": ["string", "null"]},
                         "status": {"type": "string"},
                         "due_at": {"type": ["string", "null"]},
                         # a national phone number: the region it was read in
                         "phone_reading": {"type": "object"}}}


def _schema(model: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    """A reference to `model`'s schema, which goes (with the models it nests) into
    `schemas` (the document's components)."""
    tree = schema_of(model, REF)
    schemas.update(tree.pop("$defs", {}))
    name = model.name if isinstance(model, Tagged) else model.__name__
    schemas[name] = tree
    return {"$ref": REF.format(model=name)}


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: absent rather than null, so the null branch (and a null
    default) goes."""
    if schema.get("default", ...) is None:
        schema = {k: v for k, v in schema.items() if k != "default"}
    kinds = [s for s in schema.get("anyOf", ()) if s.get("type") != "null"]
    if len(kinds) == 1:
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return {**kinds[0], **rest}
    return schema


def _query(model: type[Query]) -> list[dict[str, Any]]:
    tree = schema_of(model, REF)
    required = set(tree.get("required", ()))
    return [{"name": name, "in": "query", "required": name in required,
             **({"description": prop["description"]} if "description" in prop else {}),
             "schema": {k: v for k, v in _not_null(prop).items()
                        if k not in ("title", "description")}}
            for name, prop in tree["properties"].items()]


def _declared(op: dict[str, Any], view: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    """The hand-written operation with what the route declares: its query parameters (every
    field of its query model), its JSON body (the model's schema, every property, type and
    enum) and the Idempotency-Key header of an idempotent write."""
    op = {**op, "responses": dict(op["responses"]), "parameters": list(op.get("parameters", []))}
    query = getattr(view, "query_schema", None)
    if query is not None:
        op["parameters"] += _query(query)
    if getattr(view, "idempotent", False):
        op["parameters"].append({"name": "Idempotency-Key", "in": "header", "required": False,
                                 "description": "a write with the same key and body within "
                                                "24 h answers the first answer again; 409 "
                                                "idempotency_key_reused with another body, "
                                                "409 idempotency_in_progress while the first "
                                                "is still running",
                                 "schema": {"type": "string", "maxLength": 255}})
        op["responses"]["409"] = _CONFLICT
        op["responses"].setdefault("422", _ERROR)  # an Idempotency-Key over 255 characters
    if any(p.get("in") == "path" and PATH_IDS.get(p["name"], (None, None, ""))[2] is None
           for p in op["parameters"]):
        op["responses"].setdefault("422", _ERROR)  # a name not of its form: invalid_id
    body = getattr(view, "body_schema", None)
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": _schema(body, schemas)}}}
        op["responses"].setdefault("400", _ERROR)  # not JSON, not an object, nested too deep
        op["responses"].setdefault("422", _ERROR)
    raw = getattr(view, "raw_body_types", None)
    if raw:  # a file, not JSON (the console's CSV upload)
        op["requestBody"] = {"required": True, "content": {
            t: {"schema": {"type": "string", "format": "binary"}} for t in raw}}
        op["responses"].setdefault("422", _ERROR)
    if query is not None:
        op["responses"].setdefault("422", _ERROR)
    if not op["parameters"]:
        del op["parameters"]
    return op


def document(app: Chalice) -> dict[str, Any]:
    """The document of what `app` serves: the written operations, each with the body, query
    and headers its route declares."""
    doc = _written()
    schemas: dict[str, Any] = {}
    for path, methods in app.routes.items():
        for method, entry in methods.items():
            ops = doc["paths"].get(path, {})
            if method.lower() in ops:
                ops[method.lower()] = _declared(ops[method.lower()], entry.view_function,
                                                schemas)
    doc["components"]["schemas"] = dict(sorted(schemas.items()))
    return doc


#: API.md's one error shape: {"error": {"code", "message", "details"}}, nothing else
_ERROR_SHAPE: dict[str, Any] = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["code", "message", "details"],
        "properties": {"code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                       "message": {"type": "string", "minLength": 1},
                       "details": {"type": "object"}}}}}


def _written() -> dict[str, Any]:
    rid = "request_id"
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "oblio", "version": __version__,
                 "description": "GDPR data-subject rights for DynamoDB and S3"},
        "servers": [{"url": "/"}],
        "paths": {
            "/v1/health": {"get": _op("liveness and version", None)},
            "/v1/openapi.json": {"get": _op("this document", None)},
            "/v1/requests": {
                "post": _answers(_op(
                    "file a request (access, erasure, anonymisation, rectification, "
                    "restriction, objection): 202 for a new request; 200 for a dry run (its "
                    "plan) or a repeat (the open request of the same type and subject)",
                    "dsr:write", ok="202"), _FILED, "202", "200"),
                "get": _op("history, newest first", "dsr:read"),
            },
            "/v1/requests/{request_id}": {"get": _path_param(_op("one request", "dsr:read"),
                                                             rid)},
            "/v1/requests/{request_id}/cancel": {"post": _path_param(
                _op("cancel a request that has not finished", "dsr:write"),
                rid)},
            "/v1/requests/{request_id}/retry": {"post": _path_param(
                _op("run a failed request again from where it failed", "dsr:write"), rid)},
            "/v1/requests/{request_id}/extend": {"post": _path_param(
                _op("extend the due date by 1 or 2 months with a reason", "dsr:write"), rid)},
            "/v1/requests/{request_id}/download": {"get": _errors(_path_param(
                _op("an access request's archive: {url, expires_at}, a presigned URL valid "
                    "for minutes; 409 when the request is not an access request or not "
                    "finished, 410 once the archive has expired", "dsr:read"), rid),
                "409", "410")},
            "/v1/subjects": {"get": _op("where a subject appears", "dsr:read")},
            "/v1/consents": {
                "post": _op("record a consent grant or withdrawal (append-only): subject, "
                            "purpose, channel, status, source, policy_version, notice_hash, "
                            "proof, at", "consent:write", ok="201"),
                "get": _op("a subject's current state per purpose and full history, oldest "
                           "first", "consent:read"),
            },
            "/v1/consents/links": {"post": _op(
                "a signed one-click withdrawal URL for a subject and purpose", "consent:write",
                ok="201")},
            "/v1/public/unsubscribe": {
                "get": _pages(_op("one-click withdrawal (signed token; answers a small HTML "
                                  "page; 400 for a link not signed as it is, 410 expired)",
                                  None), "200", "400", "410"),
                "post": _pages(_op("the same, for mail clients' one-click unsubscribe "
                                   "(RFC 8058)", None), "200", "400", "410"),
            },
            "/v1/public/requests": {"post": _errors(_op(
                "self-service: a person files an access, erasure or objection request for "
                "their own e-mail or phone ({tenant: public slug, type, subject}); it awaits "
                "the one-time code sent to it; 429 beyond the address's hourly limit", None,
                ok="202"), "400", "404", "422", "429", "503")},
            "/v1/public/requests/{request_id}/verify": {"post": _errors(_path_param(_op(
                "self-service: the one-time code ({tenant, code}); 400 with the attempts left "
                "when wrong, the request cancelled after the last", None), rid),
                "400", "409", "410", "422")},
            "/v1/public/requests/{request_id}/download": {"get": _pages(_path_param(
                _op("self-service access: the signed link sent to the person when their "
                    "archive is ready; 302 to a presigned download of minutes, 400 (a page) for "
                    "a link not signed as it is, 410 (a page) once the archive has expired",
                    None, ok="302"), rid), "400", "410")},
            "/v1/requests/{request_id}/inclusion": {"get": _errors(_path_param(
                _op("whether the request's certificate is the one the audit chain committed "
                    "to: a bulk line's by its inclusion proof in its chunk entry's Merkle root",
                    "audit:read"), rid), "409")},
            "/v1/requests/{request_id}/approve": {"post": _errors(_path_param(
                _op("let a verified self-service request awaiting approval run (dsr:erase "
                    "for an erasure)", "dsr:write"), rid), "409")},
            "/v1/requests/{request_id}/deny": {"post": _errors(_path_param(
                _op("refuse a self-service request awaiting approval, with a reason the "
                    "person is told (Art. 12(4))", "dsr:write"),
                rid), "409")},
            "/v1/audit": {"get": _op("audit entries, newest first", "audit:read")},
            "/v1/audit/verify": {"get": _op(
                "verify the hash chain and each bulk chunk entry's certificates (their Merkle "
                "root); pages: follow next_cursor until it is null", "audit:read")},
            "/v1/tenant": {"get": _op("the tenant's settings and children", "admin"),
                           "patch": _op("change settings: export_ttl_days (10, 14, 30), "
                                        "require_export_before_anonymisation, "
                                        "default_phone_region, purposes (consent), "
                                        "public_slug, selfservice_requires_approval, "
                                        "selfservice_due_pauses_until_verified, "
                                        "public_requests_per_hour, bulk_max_concurrency", "admin")},
            "/v1/bulk-erasures": {"post": _op(
                "a bulk erasure job: a presigned PUT for its CSV (or drop the CSV under "
                "bulk/<tenant>/ in the ingest bucket)", "dsr:erase", ok="201"),
                "get": _op("bulk jobs, newest first", "dsr:read")},
            "/v1/bulk-erasures/{job_id}": {"get": _path_param(
                _op("a bulk job's progress, outcome and report URL", "dsr:read"), "job_id")},
            "/v1/bulk-erasures/{job_id}/retry": {"post": _errors(_path_param(_op(
                "run again, from their kept plans, the chunks of a failed job that are not "
                "done (a new attempt: a task of the earlier one writes nothing); 409 "
                "not_failed for a job running or completed, nothing_to_resume when its "
                "plans are gone", "dsr:erase"), "job_id"), "409")},
            "/v1/retention-policies": {"get": _op(
                "the tenant's retention policies", "admin")},
            "/v1/retention-policies/{policy_id}": {"put": _path_param(_op(
                "create or replace a retention policy: table, date_attribute, older_than "
                "(ISO 8601 duration or a date), action (anonymise, delete, export_then_delete, "
                "export_only), filter, hold_attribute, enabled, description, scope (items, "
                "or subjects: everything of the subjects the items name); 201 when new; a date "
                "after today is refused (422 cutoff_in_future)",
                "admin"), "policy_id"),
                "delete": _errors(_path_param(_op(
                    "delete a retention policy (its sweeps stay, as evidence): {id, deleted, "
                    "last_sweep_id}; 409 while a sweep of it runs", "admin"), "policy_id"),
                    "409")},
            "/v1/retention-policies/{policy_id}/run": {"post": _errors(_path_param(_op(
                "run a policy now: {\"dry_run\": true} answers at once with what it would do "
                "(counts per table); {\"confirm\": true} starts a sweep: 202 with the sweep "
                "id (a failed sweep is resumed); without either, 422 confirmation_required "
                "and nothing runs; 409 while a sweep of the policy runs", "dsr:erase",
                ok="202"), "policy_id"), "200", "409")},
            "/v1/retention-sweeps": {"get": _op("retention sweeps, newest first", "dsr:read")},
            "/v1/retention-sweeps/{sweep_id}": {"get": _path_param(_op(
                "a sweep's progress, counts per table, AWS calls and report URL", "dsr:read"),
                "sweep_id")},
            "/v1/backfills": {
                "post": _op("write the shadows of identities stored as typed, once, for the "
                            "items the tenant's tables hold: {tables?, segments?}; 202 with "
                            "the backfill id (a silo table, or a pooled one with a partition "
                            "per item, is read by a parallel segmented Scan, which reads and "
                            "bills the whole table, every tenant's items of a pooled one; a "
                            "pooled table keyed by the tenant by a Query of its partition)",
                            "admin", ok="202"),
                "get": _op("shadow backfills, newest first", "admin")},
            "/v1/backfills/{backfill_id}": {"get": _path_param(_op(
                "a backfill's status and progress: segments done of total, items read, "
                "written, already right, values that do not parse (counted, never shown), "
                "AWS calls by operation, elapsed seconds", "admin"), "backfill_id")},
            "/v1/backfills/{backfill_id}/resume": {"post": _errors(_path_param(_op(
                "start a failed backfill again from each segment's checkpoint (finished "
                "segments stay finished); 409 when it has not failed", "admin", ok="202"),
                "backfill_id"), "409")},
            "/v1/keys": {
                "post": _op("create an API key of the caller's tenant; the key is in this "
                            "answer only (only its hash is kept)", "admin", ok="201"),
                "get": _op("list API keys, revoked ones too (never the keys themselves)",
                           "admin"),
            },
            "/v1/keys/{key_id}/revoke": {"post": _errors(_path_param(_op(
                "revoke a key: refused from its very next call on; 409 for the key making "
                "the call", "admin"), "key_id"), "409")},
            "/v1/keys/{key_id}/rotate": {"post": _errors(_path_param(_op(
                "a new key with the same name, scopes and children access (in this answer "
                "only); the old one is revoked at once; 409 for a revoked key", "admin",
                ok="201"), "key_id"), "409")},
            "/v1/tenants": {
                "post": _errors(_op("create a tenant (under an existing parent_id when "
                                    "given) with its first admin key, in this answer only; "
                                    "409 for a tenant_id in use", OPERATOR, ok="201"), "404"),
                "get": _op("every tenant, with its parent and children", OPERATOR),
            },
            "/v1/tenants/{tenant_id}/keys": {
                "post": _path_param(_op("create an API key of the tenant (in this answer "
                                        "only)", OPERATOR, ok="201"), "tenant_id"),
                "get": _path_param(_op("the tenant's API keys (never the keys themselves)",
                                       OPERATOR), "tenant_id"),
            },
            "/v1/tenants/{tenant_id}/keys/{key_id}/revoke": {"post": _errors(_path_param(
                _path_param(_op("revoke a key of the tenant: refused from its very next "
                                "call on", OPERATOR), "key_id"), "tenant_id"), "409")},
            "/v1/tenants/{tenant_id}/keys/{key_id}/rotate": {"post": _errors(_path_param(
                _path_param(_op("rotate a key of the tenant (the new one in this answer "
                                "only)", OPERATOR, ok="201"), "key_id"), "tenant_id"),
                "409")},
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {"description": "the one error shape", "content": {
                    "application/json": {"schema": _ERROR_SHAPE}}},
                "Conflict": {"description": "the one error shape; code "
                             "idempotency_key_reused (this Idempotency-Key was used with "
                             "another body: use a new key), idempotency_in_progress (the first "
                             "request with this key still runs: retry in a moment), or the "
                             "conflict the operation's summary names", "content": {
                                 "application/json": {"schema": _ERROR_SHAPE}}},
                "Page": {"description": "a small HTML page for a person who followed a link",
                         "content": {"text/html": {"schema": {"type": "string"}}}},
            },
        },
    }
    from chalicelib import console  # the console's routes describe themselves

    doc["paths"].update(console.openapi_paths())
    return doc
