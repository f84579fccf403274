"""What the commands do, apart from printing: publish, test sends, statistics, and (locally)
running the functions the way Lambda would.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from newsletter.issue import Issue, parse_document
from newsletter.store import issues, lists

from .stack import CliError, Target

ISSUE_PREFIX = "issues/"
MAX_TEST_RECIPIENTS = 50  # one send batch


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_issue(path: Path, max_bytes: int = 512 * 1024) -> tuple[Issue, bytes]:
    """The document, validated as the publish function validates it (InvalidIssue if not)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_document(raw, max_bytes=max_bytes), raw


def require_list(target: Target, list_id: str) -> dict:
    found = lists.get_list(target.client("dynamodb"), target.ref("ListsTable"), list_id)
    if found is None:
        raise CliError(
            f"list {list_id!r} does not exist on {target.kind} {target.name!r}; create it by importing its "
            f"subscribers: newsletter subscribers import FILE.csv --list {list_id} --list-name NAME"
        )
    return found


def counts(record: dict | None) -> dict:
    """An issue record's statistics, with `failed` (rejected, uncertain) and `handled`."""
    record = record or {}
    c = {k: int(record.get(k) or 0) for k in issues.COUNTERS}
    c["bounced"] = c["bounced_hard"] + c["bounced_soft"]
    c["failed"] = c["rejected"] + c["uncertain"]
    c["handled"] = c["sent"] + c["skipped"] + c["failed"]
    return c


def get_record(target: Target, issue_id: str) -> dict | None:
    return issues.get_issue(target.client("dynamodb"), target.ref("IssuesTable"), issue_id)


def all_records(target: Target) -> list[dict]:
    from newsletter.store import from_item

    ddb, out, start = target.client("dynamodb"), [], None
    while True:
        kwargs = {"ExclusiveStartKey": start} if start else {}
        resp = ddb.scan(
            TableName=target.ref("IssuesTable"),
            FilterExpression="sk = :issue",
            ExpressionAttributeValues={":issue": {"S": issues.ISSUE}},
            **kwargs,
        )
        out += [from_item(i) for i in resp.get("Items", [])]
        start = resp.get("LastEvaluatedKey")
        if not start:
            return sorted(out, key=lambda r: r.get("accepted_at", ""), reverse=True)


# --- publishing ---------------------------------------------------------------------------------


@dataclass
class Upload:
    key: str
    issue: Issue
    already: dict | None  # the issue's record when this same document was published before


def upload(target: Target, issue: Issue, raw: bytes) -> Upload:
    """Put the document where the publish function picks it up, after the checks it would make."""
    require_list(target, issue.list_id)
    record = get_record(target, issue.issue_id)
    digest = hashlib.sha256(raw).hexdigest()
    if record is not None and record.get("sha256") != digest:
        when = record.get("sent_at") or record.get("fanout_started_at") or record.get("accepted_at", "earlier")
        raise CliError(
            f"issue {issue.issue_id!r} was already published (status {record.get('status')}, {when}) from a "
            "different document; an issue is never sent twice. Give the new issue a new issue_id."
        )
    key = f"{ISSUE_PREFIX}{issue.issue_id}.json"
    if record is not None and record.get("status") != "rendering":
        return Upload(key, issue, record)
    target.client("s3").put_object(
        Bucket=target.ref("NewsletterBucket"), Key=key, Body=raw, ContentType="application/json"
    )
    return Upload(key, issue, None)


def error_report(target: Target, key: str) -> str | None:
    """The publish function's report on this document, if it wrote one."""
    s3 = target.client("s3")
    try:
        return (
            s3.get_object(Bucket=target.ref("NewsletterBucket"), Key=key + ".error.txt")["Body"].read().decode("utf-8")
        )
    except s3.exceptions.NoSuchKey:
        return None


def done(record: dict | None) -> bool:
    return bool(record) and record.get("status") in ("sent", "cancelled")


# --- test sends ---------------------------------------------------------------------------------


def test_issue_id(issue_id: str, at: datetime | None = None) -> str:
    stamp = (at or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    return f"{issue_id[:44]}-test-{stamp}"  # within the 64 characters of an issue id


def send_test(target: Target, issue: Issue, raw: bytes, to: list[str]) -> str:
    """Render the issue as a test (subject marked, its own id) and queue one batch for `to`.

    The test gets its own issue record, marked `test` and naming its recipients (the send
    function sends only to those, and skips suppressed ones), so the real issue stays unpublished.
    """
    from newsletter.publish import prepared_key, render_and_store
    from newsletter.queue_messages import Batch
    from newsletter.store.subscribers import SHARDS

    if not to:
        raise CliError("send-test needs at least one --to ADDRESS")
    if len(to) > MAX_TEST_RECIPIENTS:
        raise CliError(f"send-test takes at most {MAX_TEST_RECIPIENTS} addresses, not {len(to)}")
    mailing_list = require_list(target, issue.list_id)
    test_id = test_issue_id(issue.issue_id)
    test = issue.model_copy(update={"issue_id": test_id, "subject": f"[TEST] {issue.subject}"})
    settings = _publish_settings(target)
    ddb = target.client("dynamodb")
    record = {
        "issue_id": test_id,
        "list_id": issue.list_id,
        "subject": test.subject,
        "key": f"(test of {issue.issue_id})",
        "sha256": hashlib.sha256(raw).hexdigest(),
        "status": "rendering",
        "accepted_at": now(),
        "test": True,
        "test_of": issue.issue_id,
        "test_recipients": list(to),
    }
    if issues.create_issue(ddb, target.ref("IssuesTable"), record) is not None:
        raise CliError(f"a test send {test_id!r} already exists; wait a second and try again")
    digest = record["sha256"]
    prepared = render_and_store(test, mailing_list, settings=settings, s3=target.client("s3"), digest=digest)
    # One batch, no fan-out: counted as queued and fanned out, so the issue completes as any other;
    # `sending` (where pause and cancel act) before the batch is on the queue, as publish does.
    issues.add_counts(ddb, target.ref("IssuesTable"), test_id, {"queued": len(to), "segments_done": SHARDS})
    issues.update_issue(
        ddb,
        target.ref("IssuesTable"),
        test_id,
        status="sending",
        fanout_started_at=now(),
        web_url=prepared["web_url"],
        prepared_key=prepared_key(test_id, digest),
        fanout_queued_at=now(),
    )
    batch = Batch(test_id, issue.list_id, "test-00", tuple((a, "") for a in to))
    target.client("sqs").send_message(QueueUrl=target.ref("SendQueue"), MessageBody=batch.to_message())
    return test_id


def _publish_settings(target: Target):
    from newsletter.config import PublishSettings

    env = target.publish_environment()
    try:
        return PublishSettings(
            bucket_name=target.ref("NewsletterBucket"),
            lists_table=target.ref("ListsTable"),
            issues_table=target.ref("IssuesTable"),
            fanout_queue_url=env["FANOUT_QUEUE_URL"],
            web_base_url=env["WEB_BASE_URL"],
            sender_address=env["SENDER_ADDRESS"],
            sender_name=env["SENDER_NAME"],
        )
    except KeyError as exc:
        raise CliError(f"the publish function's environment has no {exc.args[0]}: is the stack up to date?") from None


# --- waiting for (deployed) or running (local) the functions ------------------------------------


def follow(
    target: Target,
    issue_id: str,
    key: str | None,
    on_record: Callable[[dict | None], None],
    *,
    timeout_s: float,
    interval_s: float = 3.0,
    sleep=time.sleep,
    clock=time.monotonic,
) -> dict | None:
    """Watch a deployed issue until it is sent, cancelled or paused (or the time is up).

    Raises CliError with the publish function's report if it refused the document.
    """
    deadline = clock() + timeout_s
    while True:
        record = get_record(target, issue_id)
        on_record(record)
        if record is None and key:
            report = error_report(target, key)
            if report:
                raise CliError("the publish function refused the document:\n" + report)
        if record is not None and (done(record) or record.get("status") == "paused"):
            return record
        if clock() >= deadline:
            return record
        sleep(interval_s)


@contextlib.contextmanager
def function_logs(target: Target):
    """Locally, the functions' JSON logs go to a file, not over the progress display."""
    from devstack import server

    path = server.state_dir() / "lambda-logs.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        yield path


def run_local(
    target: Target, issue_id: str, on_record: Callable[[dict | None], None], *, key: str | None = None
) -> dict | None:
    """Locally, be Lambda: the publish event, then fan-out and send until their queues are empty,
    then SES's feedback for what was sent (the mailbox simulator's outcomes)."""
    from devstack import ses_feedback

    stack = target.local
    with function_logs(target):
        if key is not None:
            stack.invoke_async("PublishFunction", stack.s3_put_event(key))
            if get_record(target, issue_id) is None:
                report = error_report(target, key) or "(no report: see out/local/lambda-logs.jsonl)"
                raise CliError("the publish function refused the document:\n" + report)
        stack.poll("FanoutFunction")
        on_record(get_record(target, issue_id))
        while stack.poll("SendFunction", max_invocations=1)["invocations"]:
            on_record(get_record(target, issue_id))
        stack.poll("FanoutFunction")  # the finished issue's reconcile job
        record = get_record(target, issue_id)
        if record:
            # Only the mailbox simulator's addresses answer locally (bounce, complaint, success): a
            # delivery notice for everyone would cost the local server minutes for nothing new.
            outcomes = ses_feedback.simulator_outcomes(
                stack, record["list_id"], issue_id=issue_id, others_delivered=False
            )
            ses_feedback.deliver(stack, outcomes)
    record = get_record(target, issue_id)
    on_record(record)
    return record


def local_outbox(issue_id: str, expected: int, *, timeout_s: float = 10.0) -> list[Path]:
    """The .eml files the local stack wrote for an issue (it writes them as SES accepts them)."""
    from devstack import server

    folder = server.state_dir() / "outbox" / issue_id
    deadline = time.monotonic() + timeout_s
    while True:
        found = sorted(folder.glob("*.eml")) if folder.is_dir() else []
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.1)
