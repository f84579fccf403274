"""SES feedback (SNS → SQS) → suppressions, issue statistics, automatic pause; partial batch failures.

A notification that is malformed or of an unknown type is logged (never its addresses, never the
event) and dropped: retrying cannot fix it. A transient AWS error raises, so that only that record
is retried through SQS (and lands in FeedbackDLQ after 5 receives).
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from .. import aws, feedback, notifications, privacy, retry
from ..config import feedback_settings
from ..privacy import address_hash
from ..telemetry import issue_metrics, logger, service_metrics

# Report every failed record, even when all failed, rather than raising: same retry, clearer result.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# Deliveries and opens come for nearly every message: logged at DEBUG, not INFO.
ROUTINE = frozenset({"send", "delivery", "open", "click"})


class _Invocation:
    totals = feedback.Totals()


def record_handler(record: SQSRecord) -> dict:
    try:
        events = notifications.classify(
            notifications.unwrap(record.body, topic_arn=feedback_settings().feedback_topic_arn)
        )
    except notifications.Untrusted as exc:
        logger.warning("untrusted feedback dropped", extra={"message_id": record.message_id, "why": str(exc)})
        _Invocation.totals.other["FeedbackUntrusted"] += 1
        return {"dropped": True}
    except notifications.Ignored as exc:
        logger.info("feedback ignored", extra={"message_id": record.message_id, "what": str(exc)})
        return {"ignored": True}
    except notifications.Unknown as exc:
        logger.error("unknown feedback type dropped", extra={"message_id": record.message_id, "type": exc.kind})
        _Invocation.totals.other["FeedbackUnknown"] += 1
        return {"dropped": True}
    except notifications.Malformed as exc:
        logger.error("malformed feedback dropped", extra={"message_id": record.message_id, "error": str(exc)})
        _Invocation.totals.other["FeedbackMalformed"] += 1
        return {"dropped": True}

    deps = feedback.Deps(ddb=aws.client("dynamodb"), settings=feedback_settings())
    for event in events:
        logger.set_correlation_id(event.issue_id)
        log = logger.debug if event.kind in ROUTINE else logger.info
        log(
            "feedback",
            extra={
                "kind": event.kind,
                "bounce_type": event.bounce_type,
                "ses_message_id": event.message_id,
                "recipients": [address_hash(a) for a in event.recipients],
                "unusable_recipients": event.dropped_recipients,
            },
        )
        # Every step of apply is repeatable: a call that fails transiently is tried again here
        # rather than after the queue's visibility timeout.
        retry.call(feedback.apply, event, deps, _Invocation.totals, logger)
    return {"events": len(events)}


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    settings = feedback_settings()
    privacy.use_secret(lambda: aws.secret_parameter(settings.token_secret_parameter))  # keys the hashes in the logs
    _Invocation.totals = totals = feedback.Totals()
    try:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        for issue_id, counts in totals.by_issue.items():
            issue_metrics(issue_id, dict(counts))
        for issue_id in totals.paused:
            issue_metrics(issue_id, {"IssuePaused": 1})
        # The alarm's datapoint: an alarm cannot match a metric whose issue dimension it cannot know.
        service_metrics({**totals.other, "IssuePaused": len(totals.paused)})
