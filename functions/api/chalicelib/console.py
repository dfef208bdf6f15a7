"""The DPO's console: its static files at /console/ (plain HTML, CSS and JavaScript modules,
no build step), the security headers of every answer, and the few API routes the console
needs beyond the rest of the API: who the key is, what the data map offers, a search with
the identity in the body (never in a URL), a CSV sent through the API. (Keys are revoked
through the API's own `POST /v1/keys/{key_id}/revoke`.)

Registered by app.py with one line; the routes stay thin like the others. The search's body
is a model of `oblio.core.bodies`, so that the OpenAPI document shows it like the others."""

from __future__ import annotations

import hashlib
import mimetypes
import re
from pathlib import Path
from typing import Any

from chalice import Blueprint, Response

from chalicelib.edge import api
from oblio import __version__
from oblio.control import tenants
from oblio.core import bodies, datamap
from oblio.core.errors import Forbidden
from oblio.jobs import bulk
from oblio.rights import search

console = Blueprint(__name__)

WEB = Path(__file__).resolve().parent / "web"
_ASSET = re.compile(r"^[a-z0-9][a-z0-9-]*\.(?:html|js|css|svg)$")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
#: no inline script or style, nothing from another origin; the API is the same origin
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
CONSOLE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
}
#: on every answer of the API: nothing of a subject kept by a browser or a proxy
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
UPLOAD_TYPES = ["application/octet-stream", "text/csv", "text/plain"]
BODY_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain"]

_files: dict[str, tuple[float, bytes, str]] = {}


@console.middleware("http")
def security_headers(event: Any, get_response: Any) -> Any:
    response = get_response(event)
    present = {k.lower() for k in response.headers}
    for name, value in API_HEADERS.items():
        if name.lower() not in present:
            response.headers[name] = value
    return response


def _asset(name: str) -> tuple[bytes, str] | None:
    """A file of web/ and its ETag, read again when it changes (the local stack serves the
    working tree); None for a name that is not one of them."""
    if not _ASSET.match(name):
        return None
    path = WEB / name
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    hit = _files.get(name)
    if hit is None or hit[0] != mtime:
        body = path.read_bytes()
        hit = _files[name] = (mtime, body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return hit[1], hit[2]


def _serve(name: str) -> Response:
    found = _asset(name)
    if found is None:
        return Response(body="not found", status_code=404,
                        headers={"Content-Type": "text/plain; charset=utf-8", **CONSOLE_HEADERS})
    body, etag = found
    headers = {"Content-Type": _TYPES.get(Path(name).suffix) or
               mimetypes.guess_type(name)[0] or "application/octet-stream",
               # the files hold no subject data: revalidated on each load, never stale
               "Cache-Control": "no-cache" if not name.endswith(".html") else "no-store",
               "ETag": etag, **CONSOLE_HEADERS}
    if console.current_request.headers.get("if-none-match") == etag:
        return Response(body="", status_code=304, headers=headers)
    return Response(body=body.decode("utf-8"), status_code=200, headers=headers)


@console.route("/console", methods=["GET"])
def console_page() -> Response:
    path = str((console.current_request.context or {}).get("path") or "")
    if path and not path.endswith("/"):
        # the page's relative links (app.js, ../v1/...) need the trailing slash; relative, so
        # that it holds behind API Gateway's stage prefix too
        return Response(body="", status_code=302,
                        headers={"Location": "console/", **CONSOLE_HEADERS})
    return _serve("index.html")


@console.route("/console/{asset}", methods=["GET"])
def console_asset(asset: str) -> Response:
    return _serve(asset)


@console.route("/v1/whoami", methods=["GET"])
@api(console, scope="")  # any valid key: it describes itself
def whoami(principal: tenants.Principal) -> dict[str, Any]:
    if principal.is_operator:
        raise Forbidden("the operator key manages tenants (/v1/tenants), not one tenant's "
                        "subjects: sign in to the console with a tenant's API key")
    t = tenants.get_tenant(principal.tenant_id)
    s = t.settings
    return {"tenant_id": t.tenant_id, "tenant_name": t.name, "parent_id": t.parent_id,
            "key_id": principal.key_id, "scopes": sorted(principal.scopes),
            "children_allowed": principal.children,
            "children": list(t.children) if principal.children else [],
            "rules": {"require_export_before_anonymisation":
                      bool(s.get("require_export_before_anonymisation")),
                      "export_ttl_days": s.get("export_ttl_days"),
                      "selfservice_requires_approval":
                      bool(s.get("selfservice_requires_approval")),
                      "purposes": list(s.get("purposes") or [])},
            "version": __version__}


@console.route("/v1/datamap", methods=["GET"])
@api(console, scope="dsr:read")
def datamap_summary(principal: tenants.Principal) -> dict[str, Any]:
    return datamap.summary(datamap.current())


@console.route("/v1/subjects/search", methods=["POST"], content_types=BODY_TYPES)
@api(console, scope="dsr:read", body=bodies.SearchBody)
def search_subject_by_body(principal: tenants.Principal, body: bodies.SearchBody,
                           ) -> dict[str, Any]:
    found = search.search(principal, body)
    return {**found, "export_before_anonymisation": search.export_rule(
        principal, found["subject_ref"])}


def _raw_body(*types: str) -> Any:
    """Mark a route whose body is a file (not JSON): the OpenAPI document shows it as
    binary of these media types."""
    def mark(view: Any) -> Any:
        view.raw_body_types = list(types)
        return view
    return mark


@console.route("/v1/bulk-erasures/{job_id}/file", methods=["PUT"], content_types=UPLOAD_TYPES)
@_raw_body(*UPLOAD_TYPES)
@api(console, scope="dsr:erase")
def upload_bulk_file(principal: tenants.Principal, job_id: str) -> dict[str, Any]:
    raw = console.current_request.raw_body or b""
    return bulk.upload(principal, job_id, raw if isinstance(raw, bytes) else raw.encode())


def openapi_paths() -> dict[str, Any]:
    """This module's operations, for the OpenAPI document (their bodies come from the routes'
    declarations, as for the others)."""
    from chalicelib.openapi import _errors, _op, _path_param

    text = {"schema": {"type": "string"}}
    page = {"description": "the console's page", "content": {"text/html; charset=utf-8": text}}
    files = {"description": "one of the console's files", "content": {
        t: text for t in sorted(set(_TYPES.values()))}}
    gone = {"description": "not one of the console's files",
            "content": {"text/plain; charset=utf-8": text}}
    same = {"description": "not modified (If-None-Match gave its ETag)"}
    return {
        "/console": {"get": {
            "summary": "the DPO's console (HTML; /console redirects to /console/)",
            "responses": {"200": page, "302": {"description": "to /console/"}, "304": same}}},
        "/console/{asset}": {"get": {
            "summary": "the console's page, scripts, styles and icon",
            "parameters": [{"name": "asset", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": files, "304": same, "404": gone}}},
        "/v1/whoami": {"get": _errors(_op(
            "the calling key: tenant, scopes, child tenants it may act on, and the tenant "
            "rules a client must explain (export before anonymisation, export TTL); 403 for "
            "the operator key", ""))},
        "/v1/datamap": {"get": _op(
            "the data map's tables in walk order, what erasure and anonymisation do to each, "
            "attributes' categories, objection purposes and rectifiable names (no physical "
            "names)", "dsr:read")},
        "/v1/subjects/search": {"post": _op(
            "where a subject appears, with the identity in the body (kept out of URLs and "
            "access logs): the answer of GET /v1/subjects plus export_before_anonymisation "
            "{required, export}", "dsr:read")},
        "/v1/bulk-erasures/{job_id}/file": {"put": _errors(_path_param(_op(
            "send a bulk job's CSV through the API instead of its upload_url (at most "
            f"{bulk.API_UPLOAD_MAX_BYTES} bytes; 409 once the job has its file, 413 when "
            "larger)", "dsr:erase"), "job_id"), "409", "413")},
    }
