"""The local stack's shim of moto's ListObjectVersions (infra/local/moto_s3): with it, a listing
answers what moto answers without it (versions, delete markers, common prefixes, pages), and
it copies only the keys under the prefix."""

from __future__ import annotations

import copy

import boto3
import pytest
from moto import mock_aws

from infra.local import moto_s3

REGION = "us-east-1"
KEYS = ["a/1.txt", "a/1.txt", "a/2.txt", "a/sub/3.txt", "ab.txt", "b/1.txt", "b/2.txt",
        "b/2.txt", "c.txt"]


def _bucket() -> boto3.client:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="files")
    s3.put_bucket_versioning(Bucket="files", VersioningConfiguration={"Status": "Enabled"})
    for i, key in enumerate(KEYS):
        s3.put_object(Bucket="files", Key=key, Body=f"body {i}".encode())
    s3.delete_object(Bucket="files", Key="b/1.txt")  # a delete marker on top
    return s3


def _pages(s3: boto3.client, **kw: object) -> list[dict[str, object]]:
    out, marker = [], {}
    while True:
        page = s3.list_object_versions(Bucket="files", **kw, **marker)
        out.append({k: [(v["Key"], v["VersionId"], v["IsLatest"]) for v in page.get(k, [])]
                    for k in ("Versions", "DeleteMarkers")}
                   | {"prefixes": [p["Prefix"] for p in page.get("CommonPrefixes", [])],
                      "truncated": page["IsTruncated"]})
        if not page["IsTruncated"]:
            return out
        marker = {"KeyMarker": page["NextKeyMarker"],
                  "VersionIdMarker": page.get("NextVersionIdMarker", "")}


LISTINGS = [{"Prefix": "a/"}, {"Prefix": "a"}, {"Prefix": "b/1.txt"}, {"Prefix": "nothing"},
            {"Prefix": ""}, {}, {"Prefix": "a/", "Delimiter": "/"},
            {"Prefix": "a", "MaxKeys": 1}, {"Prefix": "b/", "MaxKeys": 2}]


@mock_aws
@pytest.mark.parametrize("kw", LISTINGS, ids=[str(k) for k in LISTINGS])
def test_a_listing_with_the_shim_answers_what_moto_answers(kw):
    s3 = _bucket()
    assert not moto_s3._installed, "another test left the shim installed"
    plain = _pages(s3, **kw)
    moto_s3.install()
    try:
        assert _pages(s3, **kw) == plain
    finally:
        moto_s3.uninstall()


@mock_aws
def test_a_prefix_listing_copies_only_the_keys_under_the_prefix(monkeypatch):
    s3 = _bucket()
    copied: list[str] = []
    real = copy.deepcopy

    def counting(obj, memo=None):
        if isinstance(obj, list) and obj and hasattr(obj[0], "name"):
            copied.append(obj[0].name)
        return real(obj, memo)

    monkeypatch.setattr("moto.s3.models.copy.deepcopy", counting)
    s3.list_object_versions(Bucket="files", Prefix="b/")
    assert sorted(copied) == sorted(set(KEYS))  # moto alone: every key of the bucket
    copied.clear()
    moto_s3.install()
    try:
        got = s3.list_object_versions(Bucket="files", Prefix="b/")
    finally:
        moto_s3.uninstall()
    assert sorted(copied) == ["b/1.txt", "b/2.txt"]
    assert [v["Key"] for v in got["Versions"]] == ["b/1.txt", "b/2.txt", "b/2.txt"]
    assert [m["Key"] for m in got["DeleteMarkers"]] == ["b/1.txt"]
