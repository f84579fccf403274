"""Who got an issue, and resending it to whom it never reached: `newsletter status ISSUE
--recipients STATE` and `newsletter resend ISSUE --not-sent`.

The functions run as Lambda runs them (devstack: the template's SQS semantics, moto in-process,
its virtual clock), with faults as AWS produces them: an instance that dies between claiming a
reader and calling SES, SES refusing an address, a DynamoDB partition answering 500 until the
batch lands in the DLQ. The command works on that stack as on a deployed one, found by its
CloudFormation outputs; then the functions run again, and every reader must have had exactly one
message overall (moto's SES keeps each one), uncertain readers none.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
from collections import Counter

import boto3
import pytest
from conftest import add_subscribers, client_error, issue_doc, mailed, people, publish, queue_depth
from typer.testing import CliRunner

from devstack import ses_feedback
from devstack.clock import installed
from devstack.faults import Crash
from newsletter.store import issues, subscribers, suppressions

ISSUE, LIST = "2015-07", "infomail"
runner = CliRunner()


@pytest.fixture
def cli(stack):
    """The command against `stack` as a deployed stack (found by its outputs), at the stack's time."""
    from newsletter_cli import app as module
    from newsletter_cli.stack import OUTPUTS

    outputs = {out: {"Value": stack.ref(logical)} for logical, out in OUTPUTS.items()}
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName="newsletter",
        TemplateBody=json.dumps(
            {"Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}, "Outputs": outputs}
        ),
    )
    module.console.width = module.err.width = 250

    def run(*args: str):
        with installed(stack.clock):
            return runner.invoke(
                module.app, ["--stack", "newsletter", "--region", "us-east-1", *args], catch_exceptions=False
            )

    return run


def export(cli, state: str, issue: str = ISSUE) -> list[dict]:
    result = cli("status", issue, "--recipients", state)
    assert result.exit_code == 0, result.output
    assert "@" not in result.stderr  # the count goes to standard error; addresses only to the CSV
    found = list(csv.DictReader(io.StringIO(result.stdout)))
    assert all(r["state"] == state for r in found)
    return found


def emails(rows: list[dict]) -> set[str]:
    return {r["email"] for r in rows}


def ledger_states(stack, issue: str = ISSUE) -> dict[str, str]:
    return {i["email"]: i["status"] for i in ses_feedback.ledger_items(stack, issue)}


def dynamodb():
    return boto3.client("dynamodb", region_name="us-east-1")


# --- a send cancelled half way ------------------------------------------------------------------------


def cancelled_half_way(stack, cli, ses_faults) -> dict:
    """80 readers (one suppressed and three unsubscribed before the issue: never queued). The first
    send invocation takes ten batches: SES refuses its second reader for good, and the instance dies
    as it is about to call SES for the fourth (that claim is left open, its outcome unknown). The
    second invocation sends the six other batches. Then the issue is cancelled: the ten batches come
    back and are dropped. SES then reports deliveries, a hard and a soft bounce, a complaint."""
    readers = people(80)
    add_subscribers(stack, readers + people(3, domain="gone.example.com", status="unsubscribed"))
    suppressions.suppress(dynamodb(), stack.ref("SuppressionsTable"), readers[79]["email"], "bounce", "2015-06-01")
    asked: list[str] = []

    def rule(n, address):
        asked.append(address)
        if n == 2:
            return client_error("MessageRejected")
        if n == 4:
            return Crash("the instance died before calling SES")
        return None

    ses_faults.rule = rule
    publish(stack, issue_doc())
    stack.poll("FanoutFunction")
    runs = stack.poll("SendFunction", max_invocations=2)
    assert runs["failures"] == 10  # the invocation that died: all its batches come back
    assert cli("cancel", ISSUE, "--yes").exit_code == 0
    stack.run()
    assert queue_depth(stack, "SendQueue") == 0
    assert issues.get_issue(dynamodb(), stack.ref("IssuesTable"), ISSUE)["status"] == "cancelled"

    sent = sorted(a for a, s in ledger_states(stack).items() if s == "sent")
    notes = []
    for item in ses_feedback.sent_ledger(stack, ISSUE):
        kind = {sent[0]: "Bounce", sent[1]: "Soft"}.get(item["email"], "Delivery")
        tags = {"issue_id": ISSUE, "list_id": LIST}
        if kind == "Soft":
            notes.append(
                ses_feedback.notification(
                    "Bounce", item["message_id"], [item["email"]], bounce_type="Transient", **tags
                )
            )
        else:
            notes.append(ses_feedback.notification(kind, item["message_id"], [item["email"]], **tags))
        if item["email"] == sent[2]:
            notes.append(ses_feedback.notification("Complaint", item["message_id"], [item["email"]], **tags))
    ses_feedback.deliver(stack, notes)
    return {
        "readers": [r["email"] for r in readers],
        "queued": [r["email"] for r in readers[:79]],
        "sent": sent,
        "rejected": asked[1],
        "uncertain": asked[3],
        "hard": sent[0],
        "soft": sent[1],
        "complained": sent[2],
    }


def test_each_state_of_a_cancelled_issue_is_exported_as_the_ledger_and_ses_say(stack, cli, ses_faults):
    run = cancelled_half_way(stack, cli, ses_faults)
    assert len(run["sent"]) >= 20 and Counter(mailed()) == Counter(run["sent"])

    sent = export(cli, "sent")
    assert sorted(emails(sent)) == run["sent"]
    first = next(r for r in sent if r["email"] == run["sent"][0])
    number = int(run["sent"][0][len("reader") : run["sent"][0].index("@")])
    assert (first["name"], first["language"]) == (f"Reader {number}", "en")
    assert first["when"].endswith("Z") and first["detail"].startswith("SES message ")

    rejected = export(cli, "rejected")
    assert emails(rejected) == {run["rejected"]} and "MessageRejected" in rejected[0]["detail"]
    uncertain = export(cli, "uncertain")
    assert emails(uncertain) == {run["uncertain"]}
    assert uncertain[0]["detail"] == "its attempt ended holding the claim"
    assert run["uncertain"] not in mailed()

    delivered = export(cli, "delivered")
    assert emails(delivered) == set(run["sent"]) - {run["hard"], run["soft"]}
    bounced = {r["email"]: r["detail"] for r in export(cli, "bounced")}
    assert bounced == {run["hard"]: "hard (Permanent/General)", run["soft"]: "soft (Transient/General)"}
    assert emails(export(cli, "complained")) == {run["complained"]}
    assert export(cli, "skipped") == []


def test_resending_a_cancelled_issue_twice_mails_each_queued_reader_once(stack, cli, ses_faults):
    run = cancelled_half_way(stack, cli, ses_faults)
    held = ledger_states(stack)
    not_sent = [a for a in run["queued"] if a not in held]
    assert len(not_sent) >= 20
    # Since the cancel: one of them unsubscribed, one was suppressed; a new reader joined the list.
    left, blocked = not_sent[0], not_sent[1]
    ddb = dynamodb()
    subscribers.set_status(ddb, stack.ref("SubscribersTable"), LIST, left, "unsubscribed", "2015-07-02T00:00:00Z")
    suppressions.suppress(ddb, stack.ref("SuppressionsTable"), blocked, "complaint", "2015-07-02T00:00:00Z")
    add_subscribers(stack, people(2, domain="late.example.com"))

    found = {r["email"]: r["detail"] for r in export(cli, "not-sent")}
    assert sorted(found) == sorted(not_sent)  # never the readers who were not queued, nor the uncertain one
    assert (found[left], found[blocked]) == ("unsubscribed since", "suppressed since")

    first = cli("resend", ISSUE, "--not-sent")
    assert first.exit_code == 0, first.output
    assert f"{ISSUE} was cancelled: it is sending again" in first.output
    # And, to be recorded and counted, never mailed: the abandoned claim, and the readers whose
    # outcome the dying invocation wrote but never counted (the first, second and third asked).
    assert f"{len(not_sent) + 4} reader(s) queued again" in first.output
    assert f"{len(not_sent) - 2} to mail" in first.output
    assert "1 unsubscribed since" in first.output and "1 suppressed since" in first.output
    assert "1 whose send died under way" in first.output and "3 handled but never counted" in first.output
    stack.run()

    copies = Counter(mailed())
    assert max(copies.values()) == 1
    assert set(copies) == set(run["queued"]) - {run["rejected"], run["uncertain"], left, blocked}
    states = ledger_states(stack)
    assert (states[run["uncertain"]], states[left], states[blocked]) == ("uncertain", "skipped", "skipped")
    record = issues.get_issue(ddb, stack.ref("IssuesTable"), ISSUE)
    assert record["status"] == "sent" and record["ledger_counts"]["open"] == 0
    assert record["queued"] == 79 == sum(int(record.get(k) or 0) for k in ("sent", "skipped", "rejected", "uncertain"))
    assert export(cli, "not-sent") == []
    assert emails(export(cli, "skipped")) == {left, blocked}
    assert emails(export(cli, "uncertain")) == {run["uncertain"]}

    again = cli("resend", ISSUE, "--not-sent")
    assert again.exit_code == 0 and "nobody to resend to" in again.output
    stack.run()
    assert Counter(mailed()) == copies


# --- a batch in the DLQ ------------------------------------------------------------------------------


@pytest.fixture
def failing_partition(stack, monkeypatch):
    """DynamoDB answers 500 to every BatchGetItem that asks for one reader's subscriber record
    (a partition having a bad hour), for the functions only; `addresses` says whose."""
    from botocore.exceptions import ClientError

    from devstack.proxy import intercept
    from newsletter import aws

    real = aws.client
    addresses: set[str] = set()

    def on_call(name, method, args, kwargs):
        if name == "batch_get_item":
            keys = [k.get("email", {}).get("S") for r in kwargs["RequestItems"].values() for k in r["Keys"]]
            if stack.ref("SubscribersTable") in kwargs["RequestItems"] and addresses.intersection(keys):
                raise ClientError(
                    {"Error": {"Code": "InternalServerError"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                    "BatchGetItem",
                )
        return method(*args, **kwargs)

    def client(service):
        c = real(service)
        return intercept(c, on_call) if service == "dynamodb" else c

    client.cache_clear = real.cache_clear
    monkeypatch.setattr(aws, "client", client)
    return addresses


def dead_batch(stack) -> list[str]:
    """The readers of the one batch in SendDLQ (looked at, left where it is)."""
    from newsletter.queue_messages import parse_batch

    with installed(stack.clock):  # moto's SQS keeps the stack's time
        got = boto3.client("sqs", region_name="us-east-1").receive_message(
            QueueUrl=stack.ref("SendDLQ"), MaxNumberOfMessages=10, VisibilityTimeout=0
        )["Messages"]
    assert len(got) == 1
    return [r.address for r in parse_batch(got[0]["Body"]).recipients]


def test_a_batch_in_the_dlq_is_resent_and_its_redrive_then_mails_nobody_twice(stack, cli, failing_partition):
    readers = [r["email"] for r in people(40)]
    add_subscribers(stack, people(40))
    failing_partition.add(readers[0])
    publish(stack, issue_doc())
    stack.run()
    assert queue_depth(stack, "SendDLQ") == 1
    lost = dead_batch(stack)
    assert readers[0] in lost and Counter(mailed()) == Counter(set(readers) - set(lost))
    assert issues.get_issue(dynamodb(), stack.ref("IssuesTable"), ISSUE)["status"] == "sending"  # stuck
    assert sorted(emails(export(cli, "not-sent"))) == sorted(lost)

    failing_partition.clear()  # the cause is gone
    resent = cli("resend", ISSUE, "--not-sent")
    assert resent.exit_code == 0, resent.output
    assert f"{len(lost)} reader(s) queued again" in resent.output
    assert "SendDLQ holds 1 message(s): redriving them later mails nobody twice" in resent.output
    stack.run()
    assert Counter(mailed()) == Counter(readers)
    record = issues.get_issue(dynamodb(), stack.ref("IssuesTable"), ISSUE)
    assert (record["status"], record["sent"], record["queued"]) == ("sent", 40, 40)

    # The dead letter redriven after all (what SQS's move task does): the ledger finds them sent.
    sqs = boto3.client("sqs", region_name="us-east-1")
    with installed(stack.clock):
        message = sqs.receive_message(QueueUrl=stack.ref("SendDLQ"))["Messages"][0]
        sqs.send_message(QueueUrl=stack.ref("SendQueue"), MessageBody=message["Body"])
        sqs.delete_message(QueueUrl=stack.ref("SendDLQ"), ReceiptHandle=message["ReceiptHandle"])
    stack.run()
    assert Counter(mailed()) == Counter(readers)
    assert issues.get_issue(dynamodb(), stack.ref("IssuesTable"), ISSUE)["sent"] == 40
    assert "nobody to resend to" in cli("resend", ISSUE, "--not-sent").output


# --- racing the send -----------------------------------------------------------------------------------


def test_a_resend_racing_the_send_itself_mails_nobody_twice(stack, cli):
    readers = [r["email"] for r in people(30)]
    add_subscribers(stack, people(30))
    publish(stack, issue_doc())
    stack.poll("FanoutFunction")  # every batch queued, none sent yet
    refused = cli("resend", ISSUE, "--not-sent")
    assert refused.exit_code == 2
    assert "it may still be sending" in refused.output and "on the send queue" in refused.output
    assert "--force" in refused.output

    for _ in range(2):  # twice, before anything is sent
        forced = cli("resend", ISSUE, "--not-sent", "--force")
        assert forced.exit_code == 0 and "30 reader(s) queued again" in forced.output
    stack.run()
    assert Counter(mailed()) == Counter(readers)
    record = issues.get_issue(dynamodb(), stack.ref("IssuesTable"), ISSUE)
    assert (record["status"], record["queued"], record["sent"], record["ledger_counts"]["sent"]) == (
        "sent",
        30,
        30,
        30,
    )


# --- what it refuses ----------------------------------------------------------------------------------


def test_a_paused_issue_is_resumed_not_resent(stack, cli):
    add_subscribers(stack, people(5))
    publish(stack, issue_doc())
    assert cli("pause", ISSUE).exit_code == 0
    refused = cli("resend", ISSUE, "--not-sent")
    assert refused.exit_code == 2 and "resume it and they are sent" in refused.output
    assert mailed() == []


def test_an_issue_whose_fan_out_named_nobody_cannot_tell_who_was_not_sent(stack, cli):
    """An issue fanned out before page markers named their readers: `not-sent` cannot be told from
    "never queued", and the command says so rather than guess; the other states still export."""
    add_subscribers(stack, people(12))
    publish(stack, issue_doc())
    stack.run()
    ddb = dynamodb()
    pages = ddb.query(
        TableName=stack.ref("IssuesTable"),
        KeyConditionExpression="issue_id = :i AND begins_with(sk, :p)",
        ExpressionAttributeValues={":i": {"S": ISSUE}, ":p": {"S": "page#"}},
    )["Items"]
    for page in pages:
        ddb.update_item(
            TableName=stack.ref("IssuesTable"),
            Key={"issue_id": page["issue_id"], "sk": page["sk"]},
            UpdateExpression="REMOVE readers",
        )
    for args in (("status", ISSUE, "--recipients", "not-sent"), ("resend", ISSUE, "--not-sent")):
        result = cli(*args)
        assert result.exit_code == 2 and "did not record whom it queued" in result.output
        assert "email,name" not in result.stdout  # not even the CSV's header
    assert queue_depth(stack, "SendQueue") == 0
    assert len(export(cli, "sent")) == 12


def test_bad_requests_get_clear_messages(stack, cli, tmp_path):
    add_subscribers(stack, people(3))
    publish(stack, issue_doc())
    stack.run()
    unknown = cli("status", ISSUE, "--recipients", "lost")
    assert unknown.exit_code == 2 and "one of sent, delivered, bounced" in unknown.output
    assert cli("status", "--recipients", "sent").exit_code == 2  # which issue?
    assert "no issue 'nope'" in cli("status", "nope", "--recipients", "sent").output
    assert "--not-sent" in cli("resend", ISSUE).output
    out = tmp_path / "sent.csv"
    written = cli("status", ISSUE, "--recipients", "sent", "--out", str(out))
    assert written.exit_code == 0 and f"3 reader(s) of {ISSUE} sent written to {out}" in written.output
    assert "@" not in written.output
    assert len(list(csv.DictReader(out.open(encoding="utf-8")))) == 3


# --- not-sent in constant memory ----------------------------------------------------------------------


def test_a_shards_pages_are_read_as_its_readers_are_walked_a_few_at_a_time():
    from newsletter_cli.recipients import QueuedPages

    pulled = []

    def pages():
        for n in range(100):
            pulled.append(n)
            yield frozenset() if n % 3 == 1 else frozenset({f"{n:02d}-a".encode(), f"{n:02d}-b".encode()})

    queued = QueuedPages(pages(), lookahead=4)
    assert len(pulled) <= 6  # four pages with readers held (and the empty ones between them)
    assert b"00-a" in queued and b"00-b" in queued and b"02-a" in queued
    assert b"01-a" not in queued  # never queued: no page names it
    assert b"00-b" not in queued  # an earlier page, retired once a later one matched
    for n in range(3, 100):
        if n % 3 != 1:
            assert f"{n:02d}-b".encode() in queued
            assert len(pulled) <= n + 7
    assert b"zz" not in queued and pulled == list(range(100))


# --- the local stack ----------------------------------------------------------------------------------


def local_cli(*args: str):
    from devstack.stack import new_deployment
    from newsletter_cli import app as module

    new_deployment()  # each command is a process of its own
    module.console.width = module.err.width = 250
    return runner.invoke(module.app, ["--local", *args], catch_exceptions=False)


def local_issue(tmp_path, issue_id: str, list_id: str, addresses: list[str]) -> str:
    csv_file = tmp_path / f"{list_id}.csv"
    csv_file.write_text(
        "email,name,language,status\n" + "".join(f"{a},Reader {n},en,active\n" for n, a in enumerate(addresses)),
        encoding="utf-8",
    )
    assert local_cli("subscribers", "import", str(csv_file), "--list", list_id).exit_code == 0
    doc = tmp_path / f"{issue_id}.json"
    doc.write_text(json.dumps(issue_doc(issue_id, list=list_id)), encoding="utf-8")
    return str(doc)


def test_the_local_stack_exports_what_the_ses_simulator_answered(local, tmp_path):
    simulator = ["success", "bounce", "complaint"]
    addresses = [f"{s}@simulator.amazonses.com" for s in simulator] + ["plain@example.com"]
    assert local_cli("publish", local_issue(tmp_path, "loc-1", "locals", addresses)).exit_code == 0

    def local_export(state):
        result = local_cli("status", "loc-1", "--recipients", state)
        assert result.exit_code == 0, result.output
        return {r["email"]: r for r in csv.DictReader(io.StringIO(result.stdout))}

    assert sorted(local_export("sent")) == sorted(addresses)
    assert sorted(local_export("delivered")) == ["complaint@simulator.amazonses.com", "success@simulator.amazonses.com"]
    assert local_export("bounced")["bounce@simulator.amazonses.com"]["detail"] == "hard (Permanent/General)"
    assert list(local_export("complained")) == ["complaint@simulator.amazonses.com"]
    assert local_export("sent")["plain@example.com"]["name"] == "Reader 3"


def test_a_local_publish_cancelled_half_way_is_resent_once(local, tmp_path, monkeypatch):
    from devstack.stack import LocalStack

    addresses = [f"half{n:03d}@example.com" for n in range(60)]
    doc = local_issue(tmp_path, "loc-2", "halves", addresses)
    real_poll, sends = LocalStack.poll, {"n": 0}

    def poll(self, logical_id, **kwargs):
        if logical_id == "SendFunction":
            sends["n"] += 1
            if sends["n"] == 2:  # Ctrl-C after the first send invocation
                raise KeyboardInterrupt
        return real_poll(self, logical_id, **kwargs)

    monkeypatch.setattr(LocalStack, "poll", poll)
    assert local_cli("publish", doc).exit_code == 130
    monkeypatch.setattr(LocalStack, "poll", real_poll)
    assert local_cli("cancel", "loc-2", "--yes").exit_code == 0
    not_sent = local_cli("status", "loc-2", "--recipients", "not-sent")
    waiting = {r["email"] for r in csv.DictReader(io.StringIO(not_sent.stdout))}
    assert 0 < len(waiting) < 60

    refused = local_cli("resend", "loc-2", "--not-sent")
    assert refused.exit_code == 2 and "on the send queue" in refused.output  # the cancelled batches, not yet dropped
    forced = local_cli("resend", "loc-2", "--not-sent", "--force")
    assert forced.exit_code == 0, forced.output
    assert f"{len(waiting)} reader(s) queued again" in forced.output and "it is sending again" in forced.output
    from newsletter_cli.publishing import local_outbox

    to = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["To"].addresses[0].addr_spec
        for p in local_outbox("loc-2", 60)
    ]
    assert sorted(to) == sorted(addresses)  # each once: the old batches and the new ones, whichever came first
    assert "outbox:" in forced.output and "still" not in forced.output  # sent, not still sending


@pytest.mark.parametrize(
    "record, waiting, why",
    [
        ({"status": "scheduled"}, {}, "scheduled and nothing of it is sent yet"),
        ({"status": "rendering"}, {}, "still rendering"),
        ({"status": "paused"}, {}, "resume it"),
        ({"status": "sent", "test": True}, {}, "test send"),
        ({"status": "sending"}, {"send queue": 3}, "--force"),
        ({"status": "cancelled"}, {"send queue": 0, "fan-out queue": 0}, None),
    ],
)
def test_a_resend_is_refused_where_it_could_only_disturb(record, waiting, why):
    from newsletter_cli import recipients as who

    got = who.refusal({"issue_id": "i", **record}, waiting)
    assert (got is None) if why is None else (why in got)


def test_only_a_resend_takes_an_issue_out_of_cancelled(stack):
    from newsletter import lifecycle

    ddb, table = boto3.client("dynamodb", region_name="us-east-1"), stack.ref("IssuesTable")
    issues.create_issue(ddb, table, {"issue_id": "r-1", "list_id": LIST, "status": "cancelled", "sent": 40})
    assert not lifecycle.move(ddb, table, "r-1", lifecycle.SENDING)  # no implicit way back from a cancel
    assert not lifecycle.resume_issue(ddb, table, "r-1")
    record = issues.get_issue(ddb, table, "r-1")
    assert lifecycle.reopen_issue(ddb, table, record, at="2026-12-01T18:00:00Z")
    now = issues.get_issue(ddb, table, "r-1")
    assert now["status"] == "sending" and now["resent_at"] == "2026-12-01T18:00:00Z"
    assert now["pause_baseline"]["sent"] == 40  # the automatic pause judges what is sent from here on
    assert not lifecycle.reopen_issue(ddb, table, record)  # not cancelled any more
