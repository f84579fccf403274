"""Who got an issue: its readers in one state, as CSV (`newsletter status ISSUE --recipients STATE`),
and sending it to those it was queued for and never sent (`newsletter resend ISSUE --not-sent`).

Where each state comes from (docs/data.md):

    sent, rejected, uncertain, skipped   the send ledger: a Query of the issue's partition
    delivered, bounced, complained       SES's feedback as the feedback table keeps it (one marker
                                         per notification and reader, 30 days): a filtered Scan;
                                         `rejected` adds SES's Reject notifications
    not-sent                             the fan-out's page markers (who each page queued, by key),
                                         walked with the list's subscribers shard by shard, less
                                         everyone the ledger holds

Every export streams: a page of items at a time, joined with the readers' names and languages, so
memory stays the same however large the list. Addresses go to the CSV only, never to a log.
A resend queues batches on the send queue exactly as fan-out writes them; the send function's
conditional claim in the ledger then mails nobody twice, whoever else is sending the same issue.
"""

from __future__ import annotations

import csv
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from newsletter import clock, retry
from newsletter.lifecycle import Status
from newsletter.store import feedback_log, from_item, issues, ledger, pages, queues
from newsletter.store.subscribers import ACTIVE, SHARDS, batch_get, shard_readers, suppressed_among

from .stack import CliError

# The fan-out's and the feedback function's modules (Powertools and all) are imported where they
# are used: `newsletter --help` reads STATES.

# The states an export names, and what each means (the command's help and docs/cli.md say the same).
STATES = {
    "sent": "SES accepted the message (delivered or not)",
    "delivered": "SES reported the message delivered to the reader's mail server",
    "bounced": "SES reported a bounce (detail: hard or soft, and its type)",
    "complained": "the reader marked the message as spam",
    "rejected": "SES refused the address when asked to send, or rejected the message afterwards",
    "uncertain": "the SES call's outcome is unknown, or its attempt died holding the claim (never resent)",
    "skipped": "not sent when its turn came: unsubscribed or suppressed by then",
    "not-sent": "queued and never sent (the issue cancelled, a batch in the DLQ, an issue still paused)",
}
COLUMNS = ("email", "name", "language", "state", "when", "detail")
# The feedback markers' counters behind each state (feedback.COUNTERS).
FEEDBACK = {
    "delivered": ("delivered",),
    "bounced": ("bounced_hard", "bounced_soft"),
    "complained": ("complained",),
    "rejected": ("ses_rejected",),
}
SES_FEEDBACK_IDS = frozenset({"bounced_hard", "bounced_soft", "complained"})  # the rest: "<message id>#<kind>"
# The ledger's states behind each (an abandoned claim is uncertain: its attempt may have sent).
LEDGER = {
    "sent": ("sent",),
    "rejected": ("rejected",),
    "uncertain": ("uncertain", ledger.SENDING),
    "skipped": ("skipped",),
}
PAGE = 100  # readers joined with their subscriber records at once (BatchGetItem's most)
READ = 1000  # items a Query reads at once: a response of ~150 KB, not DynamoDB's 1 MB pages
LOOKAHEAD = 16  # a shard's fan-out pages held at once (500 keys each) while walking its readers


@dataclass(frozen=True)
class Tables:
    """The stack's tables (physical names) an export or a resend reads."""

    issues: str
    sends: str
    subscribers: str
    suppressions: str
    feedback: str


class NotRecorded(Exception):
    """The issue's fan-out did not record whom it queued: `not-sent` cannot be told apart."""


@dataclass
class Row:
    email: str
    name: str = ""
    language: str = ""
    state: str = ""
    when: str = ""
    detail: str = ""


# --- an export ------------------------------------------------------------------------------------


def export(ddb, tables: Tables, record: dict, state: str, out: TextIO, *, now: float | None = None) -> int:
    """Write the issue's readers in `state` to `out` as CSV (a header, then a row each); how many.
    Check first with `exportable`: else NotRecorded may come after the header."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    n = 0
    for page in _chunks(rows(ddb, tables, record, state, now=now), PAGE):
        for row in page:
            writer.writerow([getattr(row, c) for c in COLUMNS])
        n += len(page)
        out.flush()
    return n


def exportable(ddb, tables: Tables, record: dict, state: str) -> None:
    """Raise NotRecorded if the stack cannot tell who of the issue's readers is in `state`."""
    if state == "not-sent":
        check_recorded(ddb, tables.issues, record)


def rows(ddb, tables: Tables, record: dict, state: str, *, now: float | None = None) -> Iterator[Row]:
    """The issue's readers in `state`, as export rows (names and languages from the issue's list)."""
    if state not in STATES:
        raise ValueError(f"state: one of {', '.join(STATES)}")
    issue_id, list_id = record["issue_id"], record.get("list_id") or ""
    now = clock.now() if now is None else now
    if state == "not-sent":
        for found in not_sent(ddb, tables, record, now=now):
            if found.held is None:  # the others are in the ledger, uncertain or final
                yield Row(found.address, found.name, found.language, state, "", found.since or "")
        return
    sources: list[Iterable[Row]] = []
    if state in LEDGER:
        sources.append(_ledger_rows(ddb, tables, issue_id, state, now))
    if state in FEEDBACK:
        sources.append(_feedback_rows(ddb, tables, issue_id, state))
    for source in sources:
        for page in _chunks(source, PAGE):
            people = _subscribers(ddb, tables.subscribers, list_id, [r.email for r in page])
            for row in page:
                person = people.get(row.email) or {}
                row.name, row.language = person.get("name") or "", person.get("language") or ""
                yield row


def _ledger_rows(ddb, tables: Tables, issue_id: str, state: str, now: float) -> Iterator[Row]:
    for item in ledger.entries(ddb, tables.sends, issue_id, LEDGER[state]):
        status = item.get("status")
        if status == ledger.SENDING:
            if not ledger.abandoned(item, now):
                continue  # a send under way
            detail = "its attempt ended holding the claim"  # resolved as uncertain when its batch comes back
        elif status == "sent":
            detail = f"SES message {item['message_id']}" if item.get("message_id") else ""
        else:
            detail = str(item.get("error") or item.get("reason") or "")
        yield Row(item["email"], state=state, when=_when(item.get("at")), detail=detail)


def _feedback_rows(ddb, tables: Tables, issue_id: str, state: str) -> Iterator[Row]:
    """One row per notification SES sent about a reader of the issue (the feedback table's
    once-only markers: `seen#<feedback id>#<address>`, with the issue and the counter)."""
    counters = FEEDBACK[state]
    values = {":seen": {"S": "seen#"}, ":issue": {"S": issue_id}}
    values.update({f":c{n}": {"S": c} for n, c in enumerate(counters)})
    condition = "begins_with(pk, :seen) AND issue_id = :issue AND #counter IN ("
    condition += ", ".join(f":c{n}" for n in range(len(counters))) + ")"
    for page in pages(
        ddb.scan,
        TableName=tables.feedback,
        FilterExpression=condition,
        ExpressionAttributeNames={"#counter": "counter"},
        ExpressionAttributeValues=values,
    ):
        yield from _feedback_details(ddb, tables, [from_item(i) for i in page.get("Items", [])], state)


def _feedback_details(ddb, tables: Tables, markers: list[dict], state: str) -> Iterator[Row]:
    """Rows for a page of markers, with what else the stack kept of each notification: a hard
    bounce's type in the suppression list, a soft bounce's in the address's bounce history."""
    from newsletter.feedback import SEEN_DAYS

    seen = []
    for m in markers:
        # A bounce's or complaint's id is SES's feedbackId; the others' "<message id>#<kind>"
        # (notifications.py). Neither holds another '#'; an address may.
        parts = 1 if m.get("counter") in SES_FEEDBACK_IDS else 2
        key = m["pk"].split("#", 1 + parts)
        feedback_id, address = "#".join(key[1 : 1 + parts]), key[1 + parts]
        at = int(m.get("expires_at") or 0) - SEEN_DAYS * 86400
        seen.append((feedback_id, address, m.get("counter"), _when(at) if at > 0 else ""))
    hard = [a for _, a, c, _ in seen if c == "bounced_hard"]
    entries = _suppression_entries(ddb, tables.suppressions, hard) if hard else {}
    for feedback_id, address, counter, when in seen:
        detail = ""
        if counter == "bounced_hard":
            entry = entries.get(address) or {}
            detail = "hard" + _bounce_type(entry if entry.get("feedback_id") == feedback_id else {})
        elif counter == "bounced_soft":
            detail = "soft" + _bounce_type(_soft_bounce(ddb, tables.feedback, address, feedback_id))
        elif counter == "ses_rejected":
            detail = "SES rejected the message after accepting it"
        yield Row(address, state=state, when=when, detail=detail)


def _bounce_type(item: dict) -> str:
    kinds = [str(item[k]) for k in ("bounce_type", "bounce_subtype") if item.get(k)]
    return f" ({'/'.join(kinds)})" if kinds else ""


def _suppression_entries(ddb, table: str, addresses: list[str]) -> dict[str, dict]:
    unique = list(dict.fromkeys(addresses))
    found: dict[str, dict] = {}
    for i in range(0, len(unique), 100):
        for item in batch_get(ddb, {table: {"Keys": [{"email": {"S": a}} for a in unique[i : i + 100]]}})[table]:
            found[item["email"]] = item
    return found


def _soft_bounce(ddb, table: str, address: str, feedback_id: str) -> dict:
    """The address's soft-bounce history item of this notification (kept for the soft-bounce
    window: {} once it is gone)."""
    for item in feedback_log.history(ddb, table, address):
        if item["sk"].endswith(f"#{feedback_id}"):
            return item
    return {}


def _subscribers(ddb, table: str, list_id: str, addresses: list[str]) -> dict[str, dict]:
    """The list's records of these readers (name, language, status), by address."""
    from newsletter.store.subscribers import key

    unique = list(dict.fromkeys(addresses))
    found: dict[str, dict] = {}
    for i in range(0, len(unique), 100):
        request = {
            table: {
                "Keys": [key(list_id, a) for a in unique[i : i + 100]],
                "ProjectionExpression": "email, #name, #lang, #status",
                "ExpressionAttributeNames": {"#name": "name", "#lang": "language", "#status": "status"},
            }
        }
        for item in batch_get(ddb, request)[table]:
            found[item["email"]] = item
    return found


# --- queued, never sent -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NotSent:
    """A reader the issue was queued for and never counted. `held` None: their send never began
    (no ledger item: not sent). Otherwise the ledger's state of one whose batch was lost after it
    was written: `sending` (a claim whose attempt died: uncertain, never resent) or a final state
    never added to the issue's counters (the batch's instance died before counting it)."""

    address: str
    name: str
    language: str
    since: str | None = None  # "unsubscribed since", "suppressed since": the send function skips them
    held: str | None = None


def not_sent(ddb, tables: Tables, record: dict, *, now: float | None = None) -> Iterator[NotSent]:
    """Every reader a fan-out page of the issue queued and no batch counted, shard by shard in the
    list's key order. Raises NotRecorded when the fan-out did not say whom it queued."""
    check_recorded(ddb, tables.issues, record)
    now = clock.now() if now is None else now
    issue_id, list_id = record["issue_id"], record.get("list_id") or ""
    for shard in range(SHARDS):
        queued = QueuedPages(_page_keys(ddb, tables.issues, issue_id, shard))
        if queued.empty:
            continue
        for page in _chunks(shard_readers(ddb, tables.subscribers, list_id, shard, read=READ), PAGE):
            candidates = [s for s in page if ledger.queued_key(s["email"]) in queued]
            if not candidates:
                continue
            held = retry.call(ledger.get_many, ddb, tables.sends, issue_id, [s["email"] for s in candidates])
            lost = {a for a, item in held.items() if ledger.abandoned(item, now)}
            lost |= _uncounted(
                ddb, tables.issues, issue_id, {a: i for a, i in held.items() if i.get("status") in ledger.FINAL}
            )
            fresh = [s for s in candidates if s["email"] not in held or s["email"] in lost]
            if not fresh:
                continue
            suppressed = retry.call(suppressed_among, ddb, tables.suppressions, [s["email"] for s in fresh])
            for s in fresh:
                since = None
                if s.get("status") != ACTIVE:
                    since = f"{s.get('status')} since"
                elif s["email"] in suppressed:
                    since = "suppressed since"
                state = (held.get(s["email"]) or {}).get("status")
                yield NotSent(s["email"], s.get("name") or "", s.get("language") or "", since, state)


def _uncounted(ddb, table: str, issue_id: str, final: dict[str, dict]) -> set[str]:
    """Of these readers in a final state, those the batch that wrote it never counted (its marker
    `batch#<id>` names each reader it counted; issues.count_batch)."""
    owners = sorted({str(i["batch_id"]) for i in final.values() if i.get("batch_id")})
    if not owners:
        return set()
    counted: dict[str, set] = {}
    for n in range(0, len(owners), 100):
        keys = [{"issue_id": {"S": issue_id}, "sk": {"S": f"batch#{b}"}} for b in owners[n : n + 100]]
        request = {table: {"Keys": keys, "ProjectionExpression": "sk, #counted", "ConsistentRead": True}}
        request[table]["ExpressionAttributeNames"] = {"#counted": "counted"}
        for item in batch_get(ddb, request)[table]:
            counted[item["sk"].removeprefix("batch#")] = set(item.get("counted") or ())
    # The marker names a reader by issues' key for it (a hash: the issues table holds no address).
    return {
        a
        for a, i in final.items()
        if i.get("batch_id") and issues.count_key(a) not in counted.get(str(i["batch_id"]), set())
    }


def check_recorded(ddb, table: str, record: dict) -> None:
    """Raise NotRecorded unless every page the issue's fan-out queued readers from names them (so
    that an export or a resend never stops half-way for want of them)."""
    if record.get("test"):
        raise NotRecorded("a test send is not fanned out: its addresses are on its record")
    if issues.pages_without_readers(ddb, table, record["issue_id"]):
        raise NotRecorded(
            "this issue's fan-out did not record whom it queued (its page markers name no readers): "
            "who was queued and never sent cannot be told from who was never queued"
        )


class QueuedPages:
    """Whether a shard's readers, taken in the order fan-out read them (the shard's key order),
    were queued by one of its pages. A page holds readers later in that order than the page
    before, so only a few pages need be held at once: a reader found in a later page retires the
    earlier ones. A reader found in none of them was not queued (or left the list, and with them
    whole pages: more than LOOKAHEAD pages in a row of erased readers would hide the readers behind
    them, who are then not resent: a miss, never a duplicate)."""

    def __init__(self, pages: Iterator[frozenset[bytes]], lookahead: int = LOOKAHEAD):
        self._pages, self._lookahead = pages, lookahead
        self._held: deque[frozenset[bytes]] = deque()
        self._fill()

    @property
    def empty(self) -> bool:
        return not self._held

    def _fill(self) -> None:
        while len(self._held) < self._lookahead:
            page = next(self._pages, None)
            if page is None:
                return
            if page:  # a page of readers none of whom was active queued nobody
                self._held.append(page)

    def __contains__(self, key: bytes) -> bool:
        for n, page in enumerate(self._held):
            if key in page:
                for _ in range(n):
                    self._held.popleft()
                self._fill()
                return True
        return False


def _page_keys(ddb, table: str, issue_id: str, shard: int) -> Iterator[frozenset[bytes]]:
    """The keys of the readers each of the shard's fan-out pages queued, page by page, in order."""
    for readers in issues.page_readers(ddb, table, issue_id, shard, read=LOOKAHEAD):  # up to 4 KB a page
        yield ledger.unpack_queued(readers)


# --- a resend ---------------------------------------------------------------------------------------


@dataclass
class Resend:
    """What a resend queued: readers, in how many batches, and of them those the send function
    will not mail (it records them `skipped` or `uncertain`, so that the issue can complete)."""

    queued: int = 0
    batches: int = 0
    since: Counter = field(default_factory=Counter)  # "unsubscribed since", "suppressed since": skipped
    abandoned: int = 0  # claims whose attempt died: recorded uncertain, never sent
    uncounted: int = 0  # handled, but never counted: counted now, never sent again
    reopened: bool = False  # the issue was cancelled: it is sending again

    @property
    def to_mail(self) -> int:
        return self.queued - sum(self.since.values()) - self.abandoned - self.uncounted


def refusal(record: dict | None, waiting: dict[str, int], *, force: bool = False) -> str | None:
    """Why a resend of this issue must not start now (None: it may). `waiting`: messages on the
    send and fan-out queues (of any issue), which --force overrides."""
    if record is None:
        return "no such issue"
    status = record.get("status")
    if record.get("test"):
        return "it is a test send: send-test again instead"
    if status == Status.RENDERING:
        return "it is still rendering: its fan-out has not started"
    if status == Status.SCHEDULED:
        return "it is scheduled and nothing of it is sent yet: `newsletter schedule` shows when it starts"
    if status == Status.PAUSED:
        return "it is paused and its batches wait on the send queue: resume it and they are sent"
    if status in (Status.SENDING, Status.CANCELLED) and any(waiting.values()) and not force:
        held = ", ".join(f"{n} on the {q}" for q, n in waiting.items() if n)
        return (
            f"it may still be sending ({held}, of this or another issue): wait until they are done, or pass "
            "--force to resend now (the ledger still mails nobody twice; a reader whose batch is still "
            "queued is mailed by whichever batch comes first)"
        )
    return None


def resend_not_sent(
    ddb,
    sqs,
    tables: Tables,
    record: dict,
    send_queue_url: str,
    *,
    stamp: str | None = None,
    delay_s: int = 0,
) -> Resend:
    """Queue the issue again, in batches as fan-out writes them, for every reader it was queued
    for and never counted: what the lost batches held, put back. The send function then does with
    each what it would have done: mails those whose send never began if they are still active and
    unsuppressed, records those who left or were suppressed since as `skipped`, an abandoned claim
    as `uncertain`, and counts a reader already handled (by an instance that died before counting)
    without sending again. So every queued reader is counted once and the issue can complete.

    A cancelled issue is made `sending` again before its first batch is queued (a conditional
    write: two operators resending at once both go on; anything else refuses), and its batches
    wait `delay_s` on the queue, so that no send function still trusting its cached "cancelled"
    drops them. Running it twice, or while the issue is still sending, mails nobody twice: each
    send claims its reader in the ledger first.
    """
    from newsletter.fanout import RECIPIENTS_PER_BATCH, by_language
    from newsletter.queue_messages import Batch, Recipient

    stamp = stamp or clock.iso().replace("-", "").replace(":", "")
    check_recorded(ddb, tables.issues, record)
    done = Resend()
    bodies: list[str] = []

    def queue(language: str | None, readers: list) -> None:
        if not done.reopened and record.get("status") == Status.CANCELLED:
            _reopen(ddb, tables.issues, record)  # before its first batch: else it would be dropped
            done.reopened = True
        batch_id = f"resend-{stamp}-{done.batches:05d}"
        bodies.append(Batch(record["issue_id"], record["list_id"], batch_id, tuple(readers), 0, language).to_message())
        done.batches += 1
        done.queued += len(readers)
        if len(bodies) == 10:
            _send(sqs, send_queue_url, bodies, delay_s)

    pending: dict[str | None, list] = {}
    for found in not_sent(ddb, tables, record):
        if found.held == ledger.SENDING:
            done.abandoned += 1
        elif found.held:
            done.uncounted += 1
        elif found.since:
            done.since[found.since] += 1
        reader = [(Recipient(found.address, found.name), found.language or None)]
        for language, recipients in by_language(record, reader).items():
            group = pending.setdefault(language, [])
            group.extend(recipients)
            if len(group) >= RECIPIENTS_PER_BATCH:
                queue(language, group)
                pending[language] = []
    for language, group in pending.items():
        if group:
            queue(language, group)
    if bodies:
        _send(sqs, send_queue_url, bodies, delay_s)
    return done


def _send(sqs, queue_url: str, bodies: list[str], delay_s: int) -> None:
    """Up to ten batches in one SendMessageBatch (entries SQS refuses are sent again); `bodies` emptied."""
    entries = [
        {"Id": str(n), "MessageBody": body, **({"DelaySeconds": delay_s} if delay_s else {})}
        for n, body in enumerate(bodies)
    ]
    retry.call(queues.send_entries, sqs, queue_url, entries)
    bodies.clear()


def _reopen(ddb, table: str, record: dict) -> None:
    """cancelled → sending, for a resend (lifecycle.reopen_issue)."""
    from newsletter.lifecycle import reopen_issue

    if reopen_issue(ddb, table, record):
        return
    now = issues.get_issue(ddb, table, record["issue_id"]) or {}
    if now.get("status") != Status.SENDING:  # another resend reopened it first: go on
        raise CliError(f"the issue became {now.get('status')} meanwhile; nothing was queued")


def queue_depths(sqs, urls: dict[str, str]) -> dict[str, int]:
    """Messages each queue holds: visible, in flight and delayed."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    out = {}
    for label, url in urls.items():
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        out[label] = sum(int(attrs.get(n) or 0) for n in names)
    return out


# --- helpers --------------------------------------------------------------------------------------------


def _when(at) -> str:
    return clock.iso(float(at)) if at else ""


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
