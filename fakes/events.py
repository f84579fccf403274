"""Lambda events for the tests and the benchmarks, built from the samples in events/: each builder
loads the matching events/*.json file as its template and substitutes what differs (bodies,
message ids, receive counts, the queue, the object key), so an event built here has exactly the
fields, types and nesting of the sample (tests/test_fakes.py checks it, and that devstack's own
builders agree).

- `sqs_event(messages, queue_arn=...)`: what Lambda's SQS event source hands a function, from
  events/sqs-send-batch.json (or another sqs-*.json sample named by `template`). `messages`
  are ReceiveMessage-shaped dicts (MessageId, ReceiptHandle, Body, Attributes, as FakeSQS's
  WorkQueue and boto3 return them) or plain bodies.
- `s3_put_event(key, ...)`: the S3 notification of an upload, from events/s3-put-issue.json,
  the key URL-encoded as S3 sends it.
- `sns_body(notification)` and `feedback_event(notifications)`: SES notifications as the
  feedback queue receives them, an SNS envelope (raw delivery off) in an SQS record, from
  events/sqs-feedback-event-send.json.

What they model: the events' shapes and the values Lambda computes (md5OfBody is the MD5 of the
body, awsRegion the queue's region, receive counts and timestamps from the message's
attributes). What they do not: SNS signatures (the sample's is kept, and verifies nothing),
S3 sequencers that order real uploads (pass one), the record limits of a real batch.

Standard library only, at module level and below: the samples are read from the repository's
events/ directory (this package is not shipped, so it always runs from a checkout).
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from urllib.parse import quote_plus

EVENTS = Path(__file__).resolve().parents[1] / "events"
SQS_TEMPLATE = "sqs-send-batch.json"
FEEDBACK_TEMPLATE = "sqs-feedback-event-send.json"
S3_TEMPLATE = "s3-put-issue.json"


@cache
def _sample_text(name: str) -> str:
    return (EVENTS / name).read_text(encoding="utf-8")


def sample(name: str) -> dict:
    """A fresh copy of events/<name> (parsed: change it as you like)."""
    return json.loads(_sample_text(name))


@cache
def _first_record(name: str) -> dict:
    return sample(name)["Records"][0]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def sqs_record(message: dict | str, *, queue_arn: str | None = None, template: str = SQS_TEMPLATE) -> dict:
    """One record of an SQS event: the sample's record with this message's id, receipt handle,
    body (and its MD5), attributes and queue."""
    if isinstance(message, str):
        message = {"Body": message}
    record = copy.deepcopy(_first_record(template))
    body = message["Body"]
    message_id = message.get("MessageId") or str(uuid.uuid4())
    record["messageId"] = message_id
    record["receiptHandle"] = message.get("ReceiptHandle") or message_id
    record["body"] = body
    record["md5OfBody"] = message.get("MD5OfBody") or _md5(body)
    attributes = message.get("Attributes") or {}
    # Only the attributes the sample has: Lambda hands a function these four.
    record["attributes"].update({k: str(v) for k, v in attributes.items() if k in record["attributes"]})
    if queue_arn:
        record["eventSourceARN"] = queue_arn
        record["awsRegion"] = queue_arn.split(":")[3]
    return record


def sqs_event(messages, *, queue_arn: str | None = None, template: str = SQS_TEMPLATE) -> dict:
    """An SQS event holding these messages (ReceiveMessage-shaped dicts, or bodies), for the
    queue `queue_arn` (default: the sample's)."""
    return {"Records": [sqs_record(m, queue_arn=queue_arn, template=template) for m in messages]}


def s3_put_event(
    key: str,
    *,
    bucket: str | None = None,
    size: int | None = None,
    etag: str | None = None,
    version_id: str | None = None,
    sequencer: str | None = None,
) -> dict:
    """The S3 notification for an upload of `key` (unencoded: it is URL-encoded as S3 sends it),
    from events/s3-put-issue.json. Fields not given keep the sample's values; a version id only
    appears if the sample has one or one is given."""
    event = sample(S3_TEMPLATE)
    s3 = event["Records"][0]["s3"]
    if bucket:
        s3["bucket"]["name"] = bucket
        s3["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    obj = s3["object"]
    obj["key"] = quote_plus(key, safe="/")
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag.strip('"')
    if version_id is not None:
        obj["versionId"] = version_id
    if sequencer is not None:
        obj["sequencer"] = sequencer
    return event


def sns_body(notification: dict | str, *, message_id: str | None = None, timestamp: str | None = None) -> str:
    """The SQS message body SNS writes for a notification (raw delivery off): the sample's
    envelope with the notification as its Message (JSON text)."""
    envelope = json.loads(_first_record(FEEDBACK_TEMPLATE)["body"])
    envelope["MessageId"] = message_id or str(uuid.uuid4())
    envelope["Message"] = notification if isinstance(notification, str) else json.dumps(notification)
    envelope["Timestamp"] = timestamp or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return json.dumps(envelope, indent=2)


def feedback_event(notifications, *, queue_arn: str | None = None) -> dict:
    """An SQS event of the feedback queue holding these SES notifications, each in its SNS envelope."""
    return sqs_event([sns_body(n) for n in notifications], queue_arn=queue_arn, template=FEEDBACK_TEMPLATE)
