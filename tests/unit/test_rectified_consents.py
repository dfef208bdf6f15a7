"""A rectified identity takes its consent ledger with it (issue 16, item 9): after the e-mail
is rectified, the new address has the history and the current states, the old one has none;
the audit entry counts the records moved and holds no value; a move cut short is finished by
running it again."""

from __future__ import annotations

import pytest

from oblio.control import audit, ledger
from oblio.control.tenants import get_tenant
from tests.unit import world

pytestmark = pytest.mark.usefixtures("provisioned")

OLD, NEW = "mario@example.com", "mario.rossi@example.org"


@pytest.fixture
def mario(demo_map, t):
    world.seed(demo_map, t.tenant_id, OLD, "+393331234567", "CRM-1")
    assert ledger.seed_demo(t.tenant_id, OLD) == 3
    return get_tenant(t.tenant_id)


def rectify(t, changes):
    rid = world.new_request(t, "rectification", {"email": OLD}, action="rectify",
                            changes=changes)
    return rid, world.run(rid, t.tenant_id, "rectify")


def test_rectifying_the_email_moves_the_consent_history_to_the_new_address(t, mario):
    before = ledger.subject_ledger(mario, {"email": OLD})
    rid, done = rectify(t, {"email": NEW})
    assert done["status"] == "completed"
    after = ledger.subject_ledger(mario, {"email": NEW})
    assert after["found"] is True
    assert [e["event_id"] for e in after["history"]] == \
        [e["event_id"] for e in before["history"]]
    assert [e["hash"] for e in after["history"]] == [e["hash"] for e in before["history"]]
    assert after["state"] == before["state"]
    assert after["state"]["marketing"]["status"] == "withdrawn"
    old = ledger.subject_ledger(mario, {"email": OLD})
    assert old["found"] is False and old["history"] == []
    rows, _ = audit.entries(t.tenant_id, newest_first=False)
    (entry,) = [e for e in map(audit.to_json, rows) if e.get("request_id") == rid]
    # 3 events and 2 states
    assert entry["details"]["consent_records_moved"] == 5
    assert "mario" not in repr(entry)


def test_a_rectification_of_another_attribute_leaves_the_ledger_where_it_is(t, mario):
    _, done = rectify(t, {"city": "Genova"})
    assert done["status"] == "completed"
    assert len(ledger.subject_ledger(mario, {"email": OLD})["history"]) == 3


def test_a_newer_state_of_the_new_address_is_kept_and_the_history_merged(t, mario):
    ledger.append(mario, ledger.subject_keys(mario, {"email": NEW}), None,
                  {"purpose": "marketing", "status": "granted", "channel": "web"},
                  recorded_by="test")
    rectify(t, {"email": NEW})
    after = ledger.subject_ledger(mario, {"email": NEW})
    assert after["state"]["marketing"]["status"] == "granted"  # the newer one
    assert len(after["history"]) == 4


def test_a_move_cut_short_is_finished_by_running_it_again(t, mario):
    from oblio.store.models import ConsentModel

    macs = [mario.keys.hmac("email", OLD)]
    new = mario.keys.hmac("email", NEW)
    # the copies were written, the deletion of the old records did not happen
    for m in ledger.records_of(t.tenant_id, f"email#{macs[0]}"):
        ConsentModel(**{**m.attribute_values, "pk": None,
                        "sk": f"email#{new}" + m.sk[len(f"email#{macs[0]}"):]}).save()
    assert ledger.move_identity(t.tenant_id, "email", macs, new) == 5
    assert ledger.subject_ledger(mario, {"email": OLD})["found"] is False
    assert len(ledger.subject_ledger(mario, {"email": NEW})["history"]) == 3
