"""DynamoDB Streams of the tenant's tables: keep the shadows of identities stored as typed
current. Powertools' batch processor reports the records that raised as partial batch
failures (`batchItemFailures`), so that only those are retried."""

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
)

from oblio.core.observability import logger, tracer
from oblio.jobs import shadowstream

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def record_handler(record: DynamoDBRecord) -> str:
    return shadowstream.on_record(record.raw_event)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict, context: object) -> dict:
    return process_partial_response(event=event, record_handler=record_handler,
                                    processor=processor, context=context)
