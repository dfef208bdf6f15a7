"""Bulk erasure and a retention sweep on the HR example (examples/hr: one table in
single-table design, key templates, entity types by sort-key prefix, files by prefix and
pointer, an author role, the payslip exemption), over HTTP as a client: a CSV of four
employees (one of whom also wrote a review about a colleague who stays) and one stranger goes
up through the presigned URL; then a policy deletes the reviews older than a date, dry run
first, then confirmed. After each, raw scans of every item and every object version: nothing
of the erased people left beyond the payslips the law keeps (0 residue), nothing else
changed (0 collateral)."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests as http
from boto3.dynamodb.types import TypeDeserializer

from tests.integration.mapstack import call

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hr"
ACME = "TENANT#acme#EMP#"
ADA, GRACE, E3, E5 = f"{ACME}E0001", f"{ACME}E0002", f"{ACME}E0003", f"{ACME}E0005"
#: written by E0005 about E0006, who stays: only what names the author goes
G6 = (f"{ACME}E0006", "REVIEW#2024-G6")
_de = TypeDeserializer()


def items(hr: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for page in hr["ddb"].get_paginator("scan").paginate(TableName="hr-main"):
        for raw in page["Items"]:
            item = {k: _de.deserialize(v) for k, v in raw.items()}
            out[(item["pk"], item["sk"])] = item
    return out


def versions(hr: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for page in hr["s3"].get_paginator("list_object_versions").paginate(Bucket="hr-files"):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            out.setdefault(v["Key"], []).append(v["VersionId"])
    return out


def people_files(emp: str) -> set[str]:
    """The files of a named employee that go with her (not her payslips)."""
    return {f"acme/employees/{emp}/id-card.pdf", f"acme/employees/{emp}/contract.pdf",
            f"acme/photos/{emp}.jpg", f"acme/annexes/{emp}-nda.pdf",
            f"acme/annexes/{emp}-car.pdf"}


@pytest.fixture(scope="module")
def hr(map_stack: Any) -> Iterator[dict[str, Any]]:
    with map_stack(EXAMPLE / "map.yaml", EXAMPLE / "fixtures", ("acme", "globex")) as world:
        yield world


def wait(hr: dict[str, Any], path: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got: dict[str, Any] = call(hr, "acme", "GET", path).json()
        if got["status"] in ("completed", "completed_with_errors", "failed"):
            return got
        time.sleep(0.5)
    pytest.fail(f"{path} did not end")


@pytest.fixture(scope="module")
def bulk(hr: dict[str, Any]) -> dict[str, Any]:
    """Ada, Grace, E0003 and E0005 (employees of the generated data, whose e-mails the
    fixtures hold) and a stranger, erased by one CSV."""
    before, vb = items(hr), versions(hr)
    e3_email, e5_email = before[(E3, "PROFILE")]["email"], before[(E5, "PROFILE")]["email"]
    content = ("email\nada.lovelace@example.com\ngrace.hopper@example.com\n"
               f"{e3_email}\n{e5_email}\nnobody.here@example.com\n").encode()
    r = call(hr, "acme", "POST", "/v1/bulk-erasures", {})
    assert r.status_code == 201, r.text
    assert http.put(r.json()["upload_url"], data=content, timeout=60).status_code == 200
    job = wait(hr, f"/v1/bulk-erasures/{r.json()['job_id']}")
    report = http.get(job["report_url"], timeout=60).text if job.get("report_url") else ""
    return {"before": before, "vb": vb, "after": items(hr), "va": versions(hr), "job": job,
            "report": report, "rows": list(csv.DictReader(io.StringIO(report))),
            "e3_email": e3_email, "e5_email": e5_email}


def test_a_bulk_erasure_on_the_hr_example_counts_each_line(bulk):
    job = bulk["job"]
    assert job["status"] == "completed", job
    assert (job["rows_total"], job["erased"], job["not_found"]) == (5, 4, 1), job
    outcomes = [r["outcome"] for r in bulk["rows"]]
    assert outcomes == ["erased", "erased", "erased", "erased", "not_found"], bulk["report"]


def test_the_bulk_report_counts_the_payslips_as_retained_not_erased(hr, bulk):
    erased = [r for r in bulk["rows"] if r["outcome"] == "erased"]
    assert [r["retained"] for r in erased] == ["3", "3", "3", "3"], bulk["report"]
    ada, grace, e3, e5 = erased
    # Ada: profile, the review about her; Grace: profile, the review about her (by Ada);
    # E0003: profile, the review about him (by Grace); and the reviews they wrote, in role
    assert (ada["deleted"], grace["deleted"], e3["deleted"]) == ("2", "2", "2"), bulk["report"]
    # E0005: his profile; the review he wrote about E0006, anonymised in his role
    assert (e5["deleted"], e5["anonymised"]) == ("1", "1"), bulk["report"]
    assert int(ada["files_deleted"]) == 5 and int(e3["files_deleted"]) == 1, bulk["report"]
    assert "@" not in bulk["report"]
    got = call(hr, "acme", "GET", f"/v1/requests/{ada['request_id']}").json()
    r = got["result"]
    assert got["status"] == "completed" and r["verification"]["passed"] is True, r
    assert r["retained"] == 3 and r["tables"]["payslips"]["retained"] == 3
    assert r["tables"]["payslips"]["deleted"] == 0
    assert r["certificate"]["retained"] == 3
    assert "Art. 17(3)(b)" in json.dumps(r["certificate"]["exemptions"])


def test_a_bulk_erasure_leaves_no_residue_of_the_people_but_their_payslips(bulk):
    after, va, e3_email = bulk["after"], bulk["va"], bulk["e3_email"]
    for pk in (ADA, GRACE, E3, E5):
        left = sorted(k[1] for k in after if k[0] == pk)
        assert left == ["PAYSLIP#2024-01", "PAYSLIP#2024-02", "PAYSLIP#2024-03"], (pk, left)
        assert all("employee_name" not in after[(pk, s)] for s in left)
    for pk, sk in after:  # the reviews they wrote about others no longer name them
        if sk.startswith("REVIEW#") and pk.startswith(ACME):
            assert after[(pk, sk)].get("author_id") not in ("E0001", "E0002", "E0003",
                                                            "E0005")
    wrote = after[G6]  # E0006's review stays, without its author's id, index key or name
    assert "author_id" not in wrote and "gsi2pk" not in wrote
    assert wrote["author_name"].startswith("Reviewer ") and wrote["comments"] == "Solid quarter"
    acme = json.dumps([i for k, i in after.items() if k[0].startswith(ACME)], default=str)
    for trace in ("ada.lovelace", "Ada Lovelace", "grace.hopper", "Grace Hopper", e3_email,
                  bulk["e5_email"]):
        assert trace not in acme, trace
    # a generated name may be another employee's too: E0003's is checked on his items
    e3_name = bulk["before"][(E3, "PROFILE")]["name"]
    assert e3_name not in json.dumps([i for k, i in after.items() if k[0] == E3], default=str)
    gone = people_files("E0001") | people_files("E0002") | {
        f"acme/employees/{e}/id-card.pdf" for e in ("E0003", "E0005")}
    assert gone <= set(bulk["vb"]) and not gone & set(va)  # no version, no delete marker
    slips = {f"acme/payslips/{e}/2024-0{m}.pdf" for e in ("E0001", "E0002") for m in (1, 2, 3)}
    assert slips <= set(va)                                # kept by law


def test_a_bulk_erasure_changes_nothing_of_anyone_else(bulk):
    before, after = bulk["before"], bulk["after"]
    erased = {(pk, "PROFILE") for pk in (ADA, GRACE, E3, E5)} | {
        (ADA, "REVIEW#2024-R1"), (GRACE, "REVIEW#2024-R2"), (E3, "REVIEW#2024-G3")}
    slips = {(pk, f"PAYSLIP#2024-0{m}") for pk in (ADA, GRACE, E3, E5) for m in (1, 2, 3)}
    assert set(before) - set(after) == erased and set(after) <= set(before)
    assert {k for k in after if after[k] != before[k]} == slips | {G6}
    assert {k: v for k, v in after[G6].items() if k not in ("author_name", "_oblio_anonymised")
            and not k.startswith("_oblio")} == {
        k: v for k, v in before[G6].items() if k not in ("author_id", "author_name", "gsi2pk")}
    gone = people_files("E0001") | people_files("E0002") | {
        f"acme/employees/{e}/id-card.pdf" for e in ("E0003", "E0005")}
    assert {k: v for k, v in bulk["vb"].items() if k not in gone} == bulk["va"]
    assert after[("TENANT#globex#EMP#E0001", "PROFILE")]["email"] == "ada.lovelace@example.com"


@pytest.fixture(scope="module")
def swept(hr: dict[str, Any], bulk: dict[str, Any]) -> dict[str, Any]:
    """acme's policy "delete reviews dated before 2022": a dry run, then a confirmed run."""
    policy = {"table": "reviews", "older_than": "2022-01-01", "action": "delete",
              "description": "reviews older than the retention schedule allows"}
    r = call(hr, "acme", "PUT", "/v1/retention-policies/old-reviews", policy)
    assert r.status_code == 201, r.text
    # the application also files absences (an entity the map does not cover) in the same
    # sweep index: a sweep of reviews must not touch them
    for emp, month in (("E0010", "2019-03"), ("E0011", "2018-11")):
        hr["ddb"].put_item(TableName="hr-main", Item={
            "pk": {"S": f"{ACME}{emp}"}, "sk": {"S": f"ABSENCE#{month}"},
            "entity": {"S": "absence"}, "tenant_id": {"S": "acme"},
            "employee_id": {"S": emp}, "reviewed_at": {"S": f"{month}-02"},
            "sweep_bucket": {"S": f"acme#{month}"}})
    before = items(hr)
    dry = call(hr, "acme", "POST", "/v1/retention-policies/old-reviews/run", {"dry_run": True})
    assert dry.status_code == 200, dry.text
    after_dry = items(hr)
    unconfirmed = call(hr, "acme", "POST", "/v1/retention-policies/old-reviews/run", {})
    run = call(hr, "acme", "POST", "/v1/retention-policies/old-reviews/run", {"confirm": True})
    assert run.status_code == 202, run.text
    sweep = wait(hr, f"/v1/retention-sweeps/{run.json()['sweep_id']}")
    return {"before": before, "dry": dry.json(), "after_dry": after_dry,
            "unconfirmed": unconfirmed, "sweep": sweep, "after": items(hr)}


def old_reviews(items_: dict[tuple[str, str], dict[str, Any]], tenant: str) -> set[Any]:
    return {k for k, i in items_.items() if k[1].startswith("REVIEW#")
            and i["tenant_id"] == tenant and i["reviewed_at"] < "2022-01-01"}


def test_a_retention_dry_run_counts_the_old_reviews_and_changes_nothing(swept):
    want = old_reviews(swept["before"], "acme")
    assert len(want) == 25  # every other generated review of acme is from 2019
    assert swept["dry"]["tables"]["reviews"]["would_delete"] == len(want), swept["dry"]
    assert swept["dry"]["io"]["dynamodb.Scan"] == 0
    assert swept["after_dry"] == swept["before"]
    assert swept["unconfirmed"].status_code == 422, swept["unconfirmed"].text


def test_a_retention_sweep_deletes_exactly_the_old_reviews_of_the_tenant(swept):
    before, after, sweep = swept["before"], swept["after"], swept["sweep"]
    assert sweep["status"] == "completed", sweep
    want = old_reviews(before, "acme")
    assert set(before) - set(after) == want
    assert not old_reviews(after, "acme")
    assert old_reviews(after, "globex") == old_reviews(before, "globex") != set()
    assert all(after[k] == before[k] for k in after)  # profiles, payslips, newer reviews
    assert (f"{ACME}E0010", "ABSENCE#2019-03") in after  # another entity type in the index
    assert sweep["tables"]["reviews"]["deleted"] == len(want), sweep
    assert sweep["io"]["dynamodb.Scan"] == 0
