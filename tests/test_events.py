"""Every sample in events/ runs through its handler, as `sam local invoke -e` would: unchanged, but
for the S3 sample's version id and ETag, which S3 gives each upload (the sample's name one on AWS)."""

import json

import pytest
from conftest import EXAMPLE_ISSUE, ROOT, issue_record, mailed

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
def published(stack):
    load_subscribers(stack, "infomail", ROOT / "examples" / "subscribers.csv")
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
