"""oblio's HTTP API (Chalice). Thin views: authenticate, parse, call the domain, answer."""

from chalice import Chalice

from chalicelib import console, openapi
from chalicelib.edge import (
    api,
    base_url,
    html_page,
    idempotent,
    json_body,
    operation,
    page_args,
    page_or_redirect,
    query,
    source_ip,
)
from oblio import __version__
from oblio.access import deliver
from oblio.control import audit, records, tenants
from oblio.core.errors import Invalid
from oblio.jobs import bulk, retention
from oblio.rights import consent, intake, search, selfservice

app = Chalice(app_name="oblio")
app.register_blueprint(console.console)  # the DPO's console at /console/ and its routes
# JSON is parsed from the raw body whatever the client declared (curl -d sends form-urlencoded)
BODY_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain"]


@app.route("/v1/health", methods=["GET"])
@api(app)
def health() -> dict:
    return {"status": "ok", "version": __version__}


@app.route("/v1/openapi.json", methods=["GET"])
@api(app)
def openapi_document() -> dict:
    return openapi.document()


@operation("create_request")
def _create_request(principal, body, params):
    return intake.create(principal, body)


@app.route("/v1/requests", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="")  # dsr:write, or dsr:erase for irreversible types: checked by the domain
def create_request(principal):
    return idempotent(app, principal, "create_request", json_body(app))


@app.route("/v1/requests", methods=["GET"])
@api(app, scope="dsr:read")
def list_requests(principal):
    q = query(app)
    limit, cursor = page_args(q)
    if q.get("overdue", "false") not in ("true", "false"):
        raise Invalid("overdue", "overdue must be true or false")
    return intake.list_requests(principal.tenant_id, type_=q.get("type"),
                                  status=q.get("status"), overdue=q.get("overdue") == "true",
                                  limit=limit, cursor=cursor)


@app.route("/v1/requests/{request_id}", methods=["GET"])
@api(app, scope="dsr:read")
def get_request(principal, request_id):
    return records.to_json(records.load(principal.tenant_id, request_id))


@operation("cancel_request")
def _cancel(principal, body, params):
    return 200, intake.cancel(principal, params["request_id"])


@app.route("/v1/requests/{request_id}/cancel", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="dsr:write")
def cancel_request(principal, request_id):
    return idempotent(app, principal, "cancel_request", {}, {"request_id": request_id})


@operation("retry_request")
def _retry(principal, body, params):
    return 200, intake.retry(principal, params["request_id"])


@app.route("/v1/requests/{request_id}/retry", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="dsr:write")
def retry_request(principal, request_id):
    return idempotent(app, principal, "retry_request", {}, {"request_id": request_id})


@operation("extend_request")
def _extend(principal, body, params):
    return 200, intake.extend(principal, params["request_id"], body)


@app.route("/v1/requests/{request_id}/extend", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="dsr:write")
def extend_request(principal, request_id):
    return idempotent(app, principal, "extend_request", json_body(app),
                      {"request_id": request_id})


@app.route("/v1/requests/{request_id}/download", methods=["GET"])
@api(app, scope="dsr:read")
def download_export(principal, request_id):
    return deliver.download(principal, request_id)


@app.route("/v1/subjects", methods=["GET"])
@api(app, scope="dsr:read")
def search_subject(principal):
    return search.search(principal, query(app))


# -- consent ledger and self-service requests ---------------------------------------------------

@operation("record_consent")
def _record_consent(principal, body, params):
    return consent.record(principal, body)


@app.route("/v1/consents", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="consent:write")
def record_consent(principal):
    return idempotent(app, principal, "record_consent", json_body(app))


@app.route("/v1/consents", methods=["GET"])
@api(app, scope="consent:read")
def read_consents(principal):
    return consent.read(principal, query(app))


@operation("consent_link")
def _consent_link(principal, body, params):
    return consent.link(principal, body, params["base_url"])


@app.route("/v1/consents/links", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="consent:write")
def create_consent_link(principal):
    return idempotent(app, principal, "consent_link", json_body(app),
                      {"base_url": base_url(app)})


@app.route("/v1/public/unsubscribe", methods=["GET", "POST"], content_types=BODY_TYPES)
@api(app)  # the signed token is the credential; POST is RFC 8058 one-click from mail clients
def unsubscribe():
    return html_page(*consent.unsubscribe(query(app).get("token")))


@app.route("/v1/public/requests", methods=["POST"], content_types=BODY_TYPES)
@api(app)
def public_request():
    return selfservice.create(json_body(app), source_ip(app), base_url(app))


@app.route("/v1/public/requests/{request_id}/verify", methods=["POST"],
           content_types=BODY_TYPES)
@api(app)
def verify_public_request(request_id):
    return selfservice.verify(request_id, json_body(app))


@app.route("/v1/public/requests/{request_id}/download", methods=["GET"])
@api(app)  # the signed link sent to the person who asked is the credential
def public_download(request_id):
    return page_or_redirect(*selfservice.public_download(request_id, query(app).get("token")))


@operation("approve_request")
def _approve(principal, body, params):
    return 200, selfservice.approve(principal, params["request_id"])


@app.route("/v1/requests/{request_id}/approve", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="")  # dsr:erase for an erasure, dsr:write otherwise: checked by the domain
def approve_request(principal, request_id):
    return idempotent(app, principal, "approve_request", {}, {"request_id": request_id})


@operation("deny_request")
def _deny(principal, body, params):
    return 200, selfservice.deny(principal, params["request_id"], body)


@app.route("/v1/requests/{request_id}/deny", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="")
def deny_request(principal, request_id):
    return idempotent(app, principal, "deny_request", json_body(app),
                      {"request_id": request_id})


@app.route("/v1/audit", methods=["GET"])
@api(app, scope="audit:read")
def list_audit(principal):
    limit, cursor = page_args(query(app))
    rows, nxt = audit.entries(principal.tenant_id, limit=limit, start=cursor)
    return {"items": [audit.to_json(r) for r in rows], "next_cursor": nxt}


@app.route("/v1/audit/verify", methods=["GET"])
@api(app, scope="audit:read")
def verify_audit(principal):
    return audit.verify(principal.tenant_id)


@app.route("/v1/tenant", methods=["GET"])
@api(app, scope="admin")
def get_tenant(principal):
    t = tenants.get_tenant(principal.tenant_id)
    return {"tenant_id": t.tenant_id, "name": t.name, "parent_id": t.parent_id,
            "children": list(t.children), "settings": t.settings}


@operation("update_tenant")
def _update_tenant(principal, body, params):
    t = tenants.update_settings(principal.tenant_id, body)
    audit.append(principal.tenant_id, "tenant_settings_changed", actor=principal.key_id,
                 details={"settings": sorted((body.get("settings") or body).keys())})
    return 200, {"tenant_id": t.tenant_id, "name": t.name, "parent_id": t.parent_id,
                 "children": list(t.children), "settings": t.settings}


@app.route("/v1/tenant", methods=["PATCH"], content_types=BODY_TYPES)
@api(app, scope="admin")
def update_tenant(principal):
    return idempotent(app, principal, "update_tenant", json_body(app))


@operation("create_key")
def _create_key(principal, body, params):
    if not isinstance(body, dict):
        raise Invalid("scopes", "send {\"scopes\": [...], \"name\": ...}")
    key_id, key = tenants.create_api_key(principal.tenant_id, body.get("scopes") or [],
                                         name=str(body.get("name") or ""),
                                         children=bool(body.get("children")) and
                                         principal.children)
    return 201, {"key_id": key_id, "api_key": key, "scopes": sorted(body["scopes"])}


@app.route("/v1/keys", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="admin")
def create_key(principal):
    return idempotent(app, principal, "create_key", json_body(app))


@app.route("/v1/keys", methods=["GET"])
@api(app, scope="admin")
def list_keys(principal):
    return {"items": tenants.list_api_keys(principal.tenant_id), "next_cursor": None}


@operation("create_bulk_erasure")
def _create_bulk(principal, body, params):
    return 201, bulk.create_job(principal, body)


@app.route("/v1/bulk-erasures", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="dsr:erase")
def create_bulk_erasure(principal):
    return idempotent(app, principal, "create_bulk_erasure", json_body(app))


@app.route("/v1/bulk-erasures", methods=["GET"])
@api(app, scope="dsr:read")
def list_bulk_erasures(principal):
    limit, cursor = page_args(query(app))
    return bulk.list_jobs(principal.tenant_id, limit, cursor)


@app.route("/v1/bulk-erasures/{job_id}", methods=["GET"])
@api(app, scope="dsr:read")
def get_bulk_erasure(principal, job_id):
    return bulk.to_json(bulk.load(principal.tenant_id, job_id))


# -- retention policies and sweeps --------------------------------------------------------------

@app.route("/v1/retention-policies", methods=["GET"])
@api(app, scope="admin")
def list_retention_policies(principal):
    return retention.list_policies(principal.tenant_id)


@operation("put_retention_policy")
def _put_policy(principal, body, params):
    return retention.put_policy(principal.tenant_id, params["policy_id"], body,
                                actor=principal.key_id)


@app.route("/v1/retention-policies/{policy_id}", methods=["PUT"], content_types=BODY_TYPES)
@api(app, scope="admin")
def put_retention_policy(principal, policy_id):
    return idempotent(app, principal, "put_retention_policy", json_body(app),
                      {"policy_id": policy_id})


@operation("run_retention_policy")
def _run_policy(principal, body, params):
    return retention.run(principal, params["policy_id"], body)


@app.route("/v1/retention-policies/{policy_id}/run", methods=["POST"],
           content_types=BODY_TYPES)
@api(app, scope="dsr:erase")
def run_retention_policy(principal, policy_id):
    return idempotent(app, principal, "run_retention_policy", json_body(app),
                      {"policy_id": policy_id})


@app.route("/v1/retention-sweeps", methods=["GET"])
@api(app, scope="dsr:read")
def list_retention_sweeps(principal):
    limit, cursor = page_args(query(app))
    return retention.list_sweeps(principal.tenant_id, limit, cursor)


@app.route("/v1/retention-sweeps/{sweep_id}", methods=["GET"])
@api(app, scope="dsr:read")
def get_retention_sweep(principal, sweep_id):
    return retention.sweep_json(retention.load_sweep(principal.tenant_id, sweep_id))
