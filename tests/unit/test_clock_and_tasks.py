"""Due dates in calendar months; task errors scrubbed of identities before they leave."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from oblio.core import clock
from oblio.core.boundary import caught, scrub


@pytest.mark.parametrize("start, months, due", [
    (datetime(2026, 1, 31), 1, datetime(2026, 2, 28)),
    (datetime(2028, 1, 31), 1, datetime(2028, 2, 29)),   # a leap year
    (datetime(2026, 3, 31), 1, datetime(2026, 4, 30)),
    (datetime(2026, 1, 31), 3, datetime(2026, 4, 30)),
    (datetime(2026, 11, 23), 2, datetime(2027, 1, 23)),  # over the year's end
    (datetime(2026, 12, 31), 1, datetime(2027, 1, 31)),
    (datetime(2026, 3, 31), -1, datetime(2026, 2, 28)),
    (datetime(2026, 1, 15), -1, datetime(2025, 12, 15)),
    (datetime(2026, 5, 17), 0, datetime(2026, 5, 17)),
])
def test_add_months_keeps_the_day_or_clamps_to_the_months_end(start, months, due):
    assert clock.add_months(start, months) == due


def test_add_months_keeps_time_and_zone():
    start = datetime(2026, 1, 31, 13, 45, tzinfo=UTC)
    assert clock.add_months(start, 1) == datetime(2026, 2, 28, 13, 45, tzinfo=UTC)


def test_iso_is_utc_with_milliseconds_and_parses_back():
    dt = datetime(2026, 1, 31, 23, 59, 58, 123456, tzinfo=UTC)
    assert clock.iso(dt) == "2026-01-31T23:59:58.123Z"
    assert clock.parse(clock.iso(dt)) == dt.replace(microsecond=123000)


def test_the_clock_moves_forward_and_back():
    try:
        before = clock.now()
        clock.advance(timedelta(days=30))
        assert clock.now() - before >= timedelta(days=30)
    finally:
        clock.reset()
    assert clock.now() - before < timedelta(days=1)


@pytest.mark.parametrize("message, gone", [
    ("no item for mario.rossi@example.com in table demo-contacts", "mario.rossi@example.com"),
    ("phone +39 333 123 4567 not found in table demo-contacts", "333 123 4567"),
    ("phone +393331234567 not found in table demo-contacts", "+393331234567"),
    ("phone (02) 1234-5678 not found in table demo-contacts", "1234-5678"),
    ("key {'email': 'jeanne.dupont@example.com'} in table demo-contacts",
     "jeanne.dupont@example.com"),
])
def test_scrub_removes_emails_and_phone_numbers_from_a_message(message, gone):
    out = scrub(message)
    assert gone not in out and "table demo-contacts" in out
    assert "[email]" in out or "[number]" in out


def test_scrub_keeps_short_numbers_and_ids_that_say_what_went_wrong():
    msg = "ConditionalCheckFailed on request 01JABCDXYZ after 3 attempts (HTTP 400)"
    assert scrub(msg) == msg


def test_scrub_cuts_long_messages():
    assert len(scrub("x" * 5000)) == 1000


def test_caught_reads_a_lambda_error_from_the_state_machines_catch():
    cause = json.dumps({"errorType": "TransientError", "errorMessage": "throttled"})
    assert caught({"Error": "Lambda.Unknown", "Cause": cause}) == ("TransientError",
                                                                   "throttled")
    assert caught({"Error": "States.Timeout", "Cause": "took too long"}) == (
        "States.Timeout", "took too long")


def _throttled(code: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "slow down"},
                        "ResponseMetadata": {"HTTPStatusCode": 400}}, "GetItem")


@pytest.mark.parametrize("wrapper", ["GetError", "QueryError", "PutError", "UpdateError"])
def test_a_throttle_surfacing_from_pynamodb_leaves_the_task_as_a_transient_error(wrapper):
    import pynamodb.exceptions as pe

    from oblio.core.boundary import TaskEvent, task

    def step(ev: TaskEvent) -> dict:
        raise getattr(pe, wrapper)("Failed", cause=_throttled(
            "ProvisionedThroughputExceededException"))

    with pytest.raises(Exception) as got:
        task(step)({"request_id": "R", "tenant_id": "t"}, None)
    assert type(got.value).__name__ == "TransientError"  # what the ASL's Retry matches


def test_a_real_error_keeps_its_name_at_the_task_boundary():
    from oblio.core.boundary import TaskEvent, task, transient

    def step(ev: TaskEvent) -> dict:
        raise KeyError("no such table")

    with pytest.raises(Exception) as got:
        task(step)({"request_id": "R", "tenant_id": "t"}, None)
    assert type(got.value).__name__ == "KeyError"
    assert not transient(_throttled("ConditionalCheckFailedException"))


@pytest.mark.parametrize("error", ["PutError", "GetError", "QueryError", "UpdateError",
                                   "DeleteError", "ScanError", "TransactWriteError"])
@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException",
                                  "ThrottlingException", "InternalServerError"])
def test_a_throttle_pynamodb_wraps_is_a_transient_error_at_the_task_boundary(error, code):
    from botocore.exceptions import ClientError
    from pynamodb import exceptions

    from oblio.core.boundary import task, transient

    cause = ClientError({"Error": {"Code": code, "Message": "slow down"}}, "Op")
    exc = getattr(exceptions, error)("Failed", cause=cause)
    assert transient(exc)

    @task
    def step(ev):
        raise exc

    with pytest.raises(Exception) as raised:
        step({"request_id": "R1", "tenant_id": "acme"}, None)
    assert type(raised.value).__name__ == "TransientError"  # what the workflows retry


def test_a_transaction_cancelled_by_a_throttle_is_transient_and_by_a_condition_is_not():
    from pynamodb.exceptions import CancellationReason, TransactWriteError, VerboseClientError

    from oblio.core.boundary import transient

    def cancelled(*codes):
        reasons = [CancellationReason(code=c) if c else None for c in codes]
        cause = VerboseClientError({"Error": {"Code": "TransactionCanceledException",
                                              "Message": "cancelled"}}, "TransactWriteItems",
                                   cancellation_reasons=reasons)
        return TransactWriteError("Failed", cause=cause)

    assert transient(cancelled(None, "ThrottlingError"))
    assert transient(cancelled("TransactionConflict"))
    assert not transient(cancelled("ConditionalCheckFailed", None))


def test_a_fault_that_outlasted_the_retries_is_logged_with_its_code_and_retry_account():
    import pynamodb.exceptions as pe
    from botocore.exceptions import ClientError

    from oblio.core.boundary import fault_of

    quota = ClientError({"Error": {"Code": "ThrottlingException",
                                   "Message": "no item for mario@example.com"},
                         "ResponseMetadata": {"HTTPStatusCode": 400, "RetryAttempts": 3,
                                              "RetryQuotaReached": True}}, "TransactWriteItems")
    got = fault_of(pe.PutError("Failed", cause=quota))
    assert got == {"raised": "PutError", "cause": "ClientError", "code": "ThrottlingException",
                   "operation": "TransactWriteItems", "status": 400, "attempts": 3,
                   "max_attempts_reached": False, "retry_quota_reached": True}
    assert "mario" not in json.dumps(got)  # the message can quote a key: never logged
    assert fault_of(ConnectionError("reset")) == {"raised": "ConnectionError"}
    # an error handled on the way is not the fault's when the raise left it out
    try:
        try:
            raise quota
        except ClientError:
            raise ConnectionError("reset") from None
    except ConnectionError as exc:
        assert fault_of(exc) == {"raised": "ConnectionError"}
