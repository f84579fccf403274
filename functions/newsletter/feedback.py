"""Acting on SES feedback (classified by `notifications.py`): suppressions, per-issue statistics,
soft-bounce history, and the automatic pause of an issue that bounces or is complained about.

For each recipient of a notification, in an order that makes a retry after a crash at any point
safe (every step is repeatable):
1. a soft bounce is added to the address's history (keyed by the feedback id: written once);
2. the issue's counter is ADDed once per (feedback id, recipient): a marker written
   conditionally in the same transaction, so duplicates from SNS or SQS count nothing;
3. a permanent bounce or a complaint suppresses the address at once, across all lists, and sets
   its status in the issue's list (`bounced`, `complained`); a soft bounce does so once the
   address has SOFT_BOUNCE_LIMIT soft bounces within SOFT_BOUNCE_DAYS.
Then, for a bounce or complaint, the issue's rates are checked and it is paused if they passed
the limits (`lifecycle.pause_reason`). A click is also counted on its link (`clicks.py`,
`store/links.py`): every click once, and each reader once as a clicker of that link.

The issue (and list) come from the message's tags; an identity notification has none, so its SES
message id is looked up in the send ledger. Feedback for mail this stack did not send (no tags,
no ledger item) still suppresses, but counts nowhere.

`Invocation` takes one invocation's SQS records (SNS envelopes): a notification that is untrusted,
malformed or of an unknown type is logged (never its addresses, never the event) and dropped,
as retrying cannot fix it; the others are applied, and what they did becomes its metrics. The
AWS clients are injected (`clients`: service name → boto3 client).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from . import aws, clicks, clock, lifecycle, notifications, retry
from .clicks import Click
from .config import FeedbackSettings
from .notifications import Feedback, parse_time
from .privacy import address_hash
from .store import feedback_log as feedback_store
from .store import issues, links, subscribers, suppressions
from .telemetry import issue_metrics, logger, service_metrics

# Counters on the issue item, by kind ("send" has none: the send function counts `sent` itself).
COUNTERS = {
    "delivery": "delivered",
    "complaint": "complained",
    "open": "opened",
    "click": "clicked",
    "reject": "ses_rejected",
    "delivery_delay": "delivery_delayed",
    "rendering_failure": "rendering_failed",
}
SEEN_DAYS = 30  # how long a (feedback, recipient) marker is kept: far beyond any redelivery
# Deliveries and opens come for nearly every message: logged at DEBUG, not INFO.
ROUTINE = frozenset({"send", "delivery", "open", "click"})


def counter_for(fb: Feedback) -> str | None:
    if fb.kind == "bounce":
        return "bounced_hard" if fb.hard_bounce else "bounced_soft"
    return COUNTERS.get(fb.kind)


def metric_name(counter: str) -> str:
    """bounced_hard → BouncedHard: the counter's metric."""
    return "".join(part.capitalize() for part in counter.split("_"))


@dataclass
class Deps:
    ddb: object
    settings: FeedbackSettings
    clock: Callable[[], float] = field(default_factory=lambda: clock.now)  # the local stack's virtual clock too


@dataclass
class Totals:
    """What an invocation did, for its metrics."""

    by_issue: dict[str, Counter] = field(default_factory=dict)
    other: Counter = field(default_factory=Counter)  # no issue dimension
    paused: list[str] = field(default_factory=list)

    def issue(self, issue_id: str) -> Counter:
        return self.by_issue.setdefault(issue_id, Counter())


def apply(fb: Feedback, deps: Deps, totals: Totals, logger, click: Click | None = None) -> None:
    """Act on one classified notification (see the module docstring); `click`: a Click event's
    link (`clicks.click_of`), counted per link."""
    s = deps.settings
    now = datetime.fromtimestamp(deps.clock(), UTC)
    now_iso = _iso(now)
    # When it happened, as SES says (never in the future): the soft-bounce window ends there.
    when = min(parse_time(fb.occurred_at) or now, now)
    counter = counter_for(fb)
    acts = fb.kind in ("bounce", "complaint")
    if counter is None and not acts:
        return  # Send: nothing to count or do
    issue_id, list_id = _attribute(fb, deps)
    if issue_id is None:
        totals.other["FeedbackUnattributed"] += 1

    for address in fb.recipients:
        if fb.soft_bounce:
            feedback_store.add_soft_bounce(
                deps.ddb,
                s.feedback_table,
                address,
                at=_iso(when),
                feedback_id=fb.feedback_id,
                expires_at=int((when + timedelta(days=s.soft_bounce_days + 1)).timestamp()),
                bounce_type=fb.bounce_type,
                bounce_subtype=fb.bounce_subtype,
                issue_id=issue_id,
            )
        if issue_id and counter:
            counted = feedback_store.count_once(
                deps.ddb,
                s.feedback_table,
                s.issues_table,
                feedback_id=fb.feedback_id,
                address=address,
                issue_id=issue_id,
                counter=counter,
                expires_at=int(now.timestamp()) + SEEN_DAYS * 86400,
                language=fb.language,
            )
            if counted:
                totals.issue(issue_id)[metric_name(counter)] += 1
            elif counted is False:
                totals.other["FeedbackDuplicate"] += 1
            else:
                logger.warning("feedback for an issue that does not exist; not counted", extra={"issue": issue_id[:64]})
                totals.other["FeedbackUnattributed"] += 1
                issue_id = None
        if issue_id and click is not None:
            _count_link(fb, click, address, issue_id, int(now.timestamp()), deps, logger)
        if acts:
            _suppress_if_due(fb, address, issue_id, list_id, when, now_iso, deps, totals, logger)

    if issue_id and acts:
        _pause_if_due(issue_id, now_iso, deps, totals, logger)


def _count_link(fb: Feedback, click: Click, address: str, issue_id: str, now: int, deps: Deps, logger) -> None:
    s = deps.settings
    link = clicks.link_of(click.link, issue_id=issue_id, addresses=fb.recipients)
    done = links.count_click(
        deps.ddb,
        s.feedback_table,
        s.issues_table,
        issue_id=issue_id,
        message_id=fb.message_id,
        address=address,
        link=link,
        click_id=click.click_id,
        expires_at=now + SEEN_DAYS * 86400,
    )
    # The link's key, never the link: an unsubscribe link names its reader.
    bounded = link.cut or link.redacted or done == links.CAPPED
    (logger.info if bounded else logger.debug)(
        "click on a link",
        extra={
            "issue": issue_id,
            "link": link.key,
            "own": link.own,
            "counted": done,
            "cut": link.cut,
            "redacted": link.redacted,
        },
    )


def _suppress_if_due(
    fb: Feedback, address: str, issue_id, list_id, when, now_iso, deps: Deps, totals: Totals, logger
) -> None:
    s = deps.settings
    if fb.soft_bounce:
        since = _iso(when - timedelta(days=s.soft_bounce_days))
        recent = feedback_store.soft_bounces_since(deps.ddb, s.feedback_table, address, since)
        if recent < s.soft_bounce_limit:
            logger.info("soft bounce recorded", extra={"recipient": address_hash(address), "recent": recent})
            return
    reason, status = ("complaint", "complained") if fb.kind == "complaint" else ("bounce", "bounced")
    detail = {
        "feedback_id": fb.feedback_id,
        "issue_id": issue_id,
        "bounce_type": fb.bounce_type,
        "bounce_subtype": fb.bounce_subtype,
    }
    if suppressions.suppress_once(deps.ddb, s.suppressions_table, address, reason, now_iso, **detail):
        totals.other["Suppressed"] += 1
        logger.info(
            "address suppressed",
            extra={"recipient": address_hash(address), "reason": reason, "bounce_type": fb.bounce_type},
        )
    if list_id:
        # A complaint is the stronger statement: a later bounce does not overwrite it.
        subscribers.set_status_unless(
            deps.ddb, s.subscribers_table, list_id, address, status, now_iso, keep=("complained",)
        )


def _pause_if_due(issue_id: str, now_iso: str, deps: Deps, totals: Totals, logger) -> None:
    s = deps.settings
    record = issues.get_issue(deps.ddb, s.issues_table, issue_id)
    reason = record and lifecycle.pause_reason(
        record, bounce_rate=s.pause_bounce_rate, complaint_rate=s.pause_complaint_rate, min_sent=s.pause_min_sent
    )
    if reason and lifecycle.pause_issue(deps.ddb, s.issues_table, issue_id, reason=reason, at=now_iso):
        totals.paused.append(issue_id)
        logger.warning("issue paused automatically", extra={"issue": issue_id, "reason": reason})


def _attribute(fb: Feedback, deps: Deps) -> tuple[str | None, str | None]:
    """The issue and list the message belonged to: its tags, else the send ledger."""
    s = deps.settings
    issue_id, list_id = fb.issue_id, fb.list_id
    if issue_id is None:
        sent = feedback_store.sent_message(deps.ddb, s.sends_table, fb.message_id)
        if sent is None:
            return None, None
        issue_id = sent["issue_id"]
    if list_id is None:
        record = issues.get_issue(deps.ddb, s.issues_table, issue_id, consistent=False)
        list_id = record.get("list_id") if record else None
    return issue_id, list_id


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- one invocation's SQS records ---------------------------------------------------------------------


def aws_client(service: str):
    return aws.client(service)  # looked up at each call: the environment decides (aws.py)


class Invocation:
    """One invocation's notifications, and what they did (its metrics)."""

    def __init__(self, settings: FeedbackSettings, clients: Callable[[str], object] = aws_client):
        self.settings, self.clients = settings, clients
        self.totals = Totals()

    def record(self, record) -> dict:
        """One SQS record (its `body` and `message_id`); raises when SQS should deliver it again."""
        try:
            notification = notifications.unwrap(record.body, topic_arn=self.settings.feedback_topic_arn)
            events = notifications.classify(notification)
        except notifications.Untrusted as exc:
            logger.warning("untrusted feedback dropped", extra={"message_id": record.message_id, "why": str(exc)})
            self.totals.other["FeedbackUntrusted"] += 1
            return {"dropped": True}
        except notifications.Ignored as exc:
            logger.info("feedback ignored", extra={"message_id": record.message_id, "what": str(exc)})
            return {"ignored": True}
        except notifications.Unknown as exc:
            logger.error("unknown feedback type dropped", extra={"message_id": record.message_id, "type": exc.kind})
            self.totals.other["FeedbackUnknown"] += 1
            return {"dropped": True}
        except notifications.Malformed as exc:
            logger.error("malformed feedback dropped", extra={"message_id": record.message_id, "error": str(exc)})
            self.totals.other["FeedbackMalformed"] += 1
            return {"dropped": True}

        deps = Deps(ddb=self.clients("dynamodb"), settings=self.settings)
        is_click = any(e.kind == "click" for e in events)
        click = clicks.click_of(notification) if is_click else None
        if is_click and click is None:
            logger.info("click without a link: counted on its issue only", extra={"message_id": record.message_id})
        for event in events:
            logger.set_correlation_id(event.issue_id)
            log = logger.debug if event.kind in ROUTINE else logger.info
            log(
                "feedback",
                extra={
                    "kind": event.kind,
                    "bounce_type": event.bounce_type,
                    "ses_message_id": event.message_id,
                    "recipients": [address_hash(a) for a in event.recipients],
                    "unusable_recipients": event.dropped_recipients,
                },
            )
            # Every step of apply is repeatable: a call that fails transiently is tried again here
            # rather than after the queue's visibility timeout.
            retry.call(apply, event, deps, self.totals, logger, click if event.kind == "click" else None)
        return {"events": len(events)}

    def metrics(self) -> None:
        totals = self.totals
        for issue_id, counts in totals.by_issue.items():
            issue_metrics(issue_id, dict(counts))
        for issue_id in totals.paused:
            issue_metrics(issue_id, {"IssuePaused": 1})
        # The alarm's datapoint: an alarm cannot match a metric whose issue dimension it cannot know.
        service_metrics({**totals.other, "IssuePaused": len(totals.paused)})
