"""Files by key template or prefix: every version of every object under the item's prefix
goes with it, nothing of a neighbour's prefix does, the export holds them, verification
lists the prefix again; the loader refuses a rule that could reach other subjects' files."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from oblio.core import datamap
from oblio.core.errors import DataMapError
from oblio.core.settings import DEMO_DATAMAP
from oblio.pipeline import apply, find, rules, verify

DEMO: dict[str, Any] = yaml.safe_load(DEMO_DATAMAP.read_text())
SUBJECT = "s_" + "1" * 40
RULES = [{"bucket": "files", "prefix": "{tenant}/people/{contact_id}/"},
         {"bucket": "files", "key": "{tenant}/avatars/{contact_id}.png"}]


def v2(edit=None) -> dict[str, Any]:
    data = copy.deepcopy(DEMO)
    data["version"] = 2
    data["tables"]["contacts"]["files"] = copy.deepcopy(RULES)
    if edit:
        edit(data)
    return data


def problems(edit) -> list[str]:
    with pytest.raises(DataMapError) as err:
        datamap.parse(v2(edit))
    return err.value.problems


def test_file_rules_render_from_the_tenant_and_the_item():
    dm = datamap.parse(v2())
    t = dm.tables["contacts"]
    refs = find.file_refs(dm, t, [{"tenant_id": "acme", "contact_id": "c1"},
                                  {"tenant_id": "acme"}], "acme")
    assert refs == {"prefixes": [("demo-files", "acme/people/c1/")],
                    "templated": [("demo-files", "acme/avatars/c1.png")],
                    "unresolved": 2}  # the second item has no contact_id: no prefix at all


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d.update(version=1), "'files' (objects by key template or prefix) needs "
                                    "version: 2"),
    (lambda d: d["tables"]["contacts"]["files"][0].update(bucket="nowhere"),
     "files #1: bucket 'nowhere' is not declared"),
    (lambda d: d["tables"]["contacts"]["files"][0].update(key="{tenant}/x/{contact_id}"),
     "files #1: give exactly one of 'key' (a key template) or 'prefix'"),
    (lambda d: d["tables"]["contacts"]["files"][0].update(prefix="{tenant}/p/{person}/"),
     "files #1: template '{tenant}/p/{person}/' names '{person}', which is not an attribute"),
    (lambda d: d["tables"]["contacts"]["files"][0].update(prefix="{tenant}/p/{contact_id}"),
     "must end with '/' after its last field"),
    (lambda d: d["tables"]["contacts"]["files"][0].update(prefix="{tenant}/people/"),
     "names no attribute of the item"),
    (lambda d: d["tables"]["contacts"]["files"][1].update(key="{tenant}/{contact_id"),
     "files #2: '{tenant}/{contact_id': unbalanced braces"),
])
def test_the_loader_refuses_a_file_rule_it_cannot_apply(edit, expected):
    found = problems(edit)
    assert any(expected in p for p in found), found
    assert all(p.startswith("table 'contacts'") for p in found)


@pytest.fixture(scope="module")
def files(module_aws) -> str:
    from oblio.store import aws as oblio_aws

    s3 = oblio_aws.client("s3")
    s3.create_bucket(Bucket="demo-files",
                     CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_versioning(Bucket="demo-files", VersioningConfiguration={"Status": "Enabled"})
    return "demo-files"


def _seed(tenant: str, files: str) -> dict[str, Any]:
    from oblio.store import aws as oblio_aws
    from oblio.store import tables as store

    s3 = oblio_aws.client("s3")
    mine = [f"{tenant}/people/c1/id-card.pdf", f"{tenant}/people/c1/contracts/2024.pdf",
            f"{tenant}/avatars/c1.png"]
    theirs = [f"{tenant}/people/c10/id-card.pdf", f"{tenant}/people/c1.pdf",
              f"{tenant}/avatars/c10.png"]
    for key in mine + theirs:
        s3.put_object(Bucket=files, Key=key, Body=b"v1")
        s3.put_object(Bucket=files, Key=key, Body=b"v2")
    s3.delete_object(Bucket=files, Key=mine[1])  # a delete marker over two versions
    item = {"tenant_id": tenant, "contact_id": "c1", "email": f"c1@{tenant}.example"}
    store.batch_put("demo-contacts", [item])
    return {"item": item, "mine": mine, "theirs": theirs}


def _keys_left(files: str, tenant: str) -> set[str]:
    from oblio.store import aws as oblio_aws

    resp = oblio_aws.client("s3").list_object_versions(Bucket=files, Prefix=f"{tenant}/")
    return {v["Key"] for v in resp.get("Versions", []) + resp.get("DeleteMarkers", [])}


def test_erasure_deletes_every_version_under_the_prefix_and_nothing_beside_it(
        module_aws, tenant, files, keys):
    dm = datamap.parse(v2())
    t = dm.tables["contacts"]
    seeded = _seed(tenant, files)
    unit = rules.Unit(tenant, "contacts")
    manifest = {"keys": [find.key_of(t, seeded["item"])], "s3": [],
                **find.file_refs(dm, t, [seeded["item"]], tenant)}
    before = verify.check_unit(dm, "erase", unit, manifest, "r1")
    assert before["files"]["prefix"] == {"prefixes": 1, "left": 2}
    assert before["files"]["key_template"] == {"objects": 1, "left": 1}
    counts = apply.apply_unit(dm, "erase", unit, manifest, keys, SUBJECT, "r1")
    assert counts["deleted"] == 1 and counts["files_deleted"] == 3
    assert _keys_left(files, tenant) == set(seeded["theirs"])
    after = verify.check_unit(dm, "erase", unit, manifest, "r1")
    assert after == {"checked": 1, "items_remaining": 0, "files_remaining": 0,
                     "files": {"pointer": {"objects": 0, "left": 0},
                               "key_template": {"objects": 1, "left": 0},
                               "prefix": {"prefixes": 1, "left": 0}}}


def test_the_export_holds_every_current_object_under_the_prefix(module_aws, tenant, files):
    from oblio.access.collect import TablePart

    dm = datamap.parse(v2())
    seeded = _seed(tenant, files)
    got = TablePart(dm, "contacts", "").rule_files(seeded["item"], tenant)
    # the contract under a delete marker is not a current object: it is not exported
    assert sorted(f["key"] for f in got) == [f"{tenant}/avatars/c1.png",
                                             f"{tenant}/people/c1/id-card.pdf"]
    assert [f.get("optional") for f in got if "avatars" in f["key"]] == [True]
    assert len({f["path"] for f in got}) == 2


@pytest.mark.parametrize("count, single, batched", [(2, 2 * 3, 0), (12, 0, 1)])
def test_a_few_versions_go_one_free_delete_each_many_in_one_batch(
        module_aws, tenant, files, count, single, batched):
    """S3 bills no DELETE but bills DeleteObjects (a POST) as a PUT-class request: a
    subject's few file versions are deleted one by one, many in DeleteObjects of 1,000."""
    from oblio.store import aws as oblio_aws
    from oblio.store import objects

    s3 = oblio_aws.client("s3")
    keys = [f"{tenant}/many/{i}.pdf" for i in range(count)]
    for key in keys:
        s3.put_object(Bucket=files, Key=key, Body=b"v1")
    if count * 3 <= objects.SINGLE_DELETES:  # three versions each: still few
        for key in keys:
            s3.put_object(Bucket=files, Key=key, Body=b"v2")
            s3.delete_object(Bucket=files, Key=key)  # a delete marker on top
    with oblio_aws.counting() as io_:
        assert objects.delete_all_versions([(files, k) for k in keys]) == count
    assert io_.calls.get("s3.DeleteObject", 0) == single
    assert io_.calls.get("s3.DeleteObjects", 0) == batched
    assert _keys_left(files, tenant) == set()


def test_a_version_s3_refuses_to_delete_is_tried_again(module_aws, tenant, files,
                                                        monkeypatch):
    from botocore.exceptions import ClientError

    from oblio.store import aws as oblio_aws
    from oblio.store import objects

    s3 = oblio_aws.client("s3")
    key = f"{tenant}/slow.pdf"
    s3.put_object(Bucket=files, Key=key, Body=b"v1")
    real, refused = s3.delete_object, []

    def slow_down_once(**kwargs: Any) -> Any:
        if not refused:
            refused.append(kwargs["Key"])
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow"}},
                              "DeleteObject")
        return real(**kwargs)

    monkeypatch.setattr(s3, "delete_object", slow_down_once)
    monkeypatch.setattr(objects.aws, "bucket_client", lambda bucket: s3)
    assert objects.delete_all_versions([(files, key)]) == 1
    assert refused == [key] and _keys_left(files, tenant) == set()


def test_a_batch_error_naming_no_version_is_tried_again_with_its_versions(module_aws, tenant,
                                                                           files, monkeypatch):
    """A key alone would only put a delete marker over a versioned object: what is tried
    again after a DeleteObjects error is each version asked for, never a bare key."""
    from oblio.store import aws as oblio_aws
    from oblio.store import objects

    s3 = oblio_aws.client("s3")
    keys = [f"{tenant}/batch/{i}.pdf" for i in range(objects.SINGLE_DELETES + 1)]
    for key in keys:
        s3.put_object(Bucket=files, Key=key, Body=b"v1")
    real, singles = s3.delete_objects, []

    def refuses_the_first_by_key(**kwargs: Any) -> Any:
        out = real(**{**kwargs, "Delete": {**kwargs["Delete"], "Objects": [
            o for o in kwargs["Delete"]["Objects"] if o["Key"] != keys[0]]}})
        return {**out, "Errors": [{"Key": keys[0], "Code": "SlowDown"}]}

    def single(**kwargs: Any) -> Any:
        singles.append(kwargs)
        return s3.__class__.delete_object(s3, **kwargs)

    monkeypatch.setattr(s3, "delete_objects", refuses_the_first_by_key)
    monkeypatch.setattr(s3, "delete_object", single)
    monkeypatch.setattr(objects.aws, "bucket_client", lambda bucket: s3)
    assert objects.delete_all_versions([(files, k) for k in keys]) == len(keys)
    assert len(singles) == 1 and singles[0]["Key"] == keys[0] and singles[0].get("VersionId")
    assert _keys_left(files, tenant) == set()


def test_a_files_versions_left_are_found_by_one_head_each_and_a_listing_only_when_needed(
        module_aws, tenant, files, monkeypatch):
    """Verification's check of a file: a HEAD (a GET-class request) settles a key with
    nothing left (404, no delete marker) and a key with a current version (200); a delete
    marker on top, which may hide older versions, or a refused HEAD is settled by listing the
    key's versions. Each case counts what is really left."""
    from botocore.exceptions import ClientError

    from oblio.store import aws as oblio_aws
    from oblio.store import objects

    s3 = oblio_aws.client("s3")
    gone, current, hidden, marker_only, older = (f"{tenant}/check/{n}.pdf" for n in (
        "gone", "current", "hidden", "marker-only", "older"))
    for key in (gone, current, hidden, marker_only, older):
        s3.put_object(Bucket=files, Key=key, Body=b"v1")
    for key in (gone, marker_only, hidden):
        s3.delete_object(Bucket=files, Key=key)  # a delete marker over the version
    for key in (gone, marker_only):  # then the version deleted: a marker alone is left
        for v in s3.list_object_versions(Bucket=files, Prefix=key)["Versions"]:
            s3.delete_object(Bucket=files, Key=key, VersionId=v["VersionId"])
    for m in s3.list_object_versions(Bucket=files, Prefix=gone)["DeleteMarkers"]:
        s3.delete_object(Bucket=files, Key=gone, VersionId=m["VersionId"])  # nothing left
    newer = s3.put_object(Bucket=files, Key=older, Body=b"v2")["VersionId"]
    s3.delete_object(Bucket=files, Key=older, VersionId=newer)  # the older one is current

    def left(keys: list[str]) -> tuple[int, dict[str, int]]:
        with oblio_aws.counting() as io_:
            n = objects.versions_left([(files, k) for k in keys])
        return n, {op: c for op, c in io_.calls.items() if op.startswith("s3.")}

    assert left([gone]) == (0, {"s3.HeadObject": 1})
    assert left([current, older]) == (2, {"s3.HeadObject": 2})
    assert left([hidden]) == (1, {"s3.HeadObject": 1, "s3.ListObjectVersions": 1})
    assert left([marker_only]) == (1, {"s3.HeadObject": 1, "s3.ListObjectVersions": 1})

    real = s3.head_object

    def refused(**kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"},
                           "ResponseMetadata": {"HTTPStatusCode": 403}}, "HeadObject")

    monkeypatch.setattr(s3, "head_object", refused)
    monkeypatch.setattr(objects.aws, "bucket_client", lambda bucket: s3)
    assert objects.versions_left([(files, gone), (files, hidden)]) == 1  # listed instead
    monkeypatch.setattr(s3, "head_object", real)
