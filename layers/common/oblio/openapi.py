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


PAGE = ["limit", "cursor"]


def document() -> dict[str, Any]:
    rid = "request_id"
    return {
        "openapi": "3.0.3",
        "info": {"title": "oblio", "version": __version__,
                 "description": "GDPR data-subject rights for DynamoDB and S3"},
        "servers": [{"url": "/"}],
        "paths": {
            "/v1/health": {"get": _op("liveness and version", None)},
            "/v1/openapi.json": {"get": _op("this document", None)},
            "/v1/requests": {
                "post": _op("file a request (erasure, anonymisation, rectification, "
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
            "/v1/subjects": {"get": _op("where a subject appears", "dsr:read",
                                        params=["email", "phone", "external_id",
                                                "include_children"])},
            "/v1/audit": {"get": _op("audit entries, newest first", "audit:read",
                                     params=PAGE)},
            "/v1/audit/verify": {"get": _op("verify the hash chain", "audit:read")},
            "/v1/tenant": {"get": _op("the tenant's settings and children", "admin"),
                           "patch": _op("change settings: export_ttl_days (10, 14, 30), "
                                        "require_export_before_anonymisation, "
                                        "default_phone_region", "admin", body=True,
                                        idempotent=True)},
            "/v1/bulk-erasures": {"post": _op(
                "a bulk erasure job: a presigned PUT for its CSV (or drop the CSV under "
                "bulk/<tenant>/ in the ingest bucket)", "dsr:erase", ok="201", body=True,
                idempotent=True),
                "get": _op("bulk jobs, newest first", "dsr:read", params=PAGE)},
            "/v1/bulk-erasures/{job_id}": {"get": _path_param(
                _op("a bulk job's progress, outcome and report URL", "dsr:read"), "job_id")},
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
