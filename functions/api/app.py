"""oblio's HTTP API (Chalice). Thin views: authenticate, parse, call the domain, answer.

Each route declares what it takes (`oblio.core.bodies`: `query=` its query string, `body=`
its JSON body) and, for a write, its idempotent operation; the OpenAPI document is built
from the same models."""

from chalice import Chalice

from chalicelib import console, openapi, pages
from chalicelib.edge import (
    Replay,
    api,
    base_url,
    idempotent_write,
    one_error_shape,
    source_ip,
)
from oblio import __version__
from oblio.access import deliver
from oblio.control import audit, records
from oblio.control.tenants import OPERATOR
from oblio.core import bodies
from oblio.jobs import backfill, bulk, retention
from oblio.rights import admin, consent, intake, search, selfservice

app = Chalice(app_name="oblio")
app.register_middleware(one_error_shape, "http")  # 405, 415: the one error shape
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
    return openapi.document(app)


# -- data-subject requests ----------------------------------------------------------------------

@app.route("/v1/requests", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="")  # dsr:write, or dsr:erase for irreversible types: checked by the domain
@idempotent_write(app, "create_request", body=bodies.REQUEST,
                  replay=Replay(rerun_dry_runs=True))  # a dry run's plan names item keys
def create_request(principal, body, replayed=False):
    filed = intake.create(principal, body, audited=not replayed)
    return (202 if filed.created else 200), filed.body


@app.route("/v1/requests", methods=["GET"])
@api(app, scope="dsr:read", query=bodies.RequestsQuery)
def list_requests(principal, q):
    return intake.list_requests(principal.tenant_id, type_=q.type, status=q.status,
                                overdue=q.overdue, limit=q.limit, cursor=q.cursor or None)


@app.route("/v1/requests/{request_id}", methods=["GET"])
@api(app, scope="dsr:read")
def get_request(principal, request_id):
    return records.to_json(records.load(principal.tenant_id, request_id))


@app.route("/v1/requests/{request_id}/inclusion", methods=["GET"])
@api(app, scope="audit:read")
def request_inclusion(principal, request_id):
    return records.inclusion(principal.tenant_id, request_id)


@app.route("/v1/requests/{request_id}/cancel", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="dsr:write")
@idempotent_write(app, "cancel_request")
def cancel_request(principal, request_id):
    return intake.cancel(principal, request_id)


@app.route("/v1/requests/{request_id}/retry", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="dsr:write")
@idempotent_write(app, "retry_request")
def retry_request(principal, request_id):
    return intake.retry(principal, request_id)


@app.route("/v1/requests/{request_id}/extend", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="dsr:write")
@idempotent_write(app, "extend_request", body=bodies.ExtendBody)
def extend_request(principal, body, request_id):
    return intake.extend(principal, request_id, body)


@app.route("/v1/requests/{request_id}/download", methods=["GET"])
@api(app, scope="dsr:read")
def download_export(principal, request_id):
    return deliver.download(principal, request_id)


@app.route("/v1/subjects", methods=["GET"])
@api(app, scope="dsr:read", query=bodies.SubjectQuery)
def search_subject(principal, q):
    return search.search(principal, q)


# -- consent ledger and self-service requests ---------------------------------------------------

@app.route("/v1/consents", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="consent:write")
@idempotent_write(app, "record_consent", body=bodies.ConsentBody)
def record_consent(principal, body):
    return 201, consent.record(principal, body)


@app.route("/v1/consents", methods=["GET"])
@api(app, scope="consent:read", query=bodies.IdentityQuery)
def read_consents(principal, q):
    return consent.read(principal, q)


@app.route("/v1/consents/links", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="consent:write")
@idempotent_write(app, "consent_link", body=bodies.LinkBody, context={"base_url": base_url},
                  replay=Replay(rerun=True))  # a signed link is not kept: a replay signs anew
def create_consent_link(principal, body, base_url, replayed=False):
    return 201, consent.link(principal, body, base_url)


@app.route("/v1/public/unsubscribe", methods=["GET", "POST"], content_types=BODY_TYPES)
@api(app, query=bodies.TokenQuery)  # the signed token is the credential; POST is RFC 8058
@pages.on_bad_link(invalid=pages.LINK_INVALID, expired=pages.LINK_EXPIRED)
def unsubscribe(q):
    return pages.unsubscribed(consent.unsubscribe(q.token))


@app.route("/v1/public/requests", methods=["POST"], content_types=BODY_TYPES)
@api(app, body=bodies.PUBLIC_REQUEST)
def public_request(body):
    return 202, selfservice.create(body, source_ip(app), base_url(app))


@app.route("/v1/public/requests/{request_id}/verify", methods=["POST"],
           content_types=BODY_TYPES)
@api(app, body=bodies.VerifyBody)
def verify_public_request(request_id, body):
    return selfservice.verify(request_id, body)


@app.route("/v1/public/requests/{request_id}/download", methods=["GET"])
@api(app, query=bodies.TokenQuery)  # the signed link sent to the person who asked
@pages.on_bad_link(invalid=pages.DOWNLOAD_INVALID, expired=pages.DOWNLOAD_EXPIRED)
def public_download(request_id, q):
    return pages.redirect(selfservice.public_download(request_id, q.token))


@app.route("/v1/requests/{request_id}/approve", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="")  # dsr:erase for an erasure, dsr:write otherwise: checked by the domain
@idempotent_write(app, "approve_request")
def approve_request(principal, request_id):
    return selfservice.approve(principal, request_id)


@app.route("/v1/requests/{request_id}/deny", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="")
@idempotent_write(app, "deny_request", body=bodies.DenyBody)
def deny_request(principal, body, request_id):
    return selfservice.deny(principal, request_id, body)


# -- evidence -----------------------------------------------------------------------------------

@app.route("/v1/audit", methods=["GET"])
@api(app, scope="audit:read", query=bodies.AuditQuery)
def list_audit(principal, q):
    rows, nxt = audit.entries(principal.tenant_id, limit=q.limit, start=q.cursor or None)
    return {"items": [audit.to_json(r) for r in rows], "next_cursor": nxt}


@app.route("/v1/audit/verify", methods=["GET"])
@api(app, scope="audit:read", query=bodies.AuditVerifyQuery)
def verify_audit(principal, q):
    return audit.verify(principal.tenant_id, limit=q.limit, cursor=q.cursor)


# -- the tenant and its keys --------------------------------------------------------------------

@app.route("/v1/tenant", methods=["GET"])
@api(app, scope="admin")
def get_tenant(principal):
    return admin.show(principal)


@app.route("/v1/tenant", methods=["PATCH"], content_types=BODY_TYPES)
@api(app, scope="admin")
@idempotent_write(app, "update_tenant", body=bodies.TenantPatch)
def update_tenant(principal, body):
    return admin.update(principal, body)


@app.route("/v1/keys", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="admin")
@idempotent_write(app, "create_key", body=bodies.KeyBody,
                  replay=Replay(secret="key_id"))  # a key is shown once
def create_key(principal, body):
    return 201, admin.create_key(principal, body)


@app.route("/v1/keys", methods=["GET"])
@api(app, scope="admin")
def list_keys(principal):
    return admin.list_keys(principal)


@app.route("/v1/keys/{key_id}/revoke", methods=["POST"])
@api(app, scope="admin")
@idempotent_write(app, "revoke_key")
def revoke_key(principal, key_id):
    return admin.revoke_key(principal, key_id)


@app.route("/v1/keys/{key_id}/rotate", methods=["POST"])
@api(app, scope="admin")
@idempotent_write(app, "rotate_key", replay=Replay(secret="key_id"))  # shown once
def rotate_key(principal, key_id):
    return 201, admin.rotate_key(principal, key_id)


# -- tenants and any tenant's keys: the operator key ---------------------------------------------

@app.route("/v1/tenants", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope=OPERATOR)
@idempotent_write(app, "create_tenant", body=bodies.TenantBody,
                  replay=Replay(secret="key_id"))  # its first admin key is shown once
def create_tenant(principal, body):
    return 201, admin.create_tenant(principal, body)


@app.route("/v1/tenants", methods=["GET"])
@api(app, scope=OPERATOR)
def list_tenants(principal):
    return admin.list_tenants(principal)


@app.route("/v1/tenants/{tenant_id}/keys", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope=OPERATOR)
@idempotent_write(app, "create_tenant_key", body=bodies.KeyBody,
                  replay=Replay(secret="key_id"))
def create_tenant_key(principal, body, tenant_id):
    return 201, admin.create_key(principal, body, tenant_id)


@app.route("/v1/tenants/{tenant_id}/keys", methods=["GET"])
@api(app, scope=OPERATOR)
def list_tenant_keys(principal, tenant_id):
    return admin.list_keys(principal, tenant_id)


@app.route("/v1/tenants/{tenant_id}/keys/{key_id}/revoke", methods=["POST"])
@api(app, scope=OPERATOR)
@idempotent_write(app, "revoke_tenant_key")
def revoke_tenant_key(principal, tenant_id, key_id):
    return admin.revoke_key(principal, key_id, tenant_id)


@app.route("/v1/tenants/{tenant_id}/keys/{key_id}/rotate", methods=["POST"])
@api(app, scope=OPERATOR)
@idempotent_write(app, "rotate_tenant_key", replay=Replay(secret="key_id"))
def rotate_tenant_key(principal, tenant_id, key_id):
    return 201, admin.rotate_key(principal, key_id, tenant_id)


# -- bulk erasure -------------------------------------------------------------------------------

@app.route("/v1/bulk-erasures", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="dsr:erase")
@idempotent_write(app, "create_bulk_erasure", body=bodies.BulkBody,
                  # the presigned PUT is not kept: a replay presigns the job's upload again
                  replay=Replay(drop=("upload_url",), rebuild=lambda p, kept: {
                      "upload_url": bulk.upload_url(p.tenant_id, kept["job_id"])}))
def create_bulk_erasure(principal, body):
    return 201, bulk.create_job(principal, body)


@app.route("/v1/bulk-erasures", methods=["GET"])
@api(app, scope="dsr:read", query=bodies.IdPageQuery)
def list_bulk_erasures(principal, q):
    return bulk.list_jobs(principal.tenant_id, q.limit, q.cursor or None)


@app.route("/v1/bulk-erasures/{job_id}", methods=["GET"])
@api(app, scope="dsr:read")
def get_bulk_erasure(principal, job_id):
    return bulk.to_json(bulk.load(principal.tenant_id, job_id))


@app.route("/v1/bulk-erasures/{job_id}/retry", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="dsr:erase")
@idempotent_write(app, "retry_bulk_erasure")
def retry_bulk_erasure(principal, job_id):
    return bulk.retry(principal, job_id)


# -- retention policies and sweeps --------------------------------------------------------------

@app.route("/v1/retention-policies", methods=["GET"])
@api(app, scope="admin")
def list_retention_policies(principal):
    return retention.list_policies(principal.tenant_id)


@app.route("/v1/retention-policies/{policy_id}", methods=["PUT"], content_types=BODY_TYPES)
@api(app, scope="admin")
@idempotent_write(app, "put_retention_policy", body=bodies.PolicyBody)
def put_retention_policy(principal, body, policy_id):
    saved = retention.put_policy(principal.tenant_id, policy_id, body, actor=principal.key_id)
    return (201 if saved.created else 200), saved.policy


@app.route("/v1/retention-policies/{policy_id}", methods=["DELETE"], content_types=BODY_TYPES)
@api(app, scope="admin")
@idempotent_write(app, "delete_retention_policy")
def delete_retention_policy(principal, policy_id):
    return retention.delete_policy(principal.tenant_id, policy_id, actor=principal.key_id)


@app.route("/v1/retention-policies/{policy_id}/run", methods=["POST"],
           content_types=BODY_TYPES)
@api(app, scope="dsr:erase")
@idempotent_write(app, "run_retention_policy", body=bodies.RunBody,
                  replay=Replay(rerun_dry_runs=True))
def run_retention_policy(principal, body, policy_id, replayed=False):
    ran = retention.run(principal, policy_id, body, audited=not replayed)
    return (202 if ran.started else 200), ran.body


@app.route("/v1/retention-sweeps", methods=["GET"])
@api(app, scope="dsr:read", query=bodies.IdPageQuery)
def list_retention_sweeps(principal, q):
    return retention.list_sweeps(principal.tenant_id, q.limit, q.cursor or None)


@app.route("/v1/retention-sweeps/{sweep_id}", methods=["GET"])
@api(app, scope="dsr:read")
def get_retention_sweep(principal, sweep_id):
    return retention.sweep_json(retention.load_sweep(principal.tenant_id, sweep_id))


# -- shadows of identities stored as typed ------------------------------------------------------

@app.route("/v1/backfills", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="admin")
@idempotent_write(app, "create_backfill", body=bodies.BackfillBody)
def create_backfill(principal, body):
    return 202, backfill.create(principal, body)


@app.route("/v1/backfills", methods=["GET"])
@api(app, scope="admin", query=bodies.IdPageQuery)
def list_backfills(principal, q):
    return backfill.list_backfills(principal.tenant_id, q.limit, q.cursor or None)


@app.route("/v1/backfills/{backfill_id}", methods=["GET"])
@api(app, scope="admin")
def get_backfill(principal, backfill_id):
    return backfill.to_json(backfill.load(principal.tenant_id, backfill_id))


@app.route("/v1/backfills/{backfill_id}/resume", methods=["POST"], content_types=BODY_TYPES)
@api(app, scope="admin")
@idempotent_write(app, "resume_backfill")
def resume_backfill(principal, backfill_id):
    return 202, backfill.resume(principal, backfill_id)
