"""Fan-out: active, unsuppressed subscribers of the issue's list, 50 a message, 10 messages a call,
each exactly once, and no list too large for one Lambda invocation."""

import collections
import json

import boto3
import pytest
from conftest import add_subscribers, issue_doc, issue_record, people, publish

from devstack import template as tpl
from fakes.dynamodb import FakeDynamoDB
from fakes.sqs import FakeSQS
from newsletter.config import FanoutSettings
from newsletter.fanout import RECIPIENTS_PER_BATCH, SAFETY_MS, fan_out
from newsletter.queue_messages import Segment, parse_fanout
from newsletter.store.subscribers import SHARDS
from newsletter.telemetry import logger


def queued_batches(stack):
    sqs = boto3.client("sqs", region_name="us-east-1")
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=stack.ref("SendQueue"), MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return bodies
        for m in got:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=stack.ref("SendQueue"), ReceiptHandle=m["ReceiptHandle"])


def test_only_active_unsuppressed_members_of_the_list_are_queued(stack):
    from newsletter.store import suppressions

    readers = people(180)
    add_subscribers(stack, readers)
    add_subscribers(stack, people(20, domain="left.example.com", status="unsubscribed"))
    add_subscribers(stack, people(10, domain="bounced.example.com", status="bounced"))
    add_subscribers(stack, people(15, domain="other-list.example.com"), list_id="otherlist")
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    suppressions.suppress(ddb, stack.ref("SuppressionsTable"), readers[0]["email"], "complaint", "now")
    publish(stack, issue_doc())
    stack.poll("FanoutFunction")
    batches = queued_batches(stack)
    addresses = [r["email"] for b in batches for r in b["recipients"]]
    assert sorted(addresses) == sorted(r["email"] for r in readers[1:])
    assert all(0 < len(b["recipients"]) <= RECIPIENTS_PER_BATCH for b in batches)
    record = issue_record(stack, "2015-07")
    assert record["queued"] == 179 and record["segments_done"] == SHARDS


def test_a_segment_continues_itself_when_time_runs_low(stack, monkeypatch):
    """With time always short, each invocation does one page and hands its cursor on."""
    from newsletter import fanout

    monkeypatch.setattr(fanout, "PAGE_SIZE", 40)
    monkeypatch.setattr(fanout, "SAFETY_MS", 10**9)
    add_subscribers(stack, people(1200))  # about 75 per shard: two pages each
    publish(stack, issue_doc())
    stats = stack.poll("FanoutFunction")
    assert stats["invocations"] > 2 * SHARDS  # every shard went on in new invocations
    sqs_bodies = queued_batches(stack)
    assert {b["batch_id"].split("-")[1] for b in sqs_bodies} >= {"000000", "000001"}  # pages 0 and 1
    addresses = [r["email"] for b in sqs_bodies for r in b["recipients"]]
    assert len(addresses) == len(set(addresses)) == 1200
    assert issue_record(stack, "2015-07")["queued"] == 1200
    assert issue_record(stack, "2015-07")["segments_done"] == SHARDS


def test_malformed_segment_messages_are_dropped(stack, capsys):
    for body in ["{", json.dumps({"issue_id": "x", "list_id": "y", "shard": 99}), json.dumps({"shard": 1})]:
        event = stack.sqs_event("FanoutQueue", [{"MessageId": "bad", "ReceiptHandle": "x", "Body": body}])
        assert stack.invoke("FanoutFunction", event) == {"batchItemFailures": []}
    assert capsys.readouterr().out.count("malformed fan-out message dropped") == 3


@pytest.mark.slow
def test_a_million_subscribers_fan_out_within_lambda_limits():
    """1,000,000 simulated subscribers: every active, unsuppressed one queued exactly once, each
    invocation inside its time budget (it continues itself), and at most 2.5 SQS requests per
    1,000 recipients."""
    total = 1_000_000
    addresses = [f"u{n:07d}@example.com" for n in range(total)]
    suppressed = set(addresses[5::1000])  # 1,000 suppressed
    names = ("issues", "subscribers", "suppressions", "sends")
    ddb = FakeDynamoDB.from_template(tpl.load(), {f"{n.title()}Table": n for n in names})  # the template's tables
    ddb.seed_subscribers("subscribers", "big", addresses, inactive_every=97)  # every 97th unsubscribed
    ddb.seed("suppressions", [{"email": {"S": a}, "reason": {"S": "bounce"}} for a in sorted(suppressed)])
    issue_key = {"issue_id": {"S": "big-1"}, "sk": {"S": "issue"}}
    ddb.seed("issues", [{**issue_key, "list_id": {"S": "big"}, "status": {"S": "sending"}}])
    sqs = FakeSQS()
    settings = FanoutSettings("issues", "subscribers", "suppressions", "send-queue", "fanout-queue", "sends")

    # Simulated clock: every page "costs" 20 s of a 900 s invocation, far more than it really does.
    pending = [Segment("big-1", "big", shard).to_message() for shard in range(SHARDS)]
    invocations, pages_per_invocation = 0, []
    while pending:
        body = pending.pop()
        budget = {"ms": 900_000}

        def time_left():
            budget["ms"] -= 20_000
            return budget["ms"]

        progress = fan_out(
            parse_fanout(body), settings=settings, ddb=ddb, sqs=sqs, time_left_ms=time_left, logger=logger
        )
        invocations += 1
        pages_per_invocation.append(progress.pages)
        pending.extend(sqs.take("fanout-queue"))

    expected = [a for n, a in enumerate(addresses) if n % 97 and a not in suppressed]
    bodies = sqs.bodies("send-queue")
    queued = [r["email"] for b in bodies for r in json.loads(b)["recipients"]]
    assert len(queued) == len(expected)
    assert collections.Counter(queued).most_common(1)[0][1] == 1
    assert set(queued) == set(expected)
    assert invocations > SHARDS  # segments continued themselves
    assert max(pages_per_invocation) <= (900_000 - SAFETY_MS) // 20_000 + 1
    assert max(len(json.loads(b)["recipients"]) for b in bodies) == RECIPIENTS_PER_BATCH
    sqs_requests = sqs.calls["SendMessageBatch"] + sqs.calls["SendMessage"]
    assert sqs_requests / (len(queued) / 1000) <= 2.5
    record = ddb.get_item(TableName="issues", Key=issue_key, ConsistentRead=True)["Item"]
    assert (int(record["queued"]["N"]), int(record["segments_done"]["N"])) == (len(expected), SHARDS)
