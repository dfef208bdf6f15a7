"""What the console asks of the domain: the data map summarised for its forms."""

from __future__ import annotations

import json

from oblio.core import datamap
from oblio.core.settings import DEMO_DATAMAP


def test_datamap_summary_lists_tables_in_walk_order_without_physical_names():
    dm = datamap.load(DEMO_DATAMAP)
    s = datamap.summary(dm)
    assert [t["name"] for t in s["tables"]] == dm.order
    text = json.dumps(s)
    assert not any(f'"{t.table}"' in text for t in dm.tables.values() if t.table not in dm.tables)
    assert not any(b in text for b in dm.buckets.values())
    tickets = next(t for t in s["tables"] if t["name"] == "tickets")
    assert tickets["on_erase"] == "anonymise"  # the shell is kept for reporting
    assert s["objection_purposes"] == ["marketing"]
    pending = {t["name"] for t in s["tables"] if t["pending_deliveries"]}
    assert pending == {"subscriptions", "scheduled_recipients"}


def test_datamap_summary_offers_identities_and_contact_attributes_to_rectify():
    s = datamap.summary(datamap.load(DEMO_DATAMAP))
    assert s["rectifiable"][:3] == ["email", "phone", "external_id"]
    assert {"city", "last_name", "address"} <= set(s["rectifiable"])
    assert "contact_id" not in s["rectifiable"] and "status" not in s["rectifiable"]
