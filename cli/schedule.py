"""Scheduled issues from the command line: `publish --at`, `schedule`, `reschedule`, and `cancel`
of an issue that waits for its time.

The plain functions take the Target (the deployed or the local stack); the `*_command` functions
at the end are the typer commands, registered by app.py. The publish function creates an issue's
schedule (newsletter/publish.py); here they are listed, moved and deleted, with the same rules
(newsletter/schedule.py) and the same request (store/schedules.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from newsletter import lifecycle
from newsletter import schedule as rules
from newsletter.lifecycle import Status
from newsletter.store import issues, schedules

from .stack import CliError, Target

if TYPE_CHECKING:  # the issue model (pydantic) loads only for the commands that read a document
    from newsletter.issue import Issue

console = Console(highlight=False)


# --- the stack's scheduling settings --------------------------------------------------------------


def stack_time(target: Target) -> float:
    """What time it is for the stack (the local stack's clock may run ahead: devstack/clock.py)."""
    return target.local.clock.time() if target.local is not None else time.time()


def max_days(target: Target) -> int:
    """ScheduleMaxDays, as the publish function was given it."""
    return int(target.publish_environment().get("SCHEDULE_MAX_DAYS") or rules.MAX_DAYS)


def wiring(target: Target) -> schedules.Wiring:
    """Where the stack's schedules live and what they invoke, as the publish function makes them."""
    env = target.publish_environment()
    try:
        group, role, dlq = env["SCHEDULE_GROUP"], env["SCHEDULER_ROLE_ARN"], env["SCHEDULE_DLQ_ARN"]
    except KeyError as exc:
        raise CliError(
            f"the publish function's environment has no {exc.args[0]}: is the stack up to date (sam deploy)?"
        ) from None
    if target.local is not None:
        arn = target.local.physical["PublishFunction"]["Arn"]
    else:
        arn = target.client("lambda").get_function_configuration(FunctionName=target.ref("PublishFunction"))[
            "FunctionArn"
        ]
    return schedules.Wiring(group, role, rules.unqualified(arn), dlq)


def group(target: Target) -> str:
    name = target.publish_environment().get("SCHEDULE_GROUP")
    if not name:
        raise CliError("the publish function's environment has no SCHEDULE_GROUP: is the stack up to date?")
    return name


# --- publish --at ---------------------------------------------------------------------------------


def with_send_time(raw: bytes, at: str | None, time_zone: str | None) -> bytes:
    """The document with `--at` as its send_at and `--time-zone` as its time_zone (each only when
    given: the document's own otherwise)."""
    if at is None and time_zone is None:
        return raw
    try:
        document = json.loads(raw)
    except ValueError:
        return raw  # parse_document says where the syntax is wrong
    if not isinstance(document, dict):
        return raw
    if at is not None:
        at = at.strip()
        zone = document.get("time_zone")
        if time_zone is None and isinstance(zone, str) and _instant(at):
            # An instant, and the document has a time zone: written as that zone's time, which
            # agrees with it by construction (the zone still says how it is shown).
            try:
                at = rules.parse_send_at(at).astimezone(rules.zone(zone)).isoformat(timespec="seconds")
            except ValueError:
                pass  # the document's validation says what is wrong
        document["send_at"] = at
    if time_zone is not None:
        document["time_zone"] = time_zone.strip()
    return json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")


def _instant(text: str) -> bool | None:
    """Whether a time is written with its UTC offset (an instant, whatever the time zone); None
    if it is not a date and time at all (the document's validation says why)."""
    try:
        return datetime.fromisoformat(text.strip().replace("z", "Z")).tzinfo is not None
    except ValueError:
        return None


def prepare(
    target: Target,
    issue: Issue,
    raw: bytes,
    *,
    at: str | None = None,
    time_zone: str | None = None,
    now: float | None = None,
) -> tuple[Issue, bytes]:
    """`publish ISSUE.json [--at TIME] [--time-zone TZ]`: the document to upload, with its send time
    set, and checked as the publish function checks it (InvalidIssue, CliError), so that a time in
    the past or too far ahead is refused before anything is uploaded."""
    from newsletter.issue import parse_document

    if time_zone is not None and at is None and not issue.send_at:
        raise CliError("--time-zone says where --at's time is: give --at TIME too")
    if at is not None and time_zone is None and not issue.time_zone and _instant(at) is False:
        raise CliError(
            f"--at {at}: no UTC offset, and the document has no time_zone: add the offset ({at.strip()}+01:00, "
            "or Z for UTC), or give --time-zone (an IANA name such as Europe/Vienna)"
        )
    if at is None and time_zone is None and not issue.send_at:
        return issue, raw  # sent at once: nothing here to check
    raw = with_send_time(raw, at, time_zone)
    issue = parse_document(raw, max_bytes=int(target.publish_environment().get("MAX_ISSUE_BYTES") or 512 * 1024))
    if issue.send_at:
        field = "--at" if at is not None else "send_at"
        problems = rules.window_problems(
            issue.send_at_utc,
            now=stack_time(target) if now is None else now,
            max_days=max_days(target),
            field=field,
            written=issue.send_at,
        )
        if problems:
            raise CliError("; ".join(problems))
    return issue, raw


def follow_upload(target: Target, issue: Issue, up, *, timeout_s: float = 120.0, sleep=time.sleep) -> dict:
    """After a scheduled issue's upload: run (locally) or wait for (on AWS) the publish function
    until the issue is scheduled; the record, or CliError with the function's report."""
    from . import publishing

    if up.already is not None:
        return up.already
    if target.is_local:
        with publishing.function_logs(target):
            target.local.invoke_async("PublishFunction", target.local.s3_put_event(up.key))
        record = publishing.get_record(target, issue.issue_id)
    else:
        deadline = time.monotonic() + timeout_s
        while True:
            record = publishing.get_record(target, issue.issue_id)
            if record is not None and record.get("status") != Status.RENDERING:
                break
            report = publishing.error_report(target, up.key) if record is None else None
            if report or time.monotonic() > deadline:
                break
            sleep(2.0)
    if record is None or record.get("status") == Status.RENDERING:
        report = publishing.error_report(target, up.key)
        if report:
            raise CliError("the publish function refused the document:\n" + report)
        if record is None:
            raise CliError(f"the publish function has not taken {up.key} yet: newsletter schedule shows it once it has")
    return record


def announce(record: dict) -> str:
    """What `publish` says once a scheduled issue's publish is done."""
    issue_id = record["issue_id"]
    return (
        f"{issue_id} is scheduled: its send starts at {describe(record)}. `newsletter schedule` lists it; "
        f"`newsletter reschedule {issue_id} --at TIME` or `newsletter cancel {issue_id}` change that until then"
    )


def describe(record: dict, time_zone: str | None = None) -> str:
    """`2015-07 is scheduled for 2026-03-02 09:00 Europe/Vienna (+01:00), 08:00 UTC`."""
    when = rules.from_utc(record["send_at"])
    zone = time_zone or record.get("time_zone")
    local = rules.shown(when, zone)
    utc = rules.shown(when)
    return f"{local}, {utc[11:]}" if local != utc else utc


# --- listing --------------------------------------------------------------------------------------


@dataclass
class Scheduled:
    record: dict
    schedule: dict | None  # what Scheduler holds for it (None: no schedule)

    @property
    def issue_id(self) -> str:
        return self.record["issue_id"]

    @property
    def send_at(self) -> datetime:
        return rules.from_utc(self.record["send_at"])

    def problem(self, now: float) -> str | None:
        """What is wrong with it, for the operator: None when its schedule will start it."""
        generation = int(self.record.get("schedule_generation") or 0)
        if self.schedule is None:
            if not self.record.get("scheduled_at"):
                return "no schedule yet: its publish did not finish (newsletter dlq), or is still under way"
            return "its schedule is gone: newsletter reschedule makes it again"
        payload = schedules.payload(self.schedule) or {}
        if payload.get("generation") != generation:
            return f"its schedule starts generation {payload.get('generation')}, not {generation}: reschedule it"
        if self.send_at.timestamp() < now - 15 * 60:
            return "overdue: its schedule has not started it (see PublishDLQ: newsletter dlq)"
        return None


def scheduled(target: Target) -> list[Scheduled]:
    """The issues waiting for their time, soonest first, each with its schedule as Scheduler has it."""
    records = issues.scheduled_issues(target.client("dynamodb"), target.ref("IssuesTable"))
    if not records:
        return []
    client, name = target.client("scheduler"), group(target)
    return [Scheduled(r, schedules.get(client, name, r["issue_id"])) for r in records]


def print_scheduled(found: list[Scheduled], time_zone: str | None = None, *, now: float | None = None) -> None:
    now = time.time() if now is None else now
    if not found:
        console.print("no issue is scheduled")
        return
    if time_zone:
        _zone(time_zone)
    table = Table()
    for column in ("issue", "list", "subject", "send at (UTC)", f"send at ({time_zone or 'its time zone'})"):
        table.add_column(column, overflow="fold")
    for s in found:
        zone = time_zone or s.record.get("time_zone")
        table.add_row(
            Text(s.issue_id),
            Text(str(s.record.get("list_id", ""))),
            Text(str(s.record.get("subject", ""))),
            rules.shown(s.send_at),
            rules.shown(s.send_at, zone),
        )
    console.print(table)
    for s in found:
        problem = s.problem(now)
        if problem:
            console.print(Text(f"{s.issue_id}: {problem}", style="yellow"))


def _zone(name: str) -> str:
    try:
        return rules.check_zone(name)
    except ValueError as exc:
        raise CliError(f"--time-zone {name!r}: {exc}") from None


# --- changing one ---------------------------------------------------------------------------------


def _scheduled_record(target: Target, issue_id: str, action: str) -> dict:
    from . import publishing

    record = publishing.get_record(target, issue_id)
    if record is None:
        raise CliError(f"no issue {issue_id!r} on {target.kind} {target.name!r}")
    if record.get("status") != Status.SCHEDULED:
        since = record.get("sending_at") or record.get("cancelled_at") or record.get("accepted_at", "")
        raise CliError(f"cannot {action} {issue_id}: it is {record.get('status')} (since {since}), not scheduled")
    return record


def reschedule(
    target: Target, issue_id: str, at: str, time_zone: str | None = None, *, now: float | None = None
) -> dict:
    """Move a scheduled issue to another time: the next generation in its record (only if it is
    still scheduled with the one read), then its schedule replaced (or made, if it was missing).
    The schedule of the generation before, if it still fires, starts nothing."""
    record = _scheduled_record(target, issue_id, "reschedule")
    zone = _zone(time_zone) if time_zone else record.get("time_zone") or "UTC"
    try:
        # With an offset and no --time-zone, --at is an instant: the issue keeps its time zone for
        # showing it. Without an offset, it is a time in that zone.
        when = rules.parse_send_at(at, None if time_zone is None and _instant(at) else zone)
    except ValueError as exc:
        raise CliError(f"--at {at!r}: {exc}") from None
    at_now = stack_time(target) if now is None else now
    problems = rules.window_problems(when, now=at_now, max_days=max_days(target), field="--at", written=at)
    if problems:
        raise CliError("; ".join(problems))
    generation = int(record["schedule_generation"])
    ddb, table = target.client("dynamodb"), target.ref("IssuesTable")
    if not lifecycle.reschedule_issue(ddb, table, issue_id, generation, send_at=rules.utc(when), time_zone=zone):
        now_record = issues.get_issue(ddb, table, issue_id) or {}
        raise CliError(
            f"{issue_id} changed meanwhile (now {now_record.get('status')}, generation "
            f"{now_record.get('schedule_generation')}): nothing was rescheduled; look again (newsletter schedule)"
        )
    expression, expression_zone = rules.expression(when, zone)
    request = schedules.request(
        wiring(target),
        issue_id,
        expression=expression,
        time_zone=expression_zone,
        payload=rules.start_payload(issue_id, generation + 1),
    )
    schedules.put(target.client("scheduler"), request)
    return issues.get_issue(ddb, table, issue_id)


def cancel_issue(target: Target, issue_id: str) -> bool:
    """`cancel ISSUE` for any issue (lifecycle.cancel_issue); a scheduled one's schedule is then
    deleted too (were it to fire, it would find the issue cancelled and start nothing)."""
    from . import publishing

    ddb, table = target.client("dynamodb"), target.ref("IssuesTable")
    before = publishing.get_record(target, issue_id)
    if not lifecycle.cancel_issue(ddb, table, issue_id):
        return False
    if before is not None and before.get("status") == Status.SCHEDULED:
        schedules.delete(target.client("scheduler"), group(target), issue_id)
    return True


def start_due(target: Target) -> list[dict]:
    """Locally, be EventBridge Scheduler: start every scheduled issue whose time has come (the
    local clock), as its schedule would, then run the functions until its sending is done."""
    from devstack import ses_feedback

    from . import publishing

    if not target.is_local:
        raise CliError("--run-due is for the local stack (--local): on AWS, EventBridge Scheduler starts them")
    stack = target.local
    with publishing.function_logs(target):
        ran = stack.run_schedules()
        if ran:
            stack.poll("FanoutFunction")
            while stack.poll("SendFunction", max_invocations=1)["invocations"]:
                pass
            stack.poll("FanoutFunction")  # the finished issues' reconcile jobs
        for done in ran:
            record = publishing.get_record(target, done["input"].get("issue_id", ""))
            if record and record.get("status") in (Status.SENDING, Status.SENT):
                outcomes = ses_feedback.simulator_outcomes(
                    stack, record["list_id"], issue_id=record["issue_id"], others_delivered=False
                )
                ses_feedback.deliver(stack, outcomes)
    return ran


# --- the commands (app.py registers them) ---------------------------------------------------------


def _target(ctx: typer.Context) -> Target:
    return ctx.obj.target()


def schedule_command(
    ctx: typer.Context,
    time_zone: str | None = typer.Option(
        None, "--time-zone", help="Show the send times in this IANA time zone too [default: each issue's own]."
    ),
    run_due: bool = typer.Option(
        False,
        "--run-due",
        help="Locally (--local) only: start the issues whose time has come, as EventBridge Scheduler would, and "
        "send them.",
    ),
):
    """The scheduled issues: when each starts (in UTC and in a time zone), and any whose schedule is
    missing or overdue. With --local --run-due, start those whose time has come."""
    target = _target(ctx)
    if run_due:
        ran = start_due(target)
        if not ran:
            console.print("nothing is due")
        for done in ran:
            outcome = ((done.get("answer") or {}).get("outcomes") or [{}])[0]
            issue_id = done["input"].get("issue_id")
            console.print(f"{issue_id}: {outcome.get('status', 'failed (see the local logs)')}")
            if outcome.get("status") == "started":
                from . import publishing

                record = publishing.get_record(target, issue_id) or {}
                c = publishing.counts(record)
                console.print(f"  {record.get('status')}: sent {c['sent']} of {c['queued']} queued")
        return
    print_scheduled(scheduled(target), time_zone, now=stack_time(target))


def reschedule_command(
    ctx: typer.Context,
    issue: str = typer.Argument(..., help="Issue id."),
    at: str = typer.Option(
        ...,
        "--at",
        help="The new send time: ISO 8601, with a UTC offset (2026-03-02T09:00+01:00), or a local time in "
        "--time-zone (else in the issue's time zone).",
    ),
    time_zone: str | None = typer.Option(None, "--time-zone", help="The IANA time zone of --at (Europe/Vienna)."),
):
    """Move a scheduled issue to another time (until its send starts)."""
    target = _target(ctx)
    record = reschedule(target, issue, at, time_zone)
    console.print(f"{issue} rescheduled: its send starts at {describe(record)}")
