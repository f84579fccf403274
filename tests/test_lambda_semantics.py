"""The template says what the code does, and the local stack does what the template says.

Each SQS-triggered handler either raises on a failure or reports it, and then its event source
must declare ReportBatchItemFailures (else Lambda deletes what the handler said failed). The local
stack applies the template's semantics exactly: reported failures only when declared, a raised
error redelivers the whole batch after the visibility timeout, maxReceiveCount moves a message to
its DLQ, and an asynchronous event is retried twice and then sent to its failure destination.
"""

import json

import pytest
from conftest import ROOT

from devstack import template as tpl
from devstack.faults import FaultPlan

EVENTS = ROOT / "events"
SQS_FUNCTIONS = {
    name: spec
    for name, spec in tpl.function_specs(tpl.load()).items()
    if any(e["Type"] == "SQS" for e in (spec.get("Events") or {}).values())
}


def sample_events_for(queue_logical: str) -> list[str]:
    """The events/ samples whose records come from this queue (by the queue name in their ARN)."""
    found = []
    for path in sorted(EVENTS.glob("sqs-*.json")):
        records = json.loads(path.read_text())["Records"]
        if records[0]["eventSourceARN"].endswith("-" + queue_logical):
            found.append(path.name)
    return found


def test_every_sqs_function_has_sample_events():
    for name, spec in SQS_FUNCTIONS.items():
        (event,) = [e for e in spec["Events"].values() if e["Type"] == "SQS"]
        assert sample_events_for(event["Properties"]["Queue"]["Fn::GetAtt"][0]), name


@pytest.mark.parametrize("name", sorted(SQS_FUNCTIONS))
def test_a_failed_record_is_retried_by_lambda_as_the_template_configures_it(stack, name):
    """Every AWS call fails (a 5xx that outlived the SDK's retries): the handler must raise, or
    report the record failed, and then the template must declare ReportBatchItemFailures."""
    function = stack.functions[name]
    (sample,) = sample_events_for(function.sqs_source)[:1]
    event = json.loads((EVENTS / sample).read_text())
    ids = {r["messageId"] for r in event["Records"]}
    stack.faults = FaultPlan(rate=1.0, kinds=("error",))
    try:
        result = stack.invoke(name, event)
    except Exception:
        return  # Lambda retries the whole batch: always safe
    finally:
        stack.faults = None
    failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
    assert failed == ids, f"{name} returned success for a record that failed: Lambda would delete it"
    assert function.reports_item_failures, (
        f"{name} reports failed records, but its event source lacks FunctionResponseTypes: "
        "[ReportBatchItemFailures]; Lambda would ignore the report and delete them"
    )


# --- the local stack's event source: exactly the template's semantics --------------------------


def _fake_handler(monkeypatch, module: str, handler):
    import importlib

    monkeypatch.setattr(importlib.import_module(module), "handler", handler)


def _send(stack, logical: str, bodies: list[str]) -> None:
    import boto3

    sqs = boto3.client("sqs", region_name="us-east-1")
    for body in bodies:
        sqs.send_message(QueueUrl=stack.ref(logical), MessageBody=body)


def _depth(stack, logical: str) -> int:
    from conftest import queue_depth

    return queue_depth(stack, logical)


def test_reported_failures_are_ignored_without_report_batch_item_failures(stack, monkeypatch):
    seen = []

    def handler(event, context):
        seen.extend(r["body"] for r in event["Records"])
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    _fake_handler(monkeypatch, "newsletter.handlers.fanout", handler)
    stack.functions["FanoutFunction"].reports_item_failures = False  # as the template once had it
    _send(stack, "FanoutQueue", ["a"])
    stats = stack.poll("FanoutFunction")
    assert seen == ["a"] and stats["invocations"] == 1  # deleted: never delivered again
    assert _depth(stack, "FanoutQueue") == _depth(stack, "FanoutDLQ") == 0


def test_reported_failures_come_back_after_the_visibility_timeout_then_go_to_the_dlq(stack, monkeypatch):
    times = []

    def handler(event, context):
        from newsletter import clock

        times.append(clock.now())
        return {
            "batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "bad"]
        }

    _fake_handler(monkeypatch, "newsletter.handlers.feedback", handler)
    _send(stack, "FeedbackQueue", ["bad", "good"])
    stats = stack.poll("FeedbackFunction")
    queue = tpl.load()["Resources"]["FeedbackQueue"]["Properties"]
    receives = queue["RedrivePolicy"]["maxReceiveCount"]
    assert stats["invocations"] == receives  # "good" went with the first batch (or the second)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # Retried when the message is visible again (give or take the handler's own milliseconds).
    assert all(g >= queue["VisibilityTimeout"] - 1 for g in gaps)
    assert _depth(stack, "FeedbackQueue") == 0 and _depth(stack, "FeedbackDLQ") == 1


def test_a_raised_error_redelivers_the_whole_batch(stack, monkeypatch):
    batches = []

    def handler(event, context):
        batches.append(sorted(r["body"] for r in event["Records"]))
        if len(batches) == 1:
            raise RuntimeError("boom")
        return {"batchItemFailures": []}

    _fake_handler(monkeypatch, "newsletter.handlers.feedback", handler)
    _send(stack, "FeedbackQueue", ["a", "b", "c"])
    stack.poll("FeedbackFunction")
    assert sorted(sum(batches[1:], [])) == ["a", "b", "c"]  # all three came back
    assert _depth(stack, "FeedbackQueue") == 0


def test_an_identifier_not_in_the_batch_fails_the_whole_batch(stack, monkeypatch):
    calls = []

    def handler(event, context):
        calls.append(len(event["Records"]))
        return {"batchItemFailures": [{"itemIdentifier": "not-a-message-id"}]} if len(calls) == 1 else {}

    _fake_handler(monkeypatch, "newsletter.handlers.feedback", handler)
    _send(stack, "FeedbackQueue", ["a", "b"])
    stack.poll("FeedbackFunction")
    assert calls[0] == 2 and sum(calls[1:]) == 2


def test_an_async_event_is_tried_three_times_then_kept_in_the_failure_destination(stack, monkeypatch):
    attempts = []

    def handler(event, context):
        from newsletter import clock

        attempts.append(clock.now())
        raise RuntimeError("publish failed")

    _fake_handler(monkeypatch, "newsletter.handlers.publish", handler)
    event = stack.upload_issue("issues/x.json", b"{}")
    assert stack.invoke_async("PublishFunction", event) is None
    assert len(attempts) == 3 and attempts[2] - attempts[0] >= 180  # a minute, then two
    import boto3

    sqs = boto3.client("sqs", region_name="us-east-1")
    (message,) = sqs.receive_message(QueueUrl=stack.ref("PublishDLQ"))["Messages"]
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestPayload"] == event and record["responsePayload"]["errorMessage"] == "publish failed"


def test_an_async_event_that_succeeds_on_a_retry_is_not_kept(stack, monkeypatch):
    attempts = []

    def handler(event, context):
        attempts.append(1)
        if len(attempts) < 2:
            raise RuntimeError("transient")
        return {"ok": True}

    _fake_handler(monkeypatch, "newsletter.handlers.publish", handler)
    assert stack.invoke_async("PublishFunction", stack.upload_issue("issues/x.json", b"{}")) == {"ok": True}
    assert _depth(stack, "PublishDLQ") == 0
