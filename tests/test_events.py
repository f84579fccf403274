"""Every sample in events/ runs through its handler unchanged, as `sam local invoke -e` would."""

import json
from pathlib import Path

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

    boto3.client("s3", region_name="us-east-1").put_object(Bucket=stack.bucket, Key=key, Body=EXAMPLE_ISSUE.read_bytes())
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
