"""The send function's work, per container and per invocation: which batches may go to SES now.

`sending.py` sends one batch exactly once; this module decides whether and how: the issue's status
(paused or not yet sending: the batch waits on the queue; cancelled: dropped), a test send's
allowed recipients, the account's SES rate shared among instances, and stopping the rest of an
invocation once SES throttles or refuses. What a container keeps between invocations (prepared
messages, issue statuses for ISSUE_TTL seconds, the account's quota and the rate limiter) lives
in one `Sender`, and `reset()` forgets it.

Everything from outside is injected: `clients` (service name → boto3 client), `pace` (False: no
GetAccount and no rate limit, as the local stack has no SES account), the throttle backoff and
the longest requeue delay (the local stack's moto server cannot skip a delay).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import aws, clock, lifecycle, retry, sending
from .config import SendSettings
from .message import MessageTemplate, PreparedIssue
from .pacing import Quota, RateLimiter, workers_for
from .queue_messages import Batch, Malformed, parse_batch
from .sending import Counts, Deps
from .store import bucket, issues, queues
from .telemetry import issue_metrics, logger, service_metrics

ISSUE_TTL = 10.0  # seconds an issue's status is trusted (pause and cancel take effect this fast)
PREPARED_KEPT = 8  # prepared messages a container keeps (one per issue being sent)


def aws_client(service: str):
    return aws.client(service)  # looked up at each call: the environment decides (aws.py)


@dataclass
class Sender:
    clients: Callable[[str], object] = aws_client
    pace: bool = True
    throttle_backoff_s: float = sending.THROTTLE_BACKOFF_S
    max_delay_s: int = queues.MAX_DELAY_S
    _prepared: dict[str, MessageTemplate] = field(default_factory=dict, repr=False)
    _issues: dict[str, tuple[float, dict | None]] = field(default_factory=dict, repr=False)
    _quota: Quota = field(default_factory=Quota, repr=False)
    _limiter: RateLimiter | None = field(default=None, repr=False)

    def reset(self) -> None:
        """Forget what the container knows: a new container."""
        self._prepared.clear()
        self._issues.clear()
        self._quota, self._limiter = Quota(), None

    def invocation(self, settings: SendSettings, time_left_ms: Callable[[], int]) -> Invocation:
        return Invocation(self, settings, time_left_ms)

    # --- what the container keeps -----------------------------------------------------------------

    def message_template(
        self, settings: SendSettings, issue_id: str, record: dict, language: str | None = None
    ) -> MessageTemplate:
        """The issue's message in `language` (None: the default), encoded once per container
        (fetched from the bucket on first use)."""
        key = (record.get("prepared_keys") or {}).get(language or "") or record.get("prepared_key")
        key = key or bucket.prepared_key(issue_id)
        if key not in self._prepared:
            if len(self._prepared) >= PREPARED_KEPT:
                self._prepared.clear()
            data = retry.call(bucket.get_json, self.clients("s3"), settings.bucket_name, key)
            self._prepared[key] = MessageTemplate(
                PreparedIssue.from_json(data),
                base_url=settings.unsubscribe_base_url,
                mailbox=settings.unsubscribe_mailto,
                public_base_url=settings.public_base_url,
            )
        return self._prepared[key]

    def issue_record(self, settings: SendSettings, issue_id: str) -> dict | None:
        """The issue's record, read at most every ISSUE_TTL seconds."""
        now = clock.now()
        cached = self._issues.get(issue_id)
        if cached is None or cached[0] < now:
            ddb = self.clients("dynamodb")
            record = retry.call(issues.get_issue, ddb, settings.issues_table, issue_id, consistent=False)
            self._issues[issue_id] = cached = (now + ISSUE_TTL, record)
        return cached[1]

    def paused(self, issue_id: str, record: dict) -> None:
        """This container knows at once; the alarm hears of it (the same metric the automatic pause emits)."""
        self._issues[issue_id] = (clock.now() + ISSUE_TTL, {**record, "status": lifecycle.PAUSED})
        issue_metrics(issue_id, {"IssuePaused": 1})
        service_metrics({"IssuePaused": 1})

    def pacer(self, ses, settings: SendSettings) -> RateLimiter | None:
        """This instance's share of the account's SES rate, as a limiter shared by its threads."""
        if not self.pace:
            return None
        self._quota.refresh(ses, logger)
        rate = self._quota.max_send_rate / max(1, settings.send_concurrency)
        if self._limiter is None:
            self._limiter = RateLimiter(rate)
        elif self._limiter.rate != rate:
            self._limiter.set_rate(rate)
        return self._limiter

    @property
    def sending_enabled(self) -> bool:
        return self._quota.sending_enabled


class Invocation:
    """One invocation's batches: once SES throttles or refuses, the rest wait on the queue."""

    def __init__(self, sender: Sender, settings: SendSettings, time_left_ms: Callable[[], int]):
        self.sender, self.settings, self.time_left_ms = sender, settings, time_left_ms
        self.stop_reason: str | None = None
        self.totals: dict[str, Counts] = {}

    def send(self, body: str, *, message_id: str = "", receive_count: int = 1) -> dict:
        """One send-queue message; raises when SQS should deliver it again."""
        sender, settings = self.sender, self.settings
        try:
            batch = parse_batch(body)
        except Malformed as exc:
            logger.error("malformed send batch dropped", extra={"message_id": message_id, "error": str(exc)})
            return {"dropped": True}
        logger.set_correlation_id(batch.issue_id)
        if self.stop_reason:
            return self.wait(batch, self.stop_reason)
        issue = sender.issue_record(settings, batch.issue_id)
        if issue is None:
            logger.error("send batch for an unknown issue dropped", extra={"message_id": message_id})
            return {"dropped": True}
        status = issue.get("status")
        if status == lifecycle.CANCELLED:
            logger.info("issue cancelled: batch not sent", extra={"batch_id": batch.batch_id})
            return {"cancelled": True}
        if status not in (lifecycle.SENDING, lifecycle.SENT):
            return self.wait(batch, f"issue {status}")
        try:
            template = sender.message_template(settings, batch.issue_id, issue, batch.language)
        except Exception as exc:
            if retry.transient(exc):
                raise
            return self.pause(batch, issue, f"the issue's message cannot be built ({_why(exc)})")
        try:
            result = self._deliver(batch, issue, template, redelivered=receive_count > 1)
        except Exception as exc:
            if not retry.permanent(exc):
                raise  # SQS delivers the batch again; everything done so far is found done
            # The token secret is missing, access is denied, a request is invalid: every retry
            # would fail the same way. The issue pauses, saying why, and the batch waits.
            return self.pause(batch, issue, f"sending fails ({_why(exc)})")
        if result is None:
            return self.wait(batch, self.stop_reason or "")
        if result.stop:
            self.stop_reason = result.reason
        if result.paused:
            sender.paused(batch.issue_id, issue)
        return {"batch_id": batch.batch_id, "left": len(result.rest)}

    def _deliver(self, batch: Batch, issue: dict, template: MessageTemplate, *, redelivered: bool):
        sender, settings = self.sender, self.settings
        ses = sender.clients("sesv2")
        limiter = sender.pacer(ses, settings)
        if not sender.sending_enabled:
            self.stop_reason = "sending paused for the account"
            return None
        key = aws.token_key(settings.token_secret_parameter)  # the newest version signs
        deps = Deps(
            ddb=sender.clients("dynamodb"),
            ses=ses,
            settings=settings,
            secret=key.secret,
            key_version=key.version,
            time_left_ms=self.time_left_ms,
            limiter=limiter,
            workers=workers_for(limiter.rate) if limiter else 1,
            throttle_backoff_s=sender.throttle_backoff_s,
            max_delay_s=sender.max_delay_s,
        )
        counts = self.totals.setdefault(batch.issue_id, Counts())
        # A test send (written by `newsletter send-test`) names its recipients on its own record.
        allowed = frozenset(issue.get("test_recipients") or ()) if issue.get("test") else frozenset()
        return sending.deliver(
            batch,
            template,
            deps,
            counts,
            logger,
            sqs=sender.clients("sqs"),
            test_recipients=allowed,
            redelivered=redelivered,
        )

    def wait(self, batch: Batch, reason: str, *, delay_s: int | None = None) -> dict:
        """The whole batch back on the queue, delayed (paused, throttled, sending stopped)."""
        delay = sending.requeue_delay(batch.attempt) if delay_s is None else delay_s
        sqs, url = self.sender.clients("sqs"), self.settings.send_queue_url
        sending.requeue(sqs, url, batch.rest(batch.recipients), min(delay, self.sender.max_delay_s), reason, logger)
        return {"requeued": True}

    def pause(self, batch: Batch, record: dict, reason: str) -> dict:
        """No retry can fix it: pause the issue with the reason; its batches wait on the queue."""
        ddb = self.sender.clients("dynamodb")
        if retry.call(lifecycle.pause_issue, ddb, self.settings.issues_table, batch.issue_id, reason=reason):
            logger.error("issue paused: no retry can fix this", extra={"batch_id": batch.batch_id, "reason": reason})
            self.sender.paused(batch.issue_id, record)
        return self.wait(batch, reason)

    def metrics(self) -> None:
        for issue_id, c in self.totals.items():
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


def _why(exc: BaseException) -> str:
    return f"{retry.describe(exc)}: {str(exc)[:200]}"
