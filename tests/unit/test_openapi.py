"""The OpenAPI document describes exactly the routes the Chalice app serves."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "functions" / "api") not in sys.path:
    sys.path.insert(0, str(ROOT / "functions" / "api"))

from chalicelib import openapi  # noqa: E402


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
    documented = {(path, method) for path, ops in openapi.document()["paths"].items()
                  for method in ops}
    assert routes - documented == set(), "routes the document does not describe"
    assert documented - routes == set(), "documented operations the app does not serve"


def test_every_path_parameter_is_declared():
    for path, ops in openapi.document()["paths"].items():
        names = {p.strip("{}") for p in path.split("/") if p.startswith("{")}
        for method, op in ops.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)


def test_every_secured_operation_names_its_scope_and_error_responses():
    doc = openapi.document()
    assert doc["openapi"].startswith("3.")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if "security" in op:
                assert op.get("x-oblio-scope") is not None, (method, path)
                assert {"401", "403"} <= set(op["responses"]), (method, path)
