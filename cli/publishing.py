"""What the commands do, apart from printing: publish, test sends, statistics, and (locally)
running the functions the way Lambda would.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from newsletter import publish
from newsletter.issue import Issue, parse_document
from newsletter.lifecycle import Status
from newsletter.store import bucket, issues, lists

from .stack import CliError, Target

MAX_TEST_RECIPIENTS = publish.MAX_TEST_RECIPIENTS


def read_issue(path: Path, max_bytes: int = 512 * 1024) -> tuple[Issue, bytes]:
    """The document, with the translations kept next to it (`2015-07.fr.json` beside
    `2015-07.json`: one file per translator), validated as the publish function validates it
    (InvalidIssue if not); the bytes to upload."""
    try:
        raw = path.read_bytes()
        siblings = translation_files(path)
        if siblings:
            raw = merged(raw, siblings)
    except OSError as exc:
        raise CliError(f"cannot read {exc.filename or path}: {exc.strerror or exc}") from None
    return parse_document(raw, max_bytes=max_bytes), raw


def translation_files(path: Path) -> list[tuple[str, Path]]:
    """`<name>.<language>.json` files next to `<name>.json`: (language, file), by name."""
    from newsletter.languages import check_tag

    found = []
    for candidate in sorted(path.parent.glob(f"{glob.escape(path.stem)}.*.json")):
        tag = candidate.name[len(path.stem) + 1 : -len(".json")]
        try:
            check_tag(tag)
        except ValueError:
            continue
        found.append((tag, candidate))
    return found


def merged(raw: bytes, translations: list[tuple[str, Path]]) -> bytes:
    """The document with each translation file added to its `translations` (a file that is not a
    JSON object is left to the document's validation: it says where)."""
    import json

    from newsletter.issue import InvalidIssue

    try:
        document = json.loads(raw)
    except ValueError:
        return raw  # parse_document reports the syntax error, with its line
    if not isinstance(document, dict):
        return raw
    extra = []
    for tag, file in translations:
        try:
            translation = json.loads(file.read_bytes())
        except ValueError as exc:
            raise InvalidIssue([f"{file.name}: not a JSON document: {exc}"]) from None
        if isinstance(translation, dict):
            translation.setdefault("language", tag)
            if str(translation["language"]).lower() != tag.lower():
                raise InvalidIssue([f"{file.name}: its language is {translation['language']!r}, its name says {tag!r}"])
        extra.append(translation)
    document["translations"] = [*(document.get("translations") or []), *extra]
    return json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")


def require_list(target: Target, list_id: str) -> dict:
    found = lists.get_list(target.client("dynamodb"), target.ref("ListsTable"), list_id)
    if found is None:
        raise CliError(
            f"list {list_id!r} does not exist on {target.kind} {target.name!r}; create it by importing its "
            f"subscribers: newsletter subscribers import FILE.csv --list {list_id} --list-name NAME"
        )
    return found


def counts(record: dict | None) -> dict:
    """An issue record's statistics (issues.statistics: `failed` is defined there, once)."""
    return issues.statistics(record)


def get_record(target: Target, issue_id: str) -> dict | None:
    return issues.get_issue(target.client("dynamodb"), target.ref("IssuesTable"), issue_id)


def all_records(target: Target) -> list[dict]:
    return issues.all_issues(target.client("dynamodb"), target.ref("IssuesTable"))


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
        raise CliError(publish.taken(record, issue.issue_id))
    key = bucket.issue_key(issue.issue_id)
    if publish.already_published(record, digest):
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
            s3.get_object(Bucket=target.ref("NewsletterBucket"), Key=bucket.report_key(key))["Body"]
            .read()
            .decode("utf-8")
        )
    except s3.exceptions.NoSuchKey:
        return None


def done(record: dict | None) -> bool:
    return bool(record) and record.get("status") in (Status.SENT, Status.CANCELLED)


# --- test sends ---------------------------------------------------------------------------------


def send_test(target: Target, issue: Issue, raw: bytes, to: list[str], *, language: str | None = None) -> str:
    """Publish the issue as a test to `to` only (publish.send_test), on the target's stack, in one
    of its languages (None: the default)."""
    if language is not None:
        from newsletter.languages import check_tag

        try:
            language = check_tag(language)
        except ValueError as exc:
            raise CliError(f"--language: {exc}") from None
        if language not in issue.languages:
            raise CliError(f"--language: the issue has {', '.join(issue.languages)}, not {language}")
        issue = issue.variant(language)
    if not to:
        raise CliError("send-test needs at least one --to ADDRESS")
    if len(to) > MAX_TEST_RECIPIENTS:
        raise CliError(f"send-test takes at most {MAX_TEST_RECIPIENTS} addresses, not {len(to)}")
    mailing_list = require_list(target, issue.list_id)
    try:
        return publish.send_test(
            issue,
            raw,
            to,
            mailing_list,
            settings=_publish_settings(target),
            s3=target.client("s3"),
            ddb=target.client("dynamodb"),
            sqs=target.client("sqs"),
            send_queue_url=target.ref("SendQueue"),
        )
    except FileExistsError as exc:
        raise CliError(str(exc)) from None


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
    """Watch a deployed issue until it is sent, cancelled, paused or scheduled (or the time is up).

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
        if record is not None and (done(record) or record.get("status") in (Status.PAUSED, Status.SCHEDULED)):
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
    from devstack import server, ses_feedback

    stack = target.local
    with function_logs(target):
        if key is not None:
            stack.invoke_async("PublishFunction", stack.s3_put_event(key))
            if get_record(target, issue_id) is None:
                report = error_report(target, key) or f"(no report: see {server.state_dir() / 'lambda-logs.jsonl'})"
                raise CliError("the publish function refused the document:\n" + report)
        answered = {i["email"] for i in ses_feedback.sent_ledger(stack, issue_id)} if key is None else set()
        while True:
            stack.poll("FanoutFunction")
            on_record(get_record(target, issue_id))
            while stack.poll("SendFunction", max_invocations=1)["invocations"]:
                on_record(get_record(target, issue_id))
            record = get_record(target, issue_id)
            if record:
                # Only the mailbox simulator's addresses answer locally (bounce, complaint,
                # success): a delivery notice for everyone would cost the local server minutes for
                # nothing new. Each reader's answer comes once, as SES sends it.
                outcomes = [
                    n
                    for n in ses_feedback.simulator_outcomes(
                        stack, record["list_id"], issue_id=issue_id, others_delivered=False
                    )
                    if n["mail"]["destination"][0] not in answered
                ]
                ses_feedback.deliver(stack, outcomes)
                answered |= {n["mail"]["destination"][0] for n in outcomes}
                record = get_record(target, issue_id)
            if not _rollout_waiting(stack, record):
                break
        stack.poll("FanoutFunction")  # the finished issue's reconcile job
    record = get_record(target, issue_id)
    on_record(record)
    return record


def _rollout_waiting(stack, record: dict | None) -> bool:
    """Locally, a rollout's wait for its cohort's feedback (all of which came at once) is skipped:
    the stack's clock moves on to the verdict. True if there is a verdict to run."""
    if not record or record.get("rollout_phase") != "waiting":
        return False
    left = int(record.get("rollout_judge_at") or 0) - int(stack.clock.time())
    if left > 0:
        stack.clock.advance(left)
    return True


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
