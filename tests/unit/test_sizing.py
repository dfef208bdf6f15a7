"""How many chunks of a bulk job run at once: one worker per chunk, capped by the tenant's
`bulk_max_concurrency` and oblio's `bulk_concurrency`, never 0 (Step Functions reads a
MaxConcurrency of 0 as no limit)."""

from __future__ import annotations

import pytest

from oblio.core.bodies import TenantPatch, parse
from oblio.core.errors import Invalid
from oblio.jobs import sizing


@pytest.mark.parametrize("chunks, tenant_cap, global_cap, expected", [
    (1, None, 500, 1),          # a small job: one worker
    (2000, None, 500, 500),     # a million subjects: the global cap binds
    (37, None, 500, 37),        # one worker per chunk
    (2000, 40, 500, 40),        # the tenant's cap binds
    (2000, 900, 500, 500),      # a tenant cannot raise oblio's cap
    (10, 40, 500, 10),
    (0, None, 500, 1),          # never 0: that would be "unlimited"
    (0, 3, 500, 1),
])
def test_concurrency_is_one_worker_per_chunk_under_both_caps(chunks, tenant_cap,
                                                             global_cap, expected):
    assert sizing.concurrency(chunks, tenant_cap, global_cap) == expected


def test_the_tenant_cap_is_read_from_its_settings_and_absent_means_oblios_cap():
    assert sizing.job_concurrency(2000, {"bulk_max_concurrency": 25}, 500) == 25
    assert sizing.job_concurrency(2000, {"bulk_max_concurrency": None}, 500) == 500
    assert sizing.job_concurrency(2000, {}, 500) == 500


def test_the_tenant_setting_takes_a_whole_number_from_1_or_null():
    assert parse(TenantPatch, {"settings": {"bulk_max_concurrency": 40}}
                 ).settings.changes() == {"bulk_max_concurrency": 40}
    assert parse(TenantPatch, {"settings": {"bulk_max_concurrency": None}}
                 ).settings.changes() == {"bulk_max_concurrency": None}
    for bad in (0, -1, 10_001, "many"):
        with pytest.raises(Invalid, match="bulk_max_concurrency must be a whole number"):
            parse(TenantPatch, {"settings": {"bulk_max_concurrency": bad}})
