"""SES feedback, locally: the notifications SES would publish for what moto "sent", shaped as the
AWS documentation shows them, delivered to FeedbackFunction the way SNS → SQS would.

moto accepts every message and reports nothing back; `simulator_outcomes` plays the part of the
SES mailbox simulator for the addresses that name it, and of a delivering mailbox for the rest:

    success@simulator.amazonses.com          Delivery
    bounce@simulator.amazonses.com           Bounce (Permanent, General)
    suppressionlist@simulator.amazonses.com  Bounce (Permanent, OnAccountSuppressionList)
    complaint@simulator.amazonses.com        Delivery, then Complaint
    ooto@simulator.amazonses.com             Delivery (the auto-reply goes to the sender)

With engagement tracking on (the stack's `TrackEngagement` parameter, as on AWS), a delivered
reader also opens and clicks, the same way for the same address (`engagement`): two in five open
the message, a third of those click one of its content links (the earlier links more often),
some of them twice or a second link too, and now and then the web version, the preference centre
or the unsubscribe link. The links are those of the message moto accepted (what SES would have
rewritten), so clicks need the stack in this process, as the tests and `make demo` run it.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import html
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

from . import template as tpl

# As CloudFormation names it (the events/ samples carry this ARN); the local stack's topic is it.
TOPIC_ARN = f"arn:aws:sns:{tpl.REGION}:{tpl.ACCOUNT}:newsletter-FeedbackTopic-1TQ7HEXAMPLE"
SENDER = "news@news.example.org"
SIMULATOR = {
    "success@simulator.amazonses.com": [("Delivery", {})],
    "bounce@simulator.amazonses.com": [("Bounce", {"bounce_type": "Permanent", "bounce_subtype": "General"})],
    "suppressionlist@simulator.amazonses.com": [
        ("Bounce", {"bounce_type": "Permanent", "bounce_subtype": "OnAccountSuppressionList"})
    ],
    "complaint@simulator.amazonses.com": [("Delivery", {}), ("Complaint", {})],
    "ooto@simulator.amazonses.com": [("Delivery", {})],
}


def simulated(address: str) -> list[tuple[str, dict]] | None:
    """What SES's mailbox simulator answers for an address (None: not one of its own). As SES
    does, a label after '+' is ignored (bounce+2015-07@simulator.amazonses.com bounces)."""
    local, _, domain = address.partition("@")
    return SIMULATOR.get(f"{local.split('+', 1)[0]}@{domain}")


def _iso(when: datetime | None = None) -> str:
    when = when or datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def notification(
    kind: str,
    message_id: str,
    recipients: list[str],
    *,
    issue_id: str | None = None,
    list_id: str | None = None,
    event_publishing: bool = True,
    bounce_type: str = "Permanent",
    bounce_subtype: str = "General",
    feedback_id: str | None = None,
    at: datetime | None = None,
    language: str | None = None,
    link: str = "https://www.icmpd.org/news",
) -> dict:
    """The SES JSON of one notification: `eventType` (configuration set, with the issue and list
    as tags) when event_publishing, else `notificationType` (identity, no tags).

    kind: Bounce, Complaint, Delivery, Send, Reject, Open, Click, DeliveryDelay, Rendering Failure.
    A Click's `link` is the one the reader followed, as the message had it.
    """
    when = _iso(at)
    mail = {
        "timestamp": when,
        "source": SENDER,
        "sourceArn": f"arn:aws:ses:{tpl.REGION}:{tpl.ACCOUNT}:identity/news.example.org",
        "sendingAccountId": tpl.ACCOUNT,
        "messageId": message_id,
        "destination": list(recipients),
        "headersTruncated": False,
    }
    if event_publishing:
        tags = {"ses:configuration-set": ["newsletter"], "ses:from-domain": ["news.example.org"]}
        if issue_id:
            tags["issue"] = [issue_id]
        if list_id:
            tags["list"] = [list_id]
        if language:
            tags["language"] = [language]
        mail["tags"] = tags
    feedback_id = feedback_id or f"0100{uuid.uuid4().hex[:12]}-{uuid.uuid4()}-000000"
    detail: dict
    if kind == "Bounce":
        key, detail = (
            "bounce",
            {
                "bounceType": bounce_type,
                "bounceSubType": bounce_subtype,
                "bouncedRecipients": [
                    {
                        "emailAddress": r,
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                    for r in recipients
                ],
                "timestamp": when,
                "feedbackId": feedback_id,
                "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
            },
        )
    elif kind == "Complaint":
        key, detail = (
            "complaint",
            {
                "complainedRecipients": [{"emailAddress": r} for r in recipients],
                "timestamp": when,
                "feedbackId": feedback_id,
                "complaintFeedbackType": "abuse",
                "arrivalDate": when,
            },
        )
    elif kind == "Delivery":
        key, detail = (
            "delivery",
            {
                "timestamp": when,
                "processingTimeMillis": 546,
                "recipients": list(recipients),
                "smtpResponse": "250 ok: Message accepted",
                "reportingMTA": "a8-70.smtp-out.amazonses.com",
            },
        )
    elif kind == "DeliveryDelay":
        key, detail = (
            "deliveryDelay",
            {
                "timestamp": when,
                "delayType": "TransientCommunicationFailure",
                "expirationTime": when,
                "delayedRecipients": [
                    {"emailAddress": r, "status": "4.4.1", "diagnosticCode": "smtp; 421 4.4.1 Unable to connect"}
                    for r in recipients
                ],
            },
        )
    elif kind == "Open":
        key, detail = "open", {"ipAddress": "192.0.2.1", "timestamp": when, "userAgent": "Mozilla/5.0"}
    elif kind == "Click":
        key, detail = (
            "click",
            {
                "ipAddress": "192.0.2.1",
                "link": link,
                "linkTags": {},
                "timestamp": when,
                "userAgent": "Mozilla/5.0",
            },
        )
    elif kind == "Send":
        key, detail = "send", {}
    elif kind == "Reject":
        key, detail = "reject", {"reason": "Bad content"}
    elif kind == "Rendering Failure":
        key, detail = "failure", {"errorMessage": "Attribute 'name' is not present.", "templateName": "T"}
    else:
        raise ValueError(kind)
    return {("eventType" if event_publishing else "notificationType"): kind, "mail": mail, key: detail}


def sns_body(ses: dict | str) -> str:
    """The SQS message body SNS writes (raw delivery off): the envelope, SES JSON in Message."""
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": TOPIC_ARN,
            "Message": ses if isinstance(ses, str) else json.dumps(ses),
            "Timestamp": _iso(),
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-EXAMPLE.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=EXAMPLE",
        }
    )


def sqs_event(stack, bodies: list[str]) -> dict:
    """An SQS event of FeedbackQueue holding these bodies (for invoking FeedbackFunction directly)."""
    return stack.sqs_event(
        "FeedbackQueue", [{"MessageId": f"fb-{i}", "ReceiptHandle": f"rh-{i}", "Body": b} for i, b in enumerate(bodies)]
    )


def publish(stack, notifications: list[dict | str]) -> None:
    """Put notifications on FeedbackQueue as the topic's subscription would."""
    sqs = stack.client("sqs")
    for n in notifications:
        sqs.send_message(QueueUrl=stack.ref("FeedbackQueue"), MessageBody=sns_body(n))


def deliver(stack, notifications: list[dict | str]) -> dict:
    """Publish notifications and run FeedbackFunction until FeedbackQueue is empty."""
    publish(stack, notifications)
    return stack.poll("FeedbackFunction")


def ledger_items(stack, issue_id: str | None = None) -> list[dict]:
    """Every item of the send ledger, of one issue if given."""
    from newsletter.store import every_item

    ddb, table = stack.client("dynamodb"), stack.ref("SendsTable")
    if issue_id is None:
        return list(every_item(ddb.scan, TableName=table, ConsistentRead=True))
    return list(  # the ledger's partition key is the issue
        every_item(
            ddb.query,
            TableName=table,
            KeyConditionExpression="issue_id = :i",
            ConsistentRead=True,
            ExpressionAttributeValues={":i": {"S": issue_id}},
        )
    )


def sent_ledger(stack, issue_id: str | None = None) -> list[dict]:
    """Every `sent` item of the send ledger (issue_id, email, message_id), of one issue if given."""
    return [i for i in ledger_items(stack, issue_id) if i.get("status") == "sent" and i.get("message_id")]


def simulator_outcomes(
    stack,
    list_id: str,
    *,
    others_delivered: bool = True,
    issue_id: str | None = None,
    engagement: bool | None = None,
) -> list[dict]:
    """The notifications SES would publish for everything the ledger says was sent (of one issue if
    given), with the tags it was sent with: an issue in several languages tags each message's.
    With `engagement` (default: the stack's TrackEngagement), the opens and clicks of the readers
    it delivered to (module docstring)."""
    if engagement is None:
        engagement = stack.param("TrackEngagement") == "true"
    messages = _accepted() if engagement else {}
    out = []
    for item in sent_ledger(stack, issue_id):
        outcomes = simulated(item["email"]) or ([("Delivery", {})] if others_delivered else [])
        if engagement and ("Delivery", {}) in outcomes:
            outcomes = outcomes + engagement_of(item["email"], messages.get(item["message_id"]))
        tags = {"issue_id": item["issue_id"], "list_id": list_id, "language": item.get("language")}
        for kind, extra in outcomes:
            out.append(notification(kind, item["message_id"], [item["email"]], **tags, **extra))
    return out


def engagement_of(address: str, raw: str | None) -> list[tuple[str, dict]]:
    """What one reader does with a delivered message (its raw text; None: unknown, so no clicks):
    ("Open", {...}) and ("Click", {"link": ..., ...}) outcomes, a minute apart, the same for the
    same address."""
    h = hashlib.sha256(address.encode()).digest()
    if h[0] % 5 >= 2:
        return []
    start = datetime.now(UTC) - timedelta(hours=1)
    out: list[tuple[str, dict]] = [("Open", {"at": start})]
    content, own = _links(raw) if raw else ([], {})
    clicked: list[str] = []
    if content and h[1] % 3 == 0:
        first = content[min(h[2] % len(content), h[3] % len(content))]  # the earlier links more often
        clicked.append(first)
        if h[4] % 4 == 0:
            clicked.append(first)  # twice
        if h[5] % 4 == 0 and len(content) > 1:
            clicked.append(next(link for link in content[h[6] % len(content) :] + content if link != first))
    for name, one_in, byte in (("web_version", 16, 7), ("preferences", 40, 8), ("unsubscribe", 60, 9)):
        if own.get(name) and h[byte] % one_in == 0:
            clicked.append(own[name])
    out += [("Click", {"link": link, "at": start + timedelta(minutes=n + 1)}) for n, link in enumerate(clicked)]
    return out


def _accepted() -> dict[str, str]:
    """The raw text of every message moto's SES accepted in this process, by SES message id."""
    from .stack import sent_messages

    return {m.id: m.raw_data for m in sent_messages()}


def _links(raw: str) -> tuple[list[str], dict[str, str]]:
    """A message's links as its HTML part has them: the content links in order, and ours (the web
    version its List-Archive names, the preference centre and the unsubscribe link, which carry the
    reader's token)."""
    msg = email.message_from_string(raw, policy=email.policy.default)
    part = msg.get_body(("html",))
    hrefs = [html.unescape(h) for h in re.findall(r'<a\s[^>]*?href="([^"]+)"', part.get_content() if part else "")]
    archive = str(msg["List-Archive"] or "").strip("<>")
    own, content = {}, []
    for link in hrefs:
        if not link.startswith(("https://", "http://")):
            continue  # anchors within the message, mailto
        if link == archive:
            own["web_version"] = link
        elif "token=" in link:
            own["preferences" if "/preferences?" in link else "unsubscribe"] = link
        elif link not in content:
            content.append(link)
    return content, own
