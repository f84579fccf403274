"""Every sample in events/ runs through its handler, as `sam local invoke -e` would: unchanged, but
for the S3 sample's version id and ETag, which S3 gives each upload (the sample's name one on AWS)."""

import json

import pytest
from conftest import EXAMPLE_ISSUE, ROOT, deliver, issue_record, mailed, publish

from devstack.demo import load_subscribers

EVENTS = ROOT / "events"
TRIGGERS = {
    "s3-put-issue.json": "PublishFunction",
    "sqs-fanout-segment.json": "FanoutFunction",
    "sqs-send-batch.json": "SendFunction",
}


def test_every_sample_event_has_a_test():
    assert {p.name for p in EVENTS.glob("*.json")} == set(TRIGGERS)


@pytest.fixture
def published(stack, subscribers_subset):
    load_subscribers(stack, "infomail", subscribers_subset)
    event = json.loads((EVENTS / "s3-put-issue.json").read_text())
    key = event["Records"][0]["s3"]["object"]["key"]
    assert event["Records"][0]["s3"]["bucket"]["name"] == stack.bucket  # the local stack's bucket
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    put = s3.put_object(Bucket=stack.bucket, Key=key, Body=EXAMPLE_ISSUE.read_bytes())
    # S3 gives each upload its own version id (the sample's names an upload on AWS): the one field
    # no sample can know in advance.
    event["Records"][0]["s3"]["object"].update(versionId=put["VersionId"], eTag=put["ETag"].strip('"'))
    return event


def test_s3_put_event_publishes(stack, published):
    result = stack.invoke("PublishFunction", published)
    assert result["outcomes"][0]["status"] == "published"
    assert issue_record(stack, "2015-07")["status"] == "sending"


def test_fanout_segment_event_queues_its_shard(stack, published):
    stack.invoke("PublishFunction", published)
    event = json.loads((EVENTS / "sqs-fanout-segment.json").read_text())
    assert stack.invoke("FanoutFunction", event) == {"batchItemFailures": []}
    assert issue_record(stack, "2015-07")["queued"] > 0


TRIGGERS["sqs-fanout-rollout-judge.json"] = "FanoutFunction"


def test_rollout_judge_event_judges_the_cohort_once_its_wait_is_over(stack, subscribers_subset):
    """The sample's Judge (rollout.py): before the wait is over it waits on; after it, the cohort's
    verdict queues the rest of the list."""
    load_subscribers(stack, "infomail", subscribers_subset)
    document = {**json.loads(EXAMPLE_ISSUE.read_text()), "rollout": {"share_percent": 10, "wait_minutes": 30}}
    publish(stack, document)
    stack.run("FanoutFunction", "SendFunction", horizon_s=300)  # the cohort, sent; its Judge waits on the queue
    assert issue_record(stack, "2015-07")["rollout_phase"] == "waiting"
    event = json.loads((EVENTS / "sqs-fanout-rollout-judge.json").read_text())
    assert stack.invoke("FanoutFunction", event) == {"batchItemFailures": []}
    assert issue_record(stack, "2015-07")["rollout_phase"] == "waiting"  # too early: waits on
    stack.clock.advance(1800)
    assert stack.invoke("FanoutFunction", event) == {"batchItemFailures": []}
    record = issue_record(stack, "2015-07")
    assert record["rollout_phase"] == "rest" and record["rollout_verdict"] == "passed"
    deliver(stack)
    sent, final = mailed(), issue_record(stack, "2015-07")
    assert final["status"] == "sent" and len(sent) == len(set(sent)) == int(final["sent"]) > int(record["sent"])


def test_send_batch_event_sends_its_recipients(stack, published):
    stack.invoke("PublishFunction", published)
    event = json.loads((EVENTS / "sqs-send-batch.json").read_text())
    assert stack.invoke("SendFunction", event) == {"batchItemFailures": []}
    expected = [r["email"] for r in json.loads(event["Records"][0]["body"])["recipients"]]
    assert sorted(mailed()) == sorted(expected)


# SES feedback samples (SNS envelope in an SQS record): the issue counter each moves, and the
# address it suppresses with the subscriber status it sets (None: nobody is suppressed).
FEEDBACK = {
    "sqs-feedback-identity-bounce-permanent.json": ("bounced_hard", "bounce@simulator.amazonses.com", "bounced"),
    "sqs-feedback-identity-complaint.json": ("complained", "complaint@simulator.amazonses.com", "complained"),
    "sqs-feedback-identity-delivery.json": ("delivered", None, None),
    "sqs-feedback-event-bounce-permanent.json": ("bounced_hard", "bounce@simulator.amazonses.com", "bounced"),
    "sqs-feedback-event-bounce-transient.json": ("bounced_soft", None, None),
    "sqs-feedback-event-complaint.json": ("complained", "complaint@simulator.amazonses.com", "complained"),
    "sqs-feedback-event-delivery.json": ("delivered", None, None),
    "sqs-feedback-event-delivery-delay.json": ("delivery_delayed", None, None),
    "sqs-feedback-event-open.json": ("opened", None, None),
    "sqs-feedback-event-click.json": ("clicked", None, None),
    "sqs-feedback-event-send.json": (None, None, None),
    "sqs-feedback-event-reject.json": ("ses_rejected", None, None),
    "sqs-feedback-event-rendering-failure.json": ("rendering_failed", None, None),
}
TRIGGERS.update(dict.fromkeys(FEEDBACK, "FeedbackFunction"))


@pytest.mark.parametrize("name", sorted(FEEDBACK))
def test_feedback_event_is_counted_and_acted_on(stack, published, name):
    import boto3

    from newsletter.store import ledger, subscribers

    stack.invoke("PublishFunction", published)
    event = json.loads((EVENTS / name).read_text())
    ses = json.loads(json.loads(event["Records"][0]["body"])["Message"])
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    if "notificationType" in ses:
        # Identity notifications carry no tags: the issue is found through the send ledger.
        address = ses["mail"]["destination"][0]
        ledger.claim(ddb, stack.ref("SendsTable"), "2015-07", address, claim_id="c", status="sending", now=1435737600)
        ledger.settle(
            ddb,
            stack.ref("SendsTable"),
            "2015-07",
            address,
            "c",
            "sent",
            1435737601,
            message_id=ses["mail"]["messageId"],
        )
    counter, suppressed, status = FEEDBACK[name]
    assert stack.invoke("FeedbackFunction", event) == {"batchItemFailures": []}
    record = issue_record(stack, "2015-07")
    counted = {
        k
        for k in (
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
        if record.get(k)
    }
    assert counted == ({counter} if counter else set())
    if counter:
        assert record[counter] == 1
    found = ddb.scan(TableName=stack.ref("SuppressionsTable"))["Items"]
    assert [i["email"]["S"] for i in found] == ([suppressed] if suppressed else [])
    if suppressed:
        assert (
            subscribers.get_subscriber(ddb, stack.ref("SubscribersTable"), "infomail", suppressed)["status"] == status
        )


# Function URL samples for UnsubscribeFunction: a browser's GET, a mail provider's one-click POST
# (base64 body). Their token is signed with conftest.SECRET for jose.alvarez@example.com.
TRIGGERS.update(
    {
        "function-url-unsubscribe-get.json": "UnsubscribeFunction",
        "function-url-unsubscribe-post.json": "UnsubscribeFunction",
    }
)
UNSUBSCRIBER = "jose.alvarez@example.com"


def _subscriber_status(stack, address=UNSUBSCRIBER):
    import boto3

    from newsletter.store import subscribers

    ddb = boto3.client("dynamodb", region_name="us-east-1")
    return subscribers.get_subscriber(ddb, stack.ref("SubscribersTable"), "infomail", address)["status"]


def test_function_url_get_event_shows_the_page_and_changes_nothing(stack, published):
    event = json.loads((EVENTS / "function-url-unsubscribe-get.json").read_text())
    response = stack.invoke("UnsubscribeFunction", event)
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert "j***@example.com" in response["body"] and 'method="post"' in response["body"]
    assert _subscriber_status(stack) == "active"


def test_function_url_one_click_post_event_unsubscribes(stack, published):
    stack.invoke("PublishFunction", published)  # the sample's issue=2015-07 hint is counted
    event = json.loads((EVENTS / "function-url-unsubscribe-post.json").read_text())
    assert event["isBase64Encoded"] is True
    response = stack.invoke("UnsubscribeFunction", event)
    assert response["statusCode"] == 200
    assert "You are unsubscribed" in response["body"]
    assert _subscriber_status(stack) == "unsubscribed"
    assert issue_record(stack, "2015-07")["unsubscribed"] == 1


# Function URL samples of the signup pages, for the same function: the form, a posted signup (its
# proof of work is genuine: a challenge signed with conftest.SECRET that never expires), the
# confirmation link and its button, the preference centre and its form, the bot check's
# challenge and widget. Their tokens are signed with conftest.SECRET; the confirmation link names
# the pending signup `pending_signup` makes.
SIGNUP_EVENTS = (
    "function-url-subscribe-get.json",
    "function-url-subscribe-post.json",
    "function-url-confirm-get.json",
    "function-url-confirm-post.json",
    "function-url-preferences-get.json",
    "function-url-preferences-post.json",
    "function-url-altcha-get.json",
    "function-url-altcha-js-get.json",
)
TRIGGERS.update(dict.fromkeys(SIGNUP_EVENTS, "UnsubscribeFunction"))
SIGNER, PENDING = "ana.silva@example.org", "rosa.ferreira@example.org"


@pytest.fixture
def signup_list(stack, subscribers_subset):
    """The example list as `newsletter lists put` stores it (consent, topics, welcome), and its readers."""
    from newsletter.mailing_list import MailingList
    from newsletter_cli.lists import put

    load_subscribers(stack, "infomail", subscribers_subset)
    document = MailingList.model_validate_json((ROOT / "examples" / "lists" / "infomail.json").read_text())
    put(stack.client("dynamodb"), stack.ref("ListsTable"), document)
    return stack


@pytest.fixture
def pending_signup(signup_list):
    """The signup the confirmation samples name: as a posted form records it."""
    from newsletter.store import signups

    request = signups.Request(
        "sample-signup-0001", "2015-07-01T08:16:12Z", int(signup_list.clock.time()), "Rosa Ferreira", "en", ["news"], {}
    )
    table = signup_list.ref("SubscribersTable")
    assert signups.request(
        signup_list.client("dynamodb"), table, "infomail", PENDING, request, pending_ttl_s=86400, resend_after_s=600
    ) == (signups.CREATED, "sample-signup-0001")
    return signup_list


def _invoke(stack, name: str) -> dict:
    return stack.invoke("UnsubscribeFunction", json.loads((EVENTS / name).read_text()))


def test_function_url_signup_form_event_shows_the_form(signup_list):
    response = _invoke(signup_list, "function-url-subscribe-get.json")
    assert response["statusCode"] == 200 and response["headers"]["Referrer-Policy"] == "same-origin"
    assert '<form method="post"' in response["body"] and 'name="consent_version" value="2015-07"' in response["body"]


def test_function_url_signup_post_event_records_a_pending_reader_and_mails_them(signup_list):
    response = _invoke(signup_list, "function-url-subscribe-post.json")
    assert response["statusCode"] == 200 and "Check your inbox" in response["body"]
    assert _subscriber_status(signup_list, SIGNER) == "pending"
    assert mailed() == [SIGNER]


def test_function_url_confirm_get_event_shows_the_button_and_changes_nothing(pending_signup):
    response = _invoke(pending_signup, "function-url-confirm-get.json")
    assert (
        response["statusCode"] == 200 and 'method="post"' in response["body"] and "r***@example.org" in response["body"]
    )
    assert _subscriber_status(pending_signup, PENDING) == "pending"


def test_function_url_confirm_post_event_confirms_and_welcomes(pending_signup):
    response = _invoke(pending_signup, "function-url-confirm-post.json")
    assert response["statusCode"] == 200
    assert _subscriber_status(pending_signup, PENDING) == "active"
    assert mailed() == [PENDING]  # the list's welcome


def test_function_url_preferences_events_show_and_save_a_readers_choices(signup_list):
    from newsletter.store import subscribers

    shown = _invoke(signup_list, "function-url-preferences-get.json")
    assert shown["statusCode"] == 200 and "j***@example.com" in shown["body"]
    saved = _invoke(signup_list, "function-url-preferences-post.json")
    assert saved["statusCode"] == 200 and '<html lang="fr"' in saved["body"]
    reader = subscribers.get_subscriber(
        signup_list.client("dynamodb"), signup_list.ref("SubscribersTable"), "infomail", UNSUBSCRIBER
    )
    assert (reader["language"], reader["topics"], reader["status"]) == ("fr", ["news", "vacancies"], "active")


def test_function_url_altcha_events_serve_a_challenge_and_the_widget(signup_list):
    import base64
    import gzip
    import os

    from newsletter.public import STATIC, WIDGET_FILE

    challenge = _invoke(signup_list, "function-url-altcha-get.json")
    assert challenge["statusCode"] == 200 and challenge["headers"]["Cache-Control"] == "no-store"
    assert json.loads(challenge["body"])["parameters"]["algorithm"] == "PBKDF2/SHA-256"
    widget = _invoke(signup_list, "function-url-altcha-js-get.json")
    assert widget["statusCode"] == 200 and widget["headers"]["Content-Encoding"] == "gzip"
    with open(os.path.join(STATIC, WIDGET_FILE), "rb") as f:
        assert gzip.decompress(base64.b64decode(widget["body"])) == f.read()


# EventBridge Scheduler's input at an issue's send time (newsletter/schedule.py start_payload).
TRIGGERS["scheduler-start-issue.json"] = "PublishFunction"


def test_scheduler_start_event_starts_the_scheduled_issue_once(stack, subscribers_subset):
    from datetime import UTC, datetime

    from newsletter import schedule

    load_subscribers(stack, "infomail", subscribers_subset)
    event = json.loads((EVENTS / "scheduler-start-issue.json").read_text())
    assert event == {**schedule.start_payload("2015-07", 1), "scheduled_time": event["scheduled_time"]}
    document = json.loads(EXAMPLE_ISSUE.read_text())
    send_at = datetime.fromtimestamp(int(stack.clock.time()) + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert publish(stack, {**document, "send_at": send_at})["outcomes"][0]["status"] == "scheduled"
    assert stack.invoke("PublishFunction", event)["outcomes"][0]["status"] != "stale"
    assert issue_record(stack, "2015-07")["status"] == "sending"
    # Scheduler invokes at least once: the same start again does nothing more.
    stack.invoke("PublishFunction", event)
    deliver(stack)
    sent = mailed()
    assert issue_record(stack, "2015-07")["status"] == "sent" and sent and len(sent) == len(set(sent))
