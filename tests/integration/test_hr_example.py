"""The HR example (examples/hr) as the README runs it: `oblio local up --datamap
examples/hr/map.yaml --no-demo --fixtures examples/hr/fixtures --tenant acme --tenant globex`,
then, over HTTP as a client: search, an access export holding every file of the subject, an
erasure and an anonymisation; after each, raw scans of every item and every object version
of the local AWS: nothing of the subject is left beyond what the law keeps (0 residue) and
nothing of anyone else changed (0 collateral)."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests as http
from boto3.dynamodb.types import TypeDeserializer

from tests.integration.mapstack import call

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "hr"
ADA, GRACE = "TENANT#acme#EMP#E0001", "TENANT#acme#EMP#E0002"
ADA_FILES = {"acme/employees/E0001/id-card.pdf", "acme/employees/E0001/contract.pdf",
             "acme/photos/E0001.jpg", "acme/annexes/E0001-nda.pdf",
             "acme/annexes/E0001-car.pdf"}
ADA_SLIPS = {f"acme/payslips/E0001/2024-0{m}.pdf" for m in (1, 2, 3)}
_de = TypeDeserializer()


@pytest.fixture(scope="module")
def hr(map_stack: Any) -> Iterator[dict[str, Any]]:
    with map_stack(EXAMPLE / "map.yaml", EXAMPLE / "fixtures", ("acme", "globex")) as world:
        # a second version of each of Ada's files: every version must go
        for key in ADA_FILES:
            world["s3"].put_object(Bucket="hr-files", Key=key, Body=b"second version")
        world["items0"], world["versions0"] = items(world), versions(world)
        yield world


def run(hr: dict[str, Any], tenant: str, body: dict[str, Any]) -> dict[str, Any]:
    filed = call(hr, tenant, "POST", "/v1/requests", body)
    assert filed.status_code == 202, filed.text
    request_id = filed.json()["request_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got: dict[str, Any] = call(hr, tenant, "GET", f"/v1/requests/{request_id}").json()
        if got["status"] not in ("received", "queued", "running", "finishing"):
            return got
        time.sleep(0.5)
    pytest.fail(f"request {request_id} did not end")


def items(hr: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every item of the table, by its key."""
    out = {}
    for page in hr["ddb"].get_paginator("scan").paginate(TableName="hr-main"):
        for raw in page["Items"]:
            item = {k: _de.deserialize(v) for k, v in raw.items()}
            out[(item["pk"], item["sk"])] = item
    return out


def versions(hr: dict[str, Any]) -> dict[str, list[str]]:
    """Every object version and delete marker of the bucket, by key."""
    out: dict[str, list[str]] = {}
    pages = hr["s3"].get_paginator("list_object_versions").paginate(Bucket="hr-files")
    for page in pages:
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            out.setdefault(v["Key"], []).append(v["VersionId"])
    return out


def test_local_up_creates_the_single_table_its_indexes_and_loads_the_example(hr):
    out = hr["output"]
    assert "created table hr-main (4 indexes)" in out, out
    assert "created bucket hr-files (versioned)" in out
    assert "fixtures: 1302 items in 1 table, 321 files" in out
    employees = [k for k in hr["items0"] if k[1] == "PROFILE"]
    assert len(employees) == 300  # 150 a tenant


def test_search_finds_each_entity_by_its_key_template_in_the_callers_tenant_only(hr):
    acme = call(hr, "acme", "GET", "/v1/subjects", email="ada.lovelace@example.com").json()
    t = acme["tables"]
    assert (t["employees"]["count"], t["payslips"]["count"], t["reviews"]["count"]) == (1, 3, 1)
    assert t["reviews"]["roles"]["author"]["count"] == 1
    assert t["employees"]["keys"] == [{"pk": ADA, "sk": "PROFILE"}]
    assert t["employees"]["files"] == 3 and t["employees"]["file_prefixes"] == 1
    assert all(k["pk"].startswith("TENANT#acme#") for v in t.values() for k in v["keys"])
    assert acme["queries"] == 4  # one Query per find value, none without the tenant
    globex = call(hr, "globex", "GET", "/v1/subjects", email="ada.lovelace@example.com").json()
    assert [k["pk"] for k in globex["tables"]["employees"]["keys"]] == [
        "TENANT#globex#EMP#E0001"]
    assert globex["tables"]["reviews"]["count"] == 0
    nobody = call(hr, "acme", "GET", "/v1/subjects", email="nobody@example.com").json()
    assert nobody["found"] is False and nobody["total"] == 0


def test_her_export_holds_every_file_of_hers_and_nothing_of_globex(hr):
    done = run(hr, "acme", {"type": "access", "subject": {"email": "ada.lovelace@example.com"}})
    assert done["status"] == "completed", done
    d = call(hr, "acme", "GET", f"/v1/requests/{done['id']}/download")
    assert d.status_code == 200, d.text
    z = zipfile.ZipFile(io.BytesIO(http.get(d.json()["url"], timeout=30).content))
    files = [n for n in z.namelist() if n.startswith("files/")]
    # the prefix's two files, the photo pointer, two annexes, three payslip PDFs
    assert len(files) == len(ADA_FILES) + len(ADA_SLIPS), files
    for key in ADA_FILES | ADA_SLIPS:
        assert any(n.endswith(key.rsplit("/", 1)[1]) for n in files), key
    assert done["result"].get("missing_files", []) == []
    text = "\n".join(z.read(n).decode("utf-8", "replace") for n in z.namelist()
                     if not n.startswith("files/"))
    assert "ada.lovelace@example.com" in text and "globex" not in text
    assert "Grace ships compilers on time" not in text  # about Grace: redacted in her role


def test_her_erasure_leaves_no_residue_and_no_collateral(hr):
    done = run(hr, "acme", {"type": "erasure", "subject": {"email": "ada.lovelace@example.com"},
                            "confirm": True})
    assert done["status"] == "completed", done
    r = done["result"]
    assert r["found"] is True and r["verification"]["passed"] is True
    assert r["retained"] == 3 and r["tables"]["payslips"]["retained"] == 3
    assert r["certificate"]["retained"] == 3
    assert "Art. 17(3)(b)" in json.dumps(r["certificate"])
    before, after = hr["items0"], items(hr)
    va = versions(hr)
    # residue: her profile and the review about her are gone; payslips stay without her name
    assert (ADA, "PROFILE") not in after and (ADA, "REVIEW#2024-R1") not in after
    slips = {k: i for k, i in after.items() if k[0] == ADA}
    assert sorted(k[1] for k in slips) == ["PAYSLIP#2024-01", "PAYSLIP#2024-02",
                                           "PAYSLIP#2024-03"]
    assert all("employee_name" not in i for i in slips.values())
    wrote = after[(GRACE, "REVIEW#2024-R2")]
    assert "author_id" not in wrote and "gsi2pk" not in wrote
    assert wrote["author_name"].startswith("Reviewer ")
    acme_text = json.dumps([i for k, i in after.items() if k[0].startswith("TENANT#acme#")],
                           default=str)
    for trace in ("ada.lovelace", "Ada Lovelace", "London", "Partner of Ada"):
        assert trace not in acme_text, trace
    assert not ADA_FILES & set(va)             # no version, no delete marker left
    assert ADA_SLIPS.issubset(va)              # kept by law
    # collateral: every other item and every other object version as it was
    expected = {(ADA, "PROFILE"), (ADA, "REVIEW#2024-R1"), (GRACE, "REVIEW#2024-R2"),
                *((ADA, f"PAYSLIP#2024-0{m}") for m in (1, 2, 3))}
    assert {k for k in before if before[k] != after.get(k)} == expected
    assert set(after) <= set(before)
    assert {k: v for k, v in hr["versions0"].items() if k not in ADA_FILES} == va
    assert after[("TENANT#globex#EMP#E0001", "PROFILE")]["email"] == "ada.lovelace@example.com"


def test_a_subject_found_nowhere_is_not_called_erased(hr):
    done = run(hr, "acme", {"type": "erasure", "subject": {"email": "ada.lovelace@example.com"},
                            "confirm": True})
    r = done["result"]
    assert r["found"] is False and r["certificate"]["found"] is False
    assert r["verification"]["passed"] is None


def test_grace_anonymisation_reaches_the_review_adas_erasure_marked(hr):
    before = items(hr)
    vb = versions(hr)
    done = run(hr, "acme", {"type": "anonymisation",
                            "subject": {"email": "grace.hopper@example.com"}, "confirm": True})
    assert done["status"] == "completed", json.dumps(done["result"]["verification"])
    assert done["result"]["verification"]["passed"] is True
    after, va = items(hr), versions(hr)
    prof = after[(GRACE, "PROFILE")]
    assert "email" not in prof and "gsi1pk" not in prof and "street" not in prof["address"]
    assert prof["name"].startswith("Employee ") and "phone" not in prof["emergency_contact"]
    about = after[(GRACE, "REVIEW#2024-R2")]   # written by Ada, about Grace: a second pass
    assert "comments" not in about
    wrote = after[("TENANT#acme#EMP#E0003", "REVIEW#2024-G3")]  # she wrote it about E0003
    assert "gsi2pk" not in wrote and wrote["comments"] == "Solid quarter"
    assert not {k for k in va if k.startswith("acme/employees/E0002/")}
    assert "acme/photos/E0002.jpg" not in va
    # her payslips are retained (Art. 17(3)(b)) without the name printed on them
    slips = [i for k, i in after.items() if k[0] == GRACE and k[1].startswith("PAYSLIP#")]
    assert len(slips) == 3 and all("employee_name" not in i and i["gross"] for i in slips)
    assert done["result"]["retained"] == 3
    text = json.dumps([i for k, i in after.items() if k[0].startswith("TENANT#acme#")],
                      default=str)
    assert "grace.hopper" not in text and "Grace Hopper" not in text
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed == {(GRACE, "PROFILE"), (GRACE, "REVIEW#2024-R2"),
                       ("TENANT#acme#EMP#E0003", "REVIEW#2024-G3"),
                       *((GRACE, f"PAYSLIP#2024-0{m}") for m in (1, 2, 3))}, changed
    grace_files = {k for k in vb if k.startswith("acme/") and "E0002" in k
                   and not k.startswith("acme/payslips/")}
    assert {k: v for k, v in vb.items() if k not in grace_files} == va
