"""Publishing an uploaded issue: validate, refuse repeats, render once, start the fan-out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone

from .config import PublishSettings
from .issue import InvalidIssue, Issue, parse_document
from .store import bucket, issues, lists, queues
from .store.subscribers import SHARDS

REPORT_SUFFIX = ".error.txt"


@dataclass(frozen=True)
class Outcome:
    status: str  # published | duplicate | invalid | refused | ignored
    issue_id: str | None = None
    detail: str = ""


def report_key(key: str) -> str:
    return key + REPORT_SUFFIX


def web_key(issue_id: str) -> str:
    return f"web/{issue_id}.html"


def prepared_key(issue_id: str) -> str:
    return f"rendered/{issue_id}/message.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_report(s3, settings: PublishSettings, key: str, problems: list[str], headline: str) -> None:
    lines = [
        f"{headline}",
        f"Document: s3://{settings.bucket_name}/{key}",
        f"Checked:  {_now()}",
        "",
        f"Problems ({len(problems)}):",
        *[f"  - {p}" for p in problems],
        "",
        "Nothing was sent. Fix the document and upload it again to the same key.",
        "",
    ]
    bucket.put_text(s3, settings.bucket_name, report_key(key), "\n".join(lines), "text/plain; charset=utf-8")


def publish(key: str, *, settings: PublishSettings, s3, ddb, sqs, logger) -> Outcome:
    """Publish the issue document at `key` once, however often its upload event arrives."""
    raw = bucket.read_capped(s3, settings.bucket_name, key, settings.max_issue_bytes)
    if raw is None:
        logger.warning("issue document is gone (deleted after upload); nothing to publish", extra={"key": key})
        return Outcome("ignored")
    digest = hashlib.sha256(raw).hexdigest()
    try:
        issue = parse_document(raw, max_bytes=settings.max_issue_bytes)
    except InvalidIssue as exc:
        write_report(s3, settings, key, exc.problems, "This issue document was NOT published: it is not valid.")
        logger.warning("issue document invalid", extra={"key": key, "problems": len(exc.problems)})
        return Outcome("invalid", detail="; ".join(exc.problems))

    logger.set_correlation_id(issue.issue_id)
    mailing_list = lists.get_list(ddb, settings.lists_table, issue.list_id)
    if mailing_list is None:
        problem = f"list: unknown list {issue.list_id!r}; create it first (no subscriber was mailed)"
        write_report(s3, settings, key, [problem], "This issue document was NOT published: its list does not exist.")
        return Outcome("invalid", issue.issue_id, problem)

    record = {
        "issue_id": issue.issue_id,
        "list_id": issue.list_id,
        "subject": issue.subject,
        "key": key,
        "sha256": digest,
        "status": "rendering",
        "accepted_at": _now(),
    }
    existing = issues.create_issue(ddb, settings.issues_table, record)
    if existing is not None:
        if existing.get("sha256") != digest:
            when = existing.get("fanout_started_at") or existing.get("accepted_at", "earlier")
            problem = (
                f"issue_id: issue {issue.issue_id!r} was already published (status {existing.get('status')}, "
                f"since {when}) from a different document; an issue is never sent twice. "
                "Use a new issue_id for a new issue."
            )
            write_report(s3, settings, key, [problem], "This issue document was NOT published: the issue id is taken.")
            logger.warning("issue id already published", extra={"key": key})
            return Outcome("refused", issue.issue_id, problem)
        if existing.get("status") != "rendering":
            logger.info("issue already published; duplicate upload or event ignored", extra={"key": key})
            return Outcome("duplicate", issue.issue_id)
        # Same document, left half-way by a failed attempt: finish it (every step below is repeatable).

    prepared = render_and_store(issue, mailing_list, settings=settings, s3=s3)
    start_fanout(sqs, settings.fanout_queue_url, issue.issue_id, issue.list_id)
    issues.update_issue(
        ddb, settings.issues_table, issue.issue_id, status="sending", fanout_started_at=_now(), web_url=prepared["web_url"]
    )
    bucket.delete_if_exists(s3, settings.bucket_name, report_key(key))
    logger.info("issue published", extra={"key": key, "segments": SHARDS})
    return Outcome("published", issue.issue_id)


def render_and_store(issue: Issue, mailing_list: dict, *, settings: PublishSettings, s3) -> dict:
    """Render the issue once: the public web page and what the senders splice per recipient."""
    from .render import render_issue  # Jinja2 and css-inline load only here

    web_url = f"{settings.web_base_url.rstrip('/')}/{issue.issue_id}.html"
    from_name = mailing_list.get("from_name") or settings.sender_name
    rendered = render_issue(issue, web_url=web_url, list_name=mailing_list.get("name", issue.list_id), sender_name=from_name)
    bucket.put_text(
        s3, settings.bucket_name, web_key(issue.issue_id), rendered.web, "text/html; charset=utf-8",
        CacheControl="public, max-age=300",
    )
    prepared = {
        "issue_id": issue.issue_id,
        "list_id": issue.list_id,
        "list_name": mailing_list.get("name", issue.list_id),
        "subject": issue.subject,
        "from_name": from_name,
        "from_address": mailing_list.get("from_address") or settings.sender_address,
        "reply_to": issue.reply_to or mailing_list.get("reply_to"),
        "web_url": web_url,
        "html": rendered.html,
        "text": rendered.text,
    }
    bucket.put_json(s3, settings.bucket_name, prepared_key(issue.issue_id), prepared)
    return prepared


def start_fanout(sqs, queue_url: str, issue_id: str, list_id: str) -> None:
    """One message per subscriber shard; each fan-out segment then continues itself."""
    messages = [
        {"Id": str(shard), "MessageBody": json.dumps({"issue_id": issue_id, "list_id": list_id, "shard": shard, "page": 0})}
        for shard in range(SHARDS)
    ]
    for i in range(0, len(messages), 10):
        queues.send_entries(sqs, queue_url, messages[i : i + 10])

