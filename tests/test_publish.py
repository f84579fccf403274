"""Publishing: an upload becomes one rendered issue and one fan-out, whatever AWS repeats."""

import json
from pathlib import Path

import pytest
from conftest import (
    add_subscribers,
    deliver,
    issue_doc,
    issue_record,
    mailed,
    people,
    publish,
    queue_depth,
    s3_text,
    upload,
)


def test_valid_issue_is_rendered_once_and_fanned_out(stack):
    result = publish(stack, issue_doc())
    assert result["outcomes"][0]["status"] == "published"
    record = issue_record(stack, "2015-07")
    assert record["status"] == "sending" and record["list_id"] == "infomail"
    web = s3_text(stack, "web/2015-07.html")
    assert "Towards a new European Neighbourhood Policy on Migration" in web
    assert "\ue000" not in web  # the public page carries no recipient's values
    prepared = json.loads(s3_text(stack, issue_record(stack, "2015-07")["prepared_key"]))
    assert prepared["web_url"] == "https://news.example.org/web/2015-07.html"
    assert prepared["from_address"] == "news@news.example.org"
    assert queue_depth(stack, "FanoutQueue") == 16  # one segment per subscriber shard


def test_same_event_twice_and_same_upload_twice_publish_once(stack):
    add_subscribers(stack, people(30))
    event = upload(stack, issue_doc())
    first = stack.invoke("PublishFunction", event)
    again = stack.invoke("PublishFunction", event)  # S3 delivers an event twice
    reupload = publish(stack, issue_doc())  # the editor uploads the same file again
    assert [first["outcomes"][0]["status"], again["outcomes"][0]["status"], reupload["outcomes"][0]["status"]] == [
        "published",
        "duplicate",
        "duplicate",
    ]
    assert queue_depth(stack, "FanoutQueue") == 16
    deliver(stack)
    assert sorted(mailed()) == sorted(p["email"] for p in people(30))


def test_changed_document_for_published_issue_is_refused_with_when(stack):
    add_subscribers(stack, people(5))
    publish(stack, issue_doc())
    deliver(stack)
    changed = issue_doc(subject="July 2015 Monthly Update (corrected)")
    result = publish(stack, changed)
    assert result["outcomes"][0]["status"] == "refused"
    report = s3_text(stack, "issues/2015-07.json.error.txt")
    assert "already published" in report and "never sent twice" in report
    assert issue_record(stack, "2015-07")["sending_at"] in report  # when it began to go out
    deliver(stack)
    assert len(mailed()) == 5


def test_the_same_issue_id_under_another_key_is_refused_if_content_differs(stack):
    publish(stack, issue_doc())
    result = publish(stack, issue_doc(title="Another title"), key="issues/copy-of-july.json")
    assert result["outcomes"][0]["status"] == "refused"
    assert "already published" in s3_text(stack, "issues/copy-of-july.json.error.txt")


def test_unknown_list_is_reported_and_nothing_happens(stack):
    result = publish(stack, issue_doc(list="no-such-list"))
    assert result["outcomes"][0]["status"] == "invalid"
    report = s3_text(stack, "issues/2015-07.json.error.txt")
    assert "list: unknown list 'no-such-list'" in report and "Nothing was sent" in report
    assert issue_record(stack, "2015-07") is None
    assert queue_depth(stack, "FanoutQueue") == 0


def test_oversized_document_is_reported(stack):
    doc = issue_doc()
    doc["news"][0]["body"] = "word " * 120_000
    result = publish(stack, doc)
    assert result["outcomes"][0]["status"] == "invalid"
    assert "larger than the limit of 524288 bytes" in s3_text(stack, "issues/2015-07.json.error.txt")
    assert queue_depth(stack, "FanoutQueue") == 0


@pytest.mark.parametrize(
    "body, expected",
    [
        (b"", "the file is empty"),
        (b'{"issue_id": "2015-07",\n  "list": "infomail",,}', "line 2, column 22: JSON syntax error"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "looks like a PNG image"),
    ],
)
def test_bad_bytes_get_a_report_and_send_nothing(stack, body, expected):
    result = stack.invoke("PublishFunction", upload(stack, body, key="issues/bad.json"))
    assert result["outcomes"][0]["status"] == "invalid"
    assert expected in s3_text(stack, "issues/bad.json.error.txt")
    assert queue_depth(stack, "FanoutQueue") == 0


def test_report_is_removed_once_the_fixed_document_publishes(stack):
    publish(stack, issue_doc(subject="two\nlines"))
    assert "subject: must be a single line" in s3_text(stack, "issues/2015-07.json.error.txt")
    assert publish(stack, issue_doc())["outcomes"][0]["status"] == "published"
    assert s3_text(stack, "issues/2015-07.json.error.txt") is None


def test_a_failed_attempt_is_finished_by_the_retry(stack, monkeypatch):
    """A failure after the issue is `sending` but before its fan-out is queued: the async retry
    queues it (and until then pause and cancel already work)."""
    from newsletter import publish as publishing

    add_subscribers(stack, people(12))
    real = publishing.start_fanout
    monkeypatch.setattr(publishing, "start_fanout", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("SQS down")))
    event = upload(stack, issue_doc())
    with pytest.raises(ConnectionError):
        stack.invoke("PublishFunction", event)  # raised: Lambda retries the async invoke
    record = issue_record(stack, "2015-07")
    assert record["status"] == "sending" and "fanout_queued_at" not in record
    monkeypatch.setattr(publishing, "start_fanout", real)
    assert stack.invoke("PublishFunction", event)["outcomes"][0]["status"] == "published"
    deliver(stack)
    assert sorted(mailed()) == sorted(p["email"] for p in people(12))


def test_events_that_are_not_issue_uploads_are_ignored(stack):
    assert stack.invoke("PublishFunction", {"hello": "world"}) == {"outcomes": []}
    event = upload(stack, issue_doc())
    event["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    assert stack.invoke("PublishFunction", event) == {"outcomes": []}
    assert issue_record(stack, "2015-07") is None


def test_url_encoded_keys_are_decoded(stack):
    result = publish(stack, issue_doc(), key="issues/July 2015 (final).json")
    assert result["outcomes"][0] == {
        "key": "issues/July 2015 (final).json",
        "status": "published",
        "issue_id": "2015-07",
        "detail": "",
    }


ROOT = Path(__file__).resolve().parents[1]
CASES = json.loads((ROOT / "tests" / "fixtures" / "bad_issues" / "cases.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_each_malformed_document_gets_a_clear_report_and_sends_nothing(stack, case):
    add_subscribers(stack, people(3))
    raw = (ROOT / "tests" / "fixtures" / "bad_issues" / case["file"]).read_bytes()
    key = f"issues/{case['file']}"
    result = stack.invoke("PublishFunction", upload(stack, raw, key=key))
    assert result["outcomes"][0]["status"] == "invalid"
    report = s3_text(stack, key + ".error.txt")
    for expected in case["expect"]:
        assert expected in report, f"{case['why']}: {expected!r} not in report"
    assert queue_depth(stack, "FanoutQueue") == 0
    deliver(stack)
    assert mailed() == []


@pytest.mark.parametrize("handler", ["send", "fanout"])
def test_senders_do_not_load_the_renderer(handler):
    """Cold starts of the hot functions pay for neither Jinja2, pydantic, css-inline nor email-validator."""
    import subprocess
    import sys

    code = (
        f"import sys, newsletter.handlers.{handler}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'jinja2', 'pydantic', 'css_inline', 'markdown_it', 'nh3', 'email_validator', 'dns'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_upload_deleted_before_its_event_is_handled_is_ignored(stack):
    import boto3

    event = upload(stack, issue_doc())
    boto3.client("s3", region_name="us-east-1").delete_object(Bucket=stack.bucket, Key="issues/2015-07.json")
    assert stack.invoke("PublishFunction", event)["outcomes"][0]["status"] == "ignored"
    assert issue_record(stack, "2015-07") is None
