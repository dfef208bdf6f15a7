"""The local event pump delivers like EventBridge's asynchronous invocation: a failed delivery
is tried twice more, then kept as a dead letter that can be read."""

from __future__ import annotations

import json

from infra.local.stack import dead_letter, deliver


def test_a_delivery_that_fails_once_is_retried_and_delivered():
    calls = []

    def invoke(payload: bytes) -> dict:
        calls.append(payload)
        return {"FunctionError": "Unhandled"} if len(calls) == 1 else {"StatusCode": 200}

    assert deliver(invoke, b"{}", wait=lambda s: None) == (True, 2, "")


def test_a_delivery_that_always_fails_is_tried_three_times_then_dead_lettered(tmp_path):
    calls = []

    def invoke(payload: bytes) -> dict:
        calls.append(payload)
        raise ConnectionError("down")

    ok, tries, error = deliver(invoke, b"{}", wait=lambda s: None)
    assert (ok, tries, error, len(calls)) == (False, 3, "ConnectionError", 3)
    path = tmp_path / "dead.jsonl"
    dead_letter(path, "events", "bulk_start", '{"job": "J1"}', tries, error)
    (row,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert (row["function"], row["attempts"], row["body"]) == ("bulk_start", 3, '{"job": "J1"}')
