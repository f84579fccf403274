"""SES feedback: what a bounce, complaint, delivery, open or click notification says.

Pure functions, no AWS. SES writes two formats, and both reach us through SNS:
- identity notifications (`notificationType`: Bounce, Complaint, Delivery), which carry no tags;
- configuration-set event publishing (`eventType`: Send, Reject, Bounce, Complaint, Delivery,
  Open, Click, Rendering Failure, DeliveryDelay), whose `mail.tags` name the issue and the list.

`unwrap` takes an SQS message body (the SNS envelope of the stack's own topic; anything else is
`Untrusted`) and `classify` turns the SES JSON into `Feedback` values. SES may add fields at any
time: unknown fields are ignored; unknown notification types raise `Unknown`; anything that is not
the documented shape raises `Malformed`. Neither error's text ever contains an address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr

from . import clock, jsontext
from .privacy import normalise_address

# SES's names (both formats) → ours. "RenderingFailure" is how the v2 API spells the event type.
KINDS = {
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Delivery": "delivery",
    "Send": "send",
    "Reject": "reject",
    "Open": "open",
    "Click": "click",
    "Rendering Failure": "rendering_failure",
    "RenderingFailure": "rendering_failure",
    "DeliveryDelay": "delivery_delay",
}
# Each kind's object in the notification ("Rendering Failure" keeps its details under "failure").
DETAIL_KEY = {
    "bounce": "bounce",
    "complaint": "complaint",
    "delivery": "delivery",
    "send": "send",
    "reject": "reject",
    "open": "open",
    "click": "click",
    "rendering_failure": "failure",
    "delivery_delay": "deliveryDelay",
}
# Notifications that are known and carry nothing to act on.
IGNORED = frozenset({"AmazonSnsSubscriptionSucceeded"})
BOUNCE_TYPES = ("Permanent", "Transient", "Undetermined")
MAX_ID = 256  # a feedback or message id longer than this is not SES's


class Malformed(ValueError):
    """Not an SES notification in either documented shape (never retried)."""


class Unknown(ValueError):
    """A well-formed notification of a type this code does not know (never retried)."""

    def __init__(self, kind: str):
        super().__init__(f"unknown notification type {kind[:40]!r}")
        self.kind = kind[:40]


class Untrusted(ValueError):
    """Not from the stack's own feedback topic: no SNS envelope, or another topic's (never acted on)."""


class Ignored(Exception):
    """A notification that needs no action (SES's subscription check, an SNS confirmation)."""


@dataclass(frozen=True)
class Feedback:
    kind: str  # bounce, complaint, delivery, send, reject, open, click, rendering_failure, delivery_delay
    feedback_id: str  # bounce/complaint feedbackId; "<message id>#<kind>" for the others
    message_id: str  # the SES message id (what SendEmail returned, kept in the send ledger)
    recipients: tuple[str, ...]  # normalised, lower case, each once
    issue_id: str | None = None  # from mail.tags; None for identity notifications
    list_id: str | None = None
    language: str | None = None  # the issue's language it was sent in (tagged only for an issue in several)
    bounce_type: str | None = None  # Permanent, Transient, Undetermined
    bounce_subtype: str | None = None
    occurred_at: str | None = None  # when it happened (the kind's timestamp, else mail.timestamp), UTC ISO
    sent_at: str | None = None  # mail.timestamp, UTC ISO
    event_publishing: bool = False  # True: configuration-set format (eventType); False: identity notification
    dropped_recipients: int = 0  # entries without a usable address (counted, not kept)

    @property
    def hard_bounce(self) -> bool:
        return self.kind == "bounce" and self.bounce_type == "Permanent"

    @property
    def soft_bounce(self) -> bool:
        return self.kind == "bounce" and self.bounce_type != "Permanent"


def unwrap(body: str, *, topic_arn: str | None = None) -> dict:
    """The SES JSON inside an SQS message body: the SNS envelope's `Message`.

    With `topic_arn` (as the feedback function reads it), only an envelope of type Notification
    from that topic is accepted: a bare SES JSON body, or another topic's, raises Untrusted. The
    queue's policy admits only SNS on behalf of that topic, and the topic's only SES of this
    account; this check keeps a message put on the queue some other way from being acted on.
    Without it (reading a dead letter), a bare body is read as SES JSON.
    """
    data = _json_object(body, "message body")
    enveloped = "Type" in data and "notificationType" not in data and "eventType" not in data
    if topic_arn is not None:
        if not enveloped:
            raise Untrusted("not an SNS envelope")
        if data.get("TopicArn") != topic_arn:
            raise Untrusted("from another topic")
    if enveloped:
        kind = data.get("Type")
        if kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
            raise Ignored(f"SNS {kind}")
        if kind != "Notification":
            raise Malformed("SNS envelope of an unknown Type")
        if "Message" not in data:
            raise Malformed("SNS envelope without Message")
        if not isinstance(data["Message"], str):
            raise Malformed("SNS Message is not a string")
        return _json_object(data["Message"], "SNS Message")
    return data


def classify(notification: dict) -> list[Feedback]:
    """What one SES notification says, as Feedback values (one per notification today)."""
    if not isinstance(notification, dict):
        raise Malformed("notification is not a JSON object")
    event_publishing = "eventType" in notification
    raw_kind = notification.get("eventType" if event_publishing else "notificationType")
    if raw_kind is None:
        raise Malformed("neither notificationType nor eventType")
    if not isinstance(raw_kind, str):
        raise Malformed("notification type is not a string")
    if raw_kind in IGNORED:
        raise Ignored(raw_kind)
    kind = KINDS.get(raw_kind)
    if kind is None:
        raise Unknown(raw_kind)

    mail = notification.get("mail")
    if not isinstance(mail, dict):
        raise Malformed("missing mail object")
    message_id = mail.get("messageId")
    if not isinstance(message_id, str) or not message_id or len(message_id) > MAX_ID:
        raise Malformed("mail.messageId missing or not an id")
    detail = notification.get(DETAIL_KEY[kind])
    if detail is None and kind in ("bounce", "complaint", "delivery", "delivery_delay"):
        raise Malformed(f"missing {DETAIL_KEY[kind]} object")
    if detail is not None and not isinstance(detail, dict):
        raise Malformed(f"{DETAIL_KEY[kind]} is not an object")
    detail = detail or {}

    bounce_type = bounce_subtype = None
    if kind == "bounce":
        raw_recipients = _entries(detail, "bouncedRecipients")
        bounce_type = detail.get("bounceType")
        # An unknown bounce type is treated as SES treats a bounce it cannot classify.
        bounce_type = bounce_type if bounce_type in BOUNCE_TYPES else "Undetermined"
        bounce_subtype = _text(detail.get("bounceSubType"))
        feedback_id = _feedback_id(detail)
    elif kind == "complaint":
        raw_recipients = _entries(detail, "complainedRecipients")
        feedback_id = _feedback_id(detail)
    elif kind == "delivery":
        raw_recipients = _strings(detail, "recipients")
        feedback_id = f"{message_id}#{kind}"
    elif kind == "delivery_delay":
        raw_recipients = _entries(detail, "delayedRecipients")
        feedback_id = f"{message_id}#{kind}"
    else:
        # Send, Reject, Open, Click, Rendering Failure name no recipient of their own: the message's.
        raw_recipients = _strings(mail, "destination")
        feedback_id = f"{message_id}#{kind}"

    recipients, dropped = _addresses(raw_recipients)
    if not recipients:
        raise Malformed(f"no usable recipient address ({dropped} unusable)")
    tags = mail.get("tags") if event_publishing else None
    return [
        Feedback(
            kind=kind,
            feedback_id=feedback_id,
            message_id=message_id,
            recipients=recipients,
            issue_id=_tag(tags, "issue"),
            list_id=_tag(tags, "list"),
            language=_language(_tag(tags, "language")),
            bounce_type=bounce_type,
            bounce_subtype=bounce_subtype,
            occurred_at=iso_time(detail.get("timestamp")) or iso_time(mail.get("timestamp")),
            sent_at=iso_time(mail.get("timestamp")),
            event_publishing=event_publishing,
            dropped_recipients=dropped,
        )
    ]


def iso_time(value) -> str | None:
    """An SES timestamp as UTC ISO 8601 with seconds ("2016-01-27T14:59:38Z"); None if unreadable."""
    when = parse_time(value)
    return clock.iso(when.timestamp()) if when else None


def parse_time(value) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace(" +", "+").replace(" -", "-")  # SES has written "…:45 +0000"
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if len(text) >= 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = text[:-2] + ":" + text[-2:]  # "+0000" → "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


# --- helpers ----------------------------------------------------------------------------------


def _json_object(text, what: str) -> dict:
    if not isinstance(text, str):
        raise Malformed(f"{what} is not text")
    try:
        data = jsontext.loads(text)
    except jsontext.TooDeep as exc:
        raise Malformed(f"{what} is {exc}") from None
    except ValueError:
        raise Malformed(f"{what} is not JSON") from None
    if not isinstance(data, dict):
        raise Malformed(f"{what} is not a JSON object")
    return data


def _feedback_id(detail: dict) -> str:
    value = detail.get("feedbackId")
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise Malformed("feedbackId missing or not an id")
    return value


def _entries(detail: dict, key: str) -> list:
    """The addresses of a list of {"emailAddress": ...} objects."""
    items = detail.get(key)
    if not isinstance(items, list):
        raise Malformed(f"{key} missing or not a list")
    return [i.get("emailAddress") if isinstance(i, dict) else None for i in items]


def _strings(obj: dict, key: str) -> list:
    items = obj.get(key)
    if not isinstance(items, list):
        raise Malformed(f"{key} missing or not a list")
    return items


def _addresses(values: list) -> tuple[tuple[str, ...], int]:
    out: list[str] = []
    dropped = 0
    for value in values:
        address = parseaddr(value)[1] if isinstance(value, str) else ""
        address = normalise_address(address)
        if "@" not in address or len(address) > 320:
            dropped += 1
        elif address not in out:
            out.append(address)
    return tuple(out), dropped


def _language(value: str | None) -> str | None:
    """A language tag as the sender wrote it; anything else counts nowhere per language."""
    from .languages import check_tag

    try:
        return check_tag(value) if value else None
    except ValueError:
        return None


def _tag(tags, name: str) -> str | None:
    """A message tag's value: SES gives each tag as a list of strings."""
    if not isinstance(tags, dict):
        return None
    value = tags.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        return None
    return value


def _text(value) -> str | None:
    return value[:64] if isinstance(value, str) and value else None
