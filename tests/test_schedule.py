"""Scheduled issues, end to end through the real handlers (moto): an issue with `send_at` is
rendered at upload and waits `scheduled` with nothing queued; its one-time schedule (EventBridge
Scheduler, played by the local stack) starts it at its time; times in the past or too far ahead are
refused, by the publish function and by the CLI; cancel and reschedule work until the start, and
whatever a stale, late or repeated invocation does, each reader gets the issue once."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
import typer
from botocore.exceptions import ClientError
from conftest import (
    add_subscribers,
    client_error,
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
from typer.testing import CliRunner

from newsletter import lifecycle
from newsletter import schedule as rules
from newsletter.issue import InvalidIssue, parse_document
from newsletter.store import schedules

HOUR = 3600.0


def at(stack, seconds: float) -> datetime:
    """The stack's time, `seconds` on (to the second, as a document writes it)."""
    return datetime.fromtimestamp(int(stack.clock.time() + seconds), UTC)


def z(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduler():
    return boto3.client("scheduler", region_name="us-east-1")


def the_schedule(stack, issue_id: str = "2015-07") -> dict | None:
    return schedules.get(scheduler(), stack.ref("IssueSchedules"), issue_id)


def start_event(issue_id: str = "2015-07", generation: int = 1) -> dict:
    """What a schedule invokes the publish function with (its input, the time filled in)."""
    return {**rules.start_payload(issue_id, generation), "scheduled_time": "2026-03-02T08:00:00Z"}


def invoke_start(stack, issue_id: str = "2015-07", generation: int = 1) -> str:
    return stack.invoke("PublishFunction", start_event(issue_id, generation))["outcomes"][0]["status"]


def archived(stack, issue_id: str = "2015-07") -> bool:
    index = s3_text(stack, "archive/infomail.json")
    return index is not None and f'"{issue_id}"' in index


def target(stack):
    from newsletter_cli.stack import OUTPUTS, Target

    return Target("local", "test", {logical: stack.ref(logical) for logical in OUTPUTS}, local=stack)


@pytest.fixture
def scheduled(stack):
    """Twenty readers and the example issue scheduled an hour ahead."""
    add_subscribers(stack, people(20))
    stack.send_at = z(at(stack, HOUR))  # kept for the tests: the clock goes on running
    result = publish(stack, issue_doc(send_at=stack.send_at))
    assert result["outcomes"][0]["status"] == "scheduled", result
    return stack


# --- at upload: rendered, scheduled, nothing queued ---------------------------------------------


def test_a_scheduled_issue_is_rendered_and_waits_with_nothing_queued(scheduled):
    stack = scheduled
    record = issue_record(stack, "2015-07")
    assert record["status"] == "scheduled" and record["schedule_generation"] == 1
    assert record["send_at"] == stack.send_at and record["time_zone"] == "UTC"
    assert record["scheduled_at"] and not record.get("sending_at") and not record.get("fanout_queued_at")
    prepared = json.loads(s3_text(stack, record["prepared_key"]))  # rendered at upload
    assert prepared["subject"] == "July 2015 Monthly Update"
    assert queue_depth(stack, "FanoutQueue") == 0 and queue_depth(stack, "SendQueue") == 0
    # Nothing public before the send starts: no web version, no archive entry.
    assert s3_text(stack, "web/2015-07.html") is None and not archived(stack)
    assert the_schedule(stack) is not None
    assert stack.run_schedules() == []  # not its time yet
    deliver(stack)
    assert mailed() == []


def test_the_schedule_is_what_eventbridge_scheduler_gets(stack):
    """Every field of the one-time schedule, as CreateSchedule received it."""
    add_subscribers(stack, people(2))
    send_at = at(stack, 2 * HOUR).astimezone(rules.zone("Europe/Vienna"))
    wall = send_at.strftime("%Y-%m-%dT%H:%M:%S")
    assert publish(stack, issue_doc(send_at=wall, time_zone="Europe/Vienna"))["outcomes"][0]["status"] == "scheduled"
    found = the_schedule(stack)
    env = stack.functions["PublishFunction"].environment
    assert found["Name"] == "2015-07" and found["GroupName"] == stack.ref("IssueSchedules") == env["SCHEDULE_GROUP"]
    assert found["ScheduleExpression"] == f"at({wall})" and found["ScheduleExpressionTimezone"] == "Europe/Vienna"
    assert found["FlexibleTimeWindow"] == {"Mode": "OFF"} and found["ActionAfterCompletion"] == "DELETE"
    assert found["State"] == "ENABLED"
    t = found["Target"]
    assert t["Arn"] == stack.physical["PublishFunction"]["Arn"]  # the function itself, unqualified
    assert t["RoleArn"] == stack.physical["SchedulerRole"]["Arn"] == env["SCHEDULER_ROLE_ARN"]
    assert t["DeadLetterConfig"] == {"Arn": stack.physical["PublishDLQ"]["Arn"]} and env["SCHEDULE_DLQ_ARN"]
    assert t["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 20}
    assert json.loads(t["Input"]) == {
        "source": "newsletter.schedule",
        "issue_id": "2015-07",
        "generation": 1,
        "scheduled_time": "<aws.scheduler.scheduled-time>",
    }
    assert rules.due_at(found["ScheduleExpression"], found["ScheduleExpressionTimezone"]) == send_at


# --- at the time ---------------------------------------------------------------------------------


def test_at_its_time_the_schedule_starts_the_send_and_is_gone(scheduled):
    stack = scheduled
    stack.clock.advance(HOUR)
    (ran,) = stack.run_schedules()
    assert ran["input"]["scheduled_time"] == issue_record(stack, "2015-07")["send_at"]  # filled in by Scheduler
    assert ran["answer"]["outcomes"][0]["status"] == "started"
    assert the_schedule(stack) is None  # ActionAfterCompletion DELETE
    record = issue_record(stack, "2015-07")
    assert record["status"] == "sending" and record["sending_at"] and record["fanout_queued_at"]
    assert s3_text(stack, "web/2015-07.html") is not None and archived(stack)
    deliver(stack)
    assert sorted(mailed()) == sorted(p["email"] for p in people(20))
    assert issue_record(stack, "2015-07")["status"] == "sent"


def test_a_repeated_invocation_and_a_repeated_upload_event_send_each_reader_once(scheduled):
    stack = scheduled
    stack.clock.advance(HOUR)
    assert invoke_start(stack) == "started"
    assert invoke_start(stack) == "duplicate"  # Lambda's async retry, or Scheduler's
    # The same upload's event again, and another document for the issue: neither starts anything.
    assert publish(stack, issue_doc(send_at=stack.send_at))["outcomes"][0]["status"] == "duplicate"
    assert publish(stack, issue_doc(send_at=z(at(stack, 2 * HOUR))))["outcomes"][0]["status"] in ("refused", "invalid")
    deliver(stack)
    assert invoke_start(stack) == "duplicate"  # long after
    deliver(stack)
    assert sorted(mailed()) == sorted(p["email"] for p in people(20))
    assert queue_depth(stack, "FanoutQueue") == 0


def test_a_start_that_failed_half_way_is_finished_by_its_retry(scheduled, monkeypatch):
    """Lambda retries the schedule's asynchronous invocation: a start that moved the issue to
    `sending` and then failed before queueing its fan-out is finished, once."""
    from newsletter import publish as publishing

    stack = scheduled
    real, calls = publishing.start_fanout, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("SQS unreachable")
        return real(*args, **kwargs)

    monkeypatch.setattr(publishing, "start_fanout", flaky)
    stack.clock.advance(HOUR)
    (ran,) = stack.run_schedules()
    assert ran["answer"]["outcomes"][0]["status"] == "started" and len(calls) == 2
    deliver(stack)
    assert sorted(mailed()) == sorted(p["email"] for p in people(20))


# --- refused times --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ahead, said",
    [
        (-HOUR, "is in the past"),
        (-1, "is in the past"),
        (60, "is less than 2 minutes ahead"),
        (366 * 24 * HOUR, "is more than 365 days ahead"),
    ],
)
def test_a_time_in_the_past_too_soon_or_too_far_is_refused_with_a_report(stack, ahead, said):
    add_subscribers(stack, people(3))
    when = z(at(stack, ahead))
    result = publish(stack, issue_doc(send_at=when))
    assert result["outcomes"][0]["status"] == "invalid"
    report = s3_text(stack, "issues/2015-07.json.error.txt")
    assert "NOT published" in report and f"send_at: {when}" in report and said in report
    assert ("now " if ahead < HOUR else "the latest is ") in report  # the time it was checked against
    assert issue_record(stack, "2015-07") is None and the_schedule(stack) is None
    deliver(stack)
    assert mailed() == [] and queue_depth(stack, "FanoutQueue") == 0


def test_the_limit_is_the_stacks_schedule_max_days(aws_mock):
    from devstack.demo import create_list
    from devstack.stack import LocalStack

    stack = LocalStack.create({"ScheduleMaxDays": "7"})
    create_list(stack, "infomail", "ICMPD Infomail")
    assert stack.functions["PublishFunction"].environment["SCHEDULE_MAX_DAYS"] == "7"
    assert publish(stack, issue_doc(send_at=z(at(stack, 8 * 24 * HOUR))))["outcomes"][0]["status"] == "invalid"
    assert "more than 7 days ahead" in s3_text(stack, "issues/2015-07.json.error.txt")
    assert publish(stack, issue_doc(send_at=z(at(stack, 6 * 24 * HOUR))))["outcomes"][0]["status"] == "scheduled"
    assert s3_text(stack, "issues/2015-07.json.error.txt") is None  # removed once it published


@pytest.mark.parametrize(
    "changes, said",
    [
        ({"send_at": "2026-03-02T09:00"}, "send_at: 2026-03-02T09:00 has no UTC offset"),
        ({"send_at": "next Monday"}, "send_at: must be an ISO 8601 date and time"),
        ({"send_at": "2026-03-02"}, "send_at: must be an ISO 8601 date and time"),
        ({"send_at": "2026-02-30T09:00Z"}, "send_at: is not a valid date and time"),
        ({"send_at": "2026-03-02T09:00", "time_zone": "Europe/Viena"}, "time_zone: unknown time zone"),
        (
            {"send_at": "2026-03-29T02:30", "time_zone": "Europe/Vienna"},
            "send_at: 2026-03-29T02:30 does not exist in Europe/Vienna",
        ),
        (
            {"send_at": "2026-10-25T02:30", "time_zone": "Europe/Vienna"},
            "add the offset, 2026-10-25T02:30+02:00 or 2026-10-25T02:30+01:00",
        ),
        (
            {"send_at": "2026-07-01T09:00+01:00", "time_zone": "Europe/Vienna"},
            "is not a time in Europe/Vienna, whose offset then is +02:00",
        ),
    ],
)
def test_a_send_time_that_cannot_be_read_is_named_with_its_field(changes, said):
    with pytest.raises(InvalidIssue) as caught:
        parse_document(json.dumps(issue_doc(**changes)).encode(), max_bytes=1 << 20)
    assert any(said in p for p in caught.value.problems), caught.value.problems


def test_both_forms_name_the_same_instant():
    winter = issue_doc(send_at="2026-03-02T09:00", time_zone="Europe/Vienna")
    summer = issue_doc(send_at="2026-07-01T09:00+02:00", time_zone="Europe/Vienna")
    offset = issue_doc(send_at="2026-03-02T08:00:00Z")
    read = [parse_document(json.dumps(d).encode(), max_bytes=1 << 20).send_at_utc for d in (winter, summer, offset)]
    assert read == [datetime(2026, 3, 2, 8, tzinfo=UTC), datetime(2026, 7, 1, 7, tzinfo=UTC)] + [
        datetime(2026, 3, 2, 8, tzinfo=UTC)
    ]


def test_the_expression_is_the_wall_clock_time_unless_that_is_ambiguous():
    vienna = "Europe/Vienna"
    assert rules.expression(datetime(2026, 3, 2, 8, tzinfo=UTC), vienna) == ("at(2026-03-02T09:00:00)", vienna)
    assert rules.expression(datetime(2026, 7, 1, 7, tzinfo=UTC), vienna) == ("at(2026-07-01T09:00:00)", vienna)
    assert rules.expression(datetime(2026, 3, 2, 8, tzinfo=UTC)) == ("at(2026-03-02T08:00:00)", "UTC")
    # 02:30 happens twice in Vienna that night: Scheduler would have to guess, so it gets UTC.
    fold = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert rules.expression(fold, vienna) == ("at(2026-10-25T00:30:00)", "UTC")
    for when in (datetime(2026, 3, 29, 0, 59, tzinfo=UTC), datetime(2026, 3, 29, 1, 0, tzinfo=UTC), fold):
        assert rules.due_at(*rules.expression(when, vienna)) == when


def test_the_cli_refuses_past_and_far_times_before_anything_is_uploaded(stack):
    from newsletter_cli import schedule
    from newsletter_cli.stack import CliError

    t = target(stack)
    raw = json.dumps(issue_doc()).encode()
    issue = parse_document(raw, max_bytes=1 << 20)
    for when, said in (
        (z(at(stack, -60)), "--at: "),
        (z(at(stack, 400 * 24 * HOUR)), "is more than 365 days ahead"),
    ):
        with pytest.raises(CliError, match=said):
            schedule.prepare(t, issue, raw, at=when)
    with pytest.raises(CliError, match="is in the past"):
        past = json.dumps(issue_doc(send_at=z(at(stack, -60)))).encode()
        schedule.prepare(t, parse_document(past, max_bytes=1 << 20), past)
    with pytest.raises(CliError, match="--at 2030-01-01T09:00: no UTC offset"):
        schedule.prepare(t, issue, raw, at="2030-01-01T09:00")
    with pytest.raises(InvalidIssue, match="send_at: must be an ISO 8601 date and time"):
        schedule.prepare(t, issue, raw, at="tomorrow 9:00+01:00")
    with pytest.raises(CliError, match="--time-zone"):
        schedule.prepare(t, issue, raw, time_zone="Europe/Vienna")
    listed = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=stack.bucket, Prefix="issues/")
    assert listed.get("KeyCount", 0) == 0


def test_publish_at_with_an_offset_is_written_in_the_documents_time_zone():
    from newsletter_cli import schedule

    raw = json.dumps(issue_doc(time_zone="Europe/Vienna")).encode()
    written = json.loads(schedule.with_send_time(raw, "2026-07-01T07:00Z", None))
    assert written["send_at"] == "2026-07-01T09:00:00+02:00" and written["time_zone"] == "Europe/Vienna"
    written = json.loads(schedule.with_send_time(raw, "2026-07-01T07:00Z", "UTC"))
    assert written["send_at"] == "2026-07-01T07:00Z" and written["time_zone"] == "UTC"
    assert schedule.with_send_time(raw, None, None) == raw


def test_publish_at_sets_the_time_in_the_uploaded_copy_and_waits_for_the_function(stack, tmp_path, monkeypatch):
    from newsletter_cli import publishing, schedule

    monkeypatch.setenv("NEWSLETTER_LOCAL_DIR", str(tmp_path))
    add_subscribers(stack, people(4))
    t = target(stack)
    path = tmp_path / "2015-07.json"
    path.write_text(json.dumps(issue_doc()), encoding="utf-8")
    issue, raw = publishing.read_issue(path)
    wall = at(stack, 3 * HOUR).astimezone(rules.zone("America/New_York")).strftime("%Y-%m-%dT%H:%M")
    issue, raw = schedule.prepare(t, issue, raw, at=wall, time_zone="America/New_York")
    assert json.loads(raw)["send_at"] == wall and json.loads(raw)["time_zone"] == "America/New_York"
    up = publishing.upload(t, issue, raw)
    record = schedule.follow_upload(t, issue, up)
    assert record["status"] == "scheduled"
    assert "America/New_York" in schedule.announce(record) and "UTC" in schedule.announce(record)
    assert the_schedule(stack)["ScheduleExpressionTimezone"] == "America/New_York"
    assert publishing.follow(t, "2015-07", up.key, lambda r: None, timeout_s=1)["status"] == "scheduled"
    again = publishing.upload(t, issue, raw)  # the same document again: nothing new
    assert again.already is not None and schedule.follow_upload(t, issue, again)["status"] == "scheduled"


# --- cancel and reschedule ------------------------------------------------------------------------


def test_cancel_before_the_time_sends_nothing_ever(scheduled):
    from newsletter_cli import schedule

    stack = scheduled
    assert schedule.cancel_issue(target(stack), "2015-07")
    assert issue_record(stack, "2015-07")["status"] == "cancelled" and the_schedule(stack) is None
    stack.clock.advance(2 * HOUR)
    assert stack.run_schedules() == []
    assert invoke_start(stack) == "cancelled"  # a schedule that fired anyway (deleted too late)
    # The upload's event again, after its time: its document was accepted then, and is cancelled now.
    assert publish(stack, issue_doc(send_at=stack.send_at))["outcomes"][0]["status"] == "cancelled"
    deliver(stack)
    assert mailed() == [] and queue_depth(stack, "FanoutQueue") == 0
    assert s3_text(stack, "web/2015-07.html") is None and not archived(stack)
    assert not schedule.cancel_issue(target(stack), "2015-07")  # once is enough


def test_cancel_through_the_lifecycle_alone_leaves_a_schedule_that_starts_nothing(scheduled):
    stack = scheduled
    assert lifecycle.cancel_issue(boto3.client("dynamodb"), stack.ref("IssuesTable"), "2015-07")
    stack.clock.advance(HOUR)
    (ran,) = stack.run_schedules()
    assert ran["answer"]["outcomes"][0]["status"] == "cancelled" and the_schedule(stack) is None
    deliver(stack)
    assert mailed() == []


def test_reschedule_the_old_generation_starts_nothing_the_new_one_sends(scheduled):
    from newsletter_cli import schedule

    stack = scheduled
    later = at(stack, 5 * HOUR)
    record = schedule.reschedule(target(stack), "2015-07", z(later))
    assert record["status"] == "scheduled" and record["schedule_generation"] == 2 and record["send_at"] == z(later)
    found = the_schedule(stack)
    assert found["ScheduleExpression"] == f"at({later.strftime('%Y-%m-%dT%H:%M:%S')})"
    assert json.loads(found["Target"]["Input"])["generation"] == 2
    assert found["Target"]["RoleArn"] == stack.physical["SchedulerRole"]["Arn"]
    stack.clock.advance(HOUR)  # the old time
    assert stack.run_schedules() == []
    assert invoke_start(stack, generation=1) == "stale"  # had the old schedule fired
    deliver(stack)
    assert mailed() == [] and issue_record(stack, "2015-07")["status"] == "scheduled"
    stack.clock.advance(4 * HOUR)
    (ran,) = stack.run_schedules()
    assert ran["input"]["generation"] == 2 and ran["answer"]["outcomes"][0]["status"] == "started"
    assert invoke_start(stack, generation=1) == "stale" and invoke_start(stack, generation=2) == "duplicate"
    deliver(stack)
    assert sorted(mailed()) == sorted(p["email"] for p in people(20))


def test_reschedule_keeps_the_issues_time_zone_and_refuses_what_publish_would(stack):
    from newsletter_cli import schedule
    from newsletter_cli.stack import CliError

    add_subscribers(stack, people(2))
    vienna = rules.zone("Europe/Vienna")
    first = at(stack, HOUR).astimezone(vienna).strftime("%Y-%m-%dT%H:%M:%S")
    publish(stack, issue_doc(send_at=first, time_zone="Europe/Vienna"))
    t = target(stack)
    later = at(stack, 3 * HOUR).astimezone(vienna)
    record = schedule.reschedule(t, "2015-07", later.strftime("%Y-%m-%dT%H:%M"))  # read in Vienna
    assert record["send_at"] == z(later.replace(second=0).astimezone(UTC)) and record["time_zone"] == "Europe/Vienna"
    assert the_schedule(stack)["ScheduleExpressionTimezone"] == "Europe/Vienna"
    instant = at(stack, 4 * HOUR)
    record = schedule.reschedule(t, "2015-07", z(instant))  # an instant: the issue keeps its time zone
    assert record["send_at"] == z(instant) and record["time_zone"] == "Europe/Vienna"
    wall = instant.astimezone(vienna).strftime("%Y-%m-%dT%H:%M:%S")
    assert the_schedule(stack)["ScheduleExpression"] == f"at({wall})"
    for when, said in ((z(at(stack, -60)), "is in the past"), (z(at(stack, 30)), "less than 2 minutes")):
        with pytest.raises(CliError, match=said):
            schedule.reschedule(t, "2015-07", when)
    with pytest.raises(CliError, match="no issue"):
        schedule.reschedule(t, "nope", z(at(stack, HOUR)))
    assert issue_record(stack, "2015-07")["schedule_generation"] == 3  # the refusals changed nothing
    stack.clock.advance(4 * HOUR)
    stack.run_schedules()
    with pytest.raises(CliError, match="it is sending"):
        schedule.reschedule(t, "2015-07", z(at(stack, HOUR)))


def test_reschedule_makes_a_missing_schedule_again(scheduled):
    from newsletter_cli import schedule

    stack = scheduled
    scheduler().delete_schedule(Name="2015-07", GroupName=stack.ref("IssueSchedules"))
    (found,) = schedule.scheduled(target(stack))
    assert "its schedule is gone" in found.problem(stack.clock.time())
    schedule.reschedule(target(stack), "2015-07", z(at(stack, 2 * HOUR)))
    (found,) = schedule.scheduled(target(stack))
    assert found.problem(stack.clock.time()) is None


def test_two_reschedules_racing_leave_the_schedule_of_the_one_that_won(scheduled, monkeypatch):
    """The record's conditional move decides: a reschedule that read generation 1 after another
    moved it to 2 changes nothing, and says so."""
    from newsletter_cli import schedule
    from newsletter_cli.stack import CliError

    stack = scheduled
    t = target(stack)
    stale, won = issue_record(stack, "2015-07"), z(at(stack, 2 * HOUR))
    schedule.reschedule(t, "2015-07", won)
    monkeypatch.setattr(schedule, "_scheduled_record", lambda *a: stale)
    with pytest.raises(CliError, match="changed meanwhile"):
        schedule.reschedule(t, "2015-07", z(at(stack, 3 * HOUR)))
    assert json.loads(the_schedule(stack)["Target"]["Input"])["generation"] == 2
    assert issue_record(stack, "2015-07")["send_at"] == won


# --- faults ---------------------------------------------------------------------------------------


class FaultyScheduler:
    """The functions' Scheduler client, with CreateSchedule failing as AWS fails it."""

    def __init__(self, real, fail: int, lose_answer: bool = False):
        self.real, self.fail, self.lose_answer, self.calls = real, fail, lose_answer, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def create_schedule(self, **kwargs):
        self.calls += 1
        if self.calls <= self.fail:
            if self.lose_answer:
                self.real.create_schedule(**kwargs)  # Scheduler made it; the answer never came back
                raise ConnectionError("connection reset after the request was sent")
            raise client_error("ThrottlingException", 400, "CreateSchedule")
        return self.real.create_schedule(**kwargs)


@pytest.fixture
def faulty_scheduler(monkeypatch):
    from newsletter import aws

    real, made = aws.client, {}

    def client(service):
        c = real(service)
        if service != "scheduler":
            return c
        if "client" not in made:
            made["client"] = FaultyScheduler(c, fail=0)
        return made["client"]

    client.cache_clear = real.cache_clear
    monkeypatch.setattr(aws, "client", client)

    def plan(fail: int, lose_answer: bool = False) -> FaultyScheduler:
        made["client"] = FaultyScheduler(real("scheduler"), fail, lose_answer)
        return made["client"]

    return plan


def test_create_schedule_throttled_the_publish_is_retried_and_makes_one_schedule(stack, faulty_scheduler):
    add_subscribers(stack, people(6))
    faults = faulty_scheduler(fail=4)  # more than one invocation's tries: Lambda's retry finishes it
    event = upload(stack, issue_doc(send_at=z(at(stack, HOUR))))
    answer = stack.invoke_async("PublishFunction", event)
    assert answer["outcomes"][0]["status"] == "scheduled" and faults.calls == 5
    assert issue_record(stack, "2015-07")["schedule_generation"] == 1
    assert scheduler().list_schedules(GroupName=stack.ref("IssueSchedules"))["Schedules"][0]["Name"] == "2015-07"
    assert stack.invoke("PublishFunction", event)["outcomes"][0]["status"] == "duplicate"  # S3 repeats itself
    stack.clock.advance(HOUR)
    assert [r["answer"]["outcomes"][0]["status"] for r in stack.run_schedules()] == ["started"]
    deliver(stack)
    assert sorted(mailed()) == sorted(p["email"] for p in people(6))


def test_create_schedule_answer_lost_the_retry_finds_it_made(stack, faulty_scheduler):
    add_subscribers(stack, people(3))
    faults = faulty_scheduler(fail=1, lose_answer=True)
    answer = stack.invoke_async("PublishFunction", upload(stack, issue_doc(send_at=z(at(stack, HOUR)))))
    assert answer["outcomes"][0]["status"] == "scheduled" and faults.calls == 2  # ConflictException: it is there
    assert len(scheduler().list_schedules(GroupName=stack.ref("IssueSchedules"))["Schedules"]) == 1


def test_a_publish_retried_past_its_time_starts_the_send_itself(stack, faulty_scheduler):
    """Scheduler may never fire a schedule for a time gone by: a publish whose retries outlast the
    time starts the send as the schedule would have, once."""
    add_subscribers(stack, people(5))
    faulty_scheduler(fail=100)
    event = upload(stack, issue_doc(send_at=z(at(stack, 150))))
    with pytest.raises(ClientError, match="ThrottlingException"):
        stack.invoke("PublishFunction", event)
    assert issue_record(stack, "2015-07")["status"] == "scheduled"  # and no schedule
    stack.clock.advance(120)  # within a minute of its time: too late for a schedule
    assert stack.invoke("PublishFunction", event)["outcomes"][0]["status"] == "started"
    assert the_schedule(stack) is None
    assert stack.invoke("PublishFunction", event)["outcomes"][0]["status"] == "duplicate"
    deliver(stack)
    assert sorted(mailed()) == sorted(p["email"] for p in people(5))


def test_a_document_deleted_before_its_time_is_not_sent(scheduled):
    stack = scheduled
    boto3.client("s3").delete_object(Bucket=stack.bucket, Key="issues/2015-07.json")
    stack.clock.advance(HOUR)
    (ran,) = stack.run_schedules()
    assert ran["answer"]["outcomes"][0]["status"] == "cancelled"
    assert issue_record(stack, "2015-07")["status"] == "cancelled"
    deliver(stack)
    assert mailed() == []


def test_an_invocation_that_is_not_a_schedules_start_does_nothing(stack):
    for event in (
        {"source": "newsletter.schedule", "issue_id": "2015-07"},
        {"source": "newsletter.schedule", "issue_id": "2015-07", "generation": "1"},
        {"source": "newsletter.schedule", "issue_id": "nope", "generation": 1},
    ):
        answer = stack.invoke("PublishFunction", event)
        assert answer["outcomes"] in ([], [{"issue_id": "nope", "status": "ignored", "detail": "no such issue"}])
    assert queue_depth(stack, "FanoutQueue") == 0


# --- the lifecycle --------------------------------------------------------------------------------


def test_only_a_scheduled_issue_of_that_generation_starts(ddb):
    from newsletter.store import issues

    ddb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "issue_id", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "issue_id", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    issues.create_issue(ddb, "t", {"issue_id": "i", "status": "rendering"})
    assert not lifecycle.start_scheduled(ddb, "t", "i", 1)  # not scheduled
    assert lifecycle.move(ddb, "t", "i", lifecycle.SCHEDULED, schedule_generation=1)
    assert not lifecycle.reschedule_issue(ddb, "t", "i", 2, send_at="2030-01-01T00:00:00Z", time_zone="UTC")
    assert lifecycle.reschedule_issue(ddb, "t", "i", 1, send_at="2030-01-01T00:00:00Z", time_zone="UTC")
    assert not lifecycle.start_scheduled(ddb, "t", "i", 1)  # the generation before
    assert not lifecycle.pause_issue(ddb, "t", "i")  # only a sending issue pauses
    assert lifecycle.start_scheduled(ddb, "t", "i", 2)
    assert not lifecycle.start_scheduled(ddb, "t", "i", 2)  # once
    assert issues.get_issue(ddb, "t", "i")["status"] == "sending"
    with pytest.raises(ValueError):
        lifecycle.move(ddb, "t", "i", lifecycle.SCHEDULED, from_=lifecycle.SENDING)


# --- the commands, as app.py registers them ---------------------------------------------------------


def test_the_commands_list_reschedule_and_run_what_is_due(scheduled, tmp_path, monkeypatch):
    from newsletter_cli import schedule

    stack = scheduled
    monkeypatch.setenv("NEWSLETTER_LOCAL_DIR", str(tmp_path))
    t = target(stack)

    class Options:
        def target(self):
            return t

    app = typer.Typer()

    @app.callback()
    def main(ctx: typer.Context):
        ctx.obj = Options()

    app.command("schedule")(schedule.schedule_command)
    app.command("reschedule")(schedule.reschedule_command)
    schedule.console.width = 250
    runner = CliRunner()

    listed = runner.invoke(app, ["schedule", "--time-zone", "Asia/Tokyo"], catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    when = rules.from_utc(issue_record(stack, "2015-07")["send_at"])
    assert "2015-07" in listed.output and "infomail" in listed.output and "July 2015 Monthly Update" in listed.output
    assert rules.shown(when) in listed.output and rules.shown(when, "Asia/Tokyo") in listed.output
    assert "Asia/Tokyo (+09:00)" in listed.output

    new = z(at(stack, 2 * HOUR))
    moved = runner.invoke(app, ["reschedule", "2015-07", "--at", new], catch_exceptions=False)
    assert moved.exit_code == 0 and "rescheduled" in moved.output
    assert runner.invoke(app, ["schedule", "--run-due"], catch_exceptions=False).output.strip() == "nothing is due"
    stack.clock.advance(2 * HOUR)
    ran = runner.invoke(app, ["schedule", "--run-due"], catch_exceptions=False)
    assert "2015-07: started" in ran.output and "sent 20 of 20 queued" in ran.output
    assert sorted(mailed()) == sorted(p["email"] for p in people(20))
    empty = runner.invoke(app, ["schedule"], catch_exceptions=False)
    assert "no issue is scheduled" in empty.output


def test_on_the_local_server_a_due_schedule_is_run_by_the_cli(tmp_path, monkeypatch):
    """`newsletter --local`: the moto server holds the schedule; `schedule --run-due` plays Scheduler
    (the server's clock cannot be moved, so the schedule is moved to a time gone by instead)."""
    from devstack import server
    from devstack.demo import create_list
    from devstack.stack import new_deployment
    from newsletter.store.subscribers import put_subscribers
    from newsletter_cli import publishing, schedule
    from newsletter_cli.stack import local_target

    monkeypatch.setenv("NEWSLETTER_LOCAL_DIR", str(tmp_path))
    new_deployment()
    server.start(tmp_path)
    try:
        t = local_target(tmp_path)
        create_list(t.local, "infomail", "ICMPD Infomail")
        put_subscribers(t.client("dynamodb"), t.ref("SubscribersTable"), "infomail", people(3))
        path = tmp_path / "2015-07.json"
        path.write_text(json.dumps(issue_doc()), encoding="utf-8")
        issue, raw = publishing.read_issue(path)
        when = datetime.fromtimestamp(int(schedule.stack_time(t)) + 3 * HOUR, UTC)
        issue, raw = schedule.prepare(t, issue, raw, at=z(when))
        record = schedule.follow_upload(t, issue, publishing.upload(t, issue, raw))
        assert record["status"] == "scheduled"
        assert schedule.start_due(t) == []  # not yet
        client, group = t.client("scheduler"), schedule.group(t)
        found = client.get_schedule(Name="2015-07", GroupName=group)
        keep = {k: found[k] for k in ("FlexibleTimeWindow", "Target", "ScheduleExpressionTimezone")}
        client.update_schedule(Name="2015-07", GroupName=group, ScheduleExpression="at(2020-01-01T00:00:00)", **keep)
        (ran,) = schedule.start_due(t)
        assert ran["answer"]["outcomes"][0]["status"] == "started"
        assert publishing.get_record(t, "2015-07")["status"] == "sent"
        assert len(publishing.local_outbox("2015-07", 3, timeout_s=5)) == 3
        assert schedule.scheduled(t) == [] and schedule.start_due(t) == []
    finally:
        server.stop(tmp_path)
        new_deployment()
