"""The local stack's Lambda sandboxes (infra/local/sandboxes.py): each invocation runs in a warm
worker process, one at a time; errors come back as the handler raised them, a worker that dies
is replaced, the calls it made are handed to the listeners, and the fault checks of the
dispatcher still come first."""

from __future__ import annotations

import json
import os
import threading
from types import SimpleNamespace

import pytest

from infra.local import lambdas, sandboxes

H = "tests.unit.sandbox_handlers."


@pytest.fixture
def pool():
    p = sandboxes.Pool()
    yield p
    p.close()


def test_an_invocation_runs_in_another_process_and_its_worker_is_kept_warm(pool):
    first = json.loads(pool.invoke("p-echo", H + "echo", "arn:echo", {"n": 1}))
    assert first["event"] == {"n": 1} and first["function"] == "p-echo"
    assert first["pid"] != os.getpid()
    second = json.loads(pool.invoke("p-echo", H + "echo", "arn:echo", {"n": 2}))
    assert second["pid"] == first["pid"] and pool.started == 1


def test_concurrent_invocations_get_a_worker_each(pool):
    pids: list[int] = []
    threads = [threading.Thread(target=lambda: pids.append(json.loads(
        pool.invoke("p-slow", H + "slow", "arn:slow", {"seconds": 1}))["pid"]))
        for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(set(pids)) == 2 and pool.started == 2
    pool.invoke("p-slow", H + "slow", "arn:slow", {"seconds": 0})
    assert pool.started == 2  # both warm: the third found one idle


def test_a_handlers_error_is_raised_by_its_name_and_the_worker_serves_on(pool):
    with pytest.raises(Exception) as caught:
        pool.invoke("p-boom", H + "boom", "arn:boom", {})
    assert type(caught.value).__name__ == "ValueError"
    assert "the field 'email'" in str(caught.value)
    assert json.loads(pool.invoke("p-echo", H + "echo", "arn:echo", {}))["function"] == "p-echo"
    assert pool.started == 1


def test_a_worker_that_dies_is_reported_and_replaced(pool):
    with pytest.raises(sandboxes.SandboxDied, match="exit code 3"):
        pool.invoke("p-die", H + "die", "arn:die", {})
    assert json.loads(pool.invoke("p-echo", H + "echo", "arn:echo", {}))["function"] == "p-echo"
    assert pool.started == 2


def test_the_calls_of_an_invocation_reach_the_listeners(pool):
    heard: list[dict] = []
    sandboxes.on_calls.append(heard.append)
    try:
        pool.invoke("p-calls", H + "calls", "arn:calls", {})
        pool.invoke("p-echo", H + "echo", "arn:echo", {})
    finally:
        sandboxes.on_calls.remove(heard.append)
    assert heard[0]["s3.ListBuckets"][0] == 2
    assert heard[1] == {}  # counted per invocation: the next one starts from nothing


def test_closed_workers_end_and_a_closed_pool_refuses(pool):
    pid = json.loads(pool.invoke("p-echo", H + "echo", "arn:echo", {}))["pid"]
    pool.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(sandboxes.SandboxDied, match="closed"):
        pool.invoke("p-echo", H + "echo", "arn:echo", {})


def test_the_dispatcher_checks_its_faults_before_the_sandbox_and_answers_as_aws(pool):
    d = lambdas.Dispatcher("p", pool)
    d.targets = {"p-echo": ("echo", H + "echo"), "p-boom": ("boom", H + "boom")}
    fn = SimpleNamespace(function_name="p-echo", function_arn="arn:echo")
    headers: dict[str, str] = {}
    assert json.loads(d.invoke(fn, '{"a": 1}', {}, headers))["event"] == {"a": 1}
    assert headers == {} and d._handlers == {}  # nothing imported here: it ran there
    lambdas.faults.inject(lambdas.Fault("echo", "Throttled", "slow down"))
    try:
        answer = json.loads(d.invoke(fn, "{}", {}, headers))
    finally:
        lambdas.faults.clear()
    assert answer == {"errorType": "Throttled", "errorMessage": "slow down"}
    assert headers["x-amz-function-error"] == "Unhandled"
    assert pool.started == 1
    headers = {}
    boom = SimpleNamespace(function_name="p-boom", function_arn="arn:boom")
    assert json.loads(d.invoke(boom, "{}", {}, headers))["errorType"] == "ValueError"
    assert headers["x-amz-function-error"] == "Unhandled"
