"""Publishing an uploaded issue: validate, refuse repeats, render once, start the fan-out.

Atomic from the outside. The issue record is the lock (created once per issue id, with the
document's SHA-256); the steps are ordered so that a publish that fails anywhere is finished by
its retry, and so that no mail can leave before the issue is `sending`, where pause and cancel act:

1. read the document version the upload event names (its S3 version id; else only while its ETag
   is unchanged): a retry never picks up a later upload behind the editor's back;
2. validate it (a report next to it if it is not valid);
3. create the record, `rendering` (or find it: the same document resumes; a newer upload of the
   same key takes over a record still `rendering`; anything else is refused with a report);
4. render, and store the prepared message under the document's digest;
5. `rendering` → `sending`, only if the record still names this document;
6. write the web version, queue the fan-out, put the issue in its list's archive and feed
   (archive.py), and mark it queued (a retry that finds the issue `sending` without that mark
   does the last three again; the fan-out and the ledger drop duplicates, the archive keeps one
   entry per issue).

A document with `send_at` (schedule.py) is checked and rendered the same way, but step 5 is
`rendering` → `scheduled` (with the time, in UTC, and schedule generation 1), and step 6 creates
its one-time schedule (named by the issue id: a retry finds it there) and marks it made. At the
time, the schedule invokes the publish function with the issue and the generation
(`start_scheduled`): `scheduled` → `sending` only if both still hold, then step 6 as above, so a
cancelled or rescheduled issue's old schedule starts nothing, and the web version and the archive
entry appear only when the send starts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from . import archive, clock, lifecycle, queue_messages, retry, rollout, schedule
from .config import PublishSettings
from .issue import InvalidIssue, Issue, parse_document
from .lifecycle import Status
from .store import bucket, issues, lists, queues, schedules
from .store.bucket import prepared_key, report_key, web_key
from .store.subscribers import SHARDS

REPORT_SUFFIX = bucket.REPORT_SUFFIX


@dataclass(frozen=True)
class Outcome:
    # published | scheduled | started | duplicate | stale | invalid | refused | ignored | superseded | cancelled
    status: str
    issue_id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Scheduling:
    """What publishing a scheduled issue needs: where its schedule goes, how far ahead it may be,
    and Scheduler's client (a factory: only a scheduled issue creates it)."""

    wiring: schedules.Wiring
    client: Callable[[], object]
    max_days: int = schedule.MAX_DAYS


def _now() -> str:
    return clock.iso()


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
    retry.call(
        bucket.put_text, s3, settings.bucket_name, report_key(key), "\n".join(lines), "text/plain; charset=utf-8"
    )


def later(sequencer: str | None, than: str | None) -> bool:
    """Whether an S3 event came after another of the same key (the greater hexadecimal sequencer)."""
    try:
        return int(sequencer or "", 16) > int(than or "", 16)
    except ValueError:
        return False


def publish(
    key: str,
    *,
    settings: PublishSettings,
    s3,
    ddb,
    sqs,
    logger,
    version_id: str | None = None,
    etag: str | None = None,
    sequencer: str | None = None,
    scheduling: Scheduling | None = None,
) -> Outcome:
    """Publish the document version an upload event names, once, however often the event arrives
    (an issue with a send time: schedule it)."""
    try:
        raw = retry.call(
            bucket.read_capped,
            s3,
            settings.bucket_name,
            key,
            settings.max_issue_bytes,
            version_id=version_id,
            etag=etag,
        )
    except bucket.Replaced:
        logger.info(
            "document replaced before it was read; the newer upload's own event publishes it", extra={"key": key}
        )
        return Outcome("superseded")
    if raw is None or (version_id and not retry.call(bucket.exists, s3, settings.bucket_name, key)):
        # The version is still kept, but the editor deleted the document: it is not to be sent.
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
    mailing_list = retry.call(lists.get_list, ddb, settings.lists_table, issue.list_id)
    if mailing_list is None:
        problem = f"list: unknown list {issue.list_id!r}; create it first (no subscriber was mailed)"
        write_report(s3, settings, key, [problem], "This issue document was NOT published: its list does not exist.")
        return Outcome("invalid", issue.issue_id, problem)
    problems = check_list_settings(mailing_list, settings) + topic_problems(issue, mailing_list)
    if problems:
        write_report(
            s3, settings, key, problems, "This issue document was NOT published: its list's settings cannot be sent."
        )
        return Outcome("invalid", issue.issue_id, "; ".join(problems))
    problems = send_time_problems(issue, scheduling)
    if problems:
        earlier = retry.call(issues.get_issue, ddb, settings.issues_table, issue.issue_id)
        # A retry, or an event repeated, of a document accepted earlier: its time was checked then.
        if not earlier or earlier.get("sha256") != digest:
            headline = "This issue document was NOT published: its send time cannot be scheduled."
            write_report(s3, settings, key, problems, headline)
            logger.warning("issue send time refused", extra={"key": key})
            return Outcome("invalid", issue.issue_id, "; ".join(problems))

    record = {
        "issue_id": issue.issue_id,
        "list_id": issue.list_id,
        "subject": issue.subject,
        "key": key,
        "sha256": digest,
        "version_id": version_id,
        "sequencer": sequencer,
        "status": Status.RENDERING.value,
        "accepted_at": _now(),
    }
    existing = retry.call(issues.create_issue, ddb, settings.issues_table, record)
    if existing is not None:
        decided = _against(existing, record, s3=s3, ddb=ddb, settings=settings, logger=logger)
        if decided is not None:
            return decided
        if existing.get("status") == Status.SCHEDULED and existing.get("sha256") == digest:
            # Scheduled, but its schedule was never made (a failure after step 5): make it.
            return _schedule(
                issue, existing, scheduling=scheduling, s3=s3, ddb=ddb, sqs=sqs, settings=settings, logger=logger
            )
        if existing.get("status") != Status.RENDERING and existing.get("sha256") == digest:
            # Published, but its fan-out was never queued (a failure after step 5): finish it.
            return _start_sending(
                issue, mailing_list, existing, s3=s3, ddb=ddb, sqs=sqs, settings=settings, logger=logger
            )

    variants = render_variants(issue, mailing_list, settings=settings)
    keys = {v.language: prepared_key(issue.issue_id, digest, v.translation) for v in variants}
    for v in variants:
        retry.call(bucket.put_json, s3, settings.bucket_name, keys[v.language], v.prepared)
    rendered = {
        "prepared_key": keys[issue.language],
        "web_url": variants[0].web_url,
        **_languages(issue, keys),
        **({"topics": list(issue.topics)} if issue.topics else {}),
    }
    plan = rollout.plan_for(issue.rollout, mailing_list.get("rollout"))
    if plan:
        rendered.update(rollout=plan, rollout_phase=rollout.COHORT)
    if issue.send_at:
        when = {
            "send_at": schedule.utc(issue.send_at_utc),
            "time_zone": issue.time_zone or "UTC",
            "schedule_generation": 1,
        }
        moved_to, at = Status.SCHEDULED, when
    else:
        moved_to, at = Status.SENDING, {"sending_at": _now()}
    started = retry.call(
        lifecycle.move,
        ddb,
        settings.issues_table,
        issue.issue_id,
        moved_to,
        from_=Status.RENDERING,
        expect={"sha256": digest},
        **rendered,
        **at,
    )
    if not started:
        now = retry.call(issues.get_issue, ddb, settings.issues_table, issue.issue_id) or {}
        if now.get("sha256") != digest:
            logger.info("a newer upload took this issue over while it rendered", extra={"key": key})
            return Outcome("superseded", issue.issue_id)
        if now.get("status") == Status.CANCELLED:
            logger.info("issue cancelled while it rendered; nothing sent", extra={"key": key})
            return Outcome("cancelled", issue.issue_id)
        # Otherwise our own change, answered late (an SDK retry found it made): go on.
    record = retry.call(issues.get_issue, ddb, settings.issues_table, issue.issue_id) or {}
    if record.get("status") == Status.SCHEDULED:
        return _schedule(
            issue, record, scheduling=scheduling, s3=s3, ddb=ddb, sqs=sqs, settings=settings, logger=logger
        )
    return _start_sending(issue, mailing_list, record, s3=s3, ddb=ddb, sqs=sqs, settings=settings, logger=logger)


def send_time_problems(issue: Issue, scheduling: Scheduling | None, now: float | None = None) -> list[str]:
    """Why the issue's send time cannot be scheduled now (none without one): in the past, too soon
    or too far ahead (schedule.window_problems), or a stack that schedules nothing."""
    if not issue.send_at:
        return []
    if scheduling is None:
        return ["send_at: this stack cannot schedule issues (no schedule group); leave send_at out to send at once"]
    return schedule.window_problems(
        issue.send_at_utc, now=clock.now() if now is None else now, max_days=scheduling.max_days, written=issue.send_at
    )


def _schedule(
    issue: Issue, record: dict, *, scheduling: Scheduling | None, s3, ddb, sqs, settings: PublishSettings, logger
) -> Outcome:
    """Step 6 of a scheduled issue: its one-time schedule, made from the record (its time and
    generation, which a reschedule may have changed since), then the mark that it is made."""
    issue_id = issue.issue_id
    when, generation = schedule.from_utc(record["send_at"]), int(record["schedule_generation"])
    if when.timestamp() - clock.now() <= schedule.START_NOW_S:
        # A publish retried until its time (nearly) came: Scheduler might never fire a schedule for
        # a time gone by, so start now, exactly as the schedule would have.
        logger.info(
            "issue's send time came before its schedule was made: starting it now", extra={"key": record["key"]}
        )
        return start_scheduled(
            issue_id, generation, settings=settings, s3=s3, ddb=ddb, sqs=sqs, logger=logger, issue=issue
        )
    if scheduling is None:
        raise RuntimeError(f"issue {issue_id} is scheduled, but this publish has no scheduler settings")
    expression, time_zone = schedule.expression(when, record.get("time_zone"))
    request = schedules.request(
        scheduling.wiring,
        issue_id,
        expression=expression,
        time_zone=time_zone,
        payload=schedule.start_payload(issue_id, generation),
    )
    # Never an update: a schedule already there is this one's (a retry) or a reschedule's, newer.
    created = retry.call(schedules.create, scheduling.client(), request)
    retry.call(
        issues.update_issue, ddb, settings.issues_table, issue_id, scheduled_at=record.get("scheduled_at") or _now()
    )
    retry.call(bucket.delete_if_exists, s3, settings.bucket_name, report_key(record["key"]))
    logger.info(
        "issue scheduled",
        extra={"key": record["key"], "send_at": record["send_at"], "generation": generation, "made": created},
    )
    return Outcome("scheduled", issue_id, f"its send starts at {record['send_at']}")


def start_scheduled(
    issue_id: str,
    generation: int,
    *,
    settings: PublishSettings,
    s3,
    ddb,
    sqs,
    logger,
    issue: Issue | None = None,
) -> Outcome:
    """The schedule's invocation: start the send of a scheduled issue, only if it is still
    scheduled with this generation (`scheduled` → `sending`), then step 6. An invocation of an
    older generation, a duplicate, or one for an issue cancelled since, does nothing but say so."""
    logger.set_correlation_id(issue_id)
    table = settings.issues_table
    record = retry.call(issues.get_issue, ddb, table, issue_id)
    if record is None:
        logger.warning(
            "a schedule named an issue that does not exist; nothing started", extra={"generation": generation}
        )
        return Outcome("ignored", issue_id, "no such issue")
    if record.get("status") == Status.SCHEDULED and record.get("schedule_generation") == generation:
        if issue is None and not retry.call(bucket.exists, s3, settings.bucket_name, record["key"]):
            # As for an upload deleted before its publish: the editor took it back; nothing is sent.
            lifecycle.cancel_issue(ddb, table, issue_id)
            logger.warning("issue document deleted before its send time; cancelled", extra={"key": record["key"]})
        else:
            # False: cancelled or rescheduled meanwhile, or our own change answered late; the
            # record says which.
            retry.call(lifecycle.start_scheduled, ddb, table, issue_id, generation)
        record = retry.call(issues.get_issue, ddb, table, issue_id) or {}
    status, current = record.get("status"), record.get("schedule_generation")
    if current != generation:
        logger.info(
            "schedule of an earlier time: the issue was rescheduled since; nothing started",
            extra={"generation": generation, "current": current, "status": status},
        )
        return Outcome("stale", issue_id, f"generation {generation}, the issue's is {current}")
    if status == Status.CANCELLED and not record.get("fanout_queued_at"):
        logger.info("issue cancelled before its send time; nothing sent", extra={"generation": generation})
        return Outcome("cancelled", issue_id)
    if status not in (Status.SENDING, Status.PAUSED) or record.get("fanout_queued_at"):
        logger.info(
            "issue already started; a repeated invocation starts nothing",
            extra={"generation": generation, "status": status},
        )
        return Outcome("duplicate", issue_id)
    if issue is None:
        raw = retry.call(
            bucket.read_capped,
            s3,
            settings.bucket_name,
            record["key"],
            settings.max_issue_bytes,
            version_id=record.get("version_id"),
        )
        if raw is None or hashlib.sha256(raw).hexdigest() != record.get("sha256"):
            # Not a retry's business: the alarm on PublishDLQ brings an operator (the issue stays
            # `sending` with nothing queued, as documented for a failed publish).
            raise RuntimeError(f"the document issue {issue_id} was scheduled from is gone ({record['key']})")
        issue = parse_document(raw, max_bytes=settings.max_issue_bytes)
    mailing_list = retry.call(lists.get_list, ddb, settings.lists_table, issue.list_id) or {}
    outcome = _start_sending(issue, mailing_list, record, s3=s3, ddb=ddb, sqs=sqs, settings=settings, logger=logger)
    return Outcome("started" if outcome.status == "published" else outcome.status, issue_id, outcome.detail)


def _against(existing: dict, record: dict, *, s3, ddb, settings: PublishSettings, logger) -> Outcome | None:
    """This upload, when its issue id already has a record: None to go on (the same document, or
    a newer upload of the same key taking over an issue still rendering), else the outcome."""
    key, issue_id, digest = record["key"], record["issue_id"], record["sha256"]
    if existing.get("sha256") == digest:
        status = existing.get("status")
        if (
            status == Status.RENDERING
            or (status in (Status.SENDING, Status.PAUSED) and not existing.get("fanout_queued_at"))
            or (status == Status.SCHEDULED and not existing.get("scheduled_at"))
        ):
            return None  # left half-way by a failed attempt: finish it (every step is repeatable)
        if status == Status.CANCELLED and not existing.get("fanout_queued_at"):
            logger.info("issue cancelled before it was sent; nothing to publish", extra={"key": key})
            return Outcome("cancelled", issue_id)
        if status == Status.SCHEDULED:
            logger.info("issue already scheduled; duplicate upload or event ignored", extra={"key": key})
        else:
            logger.info("issue already published; duplicate upload or event ignored", extra={"key": key})
        return Outcome("duplicate", issue_id)
    if existing.get("key") == key and existing.get("sequencer") and record.get("sequencer"):
        if not later(record["sequencer"], existing["sequencer"]):
            # An older upload of this key, whose event came late (or again): the newer one counts.
            logger.info("an older upload of this document; the newer one is published", extra={"key": key})
            return Outcome("superseded", issue_id)
        if existing.get("status") == Status.RENDERING:
            # A corrected upload while the first one's publish had not started sending: this one wins.
            took = retry.call(
                issues.update_issue,
                ddb,
                settings.issues_table,
                issue_id,
                expect_status=Status.RENDERING.value,
                expect={"sha256": existing.get("sha256")},
                **{k: v for k, v in record.items() if k not in ("issue_id", "status") and v is not None},
            )
            if took:
                logger.info("a newer upload of this document takes the issue over", extra={"key": key})
                return None
            existing = retry.call(issues.get_issue, ddb, settings.issues_table, issue_id) or {}
            if existing.get("sha256") == digest:
                return None  # our own change, answered late
    problem = "issue_id: " + taken(existing, issue_id)
    write_report(s3, settings, key, [problem], "This issue document was NOT published: the issue id is taken.")
    logger.warning("issue id already published", extra={"key": key})
    return Outcome("refused", issue_id, problem)


def _start_sending(
    issue: Issue, mailing_list: dict, record: dict, *, s3, ddb, sqs, settings: PublishSettings, logger
) -> Outcome:
    """Steps after `sending`: the web version, the fan-out, the archive, the mark that it is queued."""
    for v in render_variants(issue, mailing_list, settings=settings):
        if record.get("send_at") and record.get("sha256"):
            # A scheduled issue's prepared messages were stored at upload, up to ScheduleMaxDays
            # ago: written again now, so the bucket's expiry of rendered/ counts from the send.
            key = prepared_key(issue.issue_id, record["sha256"], v.translation)
            retry.call(bucket.put_json, s3, settings.bucket_name, key, v.prepared)
        retry.call(
            bucket.put_text,
            s3,
            settings.bucket_name,
            web_key(issue.issue_id, v.translation),
            v.web,
            "text/html; charset=utf-8",
            CacheControl="public, max-age=300",
        )
    if record.get("status") in (Status.SENDING, Status.PAUSED):
        # A rollout fans out its cohort first; the rest comes after its verdict (rollout.py).
        part = rollout.COHORT if record.get("rollout") else ""
        start_fanout(sqs, settings.fanout_queue_url, issue.issue_id, issue.list_id, part)
        # After the fan-out (mail first), before the mark (a failure here is retried). Test sends
        # never come here; a cancelled issue is taken out by `archive.remove`, for good.
        if not record.get("test"):
            archive.record(
                s3,
                settings.bucket_name,
                issue,
                published=record.get("sending_at") or _now(),
                list_name=mailing_list.get("name", issue.list_id),
                author=mailing_list.get("from_name") or settings.sender_name,
                base_url=settings.web_base_url,
            )
        retry.call(
            issues.update_issue,
            ddb,
            settings.issues_table,
            issue.issue_id,
            fanout_queued_at=_now(),
            fanout_started_at=record.get("fanout_started_at") or _now(),
        )
    retry.call(bucket.delete_if_exists, s3, settings.bucket_name, report_key(record["key"]))
    logger.info("issue published", extra={"key": record["key"], "segments": SHARDS})
    return Outcome("published", issue.issue_id)


def already_published(existing: dict | None, digest: str) -> bool:
    """This same document was published before (further than rendering): nothing to do again."""
    return existing is not None and existing.get("sha256") == digest and existing.get("status") != Status.RENDERING


def taken(existing: dict, issue_id: str) -> str:
    """Why another document cannot be published under an issue id already used."""
    if existing.get("status") == Status.SCHEDULED:
        return (
            f"issue {issue_id!r} is scheduled (its send starts at {existing.get('send_at')}) from a different "
            f"document; an issue is never sent twice. To send this one instead, cancel it (newsletter cancel "
            f"{issue_id}) and publish this document under a new issue_id."
        )
    when = existing.get("sending_at") or existing.get("fanout_started_at") or existing.get("accepted_at", "earlier")
    return (
        f"issue {issue_id!r} was already published (status {existing.get('status')}, since {when}) from a "
        "different document; an issue is never sent twice. Use a new issue_id for a new issue."
    )


MAX_TEST_RECIPIENTS = 50  # one send batch


def test_issue_id(issue_id: str, at: float | None = None) -> str:
    stamp = clock.iso(at).replace("-", "").replace(":", "").replace("T", "").rstrip("Z")
    return f"{issue_id[:44]}-test-{stamp}"  # within the 64 characters of an issue id


def send_test(
    issue: Issue,
    raw: bytes,
    to: list[str],
    mailing_list: dict,
    *,
    settings: PublishSettings,
    s3,
    ddb,
    sqs,
    send_queue_url: str,
) -> str:
    """Publish the issue as a test to `to` only: its own issue id, a `[TEST]` subject, one batch.

    The test gets its own issue record, marked `test` and naming its recipients (the send
    function sends only to those, and skips suppressed ones), so the real issue stays unpublished.
    The steps are publishing's: a record `rendering`, the message rendered, `sending` before the
    batch is on the queue (pause and cancel act on it), and the issue completes as any other.
    """
    if not to or len(to) > MAX_TEST_RECIPIENTS:
        raise ValueError(f"a test send goes to 1 to {MAX_TEST_RECIPIENTS} addresses, not {len(to)}")
    test_id = test_issue_id(issue.issue_id)
    test = issue.model_copy(update={"issue_id": test_id, "subject": f"[TEST] {issue.subject}"})
    digest = hashlib.sha256(raw).hexdigest()
    record = {
        "issue_id": test_id,
        "list_id": issue.list_id,
        "subject": test.subject,
        "key": f"(test of {issue.issue_id})",
        "sha256": digest,
        "status": Status.RENDERING.value,
        "accepted_at": _now(),
        "test": True,
        "test_of": issue.issue_id,
        "test_recipients": list(to),
    }
    if issues.create_issue(ddb, settings.issues_table, record) is not None:
        raise FileExistsError(f"a test send {test_id!r} already exists; wait a second and try again")
    prepared = render_and_store(test, mailing_list, settings=settings, s3=s3, digest=digest)
    # One batch, no fan-out: counted as queued and fanned out, so the issue completes as any other.
    issues.add_counts(ddb, settings.issues_table, test_id, {"queued": len(to), "segments_done": SHARDS})
    lifecycle.move(
        ddb,
        settings.issues_table,
        test_id,
        Status.SENDING,
        from_=Status.RENDERING,
        fanout_started_at=_now(),
        web_url=prepared["web_url"],
        prepared_key=prepared_key(test_id, digest),
        fanout_queued_at=_now(),
    )
    batch = queue_messages.Batch(test_id, issue.list_id, "test-00", tuple((a, "") for a in to))
    queues.send(sqs, send_queue_url, batch.to_message())
    return test_id


def check_list_settings(mailing_list: dict, settings: PublishSettings) -> list[str]:
    """What the list (or the stack's defaults) would put into headers, checked with the same rule
    the message builder applies (headers.check): refused now, not by every send batch later."""
    from . import headers

    checks = (
        ("list name", mailing_list.get("name"), _refuse),
        ("list from_name", mailing_list.get("from_name"), _refuse),
        ("sender name", settings.sender_name, _refuse),
        ("list from_address", mailing_list.get("from_address"), headers.validate_address),
        ("list reply_to", mailing_list.get("reply_to"), headers.validate_address),
        ("sender address", settings.sender_address, headers.validate_address),
    )
    problems = []
    for what, value, check in checks:
        try:
            if value:
                check(str(value))
        except headers.UnsafeHeader as exc:
            problems.append(f"{what}: {exc}")
    return problems


def topic_problems(issue: Issue, mailing_list: dict) -> list[str]:
    """An issue may name only topics its list has (a typo would send it to nobody)."""
    known = [t.get("id") for t in mailing_list.get("topics") or []]
    unknown = [t for t in issue.topics if t not in known]
    if not unknown:
        return []
    offered = ", ".join(known) if known else "none: the list declares no topics"
    return [f"topics: {', '.join(map(repr, unknown))} not among the list's topics ({offered})"]


def _refuse(value: str) -> None:
    from . import headers

    why = headers.refused(value)
    if why:
        raise headers.UnsafeHeader(why)


@dataclass(frozen=True)
class Variant:
    """The issue rendered in one of its languages."""

    language: str
    translation: str | None  # the language, when it is not the default (names its keys)
    web_url: str
    prepared: dict  # what the senders splice per recipient
    web: str  # the public page


def web_url(settings: PublishSettings, issue_id: str, language: str | None = None) -> str:
    name = f"{issue_id}.{language}.html" if language else f"{issue_id}.html"
    return f"{settings.web_base_url.rstrip('/')}/{name}"


def render_variants(issue: Issue, mailing_list: dict, *, settings: PublishSettings) -> list[Variant]:
    """Render the issue once per language, the default first: each language's prepared message
    and web page (which names the others as alternates)."""
    from .render import render_issue  # Jinja2 and css-inline load only here

    translations = [None, *(t.language for t in issue.translations)]
    urls = {lang or issue.language: web_url(settings, issue.issue_id, lang) for lang in translations}
    alternates = list(urls.items()) if len(urls) > 1 else []
    from_name = mailing_list.get("from_name") or settings.sender_name
    list_name = mailing_list.get("name", issue.list_id)
    variants = []
    for translation in translations:
        text = issue.variant(translation or issue.language)
        url = urls[text.language]
        rendered = render_issue(text, web_url=url, list_name=list_name, sender_name=from_name, alternates=alternates)
        prepared = {
            "issue_id": issue.issue_id,
            "list_id": issue.list_id,
            "list_name": list_name,
            "subject": text.subject,
            "from_name": from_name,
            "from_address": mailing_list.get("from_address") or settings.sender_address,
            "reply_to": issue.reply_to or mailing_list.get("reply_to"),
            "web_url": url,
            "language": text.language,
            "html": rendered.html,
            "text": rendered.text,
        }
        variants.append(Variant(text.language, translation, url, prepared, rendered.web))
    return variants


def _languages(issue: Issue, keys: dict[str, str]) -> dict:
    """What the issue record says of its languages: the fan-out chooses among them."""
    values = {"language": issue.language, "languages": issue.languages}
    if len(keys) > 1:
        values["prepared_keys"] = {lang: key for lang, key in keys.items() if lang != issue.language}
    return values


def render(issue: Issue, mailing_list: dict, *, settings: PublishSettings) -> tuple[dict, str]:
    """The issue in its default language: the prepared message and the public web page."""
    v = render_variants(issue.variant(issue.language), mailing_list, settings=settings)[0]
    return v.prepared, v.web


def render_and_store(
    issue: Issue, mailing_list: dict, *, settings: PublishSettings, s3, digest: str | None = None
) -> dict:
    """Render the issue and store both parts at once (previews and test sends: nobody races them)."""
    prepared, web = render(issue, mailing_list, settings=settings)
    bucket.put_text(
        s3,
        settings.bucket_name,
        web_key(issue.issue_id),
        web,
        "text/html; charset=utf-8",
        CacheControl="public, max-age=300",
    )
    bucket.put_json(s3, settings.bucket_name, prepared_key(issue.issue_id, digest), prepared)
    return prepared


def start_fanout(sqs, queue_url: str, issue_id: str, list_id: str, part: str = "") -> None:
    """One message per subscriber shard; each fan-out segment then continues itself."""
    queues.send_all(
        sqs, queue_url, [segment.to_message() for segment in queue_messages.segments(issue_id, list_id, part)]
    )
