"""SQS recipient batches → one SES email per recipient, with partial batch failures."""

from __future__ import annotations

from .. import aws, privacy
from ..config import send_settings
from ..sender import Sender
from ..telemetry import logger

# What this container keeps between invocations; the local stack and tests configure or reset it.
sender = Sender()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    settings = send_settings()
    privacy.use_secret(lambda: aws.secret_parameter(settings.token_secret_parameter))  # keys the hashes in the logs
    invocation = sender.invocation(settings, context.get_remaining_time_in_millis)
    # Partial batch responses by hand, not with Powertools' batch utility: same contract
    # (ReportBatchItemFailures), a third less cold start for the function throughput depends on.
    failures = []
    try:
        for raw in (event.get("Records") or []) if isinstance(event, dict) else []:
            raw = raw if isinstance(raw, dict) else {}
            message_id = raw.get("messageId", "")
            try:
                invocation.send(raw.get("body", ""), message_id=message_id, receive_count=_receive_count(raw))
            except Exception:
                logger.exception("send batch failed; SQS delivers it again", extra={"message_id": message_id})
                failures.append({"itemIdentifier": message_id})
        return {"batchItemFailures": failures}
    finally:
        invocation.metrics()


def _receive_count(raw: dict) -> int:
    try:
        return int((raw.get("attributes") or {}).get("ApproximateReceiveCount") or 1)
    except (TypeError, ValueError):
        return 1
