"""Dead letters: what each DLQ holds, said without addresses, and moving it back to be tried again.

On AWS, `redrive` starts SQS's own message move task (back to the queue each message came from);
PublishDLQ holds Lambda's records of failed asynchronous invocations, not queue messages, so its
events are invoked again, asynchronously, as S3 first did. Locally the CLI moves the messages
itself and then runs the functions, as it does for every --local command.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from .stack import CliError, Target

SAMPLE = 10  # messages read per queue to describe it (they stay in the queue)


@dataclass(frozen=True)
class DeadLetters:
    logical: str
    source: str | None  # the queue its messages came from (None: async invocations of `function`)
    function: str
    holds: str


QUEUES = {
    q.logical: q
    for q in (
        DeadLetters("PublishDLQ", None, "PublishFunction", "issue uploads whose publish failed three times"),
        DeadLetters(
            "FanoutDLQ", "FanoutQueue", "FanoutFunction", "fan-out segments and reconcile jobs received 5 times"
        ),
        DeadLetters("SendDLQ", "SendQueue", "SendFunction", "recipient batches received 50 times"),
        DeadLetters(
            "FeedbackDLQ",
            "FeedbackQueue",
            "FeedbackFunction",
            "SES notifications received 5 times, or that SNS could not deliver",
        ),
    )
}


@dataclass
class Report:
    queue: DeadLetters
    count: int
    oldest_age_s: float | None = None  # of the messages sampled
    samples: list[str] = field(default_factory=list)


def queue_named(name: str) -> DeadLetters:
    for q in QUEUES.values():
        if name.lower() in (q.logical.lower(), q.logical.lower().removesuffix("dlq"), (q.source or "").lower()):
            return q
    raise CliError(f"no dead-letter queue {name!r}: one of {', '.join(QUEUES)}")


def inspect(target: Target, now: float | None = None) -> list[Report]:
    """Each DLQ's count, the age of the oldest message sampled, and what a few of them are."""
    sqs = target.client("sqs")
    now = time.time() if now is None else now
    reports = []
    for q in QUEUES.values():
        url = target.ref(q.logical)
        attrs = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        report = Report(
            q, int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
        )
        if report.count:
            # VisibilityTimeout 0: a look that leaves them where they are.
            got = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=SAMPLE, VisibilityTimeout=0, AttributeNames=["SentTimestamp"]
            ).get("Messages", [])
            sent = [int(m.get("Attributes", {}).get("SentTimestamp", 0)) / 1000 for m in got]
            report.oldest_age_s = max(0.0, now - min(sent)) if sent else None
            report.samples = [describe(q, m.get("Body", "")) for m in got[:3]]
        reports.append(report)
    return reports


def describe(queue: DeadLetters, body: str) -> str:
    """One dead letter in a line: which issue, what it was; never an address."""
    from newsletter.jsontext import loads

    try:
        data = loads(body)
    except ValueError:
        return f"{len(body)} bytes that are not JSON"
    if not isinstance(data, dict):
        return "not a message of this stack"
    if queue.logical in ("SendDLQ", "FanoutDLQ"):
        from newsletter import queue_messages as qm

        try:
            if queue.logical == "SendDLQ":
                b = qm.parse_batch(body)
                return f"issue {b.issue_id}, batch {b.batch_id}: {len(b.recipients)} recipient(s), attempt {b.attempt}"
            job = qm.parse_fanout(body)
        except qm.Malformed as exc:
            return f"a message of an unknown shape ({exc})"
        if isinstance(job, qm.Reconcile):
            return f"issue {job.issue_id}: reconcile its counters with the ledger"
        return f"issue {job.issue_id}, shard {job.shard}, page {job.page}"
    if queue.logical == "PublishDLQ" and "requestPayload" in data:
        keys = [r.get("s3", {}).get("object", {}).get("key") for r in (data["requestPayload"] or {}).get("Records", [])]
        error = data.get("responsePayload") or {}
        return (
            f"upload {', '.join(str(k) for k in keys)}: {error.get('errorType', '?')}: "
            f"{str(error.get('errorMessage', ''))[:120]}"
        )
    if queue.logical == "PublishDLQ" and data.get("source") == "newsletter.schedule":
        # EventBridge Scheduler's own dead letter: the body is the start it could not deliver.
        return f"scheduled start of issue {data.get('issue_id')} (generation {data.get('generation')})"
    if queue.logical == "FeedbackDLQ":
        from newsletter import notifications

        try:
            (event,) = notifications.classify(notifications.unwrap(body))[:1]
        except (notifications.Malformed, notifications.Unknown, notifications.Ignored, ValueError) as exc:
            return f"a notification that cannot be read: {type(exc).__name__}"
        return (
            f"{event.kind} for issue {event.issue_id or '(untagged)'}, SES message {event.message_id}, "
            f"{len(event.recipients)} recipient(s)"
        )
    return "a message of an unknown shape"


@dataclass
class Redrive:
    moved: int
    task: str | None = None  # SQS's message move task, on AWS


def redrive(target: Target, queue: DeadLetters) -> Redrive:
    """Move a DLQ's messages back to be tried again."""
    sqs = target.client("sqs")
    url = target.ref(queue.logical)
    if target.is_local:
        return _move_locally(target, queue)
    if queue.source is None:
        return Redrive(_reinvoke(target, queue))
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    count = int(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
    )
    task = sqs.start_message_move_task(SourceArn=arn)  # back to the queue each message came from
    return Redrive(count, task.get("TaskHandle"))


def _reinvoke(target: Target, queue: DeadLetters) -> int:
    """PublishDLQ: invoke the publish function again with each failed event, as S3 (or Scheduler)
    did, then drop the record (publishing the same upload twice publishes it once)."""
    sqs, lam = target.client("sqs"), target.client("lambda")
    url, moved = target.ref(queue.logical), 0
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60).get("Messages", [])
        if not got:
            return moved
        for m in got:
            record = json.loads(m["Body"])
            lam.invoke(
                FunctionName=target.ref(queue.function),
                InvocationType="Event",
                Payload=json.dumps(_payload(record)).encode(),
            )
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            moved += 1


def _payload(record: dict) -> dict:
    """What the function was invoked with: Lambda's failure record wraps it (`requestPayload`);
    EventBridge Scheduler's dead letter is the scheduled start itself (starting is conditional on
    the schedule's generation, so a start overtaken by a cancel or a reschedule still does nothing)."""
    return record["requestPayload"] if "requestPayload" in record else record


def _move_locally(target: Target, queue: DeadLetters) -> Redrive:
    """The local stack: the same effect as the move task (or the invocations), then the functions run."""
    from .publishing import function_logs

    stack, sqs = target.local, target.client("sqs")
    url, moved = target.ref(queue.logical), 0
    with function_logs(target):
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60).get("Messages", [])
            if not got:
                break
            for m in got:
                if queue.source is None:
                    stack.invoke_async(queue.function, _payload(json.loads(m["Body"])))
                else:
                    sqs.send_message(QueueUrl=target.ref(queue.source), MessageBody=m["Body"])
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                moved += 1
        stack.run("FanoutFunction", "SendFunction", "FeedbackFunction")
    return Redrive(moved)
