"""SQS fan-out segments → recipient batches on the send queue; a finished issue's reconcile job."""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from ..config import fanout_settings
from ..fanout import Invocation
from ..telemetry import logger

# Report every failed record, even when all failed, rather than raising: same retry, clearer result.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    invocation = Invocation(fanout_settings(), context.get_remaining_time_in_millis)
    return process_partial_response(event=event, record_handler=invocation.record, processor=processor, context=context)
