"""Sending one recipient batch through SES, exactly once per recipient, whatever AWS does.

For each recipient: skip if no longer active or suppressed; claim it in the send ledger for this
attempt; send; record the outcome (store/ledger.py says what a claim holds). Then:
- every recipient whose state is final is added to the issue's counters once
  (`issues.count_batch`), however often the batch comes back;
- what this attempt could not finish (throttled, a transient failure, out of time, another
  attempt's claim still open) goes back on the send queue as a new message, the batch's rest,
  with a delay; a delivery that failed half-way is delivered again by SQS and finds what was done.

What SES is asked once is never asked again by the SDK (`aws.py`). A send is tried again only
when SES certainly did not take it: it answered with an error, or no connection was made. When
the answer is lost after the request left, the recipient is `uncertain` and never resent; so is
a claim whose attempt died before recording its outcome, once its deadline has passed. A missing
email is better than a duplicate, and the count shows on the issue.

A failure no retry can fix (the message cannot be built, SES refuses the sender, access denied)
pauses the issue with the reason, and its batches wait on the queue until `resume` or `cancel`.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import aws, clock, lifecycle, message, retry, tokens
from .config import SendSettings
from .message import MessageTemplate
from .pacing import RateLimiter
from .privacy import address_hash
from .queue_messages import Batch, Recipient
from .store import issues, ledger, queues, subscribers
from .store import ses as ses_adapter

THROTTLE_BACKOFF_S = 0.2
THROTTLE_RETRIES = 3
# A batch starts no new SES call with less than this left: enough for the longest an SES call can
# take and the longest the ledger write after it can take (aws.worst_case_s), and a little more.
# Derived, not chosen: change a client's timeouts and the margin follows.
SLACK_S = 2.0
SAFETY_MS = int((aws.worst_case_s("sesv2") + aws.worst_case_s("dynamodb") + SLACK_S) * 1000)


class RetryLater(Exception):
    """The rest of the batch must come back through the queue: throttled, paused, out of time."""

    def __init__(self, reason: str, *, delay_s: int | None = None, pause: str | None = None, stop: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.delay_s = delay_s  # None: the usual backoff for the batch's attempt
        self.pause = pause  # set: no retry can fix it; the issue pauses with this reason
        self.stop = stop  # the account or the sender is the problem: the invocation's other batches wait too


@dataclass
class Counts:
    """What an invocation did, for its metrics (the issue's counters come from the ledger's states)."""

    sent: int = 0
    skipped: int = 0
    rejected: int = 0
    uncertain: int = 0
    duplicate: int = 0  # already handled by an earlier delivery
    throttled: int = 0
    retried: int = 0  # a transient failure: back on the queue


@dataclass
class Deps:
    """What sending needs from outside: clients, settings, the token secret, the clock."""

    ddb: object
    ses: object
    settings: SendSettings
    secret: bytes
    time_left_ms: Callable[[], int] = lambda: 900_000
    clock: Callable[[], float] = field(default_factory=lambda: clock.now)
    sleep: Callable[[float], None] = field(default_factory=lambda: clock.sleep)
    key_version: int | None = None  # the token secret's version (tokens name it: keys.py)
    limiter: RateLimiter | None = None  # paces SES calls to this instance's share of the rate
    workers: int = 1  # SES calls in flight at once
    throttle_backoff_s: float = THROTTLE_BACKOFF_S  # before trying a throttled call again in place
    max_delay_s: int = queues.MAX_DELAY_S  # the longest a batch's rest waits on the queue

    def time_left_s(self) -> float:
        return self.time_left_ms() / 1000.0


@dataclass
class Result:
    """What one delivery of a batch came to."""

    # address → (its final state in the ledger, the batch that counts it: the one whose attempt
    # wrote that state; a recipient queued in two batches is counted by one of them only).
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)
    rest: list[Recipient] = field(default_factory=list)  # to send later (requeued)
    delay_s: int = 0
    reason: str = ""  # why there is a rest
    pause: str | None = None  # no retry can fix it: the issue pauses with this reason
    paused: bool = False  # this delivery paused the issue
    stop: bool = False  # the rest of the invocation should not call SES either

    def wait(self, seconds: float, reason: str) -> None:
        self.delay_s = max(self.delay_s, min(900, int(seconds + 0.999)))
        self.reason = self.reason or reason


# Outcomes of one recipient's attempt besides a final state.
_PENDING, _RETRY = "pending", "retry"


def send_batch(
    batch: Batch,
    template: MessageTemplate,
    deps: Deps,
    counts: Counts,
    logger,
    *,
    test_recipients: frozenset[str] = frozenset(),
    redelivered: bool = False,
) -> Result:
    """One delivery of a batch: everyone settled, sent, or handed back in `Result.rest`.

    `redelivered` (or a requeued rest): the ledger is read first, so that recipients already
    handled cost no claim. `test_recipients` (a test send's addresses, from its issue record) need
    not be subscribers; suppressed addresses are skipped all the same.
    """
    s = deps.settings
    result = Result()
    attempt = _Attempt(batch, template, deps, counts, logger, result)
    addresses = [r.address for r in batch.recipients]
    records, suppressed = retry.call(
        subscribers.states, deps.ddb, s.subscribers_table, s.suppressions_table, batch.list_id, addresses
    )
    prior = (
        retry.call(ledger.get_many, deps.ddb, s.sends_table, batch.issue_id, addresses)
        if (redelivered or batch.attempt)
        else {}
    )

    to_send: list[Recipient] = []
    for r in batch.recipients:
        if r.address in prior and not attempt.known(r, prior[r.address]):
            continue
        record = records.get(r.address)
        if r.address in test_recipients and r.address not in suppressed:
            to_send.append(r._replace(name=(record or {}).get("name") or r.name))
        elif record is None or record.get("status") != subscribers.ACTIVE or r.address in suppressed:
            reason = "suppressed" if r.address in suppressed else (record or {}).get("status", "not subscribed")
            attempt.skip(r, reason)
        else:
            to_send.append(r._replace(name=record.get("name") or r.name))
    attempt.send_all(to_send)
    return result


class _Attempt:
    """One delivery's work on its recipients, shared by its worker threads."""

    def __init__(self, batch: Batch, template: MessageTemplate, deps: Deps, counts: Counts, logger, result: Result):
        self.batch, self.template, self.deps, self.counts, self.logger = batch, template, deps, counts, logger
        self.result = result
        self.claim_id = uuid.uuid4().hex
        self.lock = threading.Lock()
        self.stopped: RetryLater | None = None

    # --- what the ledger already says -----------------------------------------------------------

    def known(self, r: Recipient, item: dict) -> bool:
        """A recipient the ledger already has: record its final state, resolve an abandoned claim,
        or hand it back while another attempt holds it. True: it still needs sending (a claim of
        our own that never sent)."""
        status = item.get("status")
        if status in ledger.FINAL:
            self._final(r.address, status, owner=item.get("batch_id"), duplicate=True)
            return False
        if r.claim and item.get("claim") == r.claim:
            return True
        now = self.deps.clock()
        if ledger.abandoned(item, now):
            s = self.deps.settings
            after = retry.call(
                ledger.resolve_abandoned, self.deps.ddb, s.sends_table, self.batch.issue_id, r.address, item, now
            )
            if after.get("status") in ledger.FINAL:
                if after.get("claim") == item.get("claim") and after.get("status") == "uncertain":
                    self.logger.warning(
                        "abandoned claim resolved as uncertain; never resent",
                        extra={"recipient": address_hash(r.address)},
                    )
                self._final(
                    r.address, after["status"], owner=after.get("batch_id") or item.get("batch_id"), duplicate=True
                )
                return False
            item = after
        with self.lock:
            self.result.rest.append(r._replace(claim=None))
            self.result.wait(
                float(item.get("until") or now) + ledger.CLOCK_SKEW_S + 1 - now, "claimed by another attempt"
            )
        return False

    def _final(self, address: str, status: str, *, owner: str | None = None, duplicate: bool = False) -> None:
        with self.lock:
            self.result.outcomes[address] = (status, owner or self.batch.batch_id)
            if duplicate:
                self.counts.duplicate += 1
            elif hasattr(self.counts, status):
                setattr(self.counts, status, getattr(self.counts, status) + 1)

    # --- skipping ---------------------------------------------------------------------------------

    def skip(self, r: Recipient, reason: str) -> None:
        s, now = self.deps.settings, self.deps.clock()
        try:
            old = retry.call(
                ledger.claim,
                self.deps.ddb,
                s.sends_table,
                self.batch.issue_id,
                r.address,
                claim_id=self.claim_id,
                status="skipped",
                now=now,
                reason=reason,
                batch_id=self.batch.batch_id,
            )
        except Exception as exc:
            if not retry.transient(exc):
                raise
            self._retry_later(r, retry.describe(exc))
            return
        if old is None:
            self._final(r.address, "skipped")
        elif self.known(r, old):
            self._retry_later(r, None)

    # --- sending ----------------------------------------------------------------------------------

    def send_all(self, to_send: list[Recipient]) -> None:
        done: set[int] = set()

        def work(index: int) -> None:
            if self.stopped is not None:
                return
            if self.deps.time_left_ms() < SAFETY_MS:
                self._stop(RetryLater("out of time", delay_s=0))
                return
            try:
                self.send_one(to_send[index])
            except RetryLater as exc:
                self._stop(exc)  # the recipient itself was handed back already
            with self.lock:
                done.add(index)

        if self.deps.workers <= 1 or len(to_send) <= 1:
            for index in range(len(to_send)):
                work(index)
                if self.stopped is not None:
                    break
        else:
            with ThreadPoolExecutor(max_workers=min(self.deps.workers, len(to_send))) as pool:
                for future in [pool.submit(work, i) for i in range(len(to_send))]:
                    future.result()  # re-raises anything that is not a RetryLater
        if self.stopped is not None:
            stop = self.stopped
            unstarted = [r for i, r in enumerate(to_send) if i not in done]
            self.result.rest.extend(unstarted)
            delay = stop.delay_s if stop.delay_s is not None else requeue_delay(self.batch.attempt)
            self.result.wait(delay, stop.reason)
            self.result.reason = stop.reason
            self.result.pause = self.result.pause or stop.pause
            self.result.stop = self.result.stop or stop.stop

    def _stop(self, exc: RetryLater) -> None:
        with self.lock:
            if self.stopped is None:
                self.stopped = exc

    def _retry_later(self, r: Recipient, why: str | None, claim: str | None = None) -> None:
        """Hand the recipient back: a transient failure; it comes back soon."""
        with self.lock:
            self.counts.retried += 1
            self.result.rest.append(r._replace(claim=claim))
            self.result.wait(retry_delay(self.batch.attempt), f"transient failure ({why})" if why else "retry")

    def send_one(self, r: Recipient) -> None:
        deps, s, batch = self.deps, self.deps.settings, self.batch
        now = deps.clock()
        until = now + deps.time_left_s()
        try:
            old = ledger.claim(
                deps.ddb,
                s.sends_table,
                batch.issue_id,
                r.address,
                claim_id=self.claim_id,
                status=ledger.SENDING,
                now=now,
                until=until,
                take_over=r.claim,
                batch_id=batch.batch_id,
            )
        except Exception as exc:
            if not retry.transient(exc):
                raise
            self._release(r, retry.describe(exc))  # the claim may have been written: it must not look like a send
            return
        if old is not None:
            if self.known(r, old):  # our own earlier claim, still open: only when taking over
                self._retry_later(r, None, claim=r.claim)
            return
        try:
            raw = self.template.render(
                address=r.address,
                name=r.name,
                token=tokens.sign(deps.secret, batch.list_id, r.address, key_version=deps.key_version),
            )
        except message.InvalidAddress as exc:
            self._settle(r, "rejected", error=f"address: {exc}")
            return
        except Exception as exc:
            self._release(r, None)
            raise RetryLater(
                f"the message cannot be built: {retry.describe(exc)}: {str(exc)[:200]}",
                pause=f"the message cannot be built ({retry.describe(exc)}: {str(exc)[:200]})",
            ) from exc
        try:
            answer = self._send(raw, r.address)
        except Exception:
            # Not botocore's: it came from outside the HTTP exchange (botocore wraps whatever
            # happens in it), so the request was not made. The claim goes back, and the batch
            # fails: SQS delivers it again, and the ledger shows what this attempt finished.
            self._release(r, None)
            raise
        self._answered(r, answer)

    def _answered(self, r: Recipient, answer: ses_adapter.Answer) -> None:
        """What SES's answer means for this recipient, and for the rest of the batch."""
        if answer.kind == ses_adapter.SENT:
            # The language of an issue in several, as its SES tag: who read which variant.
            language = {"language": self.batch.language} if self.batch.language else {}
            self._settle(r, "sent", message_id=answer.message_id, **language)
        elif answer.kind == ses_adapter.REJECTED:
            self._settle(r, "rejected", error=answer.code)
            self.logger.warning(
                "SES rejected a recipient", extra={"recipient": address_hash(r.address), "code": answer.code}
            )
        elif answer.kind == ses_adapter.UNCERTAIN:
            self._settle(r, "uncertain", error=answer.code)
            self.logger.error(
                "SES call outcome unknown; not retried",
                extra={"recipient": address_hash(r.address), "error": answer.code},
            )
        elif answer.kind == ses_adapter.RETRY:
            self._release(r, answer.code)  # SES certainly did not send: this one comes back soon
        else:
            self._release(r, None)
            if answer.kind == ses_adapter.THROTTLED:
                raise RetryLater(f"throttled ({answer.code})", stop=True)
            if answer.pause:
                what = answer.detail.split(" (")[0]
                self.logger.error(f"{what}; issue paused", extra={"code": answer.code, "error": answer.detail})
                raise RetryLater(f"{what} ({answer.code})", pause=answer.detail, stop=True)
            raise RetryLater(f"{answer.detail} ({answer.code})", delay_s=answer.wait_s, stop=True)

    def _release(self, r: Recipient, why: str | None) -> None:
        """Give the claim back (SES certainly did not send); the recipient comes back later."""
        s = self.deps.settings
        try:
            retry.call(ledger.release, self.deps.ddb, s.sends_table, self.batch.issue_id, r.address, self.claim_id)
            kept = None
        except Exception as failure:
            if not retry.transient(failure):
                raise
            kept = self.claim_id  # still ours, never used: the next attempt takes it over
        if why is not None:
            self._retry_later(r, why, claim=kept)
        else:
            with self.lock:
                self.result.rest.append(r._replace(claim=kept))

    def _settle(self, r: Recipient, status: str, **detail) -> None:
        """Record the outcome, trying again while the margin kept for it lasts. If it cannot be
        recorded, the claim stays open and is resolved as `uncertain` once this attempt is over."""
        deps, s = self.deps, self.deps.settings
        try:
            final = retry.call(
                ledger.settle,
                deps.ddb,
                s.sends_table,
                self.batch.issue_id,
                r.address,
                self.claim_id,
                status,
                deps.clock(),
                attempts=5,
                time_left_s=deps.time_left_s,
                needs_s=aws.worst_case_s("dynamodb"),
                **detail,
            )
        except Exception as exc:
            if not retry.transient(exc):
                raise
            self.logger.error(
                "outcome could not be recorded; the claim resolves as uncertain",
                extra={"recipient": address_hash(r.address), "outcome": status, "error": retry.describe(exc)},
            )
            with self.lock:
                self.result.rest.append(r._replace(claim=None))
                self.result.wait(deps.time_left_s() + ledger.CLOCK_SKEW_S + 1, "outcome not recorded")
            return
        self._final(r.address, final)

    def _send(self, raw: bytes, address: str) -> ses_adapter.Answer:
        """One SES call, paced, and tried again in place a few times when throttled (jittered
        backoff): a throttled call was refused, so nothing was sent."""
        deps = self.deps
        for attempt in range(THROTTLE_RETRIES + 1):
            if deps.limiter is not None:
                deps.limiter.acquire()
            answer = ses_adapter.send_email(
                deps.ses,
                raw,
                address,
                configuration_set=deps.settings.configuration_set,
                # The language only for an issue in several: its feedback is counted per language too.
                tags={
                    "issue": self.batch.issue_id,
                    "list": self.batch.list_id,
                    **({"language": self.batch.language} if self.batch.language else {}),
                },
                sender=self.template.prepared.from_address,
            )
            if answer.kind != ses_adapter.THROTTLED:
                return answer
            with self.lock:
                self.counts.throttled += 1
            if attempt == THROTTLE_RETRIES or deps.time_left_ms() < SAFETY_MS + 5_000:
                return answer
            deps.sleep(random.uniform(0.5, 1.0) * deps.throttle_backoff_s * 2**attempt)
        raise AssertionError("unreachable")


def requeue_delay(attempt: int) -> int:
    """Seconds before a throttled or paused batch is tried again: exponential, jittered, SQS's 15 min at most."""
    return min(900, int(random.uniform(0.8, 1.2) * 30 * 2 ** min(attempt, 5)))


def retry_delay(attempt: int) -> int:
    """Seconds before recipients that met a transient failure are tried again: soon, then backing off."""
    return min(900, int(random.uniform(0.8, 1.2) * 5 * 2 ** min(attempt, 7)))


def deliver(
    batch: Batch,
    template: MessageTemplate,
    deps: Deps,
    counts: Counts,
    logger,
    *,
    sqs,
    test_recipients: frozenset[str] = frozenset(),
    redelivered: bool = False,
) -> Result:
    """Send a batch, then count what is final, pause the issue if no retry can help, and queue
    the rest. If anything after the sending fails, SQS delivers the batch again: every step
    finds what the last one did (the ledger, the batch's marker, a paused issue)."""
    from . import completion

    s = deps.settings
    result = send_batch(batch, template, deps, counts, logger, test_recipients=test_recipients, redelivered=redelivered)
    by_owner: dict[str, dict[str, str]] = {}
    for address, (status, owner) in result.outcomes.items():
        by_owner.setdefault(owner, {})[address] = status
    for owner, outcomes in sorted(by_owner.items()):
        record = retry.call(
            issues.count_batch, deps.ddb, s.issues_table, batch.issue_id, owner, outcomes, language=batch.language
        )
        completion.finish_if_done(
            deps.ddb, s.issues_table, record, sqs=sqs, fanout_queue_url=s.fanout_queue_url, logger=logger
        )
    if result.pause and retry.call(
        lifecycle.pause_issue, deps.ddb, s.issues_table, batch.issue_id, reason=result.pause
    ):
        result.paused = True
        logger.error("issue paused: no retry can fix this", extra={"batch_id": batch.batch_id, "reason": result.pause})
    if result.rest:
        requeue(
            sqs, s.send_queue_url, batch.rest(result.rest), min(result.delay_s, deps.max_delay_s), result.reason, logger
        )
    return result


def requeue(sqs, queue_url: str, rest: Batch, delay_s: int, reason: str, logger) -> None:
    """Put what is left of a batch back on the send queue, delayed, as a new message: so that
    waiting (throttling, a pause), however long, never pushes a batch towards the DLQ, whose
    receive count is for batches that keep failing."""
    delay_s = queues.send(sqs, queue_url, rest.to_message(), delay_s=delay_s)
    logger.warning(
        "batch requeued",
        extra={
            "batch_id": rest.batch_id,
            "reason": reason,
            "left": len(rest.recipients),
            "delay_s": delay_s,
            "attempt": rest.attempt,
        },
    )
