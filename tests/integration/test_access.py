"""Access and portability exports (Art. 15, 20) end to end, over HTTP against the local stack:
the archive opened as the subject would open it, its encryption and expiry, the e-mail to the
requester, and what bad input gets."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import timedelta
from typing import Any

import requests as http

from infra.local import lambdas

JEANNE = {"email": "jeanne.dupont@example.com"}
MARIO_IDS = ("mario.rossi@example.com", "+393331234567", "CRM-0001")
DPO = "dpo.office@tenant.example"
REDACTED = "[redacted: about another person]"


def export(api: Any, subject: dict[str, str], **extra: Any) -> dict[str, Any]:
    r = api.post("/v1/requests", {"type": "access", "subject": subject, **extra})
    assert r.status_code == 202, r.text
    return api.wait(r.json()["request_id"])


def fetch(api: Any, request_id: str) -> zipfile.ZipFile:
    d = api.get(f"/v1/requests/{request_id}/download")
    assert d.status_code == 200, d.text
    r = http.get(d.json()["url"], timeout=30)
    assert r.status_code == 200
    return zipfile.ZipFile(io.BytesIO(r.content))


def everything(z: zipfile.ZipFile) -> str:
    return "\n".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())


def mails_about(request_id: str) -> list[Any]:
    from moto.ses.models import ses_backends

    from oblio.core.settings import get_settings

    s = get_settings()
    return [m for m in ses_backends[s.account_id][s.region].sent_messages
            if request_id in (m.body or "")]


def s3_bodies(dm: Any, aws_client: Any, tenant: str, identities: dict[str, str]) -> list[bytes]:
    """The current bytes of every S3 object the subject's items point to."""
    from oblio.pipeline import find

    fp = find.walk(dm, tenant, identities)
    s3 = aws_client("s3")
    return [s3.get_object(Bucket=b, Key=k)["Body"].read()
            for name, items in fp.items.items()
            for b, k in find.s3_refs(dm, dm.tables[name], items)]


def test_access_export_of_jeanne_holds_her_data_and_nobody_elses(api, dm, aws_client,
                                                                 event_log):
    from oblio.access import deliver
    from oblio.core import clock
    from oblio.core.settings import get_settings

    found = api.get("/v1/subjects", **JEANNE).json()["tables"]
    done = export(api, JEANNE, notify_email=DPO.upper())

    assert done["status"] == "completed", done
    result = done["result"]
    for table, where in found.items():
        assert result["tables"][table]["exported"] == where["count"], table
    assert result["export"]["items"] == sum(w["count"] for w in found.values())
    assert result["export"]["size"] > 0 and result["export"]["files"] == 3
    assert result["expires_at"] == result["export"]["expires_at"]
    days = clock.parse(result["expires_at"]) - clock.parse(done["completed_at"])
    assert timedelta(days=13, hours=23) < days <= timedelta(days=14)
    assert result["redacted"] == {"tickets": ["assignee"], "ticket_messages": ["mentioned_name"]}
    io_ = result["io"]
    # (moto applies parallel updates of one item without isolation: a count can be lost)
    assert io_["dynamodb.Scan"] == 0 and io_["dynamodb.BatchGetItem"] >= 1
    assert io_["s3.UploadPart"] >= 1 and io_["s3.CompleteMultipartUpload"] == 1
    assert "jeanne" not in json.dumps(done).lower()

    z = fetch(api, done["id"])
    names = z.namelist()
    assert {"README.txt", "subject.json", "contacts.csv", "tickets.csv",
            "ticket_messages.csv", "email_events.csv", "subscriptions.csv"} <= set(names)
    subject = json.loads(z.read("subject.json"))
    assert subject["found"] is True and subject["request"]["id"] == done["id"]
    tables = subject["tables"]
    profile = tables["contacts"]["items"][0]
    assert profile["email"] == JEANNE["email"] and profile["last_name"] == "Dupont"
    assert tables["contacts"]["attributes"]["email"]["category"] == "identity"
    assert "birth_date" in tables["contacts"]["categories"]["identity"]
    for table in ("tickets", "ticket_messages", "email_sends", "email_events",
                  "subscriptions", "documents"):
        assert tables[table]["count"] == found[table]["count"] >= 1, table
        assert len(tables[table]["items"]) == found[table]["count"], table
    assert {e["type"] for e in tables["email_events"]["items"]} == {"open", "click"}
    assert tables["subscriptions"]["items"][0]["source"] == "signup-form"
    assert tables["subscriptions"]["attributes"]["source"]["category"] == "consent"
    # her consent history from oblio's ledger (the demo seeds one for each named subject)
    consents = subject["consents"]
    assert "marketing" in consents["state"] and consents["history"]
    assert {"purpose", "status", "channel", "at"} <= set(consents["history"][0])
    rows = list(csv.DictReader(io.StringIO(z.read("consents.csv").decode("utf-8-sig"))))
    assert len(rows) == len(consents["history"])
    # the Art. 15 information sheet, from the data map's processing register
    info = subject["information"]
    assert info["controller"] and info["contact"] and "Art. 17" in info["rights"]
    assert "customer support" in {p["purpose"] for p in info["purposes"]}
    assert "e-mail delivery provider" in info["recipients"]
    assert info["retention"]["email_events"] == "13 months"
    assert "tracking" in info["sources"]["email_events"]
    assert tables["email_events"]["legal_basis"].startswith("legitimate interest")
    # other people's data in her items is redacted; nobody else's data is there at all
    text = everything(z)
    assert "Luigi Verdi" not in text and "agent.bianchi" not in text
    assert REDACTED in {m.get("mentioned_name") for m in tables["ticket_messages"]["items"]}
    assert all(value not in text for value in MARIO_IDS)
    assert "@demo.example.org" not in text  # the generated contacts
    assert "_oblio_anonymised" not in text and '"tenant_id"' not in text
    # one CSV per table that opens with a header and her rows
    for table, where in found.items():
        if where["count"]:
            rows = list(csv.DictReader(io.StringIO(z.read(f"{table}.csv").decode("utf-8-sig"))))
            assert len(rows) == where["count"], table
    contact_row = next(csv.DictReader(io.StringIO(z.read("contacts.csv").decode("utf-8-sig"))))
    assert contact_row["email"] == JEANNE["email"] and contact_row["phone"] == "'+33612345678"
    # files/ holds her photo, attachment and document, byte for byte
    zipped = sorted(z.read(n) for n in names if n.startswith("files/"))
    assert zipped == sorted(s3_bodies(dm, aws_client, "demo", JEANNE))
    assert profile["photo_key"] in names
    assert "No data about you" not in z.read("README.txt").decode()

    # encrypted, tagged for the lifecycle rule that expires it
    s = get_settings()
    s3 = aws_client("s3")
    key = f"exports/demo/{done['id']}.zip"
    head = s3.head_object(Bucket=s.bucket("exports"), Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    tags = s3.get_object_tagging(Bucket=s.bucket("exports"), Key=key)["TagSet"]
    assert tags == [{"Key": "oblio-ttl", "Value": "14"}]
    rules = s3.get_bucket_lifecycle_configuration(Bucket=s.bucket("exports"))["Rules"]
    assert any(r["Filter"].get("And", {}).get("Prefix") == "exports/"
               and {"Key": "oblio-ttl", "Value": "14"} in r["Filter"]["And"]["Tags"]
               and r["Expiration"]["Days"] == 14 for r in rules)

    # the requester's e-mail says it is ready and nothing about her
    mails = mails_about(done["id"])
    assert len(mails) == 1 and mails[0].destinations["ToAddresses"] == [DPO]
    mail = f"{mails[0].subject} {mails[0].body}".lower()
    assert "jeanne" not in mail and "dupont" not in mail and done["subject_ref"] not in mail
    assert result["notified"] is True
    # an event for other systems, and no identity in it or in the execution's history
    mine = event_log.for_request(done["id"])
    assert [(e["detail-type"], e["detail"]["status"]) for e in mine] == [
        ("RequestCompleted", "completed")]
    arn = s.state_machine_arn("access_export").replace(":stateMachine:", ":execution:")
    history = aws_client("stepfunctions").get_execution_history(
        executionArn=f"{arn}:{done['id']}-1", maxResults=1000)
    assert JEANNE["email"] not in json.dumps(history, default=str)
    # the history lists it with its expiry; the audit log has it and the download
    listed = api.get("/v1/requests", type="access", limit=500).json()["items"]
    assert any(i["id"] == done["id"] and i["result"]["expires_at"] for i in listed)
    actions = {e["action"] for e in api.get("/v1/audit", limit=20).json()["items"]
               if e["request_id"] == done["id"]}
    assert {"access_completed", "export_downloaded"} <= actions

    # expired in the app the moment its date passes, whatever S3 still holds
    assert deliver.latest_valid_export("demo", done["subject_ref"]) is not None
    clock.advance(timedelta(days=15))
    try:
        gone = api.get(f"/v1/requests/{done['id']}/download")
        assert gone.status_code == 410, gone.text
        assert gone.json()["error"]["code"] == "export_expired"
        assert deliver.latest_valid_export("demo", done["subject_ref"]) is None
    finally:
        clock.reset()


def test_access_export_of_mario_over_http_holds_his_data_and_nothing_of_jeanne(
        api, dm, aws_client, event_log):
    """The issue's "done when", as a client would check it."""
    from oblio.control import ledger
    from oblio.core import clock
    from oblio.core.settings import get_settings

    mario = {"email": MARIO_IDS[0]}
    if not api.get("/v1/subjects", **mario).json()["found"]:  # erased by an earlier test
        from infra.local import demo

        demo.seed_subject(dm, "demo", MARIO_IDS[0], MARIO_IDS[1], MARIO_IDS[2],
                          first="Mario", last="Rossi")
        ledger.seed_demo("demo", MARIO_IDS[0])
    found = api.get("/v1/subjects", **mario).json()["tables"]
    done = export(api, mario, notify_email=DPO)
    assert done["status"] == "completed", done
    result = done["result"]
    assert {t: c["exported"] for t, c in result["tables"].items() if c["exported"]} == \
        {t: w["count"] for t, w in found.items() if w["count"]}
    assert result["export"]["size"] > 0 and result["io"]["dynamodb.Scan"] == 0

    z = fetch(api, done["id"])
    names = set(z.namelist())
    subject = json.loads(z.read("subject.json"))
    tables = subject["tables"]
    # his profile, tickets and messages, e-mail events, subscription and consent history
    assert tables["contacts"]["items"][0]["email"] == MARIO_IDS[0]
    assert tables["contacts"]["items"][0]["first_name"] == "Mario"
    for table in ("tickets", "ticket_messages", "email_events", "subscriptions"):
        assert len(tables[table]["items"]) == found[table]["count"] >= 1, table
    history = subject["consents"]["history"]
    assert {"newsletter", "marketing"} <= {e["purpose"] for e in history}
    # every CSV opens, with a header and one row per item
    for table, where in found.items():
        if where["count"]:
            text = z.read(f"{table}.csv").decode("utf-8-sig")
            rows = list(csv.DictReader(io.StringIO(text)))
            assert len(rows) == where["count"] and rows[0].keys() >= {
                c for c in tables[table]["attributes"]}, table
    assert len(list(csv.DictReader(io.StringIO(z.read("consents.csv").decode("utf-8-sig"))))) \
        == len(history)
    # files/ holds his photo, attachments and document, byte for byte
    assert sorted(z.read(n) for n in names if n.startswith("files/")) == \
        sorted(s3_bodies(dm, aws_client, "demo", mario))
    assert {n.split("/")[1] for n in names if n.startswith("files/")} == {
        "contacts", "ticket_messages", "documents"}  # photo, attachments, document
    # nothing of Jeanne anywhere in the archive
    text = everything(z).lower()
    for value in ("jeanne", "dupont", "33612345678", "crm-0002"):
        assert value not in text, value
    # encrypted, under the lifecycle rule of its TTL, the e-mail sent, the event emitted
    s = get_settings()
    key = f"exports/demo/{done['id']}.zip"
    assert aws_client("s3").head_object(Bucket=s.bucket("exports"),
                                        Key=key)["ServerSideEncryption"] == "aws:kms"
    assert len(mails_about(done["id"])) == 1
    assert [e["detail-type"] for e in event_log.for_request(done["id"])] == ["RequestCompleted"]
    # the download URL lives minutes, not days; after the archive's date: 410, although S3
    # still holds it (moto runs no lifecycle rule)
    d = api.get(f"/v1/requests/{done['id']}/download").json()
    assert clock.parse(d["expires_at"]) - clock.now() <= timedelta(minutes=15)
    assert d["archive_expires_at"] == result["expires_at"]
    clock.advance(timedelta(days=14, minutes=1))
    try:
        gone = api.get(f"/v1/requests/{done['id']}/download")
    finally:
        clock.reset()
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "export_expired"
    assert aws_client("s3").head_object(Bucket=s.bucket("exports"), Key=key)


def test_the_tenant_ttl_tags_the_archive_for_its_lifecycle_rule(api, subject, aws_client):
    from oblio.core import clock
    from oblio.core.settings import get_settings

    s3, bucket = aws_client("s3"), get_settings().bucket("exports")
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    by_tag = {r["Filter"]["And"]["Tags"][0]["Value"]: r["Expiration"]["Days"] for r in rules
              if r["Filter"].get("And", {}).get("Prefix") == "exports/"
              and r["Status"] == "Enabled"}
    assert by_tag == {"10": 10, "14": 14, "30": 30}
    bad = http.patch(api.base + "/v1/tenant", json={"settings": {"export_ttl_days": 7}},
                     headers={"Authorization": f"Bearer {api.key}"}, timeout=30)
    assert bad.status_code == 422 and "10, 14 or 30" in bad.json()["error"]["message"]
    for ttl in (10, 30):
        api_patch(api, {"export_ttl_days": ttl})
        try:
            done = export(api, {"email": subject["email"]})
        finally:
            api_patch(api, {"export_ttl_days": 14})
        assert done["status"] == "completed", done
        assert done["result"]["export"]["ttl_days"] == ttl
        days = clock.parse(done["result"]["expires_at"]) - clock.parse(done["completed_at"])
        assert timedelta(days=ttl - 1) < days <= timedelta(days=ttl)
        tags = s3.get_object_tagging(Bucket=bucket,
                                     Key=f"exports/demo/{done['id']}.zip")["TagSet"]
        assert tags == [{"Key": "oblio-ttl", "Value": str(ttl)}]


def test_export_with_include_children_puts_each_child_tenant_in_its_folder(api, child_api,
                                                                           dm):
    from infra.local import demo

    email = "lucia.verdi@example.com"
    demo.seed_subject(dm, "demo", email, "+393351119999")
    demo.seed_subject(dm, "demo-child", email, "+393351119999")
    done = export(api, {"email": email}, include_children=True)
    assert done["status"] == "completed", done
    assert done["result"]["tenants"]["demo-child"]["tables"]["contacts"]["exported"] == 1
    z = fetch(api, done["id"])
    subject = json.loads(z.read("subject.json"))
    child = subject["tenants"]["demo-child"]["tables"]
    assert child["contacts"]["items"][0]["email"] == email
    assert child["contacts"]["csv"] == "tenants/demo-child/contacts.csv"
    assert subject["tables"]["contacts"]["items"][0]["email"] == email
    names = z.namelist()
    assert "tenants/demo-child/contacts.csv" in names and "contacts.csv" in names
    assert len([n for n in names if n.startswith("tenants/demo-child/files/")]) == 3
    # the child tenant's own key does not see the parent's request
    assert child_api.get(f"/v1/requests/{done['id']}/download").status_code == 404


def test_download_is_409_until_finished_and_for_other_types(api, subject):
    lambdas.faults.inject(lambdas.Fault("plan", delay=1.5))
    r = api.post("/v1/requests", {"type": "access", "subject": {"email": subject["email"]}})
    rid = r.json()["request_id"]
    early = api.get(f"/v1/requests/{rid}/download")
    assert early.status_code == 409, early.text
    assert early.json()["error"]["code"] == "export_not_ready"
    assert api.wait(rid)["status"] == "completed"
    assert api.get(f"/v1/requests/{rid}/download").status_code == 200
    # a tenant that requires an export before anonymisation finds this one
    api_patch(api, {"require_export_before_anonymisation": True})
    try:
        anon = api.post("/v1/requests", {"type": "anonymisation", "confirm": True,
                                         "subject": {"email": subject["email"]}})
        assert anon.status_code == 202, anon.text
    finally:
        api_patch(api, {"require_export_before_anonymisation": False})
    other = anon.json()["request_id"]
    api.wait(other)
    r = api.get(f"/v1/requests/{other}/download")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "not_an_access_request"
    assert api.get("/v1/requests/01NOTAREQUEST0000000000000/download").status_code == 404


def api_patch(api: Any, settings: dict[str, Any]) -> None:
    r = http.patch(api.base + "/v1/tenant", json={"settings": settings},
                   headers={"Authorization": f"Bearer {api.key}"}, timeout=30)
    assert r.status_code == 200, r.text


def test_missing_file_completes_with_errors_and_is_listed(api, subject):
    from oblio.store import objects

    attachment = next(k for k in subject["files"] if "/attachments/" in k)
    objects.delete_all_versions([("demo-files", attachment)])
    done = export(api, {"email": subject["email"]})
    assert done["status"] == "completed_with_errors", done
    result = done["result"]
    assert result["totals"]["files_missing"] == 1 and result["export"]["files"] == 2
    missing = result["missing_files"]
    assert [(f["table"], f["attribute"]) for f in missing] == [("ticket_messages",
                                                                 "attachment_key")]
    z = fetch(api, done["id"])
    listed = json.loads(z.read("subject.json"))["files"]["missing"]
    assert [f["path"] for f in listed] == [missing[0]["path"]]
    assert missing[0]["path"] not in z.namelist()
    assert len([n for n in z.namelist() if n.startswith("files/")]) == 2


def test_unknown_subject_completes_with_an_archive_that_says_nothing_was_found(api):
    done = export(api, {"email": "nobody.here@example.org"})
    assert done["status"] == "completed", done
    assert done["result"]["found"] is False and done["result"]["export"]["items"] == 0
    z = fetch(api, done["id"])
    assert sorted(z.namelist()) == ["README.txt", "subject.json"]
    subject = json.loads(z.read("subject.json"))
    assert subject["found"] is False and subject["tables"] == {}
    assert "No data about you" in subject["message"]
    assert "No data about you" in z.read("README.txt").decode()


def test_access_request_input(api):
    r = api.post("/v1/requests", {"type": "access", "subject": JEANNE,
                                  "notify_email": "not an address"})
    assert r.status_code == 422
    assert r.json()["error"]["details"]["field"] == "notify_email"
    assert "not an address" not in r.json()["error"]["message"]
    r = api.post("/v1/requests", {"type": "erasure", "subject": JEANNE, "confirm": True,
                                  "notify_email": DPO})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "notify_email"
    plan = api.post("/v1/requests", {"type": "access", "subject": JEANNE, "dry_run": True})
    assert plan.status_code == 200, plan.text
    assert plan.json()["tables"]["contacts"]["action"] == "read"
    assert plan.json()["changed"] == 0
