"""SES feedback (SNS → SQS) → suppressions, issue statistics, automatic pause; partial batch failures.

A notification that is malformed or of an unknown type is logged (never its addresses, never the
event) and dropped: retrying cannot fix it. A transient AWS error raises, so that only that record
is retried through SQS (and lands in FeedbackDLQ after 5 receives). See feedback.Invocation.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from .. import aws, feedback, privacy
from ..config import feedback_settings
from ..telemetry import logger

# Report every failed record, even when all failed, rather than raising: same retry, clearer result.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    settings = feedback_settings()
    privacy.use_secret(lambda: aws.secret_parameter(settings.token_secret_parameter))  # keys the hashes in the logs
    invocation = feedback.Invocation(settings)
    try:
        return process_partial_response(
            event=event, record_handler=invocation.record, processor=processor, context=context
        )
    finally:
        invocation.metrics()
