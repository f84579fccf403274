"""S3 ObjectCreated on issues/*.json → publish the issue (validate, render once, start fan-out)."""

from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event

from .. import aws
from ..config import publish_settings
from ..publish import publish
from ..telemetry import issue_metrics, logger


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    settings = publish_settings()
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        # Not an S3 notification (a test event, a misrouted trigger): nothing to publish or retry.
        logger.error("event is not an S3 notification: no Records list")
        return {"outcomes": []}
    outcomes = []
    for record in S3Event(event).records:
        obj = record.s3.get_object
        key = unquote_plus(obj.key)  # S3 sends keys URL-encoded, spaces as '+'
        if not record.event_name.startswith("ObjectCreated") or record.s3.bucket.name != settings.bucket_name:
            logger.warning("ignored S3 record", extra={"event_name": record.event_name, "key": key})
            continue
        # The version this event is about (or, in a bucket without versioning, its ETag): a retry
        # publishes what was uploaded then, never a later upload of the same key.
        upload = {"version_id": obj.version_id, "etag": obj.etag, "sequencer": obj.get("sequencer")}
        clients = {"s3": aws.client("s3"), "ddb": aws.client("dynamodb"), "sqs": aws.client("sqs")}
        outcome = publish(key, settings=settings, logger=logger, **clients, **{k: v or None for k, v in upload.items()})
        if outcome.issue_id:
            issue_metrics(outcome.issue_id, {f"Publish{outcome.status.capitalize()}": 1})
        outcomes.append({"key": key, "status": outcome.status, "issue_id": outcome.issue_id, "detail": outcome.detail})
    return {"outcomes": outcomes}
