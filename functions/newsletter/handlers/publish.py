"""S3 ObjectCreated on issues/*.json → publish the issue (validate, render once, start fan-out or
schedule it); a scheduled issue's one-time schedule (EventBridge Scheduler) → start its send."""

from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event

from .. import aws
from ..config import publish_settings
from ..publish import Scheduling, publish, start_scheduled
from ..schedule import scheduling_settings, start_request, unqualified
from ..store.schedules import Wiring
from ..telemetry import issue_metrics, logger


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    settings = publish_settings()
    start = start_request(event)
    if start is not None:
        return _start(start, settings, event)
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        # Not an S3 notification (a test event, a misrouted trigger): nothing to publish or retry.
        logger.error("event is neither an S3 notification nor a schedule's start")
        return {"outcomes": []}
    scheduling = _scheduling(context)
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
        outcome = publish(
            key,
            settings=settings,
            logger=logger,
            scheduling=scheduling,
            **clients,
            **{k: v or None for k, v in upload.items()},
        )
        if outcome.issue_id:
            issue_metrics(outcome.issue_id, {f"Publish{outcome.status.capitalize()}": 1})
        outcomes.append({"key": key, "status": outcome.status, "issue_id": outcome.issue_id, "detail": outcome.detail})
    return {"outcomes": outcomes}


def _scheduling(context) -> Scheduling:
    """Where this function's schedules go; Scheduler's client is made only for a scheduled issue."""
    found = scheduling_settings()
    wiring = Wiring(
        group=found.schedule_group,
        role_arn=found.scheduler_role_arn,
        function_arn=unqualified(context.invoked_function_arn),
        dead_letter_arn=found.schedule_dlq_arn,
    )
    return Scheduling(wiring, lambda: aws.client("scheduler"), found.schedule_max_days)


def _start(start: tuple[str, int], settings, event: dict) -> dict:
    """The schedule's invocation (asynchronous: a failure is retried by Lambda, then kept in PublishDLQ)."""
    issue_id, generation = start
    logger.info(
        "schedule fired",
        extra={"issue": issue_id, "generation": generation, "scheduled_time": event.get("scheduled_time")},
    )
    clients = {"s3": aws.client("s3"), "ddb": aws.client("dynamodb"), "sqs": aws.client("sqs")}
    outcome = start_scheduled(issue_id, generation, settings=settings, logger=logger, **clients)
    issue_metrics(issue_id, {f"Schedule{outcome.status.capitalize()}": 1})
    return {"outcomes": [{"issue_id": issue_id, "status": outcome.status, "detail": outcome.detail}]}
