"""What an `s3:` attribute points to, read the one way (`core.pointers`), and what the erasure,
its verification and the export do with each shape: a list or set of keys, an S3 URL, a value
that names no file oblio can read. Before, only a plain key and a `{bucket, key}` map were
followed: an erasure over a list or a URL deleted nothing there and still said `passed`, and
an export left the file out without listing it missing."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest

from oblio.access import collect, deliver, package
from oblio.control import records
from oblio.core import pointers
from oblio.core.pointers import Pointer
from oblio.core.settings import get_settings
from oblio.pipeline import plan
from oblio.store import aws
from oblio.store import tables as store
from tests.unit import world

OWN, DECLARED = "demo-files", {"demo-files", "demo-avatars"}
EMAIL = "mario@example.com"


# -- reading a value ---------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("a/b.pdf", [Pointer("file", OWN, "a/b.pdf")]),
    ({"key": "a/b.pdf"}, [Pointer("file", OWN, "a/b.pdf")]),
    ({"bucket": "demo-avatars", "key": "x.png"}, [Pointer("file", "demo-avatars", "x.png")]),
    ({"bucket": "someone-elses", "key": "x.png"},
     [Pointer("outside", "someone-elses", "x.png")]),
    ("s3://demo-files/a/b c.pdf", [Pointer("file", OWN, "a/b c.pdf")]),
    ("s3://someone-elses/x.png", [Pointer("outside", "someone-elses", "x.png")]),
    # an s3:// URL's key is everything after the bucket, '#' and '?' included
    ("s3://demo-files/a/scan#2.pdf", [Pointer("file", OWN, "a/scan#2.pdf")]),
    ("s3://demo-files/a/b?v=2.pdf", [Pointer("file", OWN, "a/b?v=2.pdf")]),
    # a plain key that holds '://' further on is a key
    ("imports/https://cdn.example.org/a.png",
     [Pointer("file", OWN, "imports/https://cdn.example.org/a.png")]),
    ("https://demo-files.s3.eu-west-1.amazonaws.com/a/b%20c.pdf",
     [Pointer("file", OWN, "a/b c.pdf")]),
    ("https://demo-files.s3.amazonaws.com/a.pdf", [Pointer("file", OWN, "a.pdf")]),
    ("https://s3.eu-west-1.amazonaws.com/demo-avatars/x.png",
     [Pointer("file", "demo-avatars", "x.png")]),
    (["a.pdf", {"key": "b.pdf"}], [Pointer("file", OWN, "a.pdf"), Pointer("file", OWN, "b.pdf")]),
    ({"a.pdf"}, [Pointer("file", OWN, "a.pdf")]),
    # what names no file oblio can tell is said so, never taken for none
    (42, [Pointer("unreadable")]),
    ({"bucket": "demo-files"}, [Pointer("unreadable")]),
    ("https://cdn.example.org/a.pdf", [Pointer("unreadable")]),
    ("s3://demo-files", [Pointer("unreadable")]),
    # and what names nothing is nothing
    (None, []), ("", []), ([], []),
])
def test_a_pointer_value_is_read_as_the_files_it_names(value: Any,
                                                       expected: list[Pointer]) -> None:
    assert pointers.read(value, OWN, DECLARED) == expected


# -- erasure and its verification --------------------------------------------------------------


def _document(tenant_id: str) -> dict[str, Any]:
    return next(i for i in world.items("demo-documents", tenant_id) if i.get("s3_key"))


def _versions(bucket: str, key: str) -> list[Any]:
    got = aws.client("s3").list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in got.get("Versions", []) + got.get("DeleteMarkers", [])
            if v["Key"] == key]


@pytest.mark.usefixtures("provisioned")
@pytest.mark.parametrize("shape", ["list", "set", "s3 url", "https url"])
def test_an_erasure_deletes_every_version_of_a_file_named_by_any_shape(demo_map: Any, t: Any,
                                                                      shape: str) -> None:
    world.seed(demo_map, t.tenant_id, EMAIL, "+393331234567", "CRM-1")
    bucket = demo_map.buckets["files"]
    doc = _document(t.tenant_id)
    key = doc["s3_key"]
    assert _versions(bucket, key)
    value = {"list": [key], "set": {key}, "s3 url": f"s3://{bucket}/{key}",
             "https url": f"https://{bucket}.s3.eu-west-1.amazonaws.com/{key}"}[shape]
    store.batch_put("demo-documents", [{**doc, "s3_key": value}])

    rid = world.new_request(t, "erasure", {"email": EMAIL}, action="erase")
    view = world.run(rid, t.tenant_id, "erase")

    assert _versions(bucket, key) == []  # before: every version still there
    v = view["result"]["verification"]
    assert (view["status"], v["passed"], v["files_remaining"]) == ("completed", True, 0)
    assert v["checked"]["files"]["pointer"]["unreadable"] == 0


@pytest.mark.usefixtures("provisioned")
def test_a_pointer_that_names_no_readable_file_fails_the_verification(demo_map: Any,
                                                                     t: Any) -> None:
    world.seed(demo_map, t.tenant_id, EMAIL, "+393331234567", "CRM-1")
    doc = _document(t.tenant_id)
    store.batch_put("demo-documents", [{**doc, "s3_key": "https://cdn.example.org/x.pdf"}])

    rid = world.new_request(t, "erasure", {"email": EMAIL}, action="erase")
    view = world.run(rid, t.tenant_id, "erase")

    v = view["result"]["verification"]
    assert view["status"] == "completed_with_errors" and v["passed"] is False
    assert v["checked"]["files"]["pointer"]["unreadable"] == 1
    assert v["files_remaining"] >= 1


# -- export ------------------------------------------------------------------------------------

def _export(t: Any, rid: str) -> tuple[dict[str, Any], zipfile.ZipFile]:
    for u in plan.plan(rid, t.tenant_id, "export")["units"]:
        collect.collect(rid, t.tenant_id, u)
    package.package(rid, t.tenant_id)
    deliver.finish(rid, t.tenant_id)
    body = aws.client("s3").get_object(Bucket=get_settings().bucket("exports"),
                                       Key=f"exports/{t.tenant_id}/{rid}.zip")["Body"].read()
    return records.to_json(records.load(t.tenant_id, rid)), zipfile.ZipFile(io.BytesIO(body))


@pytest.mark.usefixtures("provisioned")
def test_an_export_holds_each_file_of_a_list_and_lists_what_it_cannot_read(demo_map: Any,
                                                                          t: Any) -> None:
    world.seed(demo_map, t.tenant_id, EMAIL, "+393331234567", "CRM-1")
    listed = _document(t.tenant_id)
    store.batch_put("demo-documents", [{**listed, "s3_key": [listed["s3_key"]]}])
    rid = world.new_request(t, "access", {"email": EMAIL}, action="export")
    view, zf = _export(t, rid)
    assert view["result"]["export"]["files_missing"] == 0
    assert any(n.startswith("files/documents/") and n.endswith(listed["s3_key"].split("/")[-1])
               for n in zf.namelist())  # before: left out, and not listed missing

    store.batch_put("demo-documents", [{**listed, "s3_key": 7}])
    rid = world.new_request(t, "access", {"email": EMAIL}, action="export")
    view, zf = _export(t, rid)
    assert (view["status"], view["result"]["export"]["files_missing"]) == (
        "completed_with_errors", 1)
    [subject] = [n for n in zf.namelist() if n.endswith("subject.json")]
    [gone] = json.loads(zf.read(subject))["files"]["missing"]
    assert (gone["table"], gone["reason"]) == ("documents",
                                               "its value names no file oblio can read")
