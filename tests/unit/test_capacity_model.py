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


def test_a_ledger_keyed_by_the_tenant_alone_binds_on_its_one_partitions_reads():
    a = dataclasses.replace(Assumptions(), ledger_shards=1)
    out = model(a)
    assert out["binding"] == "the consent ledger's partitions (consistent reads)"
    # 3,000 read units a second over a consistent read per identity: slower than the tables
    assert round(out["subjects_per_s"]) == round(3000 / a.ledger_queries)
    assert out["minutes"] > model(Assumptions())["minutes"]


def test_four_workers_take_hours_as_before_sizing():
    out = model(dataclasses.replace(Assumptions(), bulk_concurrency=4, lookup_concurrency=1))
    assert out["binding"] == "chunk workers" and out["minutes"] > 8 * 60


def test_a_worker_waiting_on_the_binding_limit_is_billed_and_the_needed_workers_are_not():
    crowded = model(Assumptions())
    sized = model(dataclasses.replace(Assumptions(), bulk_concurrency=crowded["workers_needed"]))
    assert crowded["billed_ms"] > crowded["subject_ms"]  # 500 workers wait on the partitions
    # the needed workers are a whole number: at most one worker's worth of waiting
    n = crowded["workers_needed"]
    assert sized["billed_ms"] <= sized["subject_ms"] * n / (n - 1)
    assert sized["cost_oblio"] < crowded["cost_oblio"]
    assert sized["minutes"] <= crowded["minutes"] * 1.05


def test_every_s3_call_is_priced_and_a_tenants_file_is_oblios_share_not_the_tables():
    """Two listings of a file's versions are $0.00001: the tenant's files, counted in oblio's
    share (all but the tenant's tables), as DeleteObject (free) is not; the ledger's
    consistent reads are a read unit each."""
    base = Assumptions()
    plain = model(dataclasses.replace(base, calls=plain_calls(base)))
    one_file = model(dataclasses.replace(base, calls={
        **plain_calls(base), "s3.ListObjectVersions": 2.0, "s3.DeleteObject": 1.0}))
    assert abs(one_file["cost_files"] - 2 * 0.005e-3) < 1e-12
    assert one_file["cost_tenant"] == plain["cost_tenant"]
    assert abs(one_file["cost_oblio"] - plain["cost_oblio"] - 2 * 0.005e-3) < 1e-12
    no_ledger = model(dataclasses.replace(base, ledger_queries=0.0))
    assert no_ledger["cost_own"] < model(base)["cost_own"]


def test_the_contracts_floor_is_under_what_the_job_costs_and_over_the_aim_on_17_items():
    """What every subject pays whatever the code (her items' writes, the searches, her files'
    listings, suppression, record, ledger, event) is under the modelled cost, and on the demo
    map's typical subject of 17 items already over $0.000015: the aim cannot be met by oblio's
    overhead alone (README, "Benchmarks")."""
    out = model(Assumptions())
    sized = model(dataclasses.replace(Assumptions(), bulk_concurrency=out["workers_needed"]))
    assert sized["cost_floor"] < sized["cost_per_subject"] < out["cost_per_subject"]
    assert sized["cost_floor"] > 0.000015


def plain_calls(a: Assumptions) -> dict[str, float]:
    return {k: v for k, v in a.calls.items() if not k.startswith("s3.")}
