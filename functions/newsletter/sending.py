"""Sending one recipient batch through SES, exactly once per recipient.

For each recipient: skip if no longer active or suppressed; claim the recipient in the send ledger
(conditional write); send; record the outcome. A claim is released only when the SES call certainly
did not send (an error response), so a redelivered batch resends exactly the recipients that were
not sent. Throttling and a paused account end the batch early: it comes back through SQS.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from . import message, tokens
from .config import SendSettings
from .message import MessageTemplate
from .pacing import RateLimiter
from .privacy import address_hash, normalise_address
from .store import ledger, subscribers

THROTTLED = frozenset({"TooManyRequestsException", "ThrottlingException", "Throttling", "LimitExceededException"})
PAUSED = frozenset({"SendingPausedException", "AccountSuspendedException"})
# Refusals of this one message or address: retrying cannot help.
REJECTED = frozenset({"MessageRejected", "BadRequestException", "InvalidParameterValue"})
SAFETY_MS = 20_000  # leave time for one slow SES call and the ledger write after it
THROTTLE_BACKOFF_S = 0.2
MAX_RECIPIENTS = 100


class RetryLater(Exception):
    """The batch (or its rest) must come back through SQS: throttled, paused, out of time.

    `remaining` holds the recipients not yet handled (None: the whole batch).
    """

    def __init__(self, reason: str, remaining: tuple | None = None):
        super().__init__(reason)
        self.reason = reason
        self.remaining = remaining


class BadBatch(ValueError):
    """A send-queue message that can never be sent (not what the fan-out writes)."""


@dataclass(frozen=True)
class Batch:
    issue_id: str
    list_id: str
    batch_id: str
    recipients: tuple[tuple[str, str], ...]  # (address, name)
    attempt: int = 0  # how often the batch was requeued after throttling

    def rest(self, recipients: tuple) -> "Batch":
        """What comes back through the queue: the recipients left, one attempt later."""
        return Batch(self.issue_id, self.list_id, self.batch_id, recipients, self.attempt + 1)

    def to_message(self) -> str:
        return json.dumps(
            {
                "issue_id": self.issue_id,
                "list_id": self.list_id,
                "batch_id": self.batch_id,
                "attempt": self.attempt,
                "recipients": [{"email": a, "name": n} for a, n in self.recipients],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_message(cls, body: str) -> "Batch":
        try:
            data = json.loads(body)
            issue_id, list_id = data["issue_id"], data["list_id"]
            people = data["recipients"]
            if not isinstance(issue_id, str) or not isinstance(list_id, str) or not isinstance(people, list):
                raise TypeError("issue_id and list_id must be strings, recipients a list")
            if not 0 < len(people) <= MAX_RECIPIENTS:
                raise ValueError(f"a batch holds 1 to {MAX_RECIPIENTS} recipients, not {len(people)}")
            recipients = tuple(
                (normalise_address(p["email"]), str(p.get("name") or "")) for p in people
            )
            if any("@" not in a for a, _ in recipients):
                raise ValueError("a recipient address has no '@'")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BadBatch(f"malformed send batch: {type(exc).__name__}: {exc}") from None
        return cls(issue_id, list_id, str(data.get("batch_id", "")), recipients, int(data.get("attempt") or 0))


@dataclass
class Counts:
    sent: int = 0
    skipped: int = 0
    rejected: int = 0
    uncertain: int = 0
    duplicate: int = 0  # already handled by an earlier delivery
    throttled: int = 0
    errors: list[str] = field(default_factory=list)

    def for_issue(self) -> dict[str, int]:
        return {"sent": self.sent, "skipped": self.skipped, "rejected": self.rejected, "uncertain": self.uncertain}


@dataclass
class Deps:
    """What sending needs from outside: clients, settings, the token secret, the clock."""

    ddb: object
    ses: object
    settings: SendSettings
    secret: bytes
    time_left_ms: Callable[[], int] = lambda: 900_000
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    limiter: RateLimiter | None = None  # paces SES calls to this instance's share of the rate
    workers: int = 1  # SES calls in flight at once


def send_batch(
    batch: Batch, template: MessageTemplate, deps: Deps, counts: Counts, logger, *, test_recipients: frozenset[str] = frozenset()
) -> None:
    """Send a batch; counts are updated as it goes, so they are right even if it stops early.

    Recipients who are no longer active are settled first; the others are sent by up to
    `deps.workers` threads, each SES call paced by `deps.limiter`. If a send must wait (throttled,
    paused, out of time), no new recipient is started, the calls in flight finish, and RetryLater
    names everyone not yet handled.

    `test_recipients` (a test send's addresses, from its issue record) need not be subscribers;
    suppressed addresses are skipped all the same.
    """
    s = deps.settings
    records, suppressed = subscribers.states(
        deps.ddb, s.subscribers_table, s.suppressions_table, batch.list_id, [a for a, _ in batch.recipients]
    )
    to_send = []
    for address, queued_name in batch.recipients:
        record = records.get(address)
        if address in test_recipients and address not in suppressed:
            to_send.append((address, (record or {}).get("name") or queued_name))
        elif record is None or record.get("status") != subscribers.ACTIVE or address in suppressed:
            reason = "suppressed" if address in suppressed else (record or {}).get("status", "not subscribed")
            if ledger.claim(deps.ddb, s.sends_table, batch.issue_id, address, status="skipped", now=int(deps.clock()), reason=reason):
                counts.skipped += 1
        else:
            to_send.append((address, record.get("name") or queued_name))

    stop: list[RetryLater] = []
    done: set[int] = set()
    lock = threading.Lock()

    def work(index: int) -> None:
        if stop:
            return
        if deps.time_left_ms() < SAFETY_MS:
            with lock:
                stop.append(RetryLater("out of time"))
            return
        address, name = to_send[index]
        try:
            _send_one(batch, template, deps, counts, lock, address, name, logger)
        except RetryLater as exc:
            with lock:
                stop.append(exc)
            return
        with lock:
            done.add(index)

    if deps.workers <= 1 or len(to_send) <= 1:
        for index in range(len(to_send)):
            work(index)
            if stop:
                break
    else:
        with ThreadPoolExecutor(max_workers=min(deps.workers, len(to_send))) as pool:
            for future in [pool.submit(work, i) for i in range(len(to_send))]:
                future.result()  # re-raises anything that is not a RetryLater
    if stop:
        first = stop[0]
        raise RetryLater(first.reason, tuple(r for i, r in enumerate(to_send) if i not in done)) from first


def _send_one(batch: Batch, template: MessageTemplate, deps: Deps, counts: Counts, lock, address: str, name: str, logger) -> None:
    s = deps.settings
    if not ledger.claim(deps.ddb, s.sends_table, batch.issue_id, address, status="sending", now=int(deps.clock())):
        with lock:
            counts.duplicate += 1
        return
    try:
        raw = template.render(address=address, name=name, token=tokens.sign(deps.secret, batch.list_id, address))
    except message.InvalidAddress as exc:
        ledger.settle(deps.ddb, s.sends_table, batch.issue_id, address, "rejected", int(deps.clock()), error=f"address: {exc}")
        with lock:
            counts.rejected += 1
        return
    except Exception:
        ledger.release(deps.ddb, s.sends_table, batch.issue_id, address)
        raise
    try:
        response = _send(deps, counts, lock, raw, address, batch)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in REJECTED and sender_refused(exc, template.prepared.from_address):
            # Not this recipient: the sender or the account. Rejecting would use up the whole
            # list on a configuration mistake; the batch waits instead (and the logs say why).
            ledger.release(deps.ddb, s.sends_table, batch.issue_id, address)
            logger.error("SES refused the sender, not the recipient; batch held back", extra={"code": code, "error": _message(exc)})
            raise RetryLater(f"sender refused ({code})") from exc
        if code in REJECTED:
            ledger.settle(deps.ddb, s.sends_table, batch.issue_id, address, "rejected", int(deps.clock()), error=code)
            with lock:
                counts.rejected += 1
            logger.warning("SES rejected a recipient", extra={"recipient": address_hash(address), "code": code})
            return
        ledger.release(deps.ddb, s.sends_table, batch.issue_id, address)
        if code in THROTTLED:
            raise RetryLater(f"throttled ({code})") from exc
        if code in PAUSED:
            raise RetryLater(f"sending paused ({code})") from exc
        raise
    except (ReadTimeoutError, ConnectionClosedError) as exc:
        # SES may have accepted the message: resending could mail twice, so record and move on.
        ledger.settle(deps.ddb, s.sends_table, batch.issue_id, address, "uncertain", int(deps.clock()), error=type(exc).__name__)
        with lock:
            counts.uncertain += 1
        logger.error("SES call outcome unknown; not retried", extra={"recipient": address_hash(address)})
        return
    except BaseException:
        # No response came back: nothing was sent, and the retry sends it.
        ledger.release(deps.ddb, s.sends_table, batch.issue_id, address)
        raise
    ledger.settle(deps.ddb, s.sends_table, batch.issue_id, address, "sent", int(deps.clock()), message_id=response["MessageId"])
    with lock:
        counts.sent += 1


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def sender_refused(exc: ClientError, from_address: str) -> bool:
    """A rejection that is about the sender or the account, not about the recipient: the From
    identity unverified or not authorised (SES names it in the message), or a quota used up."""
    text = _message(exc).lower()
    sender = from_address.lower()
    domain = sender.rpartition("@")[2]
    named = sender in text or re.search(r"(?<![\w.@-])" + re.escape(domain) + r"(?![\w.-])", text) is not None
    return named or "quota" in text or "not authorized to send" in text


THROTTLE_RETRIES = 3


def _send(deps: Deps, counts: Counts, lock, raw: bytes, address: str, batch: Batch) -> dict:
    """One SES call, paced, and retried in place a few times when throttled (jittered backoff)."""
    for attempt in range(THROTTLE_RETRIES + 1):
        if deps.limiter is not None:
            deps.limiter.acquire()
        try:
            return deps.ses.send_email(
                Destination={"ToAddresses": [address]},
                Content={"Raw": {"Data": raw}},
                ConfigurationSetName=deps.settings.configuration_set,
                EmailTags=[{"Name": "issue", "Value": batch.issue_id}, {"Name": "list", "Value": batch.list_id}],
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in THROTTLED:
                raise
            with lock:
                counts.throttled += 1
            if attempt == THROTTLE_RETRIES or deps.time_left_ms() < SAFETY_MS + 5_000:
                raise
            deps.sleep(random.uniform(0.5, 1.0) * THROTTLE_BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")


def requeue_delay(attempt: int) -> int:
    """Seconds before a throttled batch is tried again: exponential, jittered, SQS's 15 min at most."""
    return min(900, int(random.uniform(0.8, 1.2) * 30 * 2 ** min(attempt, 5)))
