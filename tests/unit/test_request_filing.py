"""Filing a request under concurrency and faults (issue 14, found by the fault suite): a create
whose transaction is refused is a repeat of the open request only when a condition refused it
and that request's marker is there to name it. The open request ending between the refused
transaction and the read of its marker, a throttle or a conflicting transaction made
`POST /v1/requests` answer 500 (DoesNotExist, or the transaction's error); now the create
files the request."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pynamodb.exceptions import TransactWriteError

from oblio.control import records
from oblio.control.tenants import Principal
from oblio.core.bodies import REQUEST, parse
from oblio.core.errors import TransientError
from oblio.rights import intake
from oblio.store import workflows
from oblio.store.models import RequestModel
from tests.unit import world

pytestmark = pytest.mark.usefixtures("provisioned")
_n = itertools.count()


@pytest.fixture
def t(provisioned, demo_map, monkeypatch) -> Any:
    monkeypatch.setattr(workflows, "start", lambda *a, **k: "arn:aws:states:local:exec")
    tenant = world.new_tenant(f"filing-{next(_n)}")
    world.seed(demo_map, tenant.tenant_id, "ada@example.com", "+393331234500", "CRM-9")
    return tenant


def who(tenant_id: str) -> Principal:
    return Principal(tenant_id, "key_unit", frozenset({"admin"}), False)


def erase(tenant_id: str) -> Any:
    return intake.create(who(tenant_id), parse(REQUEST, {
        "type": "erasure", "subject": {"email": "ada@example.com"}, "confirm": True}))


def test_an_open_request_that_ends_meanwhile_does_not_make_the_next_create_fail(t, monkeypatch):
    first = erase(t.tenant_id)
    assert first.created
    opened = records.load(t.tenant_id, first.body["request_id"])
    real_get = RequestModel.get

    def get(*args: Any, **kwargs: Any) -> Any:
        # the open request ends right after the second create's transaction was refused
        if str(args[1]).startswith("open#"):
            records.release_open(opened)
        return real_get(*args, **kwargs)

    monkeypatch.setattr(RequestModel, "get", get)
    second = erase(t.tenant_id)
    assert second.created, second.body  # a new request, not a 500 (DoesNotExist)
    assert second.body["request_id"] != first.body["request_id"]


def _throttled() -> TransactWriteError:
    cause = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"},
                         "ResponseMetadata": {"HTTPStatusCode": 400}}, "TransactWriteItems")
    return TransactWriteError("Failed to write transaction items", cause=cause)


def test_a_throttled_filing_transaction_is_tried_again(t, monkeypatch):
    from pynamodb.connection import Connection

    real = Connection.transact_write_items
    calls = {"n": 0}

    def flaky(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise _throttled()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "transact_write_items", flaky)
    filed = erase(t.tenant_id)
    assert filed.created and calls["n"] >= 3  # two refused, then filed (and audited)
    assert records.load(t.tenant_id, filed.body["request_id"]).status == "queued"


def test_a_filing_transaction_throttled_for_good_is_transient_not_an_internal_error(
        t, monkeypatch):
    from pynamodb.connection import Connection

    def throttled(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise _throttled()

    monkeypatch.setattr(Connection, "transact_write_items", throttled)
    monkeypatch.setattr(records, "INSERT_TRIES", 2)
    with pytest.raises(TransientError):  # 503 at the API, the client sends it again
        erase(t.tenant_id)
