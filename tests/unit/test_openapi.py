"""The OpenAPI document describes exactly the routes the Chalice app serves."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "functions" / "api") not in sys.path:
    sys.path.insert(0, str(ROOT / "functions" / "api"))

from openapi_spec_validator import validate  # noqa: E402

from chalicelib import openapi  # noqa: E402
from oblio.core.bodies import PATH_IDS, Tagged  # noqa: E402


def _app():
    path = str(ROOT / "functions" / "api")
    if path not in sys.path:
        sys.path.insert(0, path)
    from app import app

    return app


def test_openapi_document_lists_exactly_the_routes_of_the_app():
    app = _app()
    routes = {(path, method.lower()) for path, methods in app.routes.items()
              for method in methods}
    documented = {(path, method) for path, ops in openapi.document(_app())["paths"].items()
                  for method in ops}
    assert routes - documented == set(), "routes the document does not describe"
    assert documented - routes == set(), "documented operations the app does not serve"


def test_every_path_parameter_is_declared():
    for path, ops in openapi.document(_app())["paths"].items():
        names = {p.strip("{}") for p in path.split("/") if p.startswith("{")}
        for method, op in ops.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)


def test_every_secured_operation_names_its_scope_and_error_responses():
    doc = openapi.document(_app())
    assert doc["openapi"].startswith("3.")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if "security" in op:
                assert op.get("x-oblio-scope") is not None, (method, path)
                assert {"401", "403"} <= set(op["responses"]), (method, path)


def _operations():
    app = _app()
    doc = openapi.document(app)
    for path, methods in app.routes.items():
        for method, entry in methods.items():
            yield doc, entry.view_function, doc["paths"][path][method.lower()], (method, path)


def test_the_document_is_valid_openapi_3_1():
    doc = openapi.document(_app())
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def _resolve(doc, schema):
    name = schema["$ref"].rsplit("/", 1)[-1]
    return doc["components"]["schemas"][name]


def test_every_request_body_lists_the_fields_of_its_model():
    bodies = 0
    for doc, view, op, where in _operations():
        model = getattr(view, "body_schema", None)
        raw = getattr(view, "raw_body_types", None)
        if model is None and raw:  # a file (the console's CSV upload): binary, not JSON
            assert set(op["requestBody"]["content"]) == set(raw), where
            continue
        if model is None:
            assert "requestBody" not in op, where
            continue
        bodies += 1
        schema = _resolve(doc, op["requestBody"]["content"]["application/json"]["schema"])
        members = model.members if isinstance(model, Tagged) else (model,)
        shown = [_resolve(doc, s) for s in schema["oneOf"]] if isinstance(model, Tagged) \
            else [schema]
        assert len(shown) == len(members), where
        for member, part in zip(members, shown, strict=True):
            assert set(part["properties"]) == set(member.model_fields), (where, member)
            assert part["additionalProperties"] is False, (where, member)
        if isinstance(model, Tagged):  # told apart by `type`, each member naming its value
            assert schema["discriminator"]["propertyName"] == "type", where
    assert bodies >= 12


def test_the_request_body_names_every_type_and_its_fields():
    doc = openapi.document(_app())
    body = doc["paths"]["/v1/requests"]["post"]["requestBody"]["content"]["application/json"]
    union = _resolve(doc, body["schema"])
    types = sorted(union["discriminator"]["mapping"])
    assert types == sorted(["access", "erasure", "anonymisation", "rectification",
                            "restriction", "objection"])
    anonymise = doc["components"]["schemas"]["AnonymisationRequest"]
    assert {"subject", "tables", "confirm", "dry_run", "reason"} <= set(anonymise["properties"])
    assert "tabels" not in anonymise["properties"]


def test_every_query_parameter_comes_from_the_routes_query_model():
    for _doc, view, op, where in _operations():
        model = getattr(view, "query_schema", None)
        query = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        assert query == (set(model.model_fields) if model else set()), where
    doc = openapi.document(_app())
    listing = {p["name"]: p for p in doc["paths"]["/v1/requests"]["get"]["parameters"]}
    assert "completed" in listing["status"]["schema"]["enum"]
    assert listing["limit"]["schema"]["maximum"] == 500


def test_every_idempotent_write_declares_its_idempotency_key():
    for _doc, view, op, where in _operations():
        headers = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
        assert ("Idempotency-Key" in headers) == bool(getattr(view, "idempotent", False)), where


# -- issue 16, item 14: the document says what the code answers ---------------------------------


def test_filing_a_request_documents_its_200_and_202_with_their_schema():
    op = openapi.document(_app())["paths"]["/v1/requests"]["post"]
    for code in ("200", "202"):
        schema = op["responses"][code]["content"]["application/json"]["schema"]
        assert "request_id" in schema["properties"], code
    assert {"400", "409", "422"} <= set(op["responses"])


def test_every_idempotent_write_documents_409_and_its_idempotency_codes():
    doc = openapi.document(_app())
    conflict = doc["components"]["responses"]["Conflict"]["description"]
    assert "idempotency_in_progress" in conflict and "idempotency_key_reused" in conflict
    for _doc, view, op, where in _operations():
        if getattr(view, "idempotent", False):
            assert op["responses"]["409"] == {"$ref": "#/components/responses/Conflict"}, where
        if getattr(view, "body_schema", None) is not None:
            assert {"400", "422"} <= set(op["responses"]), where
        # an id of the API (PATH_IDS) not of its form is 404 or 422; the console's file
        # names (/console/{asset}) are only found or not
        if any(p["in"] == "path" for p in op.get("parameters", [])):
            ids = any(p["in"] == "path" and p["name"] in PATH_IDS for p in op["parameters"])
            assert ({"404", "422"} if ids else {"404"}) <= set(op["responses"]), where


def test_the_pages_for_people_are_documented_as_html():
    doc = openapi.document(_app())
    page = doc["components"]["responses"]["Page"]
    assert list(page["content"]) == ["text/html"]
    for method in ("get", "post"):
        op = doc["paths"]["/v1/public/unsubscribe"][method]
        assert all(op["responses"][c] == {"$ref": "#/components/responses/Page"}
                   for c in ("200", "400", "410")), method
    download = doc["paths"]["/v1/public/requests/{request_id}/download"]["get"]
    assert download["responses"]["400"] == {"$ref": "#/components/responses/Page"}
    assert "302" in download["responses"]


def test_the_error_shape_is_exactly_api_md_s():
    doc = openapi.document(_app())
    shape = doc["components"]["responses"]["Error"]["content"]["application/json"]["schema"]
    assert shape["required"] == ["error"] and shape["additionalProperties"] is False
    assert shape["properties"]["error"]["required"] == ["code", "message", "details"]


def test_sweep_runs_document_confirm_and_policies_their_delete():
    doc = openapi.document(_app())
    run = doc["paths"]["/v1/retention-policies/{policy_id}/run"]["post"]
    body = doc["components"]["schemas"]["RunBody"]
    assert set(body["properties"]) == {"dry_run", "confirm"}
    assert "confirm" in run["summary"] and {"200", "202", "409", "422"} <= set(run["responses"])
    delete = doc["paths"]["/v1/retention-policies/{policy_id}"]["delete"]
    assert delete["x-oblio-scope"] == "admin" and "409" in delete["responses"]


def test_the_console_s_search_takes_the_identity_in_its_body_not_the_url():
    doc = openapi.document(_app())
    op = doc["paths"]["/v1/subjects/search"]["post"]
    assert not [p for p in op.get("parameters", []) if p["in"] == "query"]
    body = _resolve(doc, op["requestBody"]["content"]["application/json"]["schema"])
    assert set(body["properties"]) == {"subject", "include_children"}
    assert body["required"] == ["subject"]
    upload = doc["paths"]["/v1/bulk-erasures/{job_id}/file"]["put"]
    assert upload["requestBody"]["content"]["text/csv"]["schema"]["format"] == "binary"
    assert {"409", "413"} <= set(upload["responses"])
