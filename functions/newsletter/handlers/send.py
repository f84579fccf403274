"""SQS recipient batches → one SES email per recipient, with partial batch failures."""

from __future__ import annotations

import time


from .. import aws
from ..config import send_settings
from ..message import MessageTemplate, PreparedIssue
from ..pacing import Quota, RateLimiter, workers_for
from ..observe import issue_metrics, logger
from .. import sending
from ..sending import BadBatch, Batch, Counts, Deps, RetryLater, send_batch
from ..store import bucket, issues

ISSUE_TTL = 10.0  # seconds an issue's status is trusted (pause and cancel take effect this fast)

_prepared: dict[str, MessageTemplate] = {}
_quota = Quota()
_limiter: RateLimiter | None = None
_issue_state: dict[str, tuple[float, dict | None]] = {}


class SQSRecord:
    """The two fields of an SQS record this function reads."""

    __slots__ = ("body", "message_id")

    def __init__(self, raw: dict):
        self.body, self.message_id = raw.get("body", ""), raw.get("messageId", "")


class _Invocation:
    context = None
    stop_reason: str | None = None  # once throttled or paused, the rest of the batch fails fast
    totals: dict[str, Counts] = {}


def message_template(issue_id: str) -> MessageTemplate:
    """The issue's message, encoded once per container (fetched from the bucket on first use)."""
    if issue_id not in _prepared:
        if len(_prepared) >= 8:
            _prepared.clear()
        settings = send_settings()
        data = bucket.get_json(aws.client("s3"), settings.bucket_name, f"rendered/{issue_id}/message.json")
        _prepared[issue_id] = MessageTemplate(
            PreparedIssue.from_json(data), base_url=settings.unsubscribe_base_url, mailbox=settings.unsubscribe_mailto
        )
    return _prepared[issue_id]


def issue_record(issue_id: str) -> dict | None:
    now = time.monotonic()
    cached = _issue_state.get(issue_id)
    if cached is None or cached[0] < now:
        record = issues.get_issue(aws.client("dynamodb"), send_settings().issues_table, issue_id, consistent=False)
        _issue_state[issue_id] = cached = (now + ISSUE_TTL, record)
    return cached[1]


def pacer(ses, settings) -> RateLimiter | None:
    """This instance's share of the account's SES rate, as a limiter shared by its threads."""
    global _limiter
    _quota.refresh(ses, logger)
    rate = _quota.max_send_rate / max(1, settings.send_concurrency)
    if _limiter is None:
        _limiter = RateLimiter(rate)
    elif _limiter.rate != rate:
        _limiter.set_rate(rate)
    return _limiter


def requeue(batch: Batch, exc: RetryLater) -> None:
    """Put what is left of a batch back on the queue, delayed, and let this delivery succeed.

    A new message (not a failed one) so that throttling, however long, never pushes a batch into
    the DLQ, whose receive count is for batches that fail.
    """
    rest = batch.rest(exc.remaining if exc.remaining is not None else batch.recipients)
    delay = sending.requeue_delay(batch.attempt)
    aws.client("sqs").send_message(QueueUrl=send_settings().send_queue_url, MessageBody=rest.to_message(), DelaySeconds=delay)
    logger.warning(
        "batch requeued",
        extra={"batch_id": batch.batch_id, "reason": exc.reason, "left": len(rest.recipients), "delay_s": delay},
    )


def record_handler(record: SQSRecord) -> dict:
    try:
        batch = Batch.from_message(record.body)
    except BadBatch as exc:
        logger.error("malformed send batch dropped", extra={"message_id": record.message_id, "error": str(exc)})
        return {"dropped": True}
    logger.set_correlation_id(batch.issue_id)
    if _Invocation.stop_reason:
        requeue(batch, RetryLater(_Invocation.stop_reason))
        return {"requeued": True}
    issue = issue_record(batch.issue_id)
    if issue is None:
        logger.error("send batch for an unknown issue dropped", extra={"message_id": record.message_id})
        return {"dropped": True}
    if issue.get("status") == "cancelled":
        logger.info("issue cancelled: batch not sent", extra={"batch_id": batch.batch_id})
        return {"cancelled": True}
    if issue.get("status") == "paused":
        requeue(batch, RetryLater("issue paused"))
        return {"requeued": True}

    settings = send_settings()
    ses = aws.client("sesv2")
    limiter = pacer(ses, settings)
    if not _quota.sending_enabled:
        requeue(batch, RetryLater("sending paused for the account"))
        return {"requeued": True}
    deps = Deps(
        ddb=aws.client("dynamodb"),
        ses=ses,
        settings=settings,
        secret=aws.secret_parameter(settings.token_secret_parameter),
        time_left_ms=_Invocation.context.get_remaining_time_in_millis,
        limiter=limiter,
        workers=workers_for(limiter.rate) if limiter else 1,
    )
    counts = _Invocation.totals.setdefault(batch.issue_id, Counts())
    before = counts.for_issue()
    try:
        # A test send (written by `newsletter send-test`) names its recipients on its own record.
        allowed = frozenset(issue.get("test_recipients") or ()) if issue.get("test") else frozenset()
        send_batch(batch, message_template(batch.issue_id), deps, counts, logger, test_recipients=allowed)
    except RetryLater as exc:
        _Invocation.stop_reason = exc.reason
        requeue(batch, exc)
    finally:
        after = counts.for_issue()
        record = issues.add_counts(deps.ddb, settings.issues_table, batch.issue_id, {k: after[k] - before[k] for k in after})
        if issues.complete_if_finished(deps.ddb, settings.issues_table, record):
            logger.info("issue sent: every queued recipient handled", extra={k: record.get(k, 0) for k in issues.HANDLED})
    return {"batch_id": batch.batch_id}


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    _Invocation.context, _Invocation.stop_reason, _Invocation.totals = context, None, {}
    # Partial batch responses by hand, not with Powertools' batch utility: same contract
    # (ReportBatchItemFailures), a third less cold start for the function throughput depends on.
    failures = []
    try:
        for raw in (event.get("Records") or []) if isinstance(event, dict) else []:
            record = SQSRecord(raw)
            try:
                record_handler(record)
            except Exception:
                logger.exception("send batch failed; SQS delivers it again", extra={"message_id": record.message_id})
                failures.append({"itemIdentifier": record.message_id})
        return {"batchItemFailures": failures}
    finally:
        for issue_id, c in _Invocation.totals.items():
            issue_metrics(
                issue_id,
                {"Sent": c.sent, "Skipped": c.skipped, "Rejected": c.rejected, "Uncertain": c.uncertain,
                 "Throttled": c.throttled, "Duplicate": c.duplicate},
            )
