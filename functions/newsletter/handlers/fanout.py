"""SQS fan-out segments → recipient batches on the send queue."""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from .. import aws
from ..config import fanout_settings
from ..fanout import Segment, fan_out
from ..observe import issue_metrics, logger

# Report every failed record, even when all failed, rather than raising: same retry, clearer result.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
_context = None


def record_handler(record: SQSRecord) -> dict:
    try:
        segment = Segment.from_message(record.body)
    except (ValueError, TypeError, KeyError) as exc:
        # A message the publish function never writes: retrying cannot fix it.
        logger.error("malformed fan-out message dropped", extra={"message_id": record.message_id, "error": str(exc)})
        return {"dropped": True}
    logger.set_correlation_id(segment.issue_id)
    progress = fan_out(
        segment,
        settings=fanout_settings(),
        ddb=aws.client("dynamodb"),
        sqs=aws.client("sqs"),
        time_left_ms=_context.get_remaining_time_in_millis,
        logger=logger,
    )
    issue_metrics(segment.issue_id, {"RecipientsQueued": progress.queued})
    logger.info(
        "fan-out segment done" if not progress.continued else "fan-out segment continues",
        extra={"shard": segment.shard, "pages": progress.pages, "queued": progress.queued, "stopped": progress.stopped},
    )
    return progress.__dict__


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    global _context
    _context = context
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
