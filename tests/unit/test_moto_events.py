"""The local stack's shim of moto's SQS counts and EventBridge paths (infra/local/moto_events):
the counts it takes in one pass are moto's own, a FIFO queue still deduplicates by content,
and an event delivered through a rule to a queue arrives as moto delivers it."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from moto.sqs import models as sqs_models

from infra.local import moto_events

REGION = "us-east-1"


@pytest.fixture
def shimmed():
    """The shim installed for the test, left as it was found afterwards (a local stack that
    another test runs in this process keeps its own)."""
    was = bool(moto_events._installed)
    moto_events.install()
    yield
    if not was:
        moto_events.uninstall()


def _queue(url: str) -> sqs_models.Queue:
    backend = sqs_models.sqs_backends["123456789012"][REGION]
    return backend.get_queue(url.rsplit("/", 1)[1])


def _moto_counts(queue: sqs_models.Queue) -> tuple[int, int, int]:
    return tuple(moto_events._ORIGINAL[name].fget(queue)  # type: ignore[return-value]
                 for name in moto_events._COUNTS)


@mock_aws
def test_the_one_pass_counts_are_motos_three_counts():
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    for i in range(6):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}", DelaySeconds=600 if i < 2 else 0)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3, VisibilityTimeout=600)
    queue = _queue(url)
    assert moto_events.counts(queue) == _moto_counts(queue) == (1, 2, 3)


@mock_aws
def test_with_the_shim_the_api_answers_motos_counts_and_sending_skips_only_unread_ones(shimmed):
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    for i in range(4):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}", DelaySeconds=600 if i == 0 else 0)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=600)
    queue = _queue(url)
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    names = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed",
             "ApproximateNumberOfMessagesNotVisible")
    assert tuple(int(got[n]) for n in names) == _moto_counts(queue) == (2, 1, 1)
    # inside a SendMessage on a standard queue the counts are not taken; outside, they are
    moto_events._local.sending = queue
    try:
        inside = moto_events.attributes(queue)
    finally:
        moto_events._local.sending = None
    outside = moto_events.attributes(queue)
    assert inside["ApproximateNumberOfMessages"] == 0
    assert outside["ApproximateNumberOfMessages"] == 2
    assert {k: v for k, v in inside.items() if not k.startswith("Approximate")} == {
        k: v for k, v in outside.items() if not k.startswith("Approximate")}


@mock_aws
def test_a_fifo_queue_still_deduplicates_by_content(shimmed):
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="q.fifo", Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    for body in ("same", "same", "other"):
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId="g")
    assert _moto_counts(_queue(url))[0] == 2


@mock_aws
def test_an_event_reaches_a_rules_queue_as_moto_delivers_it(shimmed):
    sqs = boto3.client("sqs", region_name=REGION)
    events = boto3.client("events", region_name=REGION)
    url = sqs.create_queue(QueueName="events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"]
    events.put_rule(Name="all", EventPattern=json.dumps({"source": ["oblio"]}))
    events.put_targets(Rule="all", Targets=[{"Id": "q", "Arn": arn}])
    for n in range(3):  # the second and third use the kept paths
        events.put_events(Entries=[{"Source": "oblio", "DetailType": "SubjectErased",
                                    "Detail": json.dumps({"n": n})}])
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    bodies = sorted((json.loads(m["Body"]) for m in got), key=lambda b: b["detail"]["n"])
    assert [b["detail"] for b in bodies] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert {b["detail-type"] for b in bodies} == {"SubjectErased"}
    assert {b["source"] for b in bodies} == {"oblio"}
