"""Dead letters, read from the local stack's file and from a deployment's queue (in-process
moto SQS), by kind: what can be sent again (a rule's function, an asynchronous invocation's
record) is sent with its own event and leaves; the rest stays, saying what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import deadletters as dl

FN = "arn:aws:lambda:eu-west-1:123456789012:function:oblio-bulk_start"
UPLOAD = {"detail": {"bucket": {"name": "oblio-ingest"}, "object": {"key": "bulk/acme/x.csv"}}}


def _async_record() -> str:
    # the shape of Lambda's on-failure destination record
    return json.dumps({"version": "1.0", "timestamp": "2026-12-08T00:00:00.000Z",
                       "requestContext": {"requestId": "r1", "functionArn": f"{FN}:$LATEST",
                                          "condition": "RetriesExhausted",
                                          "approximateInvokeCount": 3},
                       "requestPayload": UPLOAD,
                       "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
                       "responsePayload": {"errorType": "TransientError"}})


def _stream_record() -> str:
    return json.dumps({"requestContext": {"condition": "RetryAttemptsExhausted"},
                       "DDBStreamBatchInfo": {"shardId": "s", "startSequenceNumber": "1"},
                       "timestamp": "2026-12-08T00:00:01.000Z"})


def test_each_kind_of_queue_message_is_told_apart():
    a = dl.from_message({"Body": _async_record(), "ReceiptHandle": "h1"})
    assert (a.kind, a.function, a.error, a.sendable) == (
        "async", "oblio-bulk_start", "TransientError", True)
    assert json.loads(a.event or "") == UPLOAD
    r = dl.from_message({"Body": json.dumps(UPLOAD), "ReceiptHandle": "h2",
                         "MessageAttributes": {
                             "RULE_ARN": {"StringValue": "arn:aws:events:...:rule/x"},
                             "TARGET_ARN": {"StringValue": FN},
                             "ERROR_CODE": {"StringValue": "SDK_CLIENT_ERROR"}}})
    assert (r.kind, r.function, r.sendable) == ("rule", "oblio-bulk_start", True)
    machine = dl.from_message({"Body": "{}", "MessageAttributes": {"TARGET_ARN": {
        "StringValue": "arn:aws:states:eu-west-1:1:stateMachine:oblio-erasure"}}})
    assert (machine.kind, machine.sendable) == ("rule", False)
    s = dl.from_message({"Body": _stream_record()})
    assert (s.kind, s.sendable) == ("stream", False)
    assert dl.from_message({"Body": "not json"}).kind == "queue"


def test_a_queues_letters_sent_again_leave_it_and_the_others_stay_visible(aws):
    from oblio.store import aws as oblio_aws

    sqs = oblio_aws.client("sqs")
    url = sqs.create_queue(QueueName="oblio-dead-letters")["QueueUrl"]
    for body in (_async_record(), _stream_record(), _async_record()):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    letters = dl.from_queue(sqs, url)
    assert sorted(x.kind for x in letters) == ["async", "async", "stream"]
    calls: list[tuple[str, bytes]] = []
    answers = iter([None, "TooManyRequestsException"])

    def invoke(function: str, payload: bytes) -> str | None:
        calls.append((function, payload))
        return next(answers)

    sent, failed = dl.send(letters, invoke)
    assert [json.loads(p) for _, p in calls] == [UPLOAD, UPLOAD]
    assert len(sent) == 1 and [e for _, e in failed] == ["TooManyRequestsException"]
    for x in sent:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=x.where)
    dl.release(sqs, url, [x for x in letters if x not in sent])
    left = dl.from_queue(sqs, url)  # visible again at once, not after 5 minutes
    assert sorted(x.kind for x in left) == ["async", "stream"]


def test_the_local_files_letters_sent_leave_it_and_a_line_written_meanwhile_stays(
        tmp_path: Path):
    from infra.local.stack import dead_letter

    path = tmp_path / "dead-letters.jsonl"
    dead_letter(path, "bulk-uploads", "bulk_start", json.dumps(UPLOAD), 3, "RuntimeError")
    dead_letter(path, "stream:typed-contacts", "shadow_stream", '{"eventID": "e1"}', 3, "x")
    letters = dl.from_file(path, lambda fn: f"oblio-{fn}")
    assert [(x.kind, x.function) for x in letters] == [("async", "oblio-bulk_start"),
                                                       ("stream", None)]
    sent, failed = dl.send(letters, lambda fn, payload: None)
    assert [x.function for x in sent] == ["oblio-bulk_start"] and failed == []
    # the stack appends another while the command works
    dead_letter(path, "bulk-uploads", "bulk_start", json.dumps(UPLOAD), 3, "Later")
    dl.rewrite_file(path, sent)
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(k["queue"], k["error"]) for k in kept] == [("stream:typed-contacts", "x"),
                                                        ("bulk-uploads", "Later")]


def test_redrive_only_of_one_function(tmp_path: Path):
    from infra.local.stack import dead_letter

    path = tmp_path / "dl.jsonl"
    dead_letter(path, "bulk-uploads", "bulk_start", "{}", 3, "e")
    dead_letter(path, "nightly", "sweep_schedule", "{}", 3, "e")
    got: list[str] = []

    def invoke(fn: str, payload: Any) -> None:
        got.append(fn)

    dl.send(dl.from_file(path, lambda fn: f"p-{fn}"), invoke, only="sweep_schedule")
    assert got == ["p-sweep_schedule"]


@pytest.mark.parametrize("line", ["not json", "[]"])
def test_a_line_that_is_not_a_dead_letter_is_listed_not_dropped(tmp_path: Path, line: str):
    path = tmp_path / "dl.jsonl"
    path.write_text(line + "\n")
    letters = dl.from_file(path, lambda fn: fn)
    assert len(letters) == 1 and not letters[0].sendable
