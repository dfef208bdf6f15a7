"""DynamoDB Streams in the local stack: the same consumer as in AWS (`functions/shadow_stream`)
on the same records.

In AWS, an event source mapping polls a table's stream and invokes the consumer with batches
of records. moto keeps streams (`dynamodbstreams`) but invokes nothing: `StreamPoller` reads
the streams of the map's tables with identities stored as typed and invokes the consumer
through the local Lambda (the project's own handler), as the mapping would, with the
`eventSourceARN` AWS adds. Records the consumer reports as failed (`batchItemFailures`) are
delivered again, twice, then written to the local dead-letter file by their ids only (a
record's image holds personal data; the file never does).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("oblio.local")
#: deliveries of one record, as the mapping's retries would
ATTEMPTS = 3
BATCH = 100


def shadowed_tables(dm: Any, tenants: Iterable[str]) -> list[str]:
    """The physical tables with identities stored as typed (a silo table's for each
    tenant)."""
    from oblio.core import shadows, templates

    out: set[str] = set()
    for t in shadows.tables_with_shadows(dm).values():
        if templates.is_template(t.table):
            out |= {t.physical(tenant) for tenant in tenants}
        else:
            out.add(t.table)
    return sorted(out)


def enable(dynamodb: Any, tables: Iterable[str]) -> list[str]:
    """Turn on a NEW_IMAGE stream on each table that has none (what a table's owner does in
    AWS); returns the tables it turned it on for."""
    made = []
    for name in tables:
        try:
            spec = dynamodb.describe_table(TableName=name)["Table"].get("StreamSpecification")
        except dynamodb.exceptions.ResourceNotFoundException:
            continue
        if spec and spec.get("StreamEnabled"):
            continue
        dynamodb.update_table(TableName=name, StreamSpecification={
            "StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
        made.append(name)
    return made


def _json_value(value: Any) -> Any:
    """An attribute value as a Lambda event carries it: binary (B, BS) as base64 text."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def _plain(record: dict[str, Any], arn: str) -> dict[str, Any]:
    """A record as the Lambda event carries it: JSON, with its stream's ARN."""
    body = dict(record)
    ddb = {k: _json_value(v) for k, v in (body.get("dynamodb") or {}).items()}
    when = ddb.get("ApproximateCreationDateTime")
    if hasattr(when, "timestamp"):
        ddb["ApproximateCreationDateTime"] = int(when.timestamp())
    body["dynamodb"] = ddb
    body["eventSourceARN"] = arn
    return body


class StreamPoller(threading.Thread):
    """Poll each table's stream and hand its records to the consumer, as AWS's event source
    mapping does (batches of up to 100, failed records retried, then dead letters)."""

    def __init__(self, settings: Any, tables: list[str], interval: float = 0.2) -> None:
        super().__init__(name="oblio-stream-poller", daemon=True)
        self.settings, self.tables, self.interval = settings, tables, interval
        self._halt = threading.Event()
        self._iterators: dict[tuple[str, str], str | None] = {}
        self._arns: dict[str, str] = {}
        self.dead_letters = Path(os.environ.get("OBLIO_LOCAL_DEAD_LETTERS",
                                                ".oblio/dead-letters.jsonl"))
        self.delivered = 0

    def _discover(self, ddb: Any, streams: Any) -> None:
        for table in self.tables:
            try:
                arn = ddb.describe_table(TableName=table)["Table"].get("LatestStreamArn")
            except ddb.exceptions.ResourceNotFoundException:
                continue
            if not arn:
                continue
            self._arns[table] = arn
            for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
                key = (arn, shard["ShardId"])
                if key not in self._iterators:
                    self._iterators[key] = streams.get_shard_iterator(
                        StreamArn=arn, ShardId=shard["ShardId"],
                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]

    def _deliver(self, lam: Any, arn: str, records: list[dict[str, Any]]) -> None:
        pending = [_plain(r, arn) for r in records]
        name = self.settings.function("shadow_stream")
        for attempt in range(1, ATTEMPTS + 1):
            error = ""
            try:
                resp = lam.invoke(FunctionName=name,
                                  Payload=json.dumps({"Records": pending}).encode())
                answer = json.loads(resp["Payload"].read() or b"{}")
                if resp.get("FunctionError"):
                    error = str(answer.get("errorType", "FunctionError"))
                    failed = {r["dynamodb"].get("SequenceNumber") for r in pending}
                else:
                    failed = {f.get("itemIdentifier")
                              for f in answer.get("batchItemFailures", [])}
            except Exception as exc:  # noqa: BLE001 - retried, then a dead letter
                error, failed = type(exc).__name__, {r["dynamodb"].get("SequenceNumber")
                                                     for r in pending}
            self.delivered += len(pending) - len(failed)
            pending = [r for r in pending if r["dynamodb"].get("SequenceNumber") in failed]
            if not pending:
                return
            if attempt < ATTEMPTS:
                time.sleep(0.2 * 2 ** (attempt - 1))
        from infra.local.stack import dead_letter

        for r in pending:  # ids only: the image is personal data
            dead_letter(self.dead_letters, f"stream:{arn.split('/')[1]}", "shadow_stream",
                        json.dumps({"eventID": r.get("eventID"), "eventName": r.get(
                            "eventName"), "SequenceNumber": r["dynamodb"].get(
                            "SequenceNumber")}), ATTEMPTS, error or "batchItemFailure")
        log.error("stream poller: %d record(s) of %s failed %d times; dead letters in %s",
                  len(pending), arn.split("/")[1], ATTEMPTS, self.dead_letters)

    def run(self) -> None:
        from oblio.store import aws

        # the data map's tables: oblio's local AWS, or the user's (`--aws-endpoint`)
        ddb, streams, lam = aws.data_client("dynamodb"), aws.data_client("dynamodbstreams"), \
            aws.client("lambda")
        last_discovery = 0.0
        while not self._halt.is_set():
            try:
                if time.monotonic() - last_discovery > 5.0:
                    self._discover(ddb, streams)
                    last_discovery = time.monotonic()
                idle = True
                for key, iterator in list(self._iterators.items()):
                    if iterator is None:
                        continue
                    page = streams.get_records(ShardIterator=iterator, Limit=BATCH)
                    self._iterators[key] = page.get("NextShardIterator")
                    if page.get("Records"):
                        idle = False
                        self._deliver(lam, key[0], page["Records"])
                if idle:
                    self._halt.wait(self.interval)
            except Exception:
                if self._halt.is_set():
                    return
                log.exception("stream poller: reading the streams failed")
                self._halt.wait(1.0)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
