"""Fan-out: turn one shard of a list's subscribers into recipient batches on the send queue.

Each segment (list shard) reads its subscribers a page at a time and queues them 50 to a message,
10 messages to a SendMessageBatch call. When the invocation's time runs low it queues its own
continuation (the page cursor) and returns, so no list is too large for Lambda's 15 minutes.
Pages are counted once (a marker per page); recipients are deduplicated by the send ledger.

`Invocation` takes one invocation's fan-out queue messages: a segment (or its continuation), or
the reconcile job of a finished issue (`completion.reconcile`). The AWS clients are injected
(`clients`: service name → boto3 client).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import aws, completion, retry, rollout
from .config import FanoutSettings
from .languages import choose
from .lifecycle import Status
from .privacy import normalise_address
from .queue_messages import Batch, Judge, Malformed, Recipient, Reconcile, Segment, batch_id, parse_fanout
from .store import issues, ledger, queues, subscribers
from .telemetry import issue_metrics, logger, service_metrics

RECIPIENTS_PER_BATCH = 50
PAGE_SIZE = 500  # ten batches: one SendMessageBatch call per page
SAFETY_MS = 60_000  # stop taking new pages with less than this left


@dataclass
class Progress:
    pages: int = 0
    queued: int = 0
    batches: int = 0
    continued: bool = False
    stopped: str = ""


def fan_out(
    segment: Segment, *, settings: FanoutSettings, ddb, sqs, time_left_ms: Callable[[], int], logger
) -> Progress:
    """Queue this segment's recipients, page by page, continuing itself if time runs short.

    Every step can be repeated (a page queued twice is sent once: the ledger; counted once: its
    marker), so a call that fails transiently is tried again in place, and a page that still
    fails raises: SQS delivers the segment again, from the page it had reached.
    """
    progress = Progress()
    issue = retry.call(issues.get_issue, ddb, settings.issues_table, segment.issue_id)
    if issue is None:
        raise LookupError(f"issue {segment.issue_id!r} has no record; fan-out message without a publish")
    if issue.get("status") == Status.CANCELLED:
        progress.stopped = "cancelled"
        return progress

    page, cursor = segment.page, segment.cursor
    while True:
        found, next_cursor = retry.call(
            subscribers.query_active, ddb, settings.subscribers_table, segment.list_id, segment.shard, cursor, PAGE_SIZE
        )
        found = for_topics(found, issue.get("topics"))
        recipients = [(Recipient(normalise_address(s["email"]), s.get("name") or ""), s.get("language")) for s in found]
        recipients = rollout.select(recipients, segment.issue_id, segment.part, issue.get("rollout"))
        if recipients:
            suppressed = retry.call(
                subscribers.suppressed_among, ddb, settings.suppressions_table, [r.address for r, _ in recipients]
            )
            recipients = [(r, lang) for r, lang in recipients if r.address not in suppressed]
        progress.batches += queue_batches(sqs, settings.send_queue_url, segment, page, by_language(issue, recipients))
        last = next_cursor is None
        # The page's marker names its readers (8-byte hashes, no address): `newsletter resend
        # --not-sent` tells "queued, never sent" from "never queued" by them (docs/data.md).
        readers = ledger.queued_keys(r.address for r, _ in recipients)
        if retry.call(
            issues.record_page,
            ddb,
            settings.issues_table,
            segment.issue_id,
            segment.shard,
            page,
            len(recipients),
            last,
            readers=readers,
            part=segment.part,
        ):
            progress.queued += len(recipients)
        if last:
            # The senders may have finished before this last page was counted (or before an
            # earlier delivery of it was): whoever sees the last count completes the issue.
            record = retry.call(issues.get_issue, ddb, settings.issues_table, segment.issue_id)
            completion.finish_if_done(
                ddb, settings.issues_table, record, sqs=sqs, fanout_queue_url=settings.fanout_queue_url, logger=logger
            )
        progress.pages += 1
        page, cursor = page + 1, next_cursor
        if last:
            return progress
        if time_left_ms() < SAFETY_MS:
            queues.send(sqs, settings.fanout_queue_url, segment.continued(page, cursor).to_message())
            progress.continued = True
            logger.info("fan-out continues in a new invocation", extra={"shard": segment.shard, "page": page})
            return progress


def for_topics(found: list[dict], topics: list[str] | None) -> list[dict]:
    """The readers an issue with `topics` goes to: those who chose one of them, and those who
    never chose (imported before topics, or from a list without them): they get every issue."""
    if not topics:
        return found
    wanted = set(topics)
    return [s for s in found if not s.get("topics") or wanted & set(s["topics"])]


def by_language(issue: dict, recipients: list[tuple[Recipient, str | None]]) -> dict[str | None, list[Recipient]]:
    """A page's recipients by the issue's language each gets (languages.choose). An issue in one
    language has one group, None: its batches name no language, as before languages existed."""
    default, languages = issue.get("language") or "en", issue.get("languages") or []
    if len(languages) < 2:
        return {None: [r for r, _ in recipients]}
    groups: dict[str | None, list[Recipient]] = {}
    for r, language in recipients:
        groups.setdefault(choose(language, languages, default), []).append(r)
    return groups


def queue_batches(sqs, queue_url: str, segment: Segment, page: int, groups: dict | list[Recipient]) -> int:
    """A page's recipients, RECIPIENTS_PER_BATCH of one language to a message; how many messages.
    The same page gives the same batch ids, however often it is fanned out. (A list: all get the
    issue's default language.)"""
    if not isinstance(groups, dict):
        groups = {None: list(groups)}
    chunks = [
        (language, chunk)
        for language in sorted(groups, key=lambda k: k or "")
        for chunk in _chunks(groups[language], RECIPIENTS_PER_BATCH)
    ]
    bodies = [
        Batch(
            segment.issue_id,
            segment.list_id,
            batch_id(segment.shard, page, n, segment.part),
            tuple(chunk),
            0,
            language,
        ).to_message()
        for n, (language, chunk) in enumerate(chunks)
    ]
    queues.send_all(sqs, queue_url, bodies)
    return len(bodies)


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --- one invocation's fan-out messages ------------------------------------------------------------


def aws_client(service: str):
    return aws.client(service)  # looked up at each call: the environment decides (aws.py)


@dataclass
class Invocation:
    settings: FanoutSettings
    time_left_ms: Callable[[], int]
    clients: Callable[[str], object] = aws_client

    def record(self, record) -> dict:
        """One SQS record (its `body` and `message_id`); raises when SQS should deliver it again."""
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
            return self.reconcile(job.issue_id)
        if isinstance(job, Judge):
            return self.judge(job.issue_id)
        logger.set_correlation_id(job.issue_id)
        progress = fan_out(
            job,
            settings=self.settings,
            ddb=self.clients("dynamodb"),
            sqs=self.clients("sqs"),
            time_left_ms=self.time_left_ms,
            logger=logger,
        )
        issue_metrics(job.issue_id, {"RecipientsQueued": progress.queued})
        logger.info(
            "fan-out segment done" if not progress.continued else "fan-out segment continues",
            extra={"shard": job.shard, "pages": progress.pages, "queued": progress.queued, "stopped": progress.stopped},
        )
        return progress.__dict__

    def judge(self, issue_id: str) -> dict:
        """A rollout's wait, or its verdict on the cohort (rollout.py)."""
        logger.set_correlation_id(issue_id)
        s = self.settings
        did = rollout.judge(
            issue_id,
            ddb=self.clients("dynamodb"),
            sqs=self.clients("sqs"),
            table=s.issues_table,
            queue_url=s.fanout_queue_url,
            logger=logger,
        )
        if did == rollout.HELD:
            # An automatic pause like the feedback function's: the same alarm brings the operator.
            issue_metrics(issue_id, {"RolloutHeld": 1, "IssuePaused": 1})
            service_metrics({"IssuePaused": 1})
        elif did == rollout.REST:
            issue_metrics(issue_id, {"RolloutContinued": 1})
        return {"rollout": did}

    def reconcile(self, issue_id: str) -> dict:
        """A finished issue's counters, checked against its send ledger (see completion.py)."""
        logger.set_correlation_id(issue_id)
        s = self.settings
        result = completion.reconcile(self.clients("dynamodb"), s.issues_table, s.sends_table, issue_id, logger)
        if "counters_corrected" in result:
            issue_metrics(issue_id, {"CountersCorrected": 1})
        logger.info("issue counters reconciled with the send ledger", extra={"ledger": result["ledger_counts"]})
        return result
