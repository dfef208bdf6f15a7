"""The capacity model of a million-subject bulk job (tests/bench/capacity.py) names the limit
that binds as the assumptions change: the arithmetic behind the README's figures."""

from __future__ import annotations

import dataclasses

from tests.bench.capacity import Assumptions, model


def test_with_sharded_tables_and_one_audit_append_per_chunk_a_million_take_under_30_min():
    out = model(Assumptions())
    assert out["minutes"] < 30 and out["express_margin"] > 1
    assert out["binding"] != "audit chain"


def test_one_audit_append_per_subject_binds_at_50_subjects_a_second():
    out = model(dataclasses.replace(Assumptions(), audit="per-subject"))
    assert out["binding"] == "audit chain" and round(out["subjects_per_s"]) == 50
    assert out["express_margin"] < 1  # a chunk would outlast the Express limit


def test_unsharded_oblio_tables_bind_at_one_partition():
    out = model(dataclasses.replace(Assumptions(), shards=1, tenant_partitions=1000))
    assert out["binding"] == "oblio's partitions (requests, suppression)"
    assert round(out["subjects_per_s"]) == round(1000 / 3)


def test_four_workers_take_hours_as_before_sizing():
    out = model(dataclasses.replace(Assumptions(), bulk_concurrency=4))
    assert out["binding"] == "chunk workers" and out["minutes"] > 8 * 60
