"""SQS fan-out segments → recipient batches on the send queue."""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from .. import aws, completion
from ..config import fanout_settings
from ..fanout import fan_out
from ..queue_messages import Malformed, Reconcile, parse_fanout
from ..telemetry import issue_metrics, logger, service_metrics

# Report every failed record, even when all failed, rather than raising: same retry, clearer result.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
_context = None


def record_handler(record: SQSRecord) -> dict:
    try:
        job = parse_fanout(record.body)
    except Malformed as exc:
        # A message the publish function never writes: retrying cannot fix it.
        logger.error(
            "malformed fan-out message dropped", extra={"message_id": record.message_id, "error": str(exc)[:300]}
        )
        service_metrics({"FanoutMessageMalformed": 1})
        return {"dropped": True}
    if isinstance(job, Reconcile):
        return reconcile(job.issue_id)
    logger.set_correlation_id(job.issue_id)
    progress = fan_out(
        job,
        settings=fanout_settings(),
        ddb=aws.client("dynamodb"),
        sqs=aws.client("sqs"),
        time_left_ms=_context.get_remaining_time_in_millis,
        logger=logger,
    )
    issue_metrics(job.issue_id, {"RecipientsQueued": progress.queued})
    logger.info(
        "fan-out segment done" if not progress.continued else "fan-out segment continues",
        extra={"shard": job.shard, "pages": progress.pages, "queued": progress.queued, "stopped": progress.stopped},
    )
    return progress.__dict__


def reconcile(issue_id: str) -> dict:
    """A finished issue's counters, checked against its send ledger (see completion.py)."""
    logger.set_correlation_id(issue_id)
    settings = fanout_settings()
    result = completion.reconcile(aws.client("dynamodb"), settings.issues_table, settings.sends_table, issue_id, logger)
    if "counters_corrected" in result:
        issue_metrics(issue_id, {"CountersCorrected": 1})
    logger.info("issue counters reconciled with the send ledger", extra={"ledger": result["ledger_counts"]})
    return result


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    global _context
    _context = context
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
