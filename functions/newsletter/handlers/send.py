"""SQS recipient batches → one SES email per recipient, with partial batch failures."""

from __future__ import annotations

from .. import aws, clock, lifecycle, privacy, retry, sending
from ..config import send_settings
from ..message import MessageTemplate, PreparedIssue
from ..pacing import Quota, RateLimiter, workers_for
from ..sending import BadBatch, Batch, Counts, Deps
from ..store import bucket, issues
from ..telemetry import issue_metrics, logger, service_metrics

ISSUE_TTL = 10.0  # seconds an issue's status is trusted (pause and cancel take effect this fast)

_prepared: dict[str, MessageTemplate] = {}
_quota = Quota()
_limiter: RateLimiter | None = None
_issue_state: dict[str, tuple[float, dict | None]] = {}


class SQSRecord:
    """The fields of an SQS record this function reads."""

    __slots__ = ("body", "message_id", "receive_count")

    def __init__(self, raw: dict):
        self.body, self.message_id = raw.get("body", ""), raw.get("messageId", "")
        try:
            self.receive_count = int((raw.get("attributes") or {}).get("ApproximateReceiveCount") or 1)
        except (TypeError, ValueError):
            self.receive_count = 1


class _Invocation:
    context = None
    stop_reason: str | None = None  # once throttled or the sender refused, the rest of the batches wait
    totals: dict[str, Counts] = {}


def message_template(issue_id: str, record: dict) -> MessageTemplate:
    """The issue's message, encoded once per container (fetched from the bucket on first use)."""
    key = record.get("prepared_key") or bucket.prepared_key(issue_id)
    if key not in _prepared:
        if len(_prepared) >= 8:
            _prepared.clear()
        settings = send_settings()
        data = retry.call(bucket.get_json, aws.client("s3"), settings.bucket_name, key)
        _prepared[key] = MessageTemplate(
            PreparedIssue.from_json(data), base_url=settings.unsubscribe_base_url, mailbox=settings.unsubscribe_mailto
        )
    return _prepared[key]


def issue_record(issue_id: str) -> dict | None:
    now = clock.now()
    cached = _issue_state.get(issue_id)
    if cached is None or cached[0] < now:
        record = retry.call(
            issues.get_issue, aws.client("dynamodb"), send_settings().issues_table, issue_id, consistent=False
        )
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


def wait(batch: Batch, reason: str, *, delay_s: int | None = None) -> dict:
    """The whole batch back on the queue, delayed (paused, throttled, sending stopped)."""
    delay = sending.requeue_delay(batch.attempt) if delay_s is None else delay_s
    sending.requeue(
        aws.client("sqs"), send_settings().send_queue_url, batch.rest(batch.recipients), delay, reason, logger
    )
    return {"requeued": True}


def pause(batch: Batch, record: dict, reason: str) -> dict:
    """No retry can fix it: pause the issue with the reason; its batches wait on the queue."""
    if retry.call(
        lifecycle.pause_issue, aws.client("dynamodb"), send_settings().issues_table, batch.issue_id, reason=reason
    ):
        logger.error("issue paused: no retry can fix this", extra={"batch_id": batch.batch_id, "reason": reason})
        _paused(batch.issue_id, record)
    return wait(batch, reason)


def record_handler(record: SQSRecord) -> dict:
    try:
        batch = Batch.from_message(record.body)
    except BadBatch as exc:
        logger.error("malformed send batch dropped", extra={"message_id": record.message_id, "error": str(exc)})
        return {"dropped": True}
    logger.set_correlation_id(batch.issue_id)
    if _Invocation.stop_reason:
        return wait(batch, _Invocation.stop_reason)
    issue = issue_record(batch.issue_id)
    if issue is None:
        logger.error("send batch for an unknown issue dropped", extra={"message_id": record.message_id})
        return {"dropped": True}
    status = issue.get("status")
    if status == lifecycle.CANCELLED:
        logger.info("issue cancelled: batch not sent", extra={"batch_id": batch.batch_id})
        return {"cancelled": True}
    if status not in (lifecycle.SENDING, lifecycle.SENT):
        return wait(batch, f"issue {status}")
    settings = send_settings()
    try:
        template = message_template(batch.issue_id, issue)
    except Exception as exc:
        if retry.transient(exc):
            raise
        return pause(batch, issue, f"the issue's message cannot be built ({retry.describe(exc)}: {str(exc)[:200]})")
    try:
        ses = aws.client("sesv2")
        limiter = pacer(ses, settings)
        if not _quota.sending_enabled:
            _Invocation.stop_reason = "sending paused for the account"
            return wait(batch, _Invocation.stop_reason)
        key = aws.token_key(settings.token_secret_parameter)  # the newest version signs
        deps = Deps(
            ddb=aws.client("dynamodb"),
            ses=ses,
            settings=settings,
            secret=key.secret,
            key_version=key.version,
            time_left_ms=_Invocation.context.get_remaining_time_in_millis,
            limiter=limiter,
            workers=workers_for(limiter.rate) if limiter else 1,
        )
        counts = _Invocation.totals.setdefault(batch.issue_id, Counts())
        # A test send (written by `newsletter send-test`) names its recipients on its own record.
        allowed = frozenset(issue.get("test_recipients") or ()) if issue.get("test") else frozenset()
        result = sending.deliver(
            batch,
            template,
            deps,
            counts,
            logger,
            sqs=aws.client("sqs"),
            test_recipients=allowed,
            redelivered=record.receive_count > 1,
        )
    except Exception as exc:
        if not retry.permanent(exc):
            raise  # SQS delivers the batch again; everything done so far is found done
        # The token secret is missing, access is denied, a request is invalid: every retry
        # would fail the same way. The issue pauses, saying why, and the batch waits.
        return pause(batch, issue, f"sending fails ({retry.describe(exc)}: {str(exc)[:200]})")
    if result.stop:
        _Invocation.stop_reason = result.reason
    if result.paused:
        _paused(batch.issue_id, issue)
    return {"batch_id": batch.batch_id, "left": len(result.rest)}


def _paused(issue_id: str, record: dict) -> None:
    """This container knows at once; the alarm hears of it (the same metric the automatic pause emits)."""
    _issue_state[issue_id] = (clock.now() + ISSUE_TTL, {**record, "status": lifecycle.PAUSED})
    issue_metrics(issue_id, {"IssuePaused": 1})
    service_metrics({"IssuePaused": 1})


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    _Invocation.context, _Invocation.stop_reason, _Invocation.totals = context, None, {}
    settings = send_settings()
    privacy.use_secret(lambda: aws.secret_parameter(settings.token_secret_parameter))  # keys the hashes in the logs
    # Partial batch responses by hand, not with Powertools' batch utility: same contract
    # (ReportBatchItemFailures), a third less cold start for the function throughput depends on.
    failures = []
    try:
        for raw in (event.get("Records") or []) if isinstance(event, dict) else []:
            record = SQSRecord(raw if isinstance(raw, dict) else {})
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
                {
                    "Sent": c.sent,
                    "Skipped": c.skipped,
                    "Rejected": c.rejected,
                    "Uncertain": c.uncertain,
                    "Throttled": c.throttled,
                    "Duplicate": c.duplicate,
                    "Retried": c.retried,
                },
            )
