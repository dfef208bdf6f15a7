"""The meter: every AWS call of an invocation is counted by owner (the tenant's tables and
buckets, oblio's own resources), with DynamoDB's units, and added to the record it worked
for, also when it fails; `io` shows the calls, the owners' shares and their cost."""

from __future__ import annotations

import pytest

from oblio.core import meter, prices
from oblio.store import units
from oblio.store.models import plain

pytestmark = pytest.mark.usefixtures("provisioned")


def _request(t):
    from tests.unit import world

    return world.new_request(t, "erasure", {"email": "meter@example.com"}, action="erase")


def _record(t, request_id):
    """The request's meter item (beside its record: each count one small write)."""
    from oblio.control import records

    return records.meters_of(t.tenant_id, [request_id]).get(request_id, {})


def _work(t):
    """One call on a tenant's table and one on oblio's own."""
    from oblio.core.settings import get_settings
    from oblio.store import aws

    aws.client("dynamodb").query(
        TableName="demo-contacts", KeyConditionExpression="tenant_id = :t",
        ExpressionAttributeValues={":t": {"S": t.tenant_id}})
    aws.client("dynamodb").get_item(TableName=get_settings().table("tenants"),
                                    Key={"tenant_id": {"S": t.tenant_id}})


def test_an_invocation_adds_every_call_to_its_request_by_owner_and_counts_itself(t):
    from oblio.control import metering
    from oblio.core.boundary import TaskEvent

    rid = _request(t)
    ev = TaskEvent(request_id=rid, tenant_id=t.tenant_id)
    with metering.invocation(metering.target_of(ev)):
        _work(t)
    got = _record(t, rid)
    assert got["tenant:dynamodb.Query"] == 1 and got["oblio:dynamodb.GetItem"] == 1
    assert got["oblio:dynamodb.UpdateItem"] == 1  # the meter's own write
    assert got["lambda:invocations"] == 1 and got["lambda:ms"] >= 1
    # in-process moto stands for AWS here (no local endpoint): its reported units are taken
    assert got["units:tenant:read"] > 0 and got["units:oblio:write"] >= 1
    io = meter.view(got)
    assert io["dynamodb.Query"] == 1 and io["dynamodb.GetItem"] == 1 and io["dynamodb.Scan"] == 0
    assert io["by_owner"]["tenant"] == {"dynamodb.Query": 1}
    assert io["dynamodb_units"]["tenant"]["read"] > 0
    # no last step yet: the figures say they may miss what is still to come
    assert io["complete"] is False and "not recorded yet" in io["not_counted"][0]
    cost = io["cost_usd"]
    assert cost["total"] > 0 and cost["tenant"] > 0 and cost["oblio"] > 0
    assert cost["tenant"] + cost["oblio"] == pytest.approx(cost["total"])


def test_the_io_is_complete_once_the_last_steps_and_the_starters_counts_have_landed(t):
    from oblio.control import metering
    from oblio.core.boundary import TaskEvent

    rid = _request(t)
    ev = TaskEvent(request_id=rid, tenant_id=t.tenant_id)
    # the run's last task ends before the call that filed and started it has counted itself
    with metering.invocation(metering.target_of(ev)):
        _work(t)
        metering.last_step(None, 1)  # an Express execution: no history to read
    io = meter.view(_record(t, rid))
    assert io["complete"] is False
    assert io["not_counted"][0] == ("the calls of the API call or event that started this "
                                    "run (not recorded yet)")
    with metering.invocation(kind="api"):  # the starter's counts land
        _work(t)
        metering.bill_to(ev)
        metering.started(1)
    io = meter.view(_record(t, rid))
    assert io["complete"] is True and io["stepfunctions"]["transitions"] == 0
    assert not any("not recorded yet" in n for n in io["not_counted"])
    assert io["dynamodb.Query"] == 2 and io["lambda"]["invocations"] == 2


def test_a_handed_over_run_is_complete_only_once_the_step_that_handed_it_over_has_counted(
        t, monkeypatch):
    """A large request's Work starts the Standard twin, then counts itself at its end; the
    twin may run to its Finish first. Before, the twin's last step made the run complete
    while Work's counts were still to land. Work says before the start that the run waits
    for it (one write), and its own counts say they have landed."""
    from oblio.control import metering
    from oblio.core.boundary import TaskEvent
    from oblio.pipeline import inline
    from oblio.store import workflows

    rid = _request(t)
    ev = TaskEvent(request_id=rid, tenant_id=t.tenant_id)
    with metering.invocation(kind="api"):  # the call that filed and started the run
        metering.bill_to(ev)
        metering.started(1)
    twin_done = []

    def start_once(machine: str, name: str, payload: dict) -> str:
        # the twin runs to its end before Work has counted itself
        with metering.invocation(metering.target_of(ev)):
            _work(t)
            metering.last_step(None, 1)
        twin_done.append(meter.view(_record(t, rid)))
        return f"arn:aws:states:eu-west-1:123456789012:execution:{machine}:{name}"

    monkeypatch.setattr(workflows, "start_once", start_once)
    from oblio.control import records
    with metering.invocation(metering.target_of(ev)):  # Work
        _work(t)
        inline.hand_over(records.load(t.tenant_id, rid), "erase", 2)
    [early] = twin_done
    assert early["complete"] is False
    assert any("handed this run over" in n for n in early["not_counted"])
    io = meter.view(_record(t, rid))
    assert io["complete"] is True and io["lambda"]["invocations"] == 3
    assert not any("not recorded yet" in n for n in io["not_counted"])


def test_a_request_run_again_is_complete_only_once_its_new_attempt_has_counted_itself(t):
    """The ends and starts are noted by attempt: a retried request's `io` waits for its new
    attempt's, and a late count of the failed attempt (its failure step's invocation ending
    after the client retried) says nothing of the new one."""
    from oblio.control import metering
    from oblio.core.boundary import TaskEvent

    rid = _request(t)
    ev = TaskEvent(request_id=rid, tenant_id=t.tenant_id)
    with metering.invocation(kind="api"):  # POST /v1/requests starts attempt 1
        metering.bill_to(ev)
        metering.started(1)
    with metering.invocation(metering.target_of(ev)):  # attempt 1's failure step
        metering.last_step(None, 1, after=1)
    assert meter.view(_record(t, rid), attempt=1)["complete"] is True
    # the retry starts attempt 2: not complete, whatever attempt 1 said
    with metering.invocation(kind="api"):
        metering.bill_to(ev)
        metering.started(2)
    got = _record(t, rid)
    assert meter.view(got, attempt=2)["complete"] is False
    assert got["lambda:invocations"] == 3  # the counts so far stay
    with metering.invocation(metering.target_of(ev)):  # attempt 1's end, counted late
        metering.last_step(None, 1, after=1)
    assert meter.view(_record(t, rid), attempt=2)["complete"] is False
    with metering.invocation(metering.target_of(ev)):  # attempt 2's Finish
        metering.last_step(None, 2)
    io = meter.view(_record(t, rid), attempt=2)
    assert io["complete"] is True and io["lambda"]["invocations"] == 5


def test_a_meter_from_before_the_notes_by_attempt_is_complete_as_its_last_task_said():
    assert meter.view({"oblio:dynamodb.UpdateItem": 3, "note:final": 1})["complete"] is True
    assert meter.view({"oblio:dynamodb.UpdateItem": 3})["complete"] is False


def test_a_failed_invocation_is_counted_too_and_two_add_up(t):
    from oblio.control import metering
    from oblio.core.boundary import TaskEvent

    rid = _request(t)
    target = metering.target_of(TaskEvent(request_id=rid, tenant_id=t.tenant_id))
    with pytest.raises(RuntimeError), metering.invocation(target):
        _work(t)
        raise RuntimeError("the task failed after its calls")
    with metering.invocation(target):
        _work(t)
    got = _record(t, rid)
    assert got["tenant:dynamodb.Query"] == 2 and got["lambda:invocations"] == 2
    assert got["oblio:dynamodb.UpdateItem"] == 2


def test_a_step_counter_inside_an_invocation_counts_its_calls_and_the_invocation_too(t):
    from oblio.control import metering
    from oblio.core.boundary import TaskEvent
    from oblio.store import aws

    rid = _request(t)
    with metering.invocation(metering.target_of(TaskEvent(request_id=rid,
                                                          tenant_id=t.tenant_id))) as whole:
        with aws.counting() as step:
            _work(t)
        _work(t)
    assert step.calls["dynamodb.Query"] == 1 and whole.calls["dynamodb.Query"] == 2
    assert _record(t, rid)["tenant:dynamodb.Query"] == 2


def test_an_api_call_is_metered_only_once_it_names_the_record_it_filed(t):
    from oblio.control import metering
    from oblio.core.boundary import TaskEvent

    rid = _request(t)
    with metering.invocation(kind="api"):
        _work(t)  # nothing filed: not metered
    assert "tenant:dynamodb.Query" not in _record(t, rid)
    with metering.invocation(kind="api"):
        _work(t)
        metering.bill_to(TaskEvent(request_id=rid, tenant_id=t.tenant_id))
    got = _record(t, rid)
    assert got["tenant:dynamodb.Query"] == 1 and got["note:apigateway.requests"] == 1
    assert "note:stepfunctions.task_ms" not in got  # not an execution's time


def test_a_task_handler_meters_its_invocation(t):
    from oblio.control import metering

    rid = _request(t)

    @metering.task
    def step(ev):
        _work(t)
        return {"ok": True}

    assert step({"request_id": rid, "tenant_id": t.tenant_id}, None) == {"ok": True}
    got = _record(t, rid)
    assert got["tenant:dynamodb.Query"] == 1 and got["note:stepfunctions.task_ms"] >= 1


def test_on_a_local_endpoint_the_units_are_estimated_from_item_sizes(t):
    from oblio.store import aws

    before = aws._before_parameters(local=True)
    params: dict = {"TableName": "demo-contacts"}
    context: dict = {}

    class Model:
        name = "Query"

        class service_model:
            service_name = "dynamodb"

    before(params=params, model=Model, context=context)
    assert "ReturnConsumedCapacity" not in params  # moto's answer would not be DynamoDB's
    with aws.counting() as c:
        aws._after_call(None, {"Items": [{"v": {"S": "x" * 5000}}],
                               "ConsumedCapacity": {"CapacityUnits": 99}}, Model, context)
    assert c.units["tenant:read"] == 1.0 and c.estimated  # 5 KB, eventually consistent


def test_a_record_from_before_the_meter_says_its_figures_are_incomplete():
    io = meter.view({}, {"dynamodb.Query": 4})
    assert io["dynamodb.Query"] == 4 and io["dynamodb.Scan"] == 0
    assert io["complete"] is False and "predates the meter" in io["not_counted"][0]


def test_per_subject_figures_divide_the_job_by_its_lines():
    io = meter.view({"tenant:dynamodb.Query": 40, "oblio:dynamodb.PutItem": 10,
                     "units:tenant:read": 20.0, "units:oblio:write": 10.0,
                     "lambda:invocations": 2, "lambda:ms": 1000, "lambda:mb_ms": 512000},
                    per=10)
    assert io["per_subject"]["calls"] == {"dynamodb.PutItem": 1.0, "dynamodb.Query": 4.0}
    assert io["per_subject"]["cost_usd"]["total"] == pytest.approx(io["cost_usd"]["total"] / 10)


def test_the_cost_prices_each_service_from_the_one_table():
    cost = prices.cost({"tenant": {"s3.ListObjectVersions": 2, "dynamodb.Query": 1},
                        "oblio": {"kms.Decrypt": 1, "events.PutEvents": 1}},
                       {"tenant": {"read": 4, "write": 8}, "oblio": {}},
                       {"invocations": 1, "gb_seconds": 0.5},
                       {"transitions": 4, "express_executions": 1, "express_ms": 150},
                       events_entries=3, api_requests=1)
    p = prices.PRICES
    tenant = 2 * p["s3.put_class"].usd + 4 * p["dynamodb.read_unit"].usd \
        + 8 * p["dynamodb.write_unit"].usd
    assert cost["tenant"] == pytest.approx(tenant)
    assert cost["by_service"]["events"] == pytest.approx(3 * p["events.entry"].usd)
    assert cost["by_service"]["stepfunctions"] == pytest.approx(
        4 * p["stepfunctions.standard_transition"].usd + p["stepfunctions.express_request"].usd
        + 0.2 * 64 / 1024 * p["stepfunctions.express_gb_second"].usd)  # 150 ms billed as 200
    assert cost["total"] == pytest.approx(cost["tenant"] + cost["oblio"])


def test_dynamodb_units_follow_its_item_size_rules():
    item = {"pk": {"S": "x" * 1500}}
    assert list(units.estimate("PutItem", {"TableName": "a", "Item": item}, {})) == \
        [("a", "write", 2.0)]
    page = {"Items": [{"v": {"S": "y" * 3000}}] * 3}
    assert list(units.estimate("Query", {"TableName": "a"}, page)) == [("a", "read", 1.5)]
    assert list(units.estimate("Query", {"TableName": "a", "ConsistentRead": True}, page)) \
        == [("a", "read", 3.0)]
    tx = {"TransactItems": [{"Put": {"TableName": "b", "Item": {"k": {"S": "z"}}}}]}
    assert list(units.estimate("TransactWriteItems", tx, {})) == [("b", "write", 2.0)]
    assert units.item_size({"n": {"N": "12345"}, "m": {"M": {"a": {"BOOL": True}}}}) == \
        1 + 4 + 1 + (3 + 1 + 1 + 1)


def test_a_call_belongs_to_the_tenant_when_it_touches_a_table_of_the_data_map():
    own = lambda n: n.startswith("oblio-")  # noqa: E731
    assert units.owner_of("dynamodb", {"TableName": "contacts"}, "Query", own) == "tenant"
    assert units.owner_of("dynamodb", {"TableName": "oblio-requests"}, "Query", own) == "oblio"
    assert units.owner_of("dynamodb", {"RequestItems": {"oblio-audit": [], "tickets": []}},
                          "BatchWriteItem", own) == "tenant"
    assert units.owner_of("s3", {"Bucket": "oblio-work"}, "PutObject", own) == "oblio"
    assert units.owner_of("kms", {}, "Decrypt", own) == "oblio"


def _bulk_until_report(t, demo_map, n: int = 3):
    """A bulk job of `n` lines filed over the API, started by its upload's event, validated
    and erased chunk by chunk, each through its handler as the state machine invokes them;
    returns (job id, the chunks, the invocation context)."""
    import bulk_chunk.handler
    import bulk_start.handler
    import bulk_validate.handler

    from infra.local.lambdas import _Context
    from oblio.control import metering
    from oblio.core.bodies import BulkBody, parse
    from oblio.core.settings import get_settings
    from oblio.jobs import bulk
    from oblio.store import aws
    from tests.unit import world
    from tests.unit.test_bulk_jobs import chunk_keys

    ctx = _Context("oblio-bulk", "arn:aws:lambda:eu-west-1:123456789012:function:oblio-bulk")

    for i in range(n):
        world.seed(demo_map, t.tenant_id, f"metered{i}@example.com")
    with metering.invocation(kind="api"):  # POST /v1/bulk-erasures files the job
        made = bulk.create_job(world.principal(t.tenant_id), parse(BulkBody, {}))
    job_id, key = made["job_id"], made["upload_key"]
    aws.client("s3").put_object(Bucket=made["upload_bucket"], Key=key, Body=b"email\n" + b"".join(
        f"metered{i}@example.com\n".encode() for i in range(n)))
    bulk_start.handler.handler({"detail": {"bucket": {"name": made["upload_bucket"]},
                                           "object": {"key": key}}}, ctx)
    ev = {"tenant_id": t.tenant_id, "job_id": job_id, "attempt": 1}
    bulk_validate.handler.handler({**ev, "bucket": get_settings().bucket("ingest"),
                                   "key": key}, ctx)
    cut = chunk_keys(job_id, t)
    for chunk in cut:
        bulk_chunk.handler.handler({**ev, "chunk": chunk}, ctx)
    return job_id, cut, ctx


def test_a_bulk_job_run_through_its_handlers_counts_every_call_per_subject(t, demo_map):
    """Validate, each chunk and the report, as the state machine invokes them: the job's
    `io` has every call of each, the chunks' Express children, and the cost per line."""
    import bulk_report.handler

    from oblio.jobs import bulk

    job_id, cut, ctx = _bulk_until_report(t, demo_map)
    bulk_report.handler.handler({"tenant_id": t.tenant_id, "job_id": job_id, "attempt": 1},
                                ctx)
    job = bulk.to_json(bulk.load(t.tenant_id, job_id))
    assert job["status"] == "completed" and job["erased"] == 3
    io = job["io"]
    # the filing call, the upload event, validate, each chunk and the report
    assert io["complete"] is True and io["lambda"]["invocations"] == 4 + len(cut)
    assert io["stepfunctions"]["express_executions"] == len(cut)  # one child per chunk
    assert io["by_owner"]["tenant"]["dynamodb.BatchWriteItem"] >= 1
    assert io["by_owner"]["oblio"]["dynamodb.BatchWriteItem"] >= 1  # records, suppression
    per = io["per_subject"]
    assert per["of"] == 3 and per["cost_usd"]["total"] == pytest.approx(
        io["cost_usd"]["total"] / 3)


def test_a_models_pynamodb_calls_are_counted_from_its_first_use(t):
    """PynamoDB makes each model's client when the model is first used; its calls are
    counted from that first call (no client is made for a model an invocation does not use)."""
    from oblio.store import aws
    from oblio.store.models import PublicSlugModel

    with aws.counting() as c:
        assert PublicSlugModel.count("no-such-slug") == 0
    assert c.calls["dynamodb.Query"] == 1 and c.owned["oblio:dynamodb.Query"] == 1


def test_a_jobs_report_run_again_counts_the_end_once_and_ends_a_killed_runs_count(
        t, demo_map):
    """Step Functions runs a task again when its invocation timed out: the Report that
    was killed after the job ended, before its counts landed, never said the job's `io`
    complete; its run again does, once; a run after that adds nothing to the end."""
    import bulk_fail.handler
    import bulk_report.handler

    from oblio.jobs import bulk
    from oblio.store import workflows

    job_id, _, ctx = _bulk_until_report(t, demo_map, n=2)
    ev = {"tenant_id": t.tenant_id, "job_id": job_id, "attempt": 1}
    bulk.report(t.tenant_id, job_id, 1)  # the job ends; the invocation is killed: no counts
    io = bulk.to_json(bulk.load(t.tenant_id, job_id))["io"]
    assert io["complete"] is False
    bulk_report.handler.handler(ev, ctx)  # Step Functions runs it again
    meter = plain(bulk.load(t.tenant_id, job_id).meter)
    assert meter["note:final:1"] == 1
    assert bulk.to_json(bulk.load(t.tenant_id, job_id))["io"]["complete"] is True
    bulk_report.handler.handler(ev, ctx)  # and once more: its end is not counted twice
    again = plain(bulk.load(t.tenant_id, job_id).meter)
    assert again["note:final:1"] == 1
    assert again.get("note:stepfunctions.transitions", 0) == \
        meter.get("note:stepfunctions.transitions", 0)  # nor the states it had counted
    assert again["lambda:invocations"] == meter["lambda:invocations"] + 1  # each is billed
    # the failure step after it (a Catch): the end once, and only the states not yet counted
    bulk_fail.handler.handler({**ev, "error": {"Error": "States.Timeout"}}, ctx)
    last = plain(bulk.load(t.tenant_id, job_id).meter)
    assert last["note:final:1"] == 1
    seen = workflows.transitions(bulk._execution(bulk.load(t.tenant_id, job_id), 1), after=1)
    assert last.get("note:stepfunctions.transitions", 0) == seen


def test_a_requests_last_step_run_again_counts_the_end_once(t, demo_map):
    """Finish killed after the request ended, then run again: the end is counted by the
    run again, once however often it runs; the same for the failure step."""
    import fail.handler
    import finish.handler

    from infra.local.lambdas import _Context
    from oblio.core import boundary
    from oblio.pipeline import apply, evidence, plan, verify
    from tests.unit import world

    ctx = _Context("oblio-task", "arn:aws:lambda:eu-west-1:123456789012:function:oblio-task")
    world.seed(demo_map, t.tenant_id, "finish-again@example.com")
    rid = world.new_request(t, "erasure", {"email": "finish-again@example.com"},
                            action="erase")
    ev = {"request_id": rid, "tenant_id": t.tenant_id, "action": "erase", "attempt": 1}
    token = boundary._attempt.set(1)
    try:
        for unit in plan.plan(rid, t.tenant_id, "erase")["units"]:
            apply.apply(rid, t.tenant_id, "erase", unit)
        verify.verify(rid, t.tenant_id, "erase")
        evidence.finish(rid, t.tenant_id, "erase")  # ends it; killed before its counts
    finally:
        boundary._attempt.reset(token)
    assert "note:final:1" not in _record(t, rid)
    finish.handler.handler(ev, ctx)  # run again by Step Functions
    assert _record(t, rid)["note:final:1"] == 1
    finish.handler.handler(ev, ctx)
    fail.handler.handler({**ev, "error": {"Error": "Boom", "Cause": "after the end"}}, ctx)
    got = _record(t, rid)
    assert got["note:final:1"] == 1 and got["lambda:invocations"] == 3

    other = world.new_request(t, "erasure", {"email": "fail-again@example.com"},
                              action="erase")
    failed = {"request_id": other, "tenant_id": t.tenant_id, "action": "erase",
              "attempt": 1, "error": {"Error": "Boom", "Cause": "persistent"}}
    fail.handler.handler(failed, ctx)
    fail.handler.handler(failed, ctx)  # the failure step run again
    got = _record(t, other)
    assert got["note:final:1"] == 1 and got["lambda:invocations"] == 2


def test_only_a_call_that_started_the_attempts_run_is_waited_for(t, demo_map, monkeypatch):
    """A retry whose StartExecution fails started nothing: no start of the attempt is noted
    (the request is failed with `start_failed`, and nothing will come); the retry that
    starts it is noted as that attempt's start."""
    from oblio.control import metering, records
    from oblio.core.errors import TransientError
    from oblio.pipeline import evidence
    from oblio.rights import intake
    from tests.unit import world

    rid = _request(t)
    evidence.fail(rid, t.tenant_id, {"Error": "Boom", "Cause": "persistent"})
    real = records.workflows.start

    def refused(*args, **kw):
        raise RuntimeError("StartExecution refused")

    monkeypatch.setattr(records.workflows, "start", refused)
    with pytest.raises(TransientError), metering.invocation(kind="api"):
        intake.retry(world.principal(t.tenant_id), rid)
    got = _record(t, rid)
    assert records.load(t.tenant_id, rid).status == "failed"
    assert got["lambda:invocations"] == 1 and "note:started:2" not in got  # counted, no start
    monkeypatch.setattr(records.workflows, "start", real)
    with metering.invocation(kind="api"):
        out = intake.retry(world.principal(t.tenant_id), rid)
    assert out["attempt"] == 3 and _record(t, rid)["note:started:3"] == 1
