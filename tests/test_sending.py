"""Sending: each active subscriber gets the issue exactly once, whatever SQS, SES or Lambda do."""

import collections
import json

import boto3
import pytest
from conftest import (
    SECRET,
    add_subscribers,
    client_error,
    deliver,
    issue_doc,
    issue_record,
    mailed,
    people,
    publish,
    queue_depth,
)

from newsletter.store import ledger


def send_event(stack, recipients, issue_id="2015-07", message_id="m-1", batch_id="00-000000-00"):
    body = json.dumps(
        {
            "issue_id": issue_id,
            "list_id": "infomail",
            "batch_id": batch_id,
            "recipients": [{"email": r["email"], "name": r.get("name", "")} for r in recipients],
        }
    )
    return stack.sqs_event("SendQueue", [{"MessageId": message_id, "ReceiptHandle": "rh", "Body": body}])


def published(stack, n=20, **kwargs):
    readers = people(n, **kwargs)
    add_subscribers(stack, readers)
    publish(stack, issue_doc())
    return readers


def ledger_status(stack, address, issue_id="2015-07"):
    item = ledger.get(boto3.client("dynamodb", region_name="us-east-1"), stack.ref("SendsTable"), issue_id, address)
    return item and item["status"]


def assert_each_once(expected):
    got = collections.Counter(mailed())
    assert {a: c for a, c in got.items() if c > 1} == {}, "someone was mailed twice"
    assert sorted(got) == sorted(expected)


def test_whole_list_exactly_once(stack):
    readers = published(stack, 120)
    add_subscribers(stack, people(7, domain="gone.example.com", status="unsubscribed"))
    runs = deliver(stack)
    assert_each_once(r["email"] for r in readers)
    record = issue_record(stack, "2015-07")
    assert (record["queued"], record["sent"]) == (120, 120)
    assert runs["send"]["failures"] == 0
    assert record["status"] == "sent" and record["sent_at"]  # every queued recipient handled


def test_an_issue_is_sent_only_when_every_segment_and_every_batch_is_done(stack):
    from newsletter.store import issues

    readers = published(stack, 10)
    stack.poll("FanoutFunction")
    record = issue_record(stack, "2015-07")
    assert record["segments_done"] == 16 and record["status"] == "sending"  # queued, nothing sent yet
    stack.invoke("SendFunction", send_event(stack, readers[:4]))
    assert issue_record(stack, "2015-07")["status"] == "sending"  # 4 of 10
    assert not issues.finished({**record, "sent": 9})
    assert issues.finished({**record, "sent": 7, "skipped": 1, "rejected": 1, "uncertain": 1})
    assert not issues.finished({**record, "sent": 10, "segments_done": 15})  # a segment still fanning out
    stack.poll("SendFunction")
    assert issue_record(stack, "2015-07")["status"] == "sent"


def test_a_test_send_reaches_its_named_non_subscribers_but_never_a_suppressed_address(stack):
    from newsletter.store import issues, suppressions

    published(stack, 2)
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    table = stack.ref("IssuesTable")
    for issue_id, test in (("2015-07-test-1", True), ("2015-07-fake", False)):
        issues.create_issue(
            ddb,
            table,
            {
                "issue_id": issue_id,
                "list_id": "infomail",
                "status": "sending",
                "test": test,
                "test_recipients": ["editor@example.org", "blocked@example.org"],
            },
        )
        key = issue_record(stack, "2015-07")["prepared_key"]
        prepared = boto3.client("s3").get_object(Bucket=stack.bucket, Key=key)["Body"].read()
        boto3.client("s3").put_object(
            Bucket=stack.bucket,
            Key=f"rendered/{issue_id}/message.json",
            Body=prepared.replace(b'"2015-07"', f'"{issue_id}"'.encode()),
        )
    suppressions.suppress(ddb, stack.ref("SuppressionsTable"), "blocked@example.org", "bounce", "now")
    outsiders = [{"email": "editor@example.org"}, {"email": "blocked@example.org"}, {"email": "stranger@example.org"}]
    stack.invoke("SendFunction", send_event(stack, outsiders, issue_id="2015-07-test-1"))
    assert mailed() == ["editor@example.org"]  # named on the test's record, and not suppressed
    # Without the test mark on its record, the same names are just non-subscribers.
    stack.invoke("SendFunction", send_event(stack, outsiders, issue_id="2015-07-fake", message_id="m-2"))
    assert mailed() == ["editor@example.org"]
    assert issue_record(stack, "2015-07-fake")["skipped"] == 3


def test_redelivered_batch_sends_nobody_twice(stack):
    readers = published(stack, 10)
    event = send_event(stack, readers)
    first = stack.invoke("SendFunction", event)
    second = stack.invoke("SendFunction", event)  # SQS at-least-once: the same message again
    assert first == second == {"batchItemFailures": []}
    assert_each_once(r["email"] for r in readers)
    assert issue_record(stack, "2015-07")["sent"] == 10


def test_duplicated_fanout_sends_nobody_twice(stack):
    readers = published(stack, 40)
    deliver(stack)
    # The whole fan-out delivered again (a replayed segment message).
    from newsletter.publish import start_fanout

    start_fanout(boto3.client("sqs", region_name="us-east-1"), stack.ref("FanoutQueue"), "2015-07", "infomail")
    deliver(stack)
    assert_each_once(r["email"] for r in readers)
    assert issue_record(stack, "2015-07")["queued"] == 40  # pages are counted once


def queue_batch(stack, recipients, batch_id="00-000000-00"):
    """A recipient batch on the send queue, as the fan-out writes it."""
    from newsletter.sending import Batch, Recipient

    batch = Batch("2015-07", "infomail", batch_id, tuple(Recipient(r["email"], r.get("name", "")) for r in recipients))
    boto3.client("sqs", region_name="us-east-1").send_message(
        QueueUrl=stack.ref("SendQueue"), MessageBody=batch.to_message()
    )


def test_an_instance_that_dies_before_the_ses_call_leaves_that_reader_uncertain_and_the_rest_sent(stack, ses_faults):
    """The process dies between claiming the 6th reader and calling SES. Lambda delivers the batch
    again after its visibility timeout; by then the claim's invocation is certainly over: the
    reader is recorded uncertain (SES may or may not have taken it: never resent), the others are sent."""
    from devstack.faults import Crash

    readers = published(stack, 10)
    ses_faults.rule = lambda n, address: Crash("instance died") if n == 6 else None
    queue_batch(stack, readers)
    runs = stack.poll("SendFunction")
    assert runs["invocations"] == 2 and runs["failures"] == 1
    stack.run()  # and the issue's fan-out, which queues the same readers again
    assert_each_once(r["email"] for i, r in enumerate(readers) if i != 5)
    assert ledger_status(stack, readers[5]["email"]) == "uncertain"
    record = issue_record(stack, "2015-07")
    assert (record["sent"], record["uncertain"], record["status"]) == (9, 1, "sent")


def test_an_unexpected_error_before_the_ses_request_fails_the_batch_and_its_redelivery_sends_the_rest(
    stack, ses_faults
):
    """Not botocore's error, so the request was never made: the claim goes back, the batch fails
    (no pause: nothing says a retry cannot help), and SQS's redelivery sends the rest, once."""
    readers = published(stack, 10)
    ses_faults.rule = lambda n, address: RuntimeError("something broke") if n == 6 else None
    queue_batch(stack, readers)
    runs = stack.run()
    assert runs["SendFunction"]["failures"] == 1
    assert_each_once(r["email"] for r in readers)
    record = issue_record(stack, "2015-07")
    assert (record["sent"], record.get("uncertain", 0), record["status"]) == (10, 0, "sent")


def test_an_instance_that_dies_after_ses_accepted_never_mails_twice(stack, monkeypatch):
    """The one ambiguous moment: SES took the message, the process died before the ledger knew.
    The redelivery finds the claim abandoned and records the reader uncertain: never mailed twice."""
    from devstack.faults import Crash

    readers = published(stack, 4)
    real = ledger.settle
    calls = {"n": 0}

    def dying_settle(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Crash("container killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(ledger, "settle", dying_settle)
    queue_batch(stack, readers)
    stack.poll("SendFunction")
    stack.run()
    assert_each_once(r["email"] for r in readers)  # all four mailed, once
    assert ledger_status(stack, readers[1]["email"]) == "uncertain"
    record = issue_record(stack, "2015-07")
    assert (record["sent"], record["uncertain"], record["status"]) == (3, 1, "sent")


def test_throttling_on_a_share_of_calls_loses_and_duplicates_nothing(stack, ses_faults):
    readers = published(stack, 150)
    ses_faults.throttle_share(0.3)
    runs = deliver(stack)
    assert ses_faults.raised.count("ClientError") > 20 and runs["send"]["failures"] == 0
    assert_each_once(r["email"] for r in readers)
    record = issue_record(stack, "2015-07")
    assert record["sent"] == 150 and "rejected" not in record
    assert queue_depth(stack, "SendQueue") == 0


@pytest.mark.parametrize(
    "code", ["ThrottlingException", "LimitExceededException", "SendingPausedException", "AccountSuspendedException"]
)
def test_throttled_or_paused_batches_are_requeued_and_the_rest_fails_fast(stack, ses_faults, code):
    from newsletter.sending import THROTTLE_RETRIES
    from newsletter.store.ses import THROTTLE_CODES as THROTTLED

    readers = published(stack, 4)
    ses_faults.rule = lambda n, address: client_error(code)
    records = (
        send_event(stack, readers[:2], message_id="a")["Records"]
        + send_event(stack, readers[2:], message_id="b")["Records"]
    )
    result = stack.invoke("SendFunction", {"Records": records})
    # Both batches are back on the queue as new (delayed) messages, not failures heading for the DLQ.
    assert result == {"batchItemFailures": []}
    assert queue_depth(stack, "SendQueue") == 2
    # Only the first recipient was tried (with brief in-place retries when throttled).
    assert ses_faults.calls == (1 + THROTTLE_RETRIES if code in THROTTLED else 1)
    assert all(ledger_status(stack, r["email"]) is None for r in readers)  # claims released
    ses_faults.rule = lambda n, address: None
    stack.poll("SendFunction")
    assert_each_once(r["email"] for r in readers)


def test_permanent_rejection_is_recorded_and_the_rest_is_sent(stack, ses_faults):
    readers = published(stack, 6)
    bad = readers[2]["email"]
    ses_faults.rule = lambda n, address: client_error("MessageRejected") if address == bad else None
    event = send_event(stack, readers)
    assert stack.invoke("SendFunction", event) == {"batchItemFailures": []}  # not retried
    assert ledger_status(stack, bad) == "rejected"
    stack.invoke("SendFunction", event)
    assert ses_faults.raised == ["ClientError"]  # the rejected address was not tried again
    assert_each_once(r["email"] for r in readers if r["email"] != bad)
    assert issue_record(stack, "2015-07")["rejected"] == 1


@pytest.mark.parametrize(
    "message",
    [
        "Email address is not verified. The following identities failed the check in region "
        "US-EAST-1: news@news.example.org",
        "User 'arn:aws:iam::123456789012:user/x' is not authorized to send from 'news.example.org'",
    ],
)
def test_a_refused_sender_pauses_the_issue_instead_of_rejecting_everyone(stack, ses_faults, message):
    from botocore.exceptions import ClientError

    from newsletter import lifecycle

    readers = published(stack, 3)
    refused = ClientError({"Error": {"Code": "MessageRejected", "Message": message}}, "SendEmail")
    ses_faults.rule = lambda n, address: refused
    assert stack.invoke("SendFunction", send_event(stack, readers)) == {"batchItemFailures": []}
    assert ses_faults.calls == 1 and queue_depth(stack, "SendQueue") == 1  # requeued, the rest not tried
    assert all(ledger_status(stack, r["email"]) is None for r in readers)
    record = issue_record(stack, "2015-07")
    assert record["status"] == "paused" and "refused the sender" in record["paused_reason"]
    assert "rejected" not in record
    ses_faults.rule = lambda n, address: None  # the operator verified the identity, and resumes
    lifecycle.resume_issue(boto3.client("dynamodb", region_name="us-east-1"), stack.ref("IssuesTable"), "2015-07")
    stack.poll("SendFunction")
    assert_each_once(r["email"] for r in readers)


def test_a_used_up_quota_holds_the_batch_back_without_pausing(stack, ses_faults):
    from botocore.exceptions import ClientError

    readers = published(stack, 3)
    refused = ClientError(
        {"Error": {"Code": "MessageRejected", "Message": "Daily message quota exceeded."}}, "SendEmail"
    )
    ses_faults.rule = lambda n, address: refused if n == 1 else None
    assert stack.invoke("SendFunction", send_event(stack, readers)) == {"batchItemFailures": []}
    assert issue_record(stack, "2015-07")["status"] == "sending"
    stack.poll("SendFunction")  # a quarter of an hour later (the local clock skips it)
    assert_each_once(r["email"] for r in readers)


def test_a_sandbox_refusal_naming_only_the_recipient_rejects_that_recipient(stack, ses_faults):
    from botocore.exceptions import ClientError

    readers = published(stack, 3)
    bad = readers[1]["email"]
    text = f"Email address is not verified. The following identities failed the check in region US-EAST-1: {bad}"
    ses_faults.rule = lambda n, address: (
        ClientError({"Error": {"Code": "MessageRejected", "Message": text}}, "SendEmail") if address == bad else None
    )
    stack.invoke("SendFunction", send_event(stack, readers))
    assert ledger_status(stack, bad) == "rejected"
    assert sorted(mailed()) == sorted(r["email"] for r in readers if r["email"] != bad)


def test_unknown_outcome_is_never_resent(stack, ses_faults):
    from botocore.exceptions import ReadTimeoutError

    readers = published(stack, 3)
    ses_faults.rule = lambda n, address: ReadTimeoutError(endpoint_url="https://email") if n == 1 else None
    event = send_event(stack, readers)
    stack.invoke("SendFunction", event)
    stack.invoke("SendFunction", event)
    assert ledger_status(stack, readers[0]["email"]) == "uncertain"
    assert sorted(mailed()) == sorted(r["email"] for r in readers[1:])
    assert issue_record(stack, "2015-07")["uncertain"] == 1


def test_unsubscribed_or_suppressed_after_fanout_is_not_sent(stack):
    from newsletter.store import subscribers, suppressions

    readers = published(stack, 5)
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    subscribers.set_status(ddb, stack.ref("SubscribersTable"), "infomail", readers[0]["email"], "unsubscribed", "now")
    suppressions.suppress(ddb, stack.ref("SuppressionsTable"), readers[1]["email"], "bounce", "now")
    stack.invoke("SendFunction", send_event(stack, readers))
    assert sorted(mailed()) == sorted(r["email"] for r in readers[2:])
    assert ledger_status(stack, readers[0]["email"]) == "skipped"
    assert issue_record(stack, "2015-07")["skipped"] == 2


def test_paused_issue_waits_and_cancelled_issue_sends_nothing(stack):
    from newsletter.store.issues import update_issue

    readers = published(stack, 3)
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    update_issue(ddb, stack.ref("IssuesTable"), "2015-07", status="paused")
    assert stack.invoke("SendFunction", send_event(stack, readers)) == {"batchItemFailures": []}
    assert mailed() == [] and queue_depth(stack, "SendQueue") == 1  # parked on the queue, delayed
    update_issue(ddb, stack.ref("IssuesTable"), "2015-07", status="cancelled")
    import newsletter.handlers.send as send_handler

    send_handler.sender.reset()  # a new container, or 10 seconds later
    stack.poll("SendFunction")
    assert mailed() == [] and queue_depth(stack, "SendQueue") == 0


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        json.dumps({"issue_id": "2015-07", "list_id": "infomail", "recipients": []}),
        json.dumps({"issue_id": "2015-07", "list_id": "infomail", "recipients": [{"name": "no address"}]}),
        json.dumps({"issue_id": "2015-07", "list_id": "infomail", "recipients": [{"email": "no-at-sign"}]}),
    ],
)
def test_malformed_batches_are_dropped_with_an_error_and_send_nothing(stack, body, capsys):
    published(stack, 1)
    event = stack.sqs_event("SendQueue", [{"MessageId": "bad", "ReceiptHandle": "rh", "Body": body}])
    assert stack.invoke("SendFunction", event) == {"batchItemFailures": []}
    assert "malformed send batch dropped" in capsys.readouterr().out
    assert mailed() == []


def test_messages_carry_configuration_set_tags_and_a_verifiable_token(stack, ses_faults):
    import email
    import email.policy

    from devstack.stack import sent_messages
    from newsletter import tokens

    seen = []
    ses_faults.rule = lambda n, address: None
    readers = published(stack, 1)
    real_wrap = ses_faults.wrap

    def spy_wrap(real):
        inner = real_wrap(real)

        class Spy:
            def __getattr__(self, name):
                return getattr(inner, name)

            def send_email(self, **kwargs):
                seen.append(kwargs)
                return inner.send_email(**kwargs)

        return Spy()

    ses_faults.wrap = spy_wrap
    stack.invoke("SendFunction", send_event(stack, readers))
    (call,) = seen
    assert call["ConfigurationSetName"] == stack.resolver.resolve({"Ref": "ConfigurationSetName"})
    assert {t["Name"]: t["Value"] for t in call["EmailTags"]} == {"issue": "2015-07", "list": "infomail"}
    msg = email.message_from_string(sent_messages()[0].raw_data, policy=email.policy.default)
    url = msg["List-Unsubscribe"].split("<", 1)[1].split(">", 1)[0]
    assert url.endswith("&issue=2015-07")  # the unsigned hint for per-issue statistics
    token = url.split("token=", 1)[1].split("&", 1)[0]
    assert tokens.verify(SECRET.encode(), token) == ("infomail", readers[0]["email"])


def test_logs_never_carry_an_address(stack, ses_faults, capsys):
    readers = published(stack, 5)
    ses_faults.rule = lambda n, address: client_error("MessageRejected") if n == 2 else None
    deliver(stack)
    out = capsys.readouterr().out
    assert "SES rejected a recipient" in out
    assert not [r["email"] for r in readers if r["email"] in out]


# --- the time budget and the SDK ---------------------------------------------------------------


def test_botocore_never_sends_an_ses_call_again_after_its_answer_was_lost(aws_mock):
    """botocore's standard mode would repeat SendEmail after a read timeout: the SES client makes
    one attempt, and the ambiguous outcome reaches our code (which records it uncertain)."""
    from botocore.exceptions import ReadTimeoutError

    from devstack.stack import sent_messages
    from newsletter import aws

    ses = aws.client("sesv2")
    ses.create_email_identity(EmailIdentity="news.example.org")

    def answer_lost(request=None, **_):
        raise ReadTimeoutError(endpoint_url=request.url)

    ses.meta.events.register_last("before-send", answer_lost)  # after moto (SES) acted
    with pytest.raises(ReadTimeoutError):
        ses.send_email(
            FromEmailAddress="news@news.example.org",
            Destination={"ToAddresses": ["a@example.com"]},
            Content={"Raw": {"Data": b"From: news@news.example.org\r\nSubject: x\r\n\r\nx"}},
        )
    assert len(sent_messages()) == 1


def test_a_batch_keeps_enough_time_for_the_slowest_ses_call_and_ledger_write():
    from devstack import template as tpl
    from newsletter import aws, sending

    assert aws.config_for("sesv2").retries["total_max_attempts"] == 1
    ses, ddb = aws.worst_case_s("sesv2"), aws.worst_case_s("dynamodb")
    assert ses == 8 and ddb == 15  # 1 x (2 + 6) s; 3 x (1 + 3) s plus 1 + 2 s of backoff
    assert sending.SAFETY_MS >= 1000 * (ses + ddb)
    timeout_s = tpl.function_specs(tpl.load())["SendFunction"]["Timeout"]
    assert timeout_s * 1000 - sending.SAFETY_MS >= 30_000, "the send function must keep half a minute to send in"


def test_a_batch_starts_no_send_it_could_not_finish_in_time(stack):
    from newsletter import sending
    from newsletter.handlers.send import sender
    from newsletter.telemetry import logger

    readers = published(stack, 5)
    with stack.environment(stack.functions["SendFunction"]):
        from newsletter.config import send_settings

        deps = sending.Deps(
            ddb=boto3.client("dynamodb"),
            ses=boto3.client("sesv2"),
            settings=send_settings(),
            secret=SECRET.encode(),
            time_left_ms=lambda: sending.SAFETY_MS - 1,
        )
        batch = sending.Batch("2015-07", "infomail", "b", tuple((r["email"], "") for r in readers))
        result = sending.send_batch(
            batch,
            sender.message_template(send_settings(), "2015-07", issue_record(stack, "2015-07")),
            deps,
            sending.Counts(),
            logger,
        )
    assert result.reason == "out of time" and len(result.rest) == 5 and result.delay_s == 0
    assert mailed() == [] and all(ledger_status(stack, r["email"]) is None for r in readers)


def test_a_finished_issue_is_reconciled_with_its_ledger(stack):
    readers = published(stack, 30)
    deliver(stack)
    record = issue_record(stack, "2015-07")
    assert record["status"] == "sent" and record["reconciled_at"]
    assert record["ledger_counts"] == {"sent": 30, "skipped": 0, "rejected": 0, "uncertain": 0, "open": 0}
    assert "counters_corrected" not in record
    assert len(readers) == 30


def test_reconciling_holds_wrong_counters_to_the_ledger(stack, capsys):
    from newsletter import completion
    from newsletter.store import issues
    from newsletter.telemetry import logger

    published(stack, 8)
    deliver(stack)
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    issues.update_issue(ddb, stack.ref("IssuesTable"), "2015-07", sent=7, uncertain=2)  # as a bug might leave them
    result = completion.reconcile(ddb, stack.ref("IssuesTable"), stack.ref("SendsTable"), "2015-07", logger)
    assert result["counters_corrected"] == {"sent": 1, "uncertain": -2}
    record = issue_record(stack, "2015-07")
    assert (record["sent"], record["uncertain"]) == (8, 0)
    assert "differed from the send ledger" in capsys.readouterr().out


def test_a_missing_token_secret_pauses_the_issue_instead_of_failing_for_hours(stack, capsys):
    readers = published(stack, 3)
    name = "/" + stack.param("TokenSecretParameter")
    boto3.client("ssm", region_name="us-east-1").delete_parameter(Name=name)
    assert stack.invoke("SendFunction", send_event(stack, readers)) == {"batchItemFailures": []}
    record = issue_record(stack, "2015-07")
    assert record["status"] == "paused" and "ParameterNotFound" in record["paused_reason"]
    assert queue_depth(stack, "SendQueue") == 1 and mailed() == []  # the batch waits for the resume
    out = capsys.readouterr().out
    assert '"IssuePaused":[1.0]' in out.replace(" ", "")  # what IssuePausedAlarm watches


def test_an_issue_completes_even_when_every_count_s_answer_is_lost(stack, monkeypatch):
    """Each counting transaction goes through but its answer is lost (a read timeout after DynamoDB
    acted). The retry finds everything counted, and must still see that the issue is finished."""
    from botocore.exceptions import ReadTimeoutError

    from newsletter import aws

    readers = published(stack, 12)
    real = aws.client

    def client(service):
        c = real(service)
        if service != "dynamodb":
            return c

        class AnswerLost:
            def __getattr__(self, name):
                return getattr(c, name)

            def transact_write_items(self, **kwargs):
                c.transact_write_items(**kwargs)
                raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

        return AnswerLost()

    client.cache_clear = real.cache_clear
    stack.poll("FanoutFunction")  # every page counted first: the last count is a send batch's
    monkeypatch.setattr(aws, "client", client)
    stack.poll("SendFunction")
    assert_each_once(r["email"] for r in readers)
    record = issue_record(stack, "2015-07")
    assert (record["status"], record["queued"], record["sent"]) == ("sent", 12, 12)
