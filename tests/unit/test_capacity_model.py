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
    a = dataclasses.replace(Assumptions(), shards=1, tenant_partitions=1000)
    out = model(a)
    assert out["binding"] == "oblio's partitions (requests, suppression)"
    # one partition's 1,000 write units a second over the larger of a subject's writes there
    assert round(out["subjects_per_s"]) == round(1000 / max(a.request_wcu, a.suppression_wcu))


def test_four_workers_take_hours_as_before_sizing():
    out = model(dataclasses.replace(Assumptions(), bulk_concurrency=4, lookup_concurrency=1))
    assert out["binding"] == "chunk workers" and out["minutes"] > 8 * 60


def test_a_worker_waiting_on_the_binding_limit_is_billed_and_the_needed_workers_are_not():
    crowded = model(Assumptions())
    sized = model(dataclasses.replace(Assumptions(), bulk_concurrency=crowded["workers_needed"]))
    assert crowded["billed_ms"] > crowded["subject_ms"]  # 500 workers wait on the partitions
    assert sized["billed_ms"] <= sized["subject_ms"] * 1.01
    assert sized["cost_oblio"] < crowded["cost_oblio"]
    assert sized["minutes"] <= crowded["minutes"] * 1.05
