"""SES feedback: both notification formats, duplicates, bad input, soft-bounce history, the
automatic pause, and the promise that matters: whoever bounced or complained is never mailed again."""

from __future__ import annotations

import collections
import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from conftest import add_subscribers, client_error, deliver, issue_doc, issue_record, mailed, people, publish

from devstack import ses_feedback
from devstack.ses_feedback import notification
from newsletter import lifecycle, notifications
from newsletter.store import feedback_log as feedback_store
from newsletter.store import issues, subscribers

COUNTERS = (
    "delivered",
    "bounced_hard",
    "bounced_soft",
    "complained",
    "opened",
    "clicked",
    "ses_rejected",
    "delivery_delayed",
    "rendering_failed",
)
KINDS = {
    "Bounce": ("bounce", "bounced_hard"),
    "Complaint": ("complaint", "complained"),
    "Delivery": ("delivery", "delivered"),
    "Open": ("open", "opened"),
    "Click": ("click", "clicked"),
    "Reject": ("reject", "ses_rejected"),
    "DeliveryDelay": ("delivery_delay", "delivery_delayed"),
    "Rendering Failure": ("rendering_failure", "rendering_failed"),
    "Send": ("send", None),
}
IDENTITY_KINDS = ("Bounce", "Complaint", "Delivery")  # all identity notifications can be


def ddb():
    return boto3.client("dynamodb", region_name="us-east-1")


def feed(stack, *notifications) -> dict:
    """Invoke FeedbackFunction with one SQS record per notification (SES JSON or raw text)."""
    return stack.invoke(
        "FeedbackFunction", ses_feedback.sqs_event(stack, [ses_feedback.sns_body(n) for n in notifications])
    )


def feed_bodies(stack, *bodies: str) -> dict:
    return stack.invoke("FeedbackFunction", ses_feedback.sqs_event(stack, list(bodies)))


def sent_issue(stack, n: int = 5, issue_id: str = "2015-07", **kwargs) -> dict[str, str]:
    """Publish and send an issue to n subscribers; {address: SES message id} from the ledger."""
    readers = people(n, **kwargs)
    add_subscribers(stack, readers)
    publish(stack, issue_doc(issue_id))
    deliver(stack)
    return {i["email"]: i["message_id"] for i in ses_feedback.sent_ledger(stack) if i["issue_id"] == issue_id}


def open_issue(stack, sent: int, issue_id: str = "2015-07") -> None:
    """An issue that is `sending` and has `sent` messages out (without mailing anybody)."""
    publish(stack, issue_doc(issue_id))
    issues.add_counts(ddb(), stack.ref("IssuesTable"), issue_id, {"sent": sent})


def counts(stack, issue_id: str = "2015-07") -> dict[str, int]:
    record = issue_record(stack, issue_id)
    return {k: int(record[k]) for k in COUNTERS if k in record}


def suppressed(stack) -> dict[str, dict]:
    from newsletter.store import from_item

    return {i["email"]: i for i in map(from_item, ddb().scan(TableName=stack.ref("SuppressionsTable"))["Items"])}


def status(stack, address: str, list_id: str = "infomail") -> str | None:
    record = subscribers.get_subscriber(ddb(), stack.ref("SubscribersTable"), list_id, address)
    return record and record["status"]


def emf(out: str) -> list[dict]:
    """The CloudWatch embedded-metric records a run printed."""
    records = []
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            records.append(json.loads(line))
    return records


def metric(out: str, name: str, dimensions: tuple[str, ...]) -> float:
    total = 0.0
    for r in emf(out):
        (directive,) = r["_aws"]["CloudWatchMetrics"]
        if tuple(sorted(directive["Dimensions"][0])) == tuple(sorted(dimensions)) and name in r:
            total += sum(r[name]) if isinstance(r[name], list) else r[name]
    return total


# --- classification (pure) --------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_event_publishing_format_is_classified(kind):
    n = notification(kind, "m-1", ["Reader@Example.COM"], issue_id="2015-07", list_id="infomail", feedback_id="fb-1")
    (event,) = notifications.classify(notifications.unwrap(ses_feedback.sns_body(n)))
    assert (event.kind, event.issue_id, event.list_id, event.recipients) == (
        KINDS[kind][0],
        "2015-07",
        "infomail",
        ("reader@example.com",),
    )
    assert event.event_publishing and event.message_id == "m-1" and event.occurred_at.endswith("Z")
    assert event.feedback_id == ("fb-1" if kind in ("Bounce", "Complaint") else f"m-1#{KINDS[kind][0]}")


@pytest.mark.parametrize("kind", IDENTITY_KINDS)
def test_identity_notification_format_is_classified(kind):
    n = notification(kind, "m-1", ["reader@example.com"], event_publishing=False, feedback_id="fb-1")
    assert "notificationType" in n and "tags" not in n["mail"]
    (event,) = notifications.classify(n)
    assert (event.kind, event.issue_id, event.list_id, event.event_publishing) == (KINDS[kind][0], None, None, False)


def test_bounce_types_and_the_raw_delivery_body():
    for bounce_type, hard in (("Permanent", True), ("Transient", False), ("Undetermined", False), ("Novel", False)):
        n = notification("Bounce", "m", ["a@example.com"], bounce_type=bounce_type, bounce_subtype="MailboxFull")
        (event,) = notifications.classify(notifications.unwrap(json.dumps(n)))  # raw message delivery: no envelope
        assert event.hard_bounce is hard and event.soft_bounce is not hard
        assert event.bounce_type == (bounce_type if bounce_type != "Novel" else "Undetermined")
        assert event.bounce_subtype == "MailboxFull"


def test_several_recipients_are_normalised_and_unknown_fields_ignored():
    n = notification("Bounce", "m", ["A@Example.com", "b@example.com", "a@example.com"])
    n["bounce"]["bouncedRecipients"].append({"emailAddress": '"Carol" <Carol@Example.com>', "future": 1})
    n["bounce"]["bouncedRecipients"].append({"action": "failed"})  # no address: counted as unusable
    n["somethingNew"] = {"x": [1, 2]}
    n["mail"]["anotherField"] = True
    (event,) = notifications.classify(n)
    assert event.recipients == ("a@example.com", "b@example.com", "carol@example.com")
    assert event.dropped_recipients == 1


def test_timestamps_in_the_shapes_ses_has_used():
    assert notifications.iso_time("2016-01-27T14:59:38.237Z") == "2016-01-27T14:59:38Z"
    assert notifications.iso_time("2018-10-08T14:05:45 +0000") == "2018-10-08T14:05:45Z"
    assert notifications.iso_time("2018-10-08T16:05:45+02:00") == "2018-10-08T14:05:45Z"
    assert notifications.iso_time("yesterday") is None and notifications.iso_time(None) is None


# --- malformed and unknown input ---------------------------------------------------------------

ENVELOPE = json.loads(ses_feedback.sns_body({}))
GOOD = notification("Bounce", "m-bad", ["victim@example.com"], issue_id="2015-07", list_id="infomail")
MALFORMED = {
    "not json": "this is not json <victim@example.com>",
    "json array": "[1, 2]",
    "envelope without Message": json.dumps({k: v for k, v in ENVELOPE.items() if k != "Message"}),
    "Message not json": json.dumps({**ENVELOPE, "Message": "victim@example.com bounced"}),
    "Message not a string": json.dumps({**ENVELOPE, "Message": {"eventType": "Bounce"}}),
    "Message an array": json.dumps({**ENVELOPE, "Message": "[]"}),
    "envelope of an unknown Type": json.dumps({**ENVELOPE, "Type": "Surprise"}),
    "no type": ses_feedback.sns_body({"mail": GOOD["mail"]}),
    "type not a string": ses_feedback.sns_body({**GOOD, "eventType": ["Bounce"]}),
    "missing mail": ses_feedback.sns_body({k: v for k, v in GOOD.items() if k != "mail"}),
    "mail not an object": ses_feedback.sns_body({**GOOD, "mail": "victim@example.com"}),
    "missing messageId": ses_feedback.sns_body(
        {**GOOD, "mail": {k: v for k, v in GOOD["mail"].items() if k != "messageId"}}
    ),
    "missing bounce": ses_feedback.sns_body({k: v for k, v in GOOD.items() if k != "bounce"}),
    "missing feedbackId": ses_feedback.sns_body({**GOOD, "bounce": {**GOOD["bounce"], "feedbackId": None}}),
    "bouncedRecipients not a list": ses_feedback.sns_body(
        {**GOOD, "bounce": {**GOOD["bounce"], "bouncedRecipients": "victim@example.com"}}
    ),
    "no usable address": ses_feedback.sns_body(
        {**GOOD, "bounce": {**GOOD["bounce"], "bouncedRecipients": [{"emailAddress": "nobody"}]}}
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_feedback_is_dropped_with_an_error_and_a_metric(stack, capsys, case):
    open_issue(stack, sent=10)
    capsys.readouterr()
    assert feed_bodies(stack, MALFORMED[case]) == {"batchItemFailures": []}  # never retried
    out = capsys.readouterr().out
    assert "malformed feedback dropped" in out
    assert metric(out, "FeedbackMalformed", ("service",)) == 1
    assert "victim@example.com" not in out  # neither the address nor the event is logged
    assert counts(stack) == {} and suppressed(stack) == {}


@pytest.mark.parametrize("kind", ["Subscription", "BounceV2", ""])
def test_unknown_notification_types_are_dropped(stack, capsys, kind):
    unknown = {**GOOD, "eventType": kind}
    assert feed(stack, unknown) == {"batchItemFailures": []}
    out = capsys.readouterr().out
    assert "unknown feedback type dropped" in out and metric(out, "FeedbackUnknown", ("service",)) == 1
    assert "victim@example.com" not in out and suppressed(stack) == {}


def test_ses_and_sns_housekeeping_messages_are_ignored(stack, capsys):
    check = {"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "You have successfully subscribed"}
    confirmation = json.dumps(
        {**ENVELOPE, "Type": "SubscriptionConfirmation", "Message": "confirm", "SubscribeURL": "https://x"}
    )
    assert feed_bodies(stack, ses_feedback.sns_body(check), confirmation) == {"batchItemFailures": []}
    out = capsys.readouterr().out
    assert out.count("feedback ignored") == 2 and "dropped" not in out


def test_one_bad_record_does_not_hold_up_the_batch(stack):
    open_issue(stack, sent=10)
    good = notification("Delivery", "m-1", ["a@example.com"], issue_id="2015-07", list_id="infomail")
    result = feed_bodies(
        stack, "garbage", ses_feedback.sns_body(good), ses_feedback.sns_body({**GOOD, "eventType": "Nope"})
    )
    assert result == {"batchItemFailures": []}
    assert counts(stack) == {"delivered": 1}


@pytest.mark.parametrize("failures", [1, 99], ids=["once", "persistently"])
def test_a_transient_aws_error_is_tried_again_and_fails_only_its_record(stack, monkeypatch, failures):
    """A throttled write of the second notification: tried again in place (every step of acting on
    feedback is repeatable). If it keeps failing, only that record goes back to SQS, and its
    redelivery counts it once."""
    from newsletter import aws

    open_issue(stack, sent=10)
    real, calls = aws.client, {"n": 0}

    def client(service):
        c = real(service)
        if service != "dynamodb":
            return c

        class Flaky:
            def __getattr__(self, name):
                return getattr(c, name)

            def transact_write_items(self, **kwargs):
                calls["n"] += 1
                if 2 <= calls["n"] < 2 + failures:
                    raise client_error("ProvisionedThroughputExceededException", 400, "TransactWriteItems")
                return c.transact_write_items(**kwargs)

        return Flaky()

    client.cache_clear = real.cache_clear
    monkeypatch.setattr(aws, "client", client)
    one = notification("Bounce", "m-1", ["a@example.com"], issue_id="2015-07", list_id="infomail")
    two = notification("Bounce", "m-2", ["b@example.com"], issue_id="2015-07", list_id="infomail")
    event = ses_feedback.sqs_event(stack, [ses_feedback.sns_body(one), ses_feedback.sns_body(two)])
    if failures == 1:
        assert stack.invoke("FeedbackFunction", event) == {"batchItemFailures": []}
    else:
        assert stack.invoke("FeedbackFunction", event) == {"batchItemFailures": [{"itemIdentifier": "fb-1"}]}
        calls["n"] = 99  # the throttling is over
        assert stack.invoke("FeedbackFunction", event) == {"batchItemFailures": []}  # SQS delivers both again
    assert counts(stack) == {"bounced_hard": 2}
    assert set(suppressed(stack)) == {"a@example.com", "b@example.com"}


# --- counting and acting, with real sends ------------------------------------------------------


@pytest.mark.parametrize("event_publishing", [True, False], ids=["event-publishing", "identity"])
def test_each_kind_counts_on_its_issue(stack, event_publishing):
    sent = sent_issue(stack, 12)
    kinds = sorted(KINDS) if event_publishing else IDENTITY_KINDS
    notes = []
    for (address, message_id), kind in zip(sorted(sent.items()), kinds, strict=False):
        tags = {"issue_id": "2015-07", "list_id": "infomail"} if event_publishing else {}
        notes.append(notification(kind, message_id, [address], event_publishing=event_publishing, **tags))
    assert feed(stack, *notes) == {"batchItemFailures": []}
    expected = {KINDS[k][1]: 1 for k in kinds if KINDS[k][1]}
    assert counts(stack) == expected
    # The one bounced and the one who complained, in this list and everywhere.
    by_kind = dict(zip(kinds, sorted(sent), strict=False))
    assert {a: s["reason"] for a, s in suppressed(stack).items()} == {
        by_kind["Bounce"]: "bounce",
        by_kind["Complaint"]: "complaint",
    }
    assert status(stack, by_kind["Bounce"]) == "bounced" and status(stack, by_kind["Complaint"]) == "complained"
    assert status(stack, by_kind["Delivery"]) == "active"


def test_identity_notification_is_tied_to_its_issue_through_the_ledger(stack):
    sent = sent_issue(stack, 3)
    address, message_id = sorted(sent.items())[0]
    assert feedback_store.sent_message(ddb(), stack.ref("SendsTable"), message_id) == {
        "issue_id": "2015-07",
        "email": address,
        "message_id": message_id,
    }
    feed(stack, notification("Bounce", message_id, [address], event_publishing=False))
    assert counts(stack) == {"bounced_hard": 1}
    assert suppressed(stack)[address]["issue_id"] == "2015-07"


def test_feedback_for_mail_this_stack_did_not_send_still_suppresses(stack, capsys):
    open_issue(stack, sent=10)
    stranger = notification("Complaint", "not-ours", ["someone@example.com"], event_publishing=False)
    unknown_issue = notification("Bounce", "m-9", ["other@example.com"], issue_id="1999-01", list_id="infomail")
    assert feed(stack, stranger, unknown_issue) == {"batchItemFailures": []}
    assert set(suppressed(stack)) == {"someone@example.com", "other@example.com"}
    assert counts(stack) == {}
    assert issue_record(stack, "1999-01") is None  # a counter never creates an issue (the publish lock)
    assert metric(capsys.readouterr().out, "FeedbackUnattributed", ("service",)) == 2


def test_several_recipients_in_one_notification(stack):
    open_issue(stack, sent=1000)
    add_subscribers(stack, people(4))
    victims = [p["email"] for p in people(3)]
    feed(stack, notification("Bounce", "m-1", [v.upper() for v in victims], issue_id="2015-07", list_id="infomail"))
    assert counts(stack) == {"bounced_hard": 3}
    assert set(suppressed(stack)) == set(victims)
    assert [status(stack, p["email"]) for p in people(4)] == ["bounced", "bounced", "bounced", "active"]


def test_duplicates_count_once(stack, capsys):
    sent = sent_issue(stack, 3)
    (a, ma), (b, mb), _ = sorted(sent.items())
    tags = {"issue_id": "2015-07", "list_id": "infomail"}
    bounce = notification("Bounce", ma, [a], feedback_id="fb-a", **tags)
    opened = notification("Open", mb, [b], **tags)
    opened_again = notification("Open", mb, [b], **tags)  # a second open: one opener
    # SNS delivers the same notification twice, SQS redelivers a batch, and the identity
    # notification of the same bounce arrives too (same feedback id).
    event = ses_feedback.sqs_event(stack, [ses_feedback.sns_body(n) for n in (bounce, bounce, opened, opened_again)])
    stack.invoke("FeedbackFunction", event)
    stack.invoke("FeedbackFunction", event)
    feed(stack, notification("Bounce", ma, [a], feedback_id="fb-a", event_publishing=False))
    assert counts(stack) == {"bounced_hard": 1, "opened": 1}
    out = capsys.readouterr().out
    assert metric(out, "BouncedHard", ("issue", "service")) == 1
    assert metric(out, "FeedbackDuplicate", ("service",)) == 2 + 4 + 1
    assert feedback_store.seen(ddb(), stack.ref("FeedbackTable"), "fb-a", a)


def test_a_later_bounce_does_not_overwrite_a_complaint(stack):
    sent = sent_issue(stack, 1)
    ((a, m),) = sent.items()
    tags = {"issue_id": "2015-07", "list_id": "infomail"}
    feed(stack, notification("Complaint", m, [a], **tags), notification("Bounce", m, [a], **tags))
    assert status(stack, a) == "complained" and suppressed(stack)[a]["reason"] == "complaint"


# --- soft bounces -------------------------------------------------------------------------------


def soft(address: str, n: int, *, days_ago: float = 0) -> dict:
    at = datetime.now(UTC) - timedelta(days=days_ago)
    return notification(
        "Bounce",
        f"m-soft-{n}",
        [address],
        issue_id="2015-07",
        list_id="infomail",
        bounce_type="Transient",
        bounce_subtype="MailboxFull",
        at=at,
    )


def test_third_soft_bounce_within_the_window_suppresses(stack):
    open_issue(stack, sent=1000)
    add_subscribers(stack, people(1))
    a = people(1)[0]["email"]
    second = soft(a, 2, days_ago=1)
    feed(stack, soft(a, 1, days_ago=3), second)
    assert suppressed(stack) == {} and status(stack, a) == "active"
    feed(stack, second)  # the same bounce again is not a third
    assert suppressed(stack) == {}
    feed(stack, soft(a, 3))
    assert suppressed(stack)[a]["reason"] == "bounce" and suppressed(stack)[a]["bounce_type"] == "Transient"
    assert status(stack, a) == "bounced"
    assert counts(stack) == {"bounced_soft": 3}


def test_soft_bounces_outside_the_window_do_not_count(stack):
    open_issue(stack, sent=1000)
    a = "slow@example.com"
    feed(stack, soft(a, 1, days_ago=45), soft(a, 2, days_ago=35), soft(a, 3))
    assert suppressed(stack) == {}  # 3 soft bounces, but only one in the last 30 days
    feed(stack, soft(a, 4, days_ago=0.5))
    assert suppressed(stack) == {}
    feed(stack, soft(a, 5))
    assert set(suppressed(stack)) == {a}


def test_soft_bounce_limits_come_from_the_template(stack):
    function = stack.functions["FeedbackFunction"]
    assert (function.environment["SOFT_BOUNCE_LIMIT"], function.environment["SOFT_BOUNCE_DAYS"]) == ("3", "30")
    function.environment["SOFT_BOUNCE_LIMIT"] = "1"
    open_issue(stack, sent=1000)
    feed(stack, soft("once@example.com", 1))
    assert set(suppressed(stack)) == {"once@example.com"}


# --- automatic pause ----------------------------------------------------------------------------


def bounces(n: int, start: int = 0, **kwargs) -> dict:
    addresses = [f"gone{i:05d}@example.com" for i in range(start, start + n)]
    return notification("Bounce", f"m-{start}", addresses, issue_id="2015-07", list_id="infomail", **kwargs)


def complaints(n: int, start: int = 0) -> dict:
    addresses = [f"angry{i:05d}@example.com" for i in range(start, start + n)]
    return notification("Complaint", f"m-c{start}", addresses, issue_id="2015-07", list_id="infomail")


def test_pause_when_the_bounce_rate_passes_four_percent(stack, capsys):
    open_issue(stack, sent=500)
    feed(stack, bounces(15), bounces(5, 15, bounce_type="Transient"))  # 20 of 500: 4.0%, not past it
    assert issue_record(stack, "2015-07")["status"] == "sending"
    capsys.readouterr()
    feed(stack, bounces(1, 20))
    record = issue_record(stack, "2015-07")
    assert record["status"] == "paused" and "bounce rate 4.20%" in record["paused_reason"]
    out = capsys.readouterr().out
    assert "issue paused automatically" in out
    assert metric(out, "IssuePaused", ("issue", "service")) == 1  # per issue
    assert metric(out, "IssuePaused", ("service",)) == 1  # the series the alarm watches
    feed(stack, bounces(5, 30))  # already paused: nothing more happens
    assert metric(capsys.readouterr().out, "IssuePaused", ("service",)) == 0
    # Resumed, the issue is judged on what it sends from now on: late bounces do not pause it again.
    assert lifecycle.resume_issue(ddb(), stack.ref("IssuesTable"), "2015-07")
    feed(stack, bounces(3, 40))
    assert issue_record(stack, "2015-07")["status"] == "sending"


def test_pause_when_the_complaint_rate_passes_point_zero_eight_percent(stack):
    open_issue(stack, sent=2500)
    feed(stack, complaints(2))  # 0.08%
    assert issue_record(stack, "2015-07")["status"] == "sending"
    feed(stack, complaints(1, 2))
    record = issue_record(stack, "2015-07")
    assert record["status"] == "paused" and record["paused_reason"].startswith("complaint rate 0.120%")


def test_no_pause_before_the_minimum_number_of_sends(stack):
    open_issue(stack, sent=499)
    feed(stack, bounces(200), complaints(50))
    assert issue_record(stack, "2015-07")["status"] == "sending"
    issues.add_counts(ddb(), stack.ref("IssuesTable"), "2015-07", {"sent": 1})
    feed(stack, bounces(1, 500))  # the next bounce after the 500th send
    assert issue_record(stack, "2015-07")["status"] == "paused"


def test_a_paused_issue_stops_sending_and_resumes_where_it_stopped(stack):
    from newsletter.handlers import send as send_handler

    readers = people(30)
    add_subscribers(stack, readers)
    publish(stack, issue_doc())
    stack.poll("FanoutFunction")
    stack.functions["FeedbackFunction"].environment["PAUSE_MIN_SENT"] = "1"
    stack.poll("SendFunction", max_invocations=1)  # one invocation: some of the batches
    sent = {i["email"]: i["message_id"] for i in ses_feedback.sent_ledger(stack)}
    assert 0 < len(sent) < 25  # so that one bounce is more than 4%
    a, m = sorted(sent.items())[0]
    feed(stack, notification("Bounce", m, [a], issue_id="2015-07", list_id="infomail"))
    assert issue_record(stack, "2015-07")["status"] == "paused"
    send_handler.sender.reset()  # the send function's 10 s cache of the status
    stack.poll("SendFunction", max_invocations=3)
    assert len(mailed()) == len(sent)  # the other batches wait on the queue
    assert lifecycle.resume_issue(ddb(), stack.ref("IssuesTable"), "2015-07")
    send_handler.sender.reset()
    stack.poll("SendFunction")
    assert sorted(mailed()) == sorted(r["email"] for r in readers)  # each once, nobody lost


def test_pause_resume_cancel_are_conditional(stack):
    table = stack.ref("IssuesTable")
    open_issue(stack, sent=10)
    assert not lifecycle.resume_issue(ddb(), table, "2015-07")  # not paused
    assert lifecycle.pause_issue(ddb(), table, "2015-07", reason="checking the list")
    assert not lifecycle.pause_issue(ddb(), table, "2015-07")
    record = issue_record(stack, "2015-07")
    assert (record["status"], record["paused_reason"]) == ("paused", "checking the list")
    assert lifecycle.resume_issue(ddb(), table, "2015-07")
    assert issue_record(stack, "2015-07")["pause_baseline"] == {"sent": 10, "bounced": 0, "complained": 0}
    assert lifecycle.pause_issue(ddb(), table, "2015-07")
    assert lifecycle.cancel_issue(ddb(), table, "2015-07")
    assert issue_record(stack, "2015-07")["status"] == "cancelled"
    assert not lifecycle.resume_issue(ddb(), table, "2015-07")
    assert not lifecycle.pause_issue(ddb(), table, "2015-07")
    assert not lifecycle.cancel_issue(ddb(), table, "1999-01")  # no such issue


def test_control_command(stack, capsys):
    table = stack.ref("IssuesTable")
    open_issue(stack, sent=10)
    capsys.readouterr()
    assert lifecycle.main(["pause", "2015-07", "--table", table, "--reason", "wrong link"], ddb=ddb()) == 0
    assert capsys.readouterr().out == "2015-07: paused\n"
    assert lifecycle.main(["pause", "2015-07", "--table", table], ddb=ddb()) == 1
    assert "not changed (status is paused; pause needs sending)" in capsys.readouterr().err
    assert lifecycle.main(["resume", "2015-07", "--table", table], ddb=ddb()) == 0
    assert lifecycle.main(["cancel", "2015-07", "--table", table], ddb=ddb()) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2015-07: cancelled"
    assert lifecycle.main(["resume", "nope", "--table", table], ddb=ddb()) == 1
    assert "no such issue" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        lifecycle.main(["stop", "2015-07", "--table", table], ddb=ddb())


def test_pause_rule():
    record = {"status": "sending", "sent": 1000, "bounced_hard": 30, "bounced_soft": 10, "complained": 0}
    rule = {"bounce_rate": 0.04, "complaint_rate": 0.0008, "min_sent": 500}
    assert lifecycle.pause_reason(record, **rule) is None  # exactly 4%
    assert lifecycle.pause_reason({**record, "bounced_soft": 11}, **rule).startswith("bounce rate 4.10%")
    assert lifecycle.pause_reason({**record, "complained": 1}, **rule).startswith("complaint rate 0.100%")
    assert lifecycle.pause_reason({**record, "status": "paused", "complained": 9}, **rule) is None
    resumed = {**record, "complained": 5, "pause_baseline": {"sent": 900, "bounced": 40, "complained": 5}}
    assert lifecycle.pause_reason(resumed, **rule) is None  # 100 sent since the resume: too few to judge
    assert lifecycle.pause_reason({**resumed, "sent": 1400, "bounced_hard": 51}, **rule).startswith(
        "bounce rate 4.20% (21 of 500 sent)"
    )


# --- the promise --------------------------------------------------------------------------------


def test_who_bounced_or_complained_gets_nothing_from_any_later_issue(stack):
    from devstack.demo import create_list

    simulator = [
        "success@simulator.amazonses.com",
        "bounce@simulator.amazonses.com",
        "complaint@simulator.amazonses.com",
        "suppressionlist@simulator.amazonses.com",
    ]
    readers = people(6) + [{"email": a, "name": "", "status": "active", "language": "en"} for a in simulator]
    add_subscribers(stack, readers)
    publish(stack, issue_doc("2015-07"))
    deliver(stack)
    flaky = people(6)[5]["email"]
    outcomes = ses_feedback.simulator_outcomes(stack, "infomail")
    for n in (1, 2, 3):  # three soft bounces within the window
        outcomes.append(soft(flaky, 10 + n, days_ago=n))
    assert ses_feedback.deliver(stack, outcomes)["failures"] == 0
    gone = {
        "bounce@simulator.amazonses.com",
        "complaint@simulator.amazonses.com",
        "suppressionlist@simulator.amazonses.com",
        flaky,
    }
    assert set(suppressed(stack)) == gone
    record = issue_record(stack, "2015-07")
    assert (record["bounced_hard"], record["bounced_soft"], record["complained"]) == (2, 3, 1)
    assert record["delivered"] == 8  # everyone but the two hard bounces

    # The same people also read another list.
    create_list(stack, "events", "ICMPD Events")
    add_subscribers(stack, readers, list_id="events")
    before = collections.Counter(mailed())
    publish(stack, issue_doc("2015-08"))
    publish(stack, issue_doc("2015-09", list="events"))
    deliver(stack)
    later = collections.Counter(mailed()) - before
    assert set(later) == {r["email"] for r in readers} - gone
    assert set(later.values()) == {2}  # each of the others got both issues, once
    assert issue_record(stack, "2015-08")["sent"] == 6


def test_logs_never_carry_an_address(stack, capsys):
    sent = sent_issue(stack, 4)
    notes = [
        notification(k, m, [a], issue_id="2015-07", list_id="infomail")
        for (a, m), k in zip(sorted(sent.items()), ("Bounce", "Complaint", "Open", "Delivery"), strict=False)
    ]
    notes.append(notification("Bounce", "x", ["stranger@example.org"], event_publishing=False))
    capsys.readouterr()
    feed(stack, *notes)
    out = capsys.readouterr().out
    assert "address suppressed" in out
    assert not [a for a in [*sent, "stranger@example.org"] if a in out]


def test_feedback_function_is_wired_for_partial_batch_failures_behind_a_queue():
    from devstack import template as tpl

    template = tpl.load()
    (event,) = tpl.function_specs(template)["FeedbackFunction"]["Events"].values()
    assert event["Type"] == "SQS" and event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    res = template["Resources"]
    (statement,) = res["FeedbackQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "FeedbackTopic"}}}
    destination = res["FeedbackEventDestination"]["Properties"]["EventDestination"]
    # What cleans the list is always published; engagement only with TrackEngagement=true.
    always = {"reject", "bounce", "complaint", "renderingFailure", "deliveryDelay"}
    for value, expected in (("false", always), ("true", always | {"delivery", "open", "click"})):
        resolver = tpl.Resolver(template, {"TrackEngagement": value}, {})
        assert set(resolver.resolve(destination["MatchingEventTypes"])) == expected
    assert destination["SnsDestination"]["TopicARN"] == {"Ref": "FeedbackTopic"}
    assert res["FeedbackSubscription"]["Properties"]["RawMessageDelivery"] is False
    indexes = res["SendsTable"]["Properties"]["GlobalSecondaryIndexes"]
    assert [i["IndexName"] for i in indexes] == [feedback_store.MESSAGE_ID_INDEX]


def test_feedback_function_does_not_load_the_renderer():
    """Its cold start pays for neither Jinja2 nor pydantic nor css-inline."""
    import subprocess
    import sys

    code = (
        "import sys, newsletter.handlers.feedback; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'jinja2', 'pydantic', 'css_inline', 'markdown_it', 'nh3'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- trusted feedback only ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "how", ["raw body, no envelope", "another topic's envelope", "the topic's ARN in the body only"]
)
def test_feedback_not_from_the_stacks_topic_is_dropped_and_acts_on_nothing(stack, capsys, how):
    """A forged complaint for an address never mailed must neither suppress it nor pause the issue."""
    open_issue(stack, sent=600)
    forged = notification("Complaint", "m-forged", ["victim@example.com"], issue_id="2015-07", list_id="infomail")
    body = {
        "raw body, no envelope": json.dumps(forged),
        "another topic's envelope": json.dumps(
            {
                **json.loads(ses_feedback.sns_body(forged)),
                "TopicArn": "arn:aws:sns:us-east-1:999999999999:someone-elses",
            }
        ),
        "the topic's ARN in the body only": json.dumps({**forged, "TopicArn": ses_feedback.TOPIC_ARN}),
    }[how]
    capsys.readouterr()
    assert feed_bodies(stack, body) == {"batchItemFailures": []}
    out = capsys.readouterr().out
    assert "untrusted feedback dropped" in out and metric(out, "FeedbackUntrusted", ("service",)) == 1
    assert "victim@example.com" not in out
    assert counts(stack) == {} and suppressed(stack) == {}
    assert issue_record(stack, "2015-07")["status"] == "sending"


def test_the_feedback_function_is_told_its_topic_by_the_template(stack):
    env = stack.functions["FeedbackFunction"].environment
    assert env["FEEDBACK_TOPIC_ARN"] == stack.ref("FeedbackTopic") == ses_feedback.TOPIC_ARN
