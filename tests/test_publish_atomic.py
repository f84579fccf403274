"""Publishing is atomic from the outside, and refuses what cannot be built.

No mail leaves for an issue that is not yet `sending` (where pause and cancel act); a retry
publishes the document version its event named; a corrected upload during a failed publish is the
one published, or refused with a report, never the original sent behind the editor's back; a value
that would break a header is refused at publish; a batch that can never be built pauses its issue.
"""

import json

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from conftest import add_subscribers, deliver, issue_doc, issue_record, mailed, people, publish, queue_depth, s3_text

KEY = "issues/2015-07.json"


def subjects() -> list[str]:
    """The Subject of every message SES accepted."""
    import email
    import email.policy

    from devstack.stack import sent_messages

    return [email.message_from_string(m.raw_data, policy=email.policy.default)["Subject"] for m in sent_messages()]


@pytest.fixture
def render_fails_once(monkeypatch):
    """The first publish attempt fails after its issue record exists (SQS could not be reached)."""
    from newsletter import publish as publishing

    real, calls = publishing.render_variants, {"n": 0}

    def render(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.com")
        return real(*args, **kwargs)

    monkeypatch.setattr(publishing, "render_variants", render)
    return calls


def test_a_corrected_upload_during_a_failed_publish_is_the_one_sent(stack, render_fails_once):
    readers = people(5)
    add_subscribers(stack, readers)
    first = stack.upload_issue(KEY, json.dumps(issue_doc(subject="Infomail July (draft)")).encode())
    with pytest.raises(EndpointConnectionError):
        stack.invoke("PublishFunction", first)  # Lambda will retry this event
    assert issue_record(stack, "2015-07")["status"] == "rendering"
    corrected = stack.upload_issue(KEY, json.dumps(issue_doc(subject="Infomail July")).encode())
    assert stack.invoke("PublishFunction", corrected)["outcomes"][0]["status"] == "published"
    # The first event's retry reads the version it named, and finds a newer one published.
    assert stack.invoke("PublishFunction", first)["outcomes"][0]["status"] == "superseded"
    deliver(stack)
    assert sorted(mailed()) == sorted(r["email"] for r in readers)
    assert set(subjects()) == {"Infomail July"}
    assert s3_text(stack, KEY + ".error.txt") is None


def test_a_retry_publishes_the_version_its_event_named_and_a_later_upload_is_refused(stack):
    readers = people(4)
    add_subscribers(stack, readers)
    first = stack.upload_issue(KEY, json.dumps(issue_doc(subject="Infomail July")).encode())
    second = stack.upload_issue(KEY, json.dumps(issue_doc(subject="Infomail July, corrected")).encode())
    # S3 delivered the first event late: it publishes what was uploaded then, not the latest.
    assert stack.invoke("PublishFunction", first)["outcomes"][0]["status"] == "published"
    result = stack.invoke("PublishFunction", second)["outcomes"][0]
    assert result["status"] == "refused" and "already published" in result["detail"]
    assert "already published" in s3_text(stack, KEY + ".error.txt")  # the editor is told
    deliver(stack)
    assert sorted(mailed()) == sorted(r["email"] for r in readers) and set(subjects()) == {"Infomail July"}


def test_an_issue_cancelled_while_it_renders_sends_nothing(stack, render_fails_once):
    from newsletter import lifecycle

    add_subscribers(stack, people(4))
    event = stack.upload_issue(KEY, json.dumps(issue_doc()).encode())
    with pytest.raises(EndpointConnectionError):
        stack.invoke("PublishFunction", event)
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    assert lifecycle.cancel_issue(ddb, stack.ref("IssuesTable"), "2015-07")  # while it is `rendering`
    assert stack.invoke("PublishFunction", event)["outcomes"][0]["status"] == "cancelled"
    deliver(stack)
    assert queue_depth(stack, "FanoutQueue") == 0 and mailed() == []
    assert issue_record(stack, "2015-07")["status"] == "cancelled"


def test_no_fanout_is_queued_before_the_issue_is_sending(stack, monkeypatch):
    from newsletter import publish as publishing

    seen = []
    real = publishing.start_fanout

    def start_fanout(sqs, url, issue_id, list_id, part=""):
        seen.append(issue_record(stack, issue_id))
        return real(sqs, url, issue_id, list_id, part)

    monkeypatch.setattr(publishing, "start_fanout", start_fanout)
    publish(stack, issue_doc())
    (record,) = seen
    assert record["status"] == "sending" and record["prepared_key"].startswith("rendered/2015-07/")


def test_a_publish_that_dies_after_sending_began_is_finished_by_its_retry(stack, monkeypatch):
    """Sending began, the fan-out was never queued: the retry queues it (once)."""
    from newsletter import publish as publishing

    readers = people(6)
    add_subscribers(stack, readers)
    monkeypatch.setattr(
        publishing, "start_fanout", lambda *a, **k: (_ for _ in ()).throw(EndpointConnectionError(endpoint_url="x"))
    )
    event = stack.upload_issue(KEY, json.dumps(issue_doc()).encode())
    with pytest.raises(EndpointConnectionError):
        stack.invoke("PublishFunction", event)
    monkeypatch.undo()
    assert stack.invoke("PublishFunction", event)["outcomes"][0]["status"] == "published"
    assert stack.invoke("PublishFunction", event)["outcomes"][0]["status"] == "duplicate"
    deliver(stack)
    assert sorted(mailed()) == sorted(r["email"] for r in readers)


# --- refusing what cannot be built ---------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, says",
    [
        ("subject", "Infomail\u0085July", "NEXT LINE"),
        ("subject", "Infomail\u2028July", "LINE SEPARATOR"),
        ("preheader", "Read\rmore", "CARRIAGE RETURN"),
        ("title", "A\u009bB", "control character"),
        ("subject", "=?utf-8?q?=0D=0ABcc:_evil@example.net?=", "encoded word"),
        ("reply_to", "a@example.org, b@example.org", "one plain email address"),
        ("reply_to", "josé@example.org", "one plain email address"),
        ("reply_to", "ed\u00aditor@example.org", "one plain email address"),
    ],
)
def test_a_value_that_would_break_a_header_is_refused_at_publish(stack, field, value, says):
    result = publish(stack, issue_doc(**{field: value}))["outcomes"][0]
    assert result["status"] == "invalid"
    report = s3_text(stack, KEY + ".error.txt")
    assert f"{field}:" in report and says in report
    assert issue_record(stack, "2015-07") is None and queue_depth(stack, "FanoutQueue") == 0


@pytest.mark.parametrize(
    "settings, says",
    [
        ({"name": "ICMPD\nBcc: evil@example.net"}, "list name: must be a single line"),
        ({"from_name": "News\u0085room"}, "list from_name: must be a single line"),
        ({"reply_to": "a@example.org, evil@example.net"}, "list reply_to"),
        ({"from_address": "News <news@news.example.org>"}, "list from_address"),
    ],
)
def test_list_settings_that_would_break_a_header_are_refused_at_publish(stack, settings, says):
    from newsletter.store.lists import put_list

    put_list(
        boto3.client("dynamodb", region_name="us-east-1"),
        stack.ref("ListsTable"),
        "infomail",
        settings.pop("name", "ICMPD Infomail"),
        **settings,
    )
    result = publish(stack, issue_doc())["outcomes"][0]
    assert result["status"] == "invalid"
    assert says in s3_text(stack, KEY + ".error.txt")
    assert issue_record(stack, "2015-07") is None


def test_a_batch_whose_message_cannot_be_built_pauses_its_issue_at_once(stack):
    """Something no retry can fix (here, a prepared message damaged after publish): the first batch
    pauses the issue with the reason, and every batch waits on the queue, none in the DLQ."""
    from newsletter.handlers import send

    add_subscribers(stack, people(120))
    publish(stack, issue_doc())
    s3 = boto3.client("s3", region_name="us-east-1")
    key = issue_record(stack, "2015-07")["prepared_key"]
    prepared = json.loads(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
    s3.put_object(Bucket=stack.bucket, Key=key, Body=json.dumps({**prepared, "subject": "July\nBcc: evil@example.net"}))
    send.sender.reset()
    stack.poll("FanoutFunction")
    runs = stack.poll("SendFunction", max_invocations=1)
    assert runs["invocations"] == 1
    record = issue_record(stack, "2015-07")
    assert record["status"] == "paused" and "cannot be built" in record["paused_reason"]
    assert "subject" in record["paused_reason"]
    stack.poll("SendFunction", horizon_s=3600)
    assert mailed() == [] and queue_depth(stack, "SendDLQ") == 0
    assert queue_depth(stack, "SendQueue") == 16  # every batch (one per shard) waits for resume or cancel


# --- any input gets an answer --------------------------------------------------------------------


def test_a_document_nested_deeply_gets_a_report_not_a_recursion_error(stack):
    body = b'{"issue_id": "2015-07", "footer": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    result = publish(stack, body, key=KEY)["outcomes"][0]
    assert result["status"] == "invalid" and "nested too deeply" in result["detail"]
    assert "line 1, column" in s3_text(stack, KEY + ".error.txt")


@pytest.mark.parametrize(
    "function, queue",
    [("SendFunction", "SendQueue"), ("FanoutFunction", "FanoutQueue"), ("FeedbackFunction", "FeedbackQueue")],
)
def test_a_deeply_nested_message_is_dropped_with_an_error(stack, function, queue, capsys):
    body = '{"issue_id": "2015-07", "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    event = stack.sqs_event(queue, [{"MessageId": "deep", "ReceiptHandle": "rh", "Body": body}])
    assert stack.invoke(function, event) == {"batchItemFailures": []}
    out = capsys.readouterr().out
    assert "dropped" in out and "nested deeper" in out and "RecursionError" not in out
