"""Scheduled issues: when an issue's send starts, and the one-time schedule that starts it.

An issue whose document has `send_at` is validated and rendered at upload like any other, then
waits `scheduled` until a one-time schedule in EventBridge Scheduler (in the stack's schedule
group, `store/schedules.py`) invokes the publish function with `start_payload`: the issue and its
schedule generation. The function starts the send only if the issue is still `scheduled` with that
generation, so a schedule left behind by a cancel or a reschedule does nothing.

Plain Python: the issue model, the publish function and the CLI check a time with the same rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

# Scheduler needs a moment to take a schedule, and the publish must be done: a send starts at
# least this far after the upload that asks for it.
MIN_LEAD_S = 120
# A schedule's time this close (or past) when the publish gets to create it (a retry of a failed
# publish): Scheduler may never fire it, so the publish starts the send itself.
START_NOW_S = 60
# What the template gives the publish function (ScheduleMaxDays) unless told otherwise.
MAX_DAYS = 365

EXAMPLE = "2026-03-02T09:00+01:00"
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", re.I)


class NoTimeZones(ValueError):
    """This Python has no time-zone database (no tzdata): IANA names cannot be read."""


@cache
def zone(name: str):
    """The IANA time zone `name` (Europe/Vienna), or ValueError saying what is wrong."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*", name):
        raise ValueError("not a time zone name: use an IANA name such as Europe/Vienna or America/New_York")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        try:
            ZoneInfo("Etc/UTC")
        except ZoneInfoNotFoundError:
            raise NoTimeZones(
                f"time zone {name!r} cannot be read here (no time-zone database): write send_at with its UTC "
                f"offset ({EXAMPLE}) instead"
            ) from None
        raise ValueError("unknown time zone: use an IANA name such as Europe/Vienna or America/New_York") from None


def check_zone(name: str) -> str:
    zone(name)
    return name


def parse_send_at(value: str, time_zone: str | None = None) -> datetime:
    """The instant `send_at` names, in UTC: a date-time with its UTC offset, or a local date-time
    in `time_zone` (which must then be given, and, with an offset, agree with it). ValueError
    says what is wrong, in words an editor can act on."""
    text = value.strip()
    if not _DATE_TIME.match(text):
        raise ValueError(f"must be an ISO 8601 date and time, such as {EXAMPLE}")
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"is not a valid date and time (write it as {EXAMPLE})") from None
    tz = zone(time_zone) if time_zone else None
    if when.tzinfo is not None:
        if tz is not None and when.astimezone(tz).utcoffset() != when.utcoffset():
            local = when.astimezone(tz)
            raise ValueError(
                f"{text} is not a time in {time_zone}, whose offset then is {_offset(local)}: correct the offset, or "
                f"leave it out and write the local time ({local.strftime('%Y-%m-%dT%H:%M')})"
            )
        return when.astimezone(UTC)
    if tz is None:
        raise ValueError(
            f"{text} has no UTC offset: add one ({text}+01:00, or Z for UTC), or give time_zone (an IANA name such "
            "as Europe/Vienna)"
        )
    early, late = when.replace(tzinfo=tz, fold=0), when.replace(tzinfo=tz, fold=1)
    if early.utcoffset() != late.utcoffset():
        # Either a time the clocks skip (it does not exist) or one they pass twice.
        if early.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != when:
            raise ValueError(f"{text} does not exist in {time_zone} (the clocks go forward then): give another time")
        raise ValueError(
            f"{text} happens twice in {time_zone} (the clocks go back then): add the offset, "
            f"{text}{_offset(early)} or {text}{_offset(late)}"
        )
    return early.astimezone(UTC)


def _offset(when: datetime) -> str:
    minutes = int(when.utcoffset().total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def utc(when: datetime) -> str:
    """2026-03-02T08:00:00Z: how records and messages write an instant."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def shown(when: datetime, time_zone: str | None = None) -> str:
    """For people: `2026-03-02 09:00 Europe/Vienna (+01:00)`, or `2026-03-02 08:00 UTC`."""
    if not time_zone or time_zone in ("UTC", "Etc/UTC"):
        return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    try:
        local = when.astimezone(zone(time_zone))
    except ValueError:
        return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{local.strftime('%Y-%m-%d %H:%M')} {time_zone} ({_offset(local)})"


def window_problems(
    when: datetime, *, now: float, max_days: int = MAX_DAYS, field: str = "send_at", written: str | None = None
) -> list[str]:
    """Why a send cannot be scheduled for `when` at `now` (epoch seconds): in the past, too soon
    for Scheduler, or further ahead than the stack allows. Empty when it can."""
    at = datetime.fromtimestamp(now, UTC)
    what = f"{field}: {written + ' (' + shown(when) + ')' if written else shown(when)}"
    if when <= at:
        return [
            f"{what} is in the past (now {shown(at)}): give a time at least {MIN_LEAD_S // 60} minutes ahead, or leave "
            "send_at out to send at once"
        ]
    if when < at + timedelta(seconds=MIN_LEAD_S):
        return [
            f"{what} is less than {MIN_LEAD_S // 60} minutes ahead (now {shown(at)}): give a later time, or leave "
            "send_at out to send at once"
        ]
    latest = at + timedelta(days=max_days)
    if when > latest:
        return [
            f"{what} is more than {max_days} days ahead (the latest is {shown(latest)}); the stack's limit is its "
            "ScheduleMaxDays parameter"
        ]
    return []


# --- what Scheduler gets, and what it sends back -------------------------------------------------

AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")


def expression(when: datetime, time_zone: str | None = None) -> tuple[str, str]:
    """The one-time schedule expression and its ScheduleExpressionTimezone for the instant `when`:
    the editor's wall-clock time in their time zone, or UTC where that would be ambiguous (no
    time zone, or a time the clocks pass twice: Scheduler would have to guess which)."""
    if time_zone:
        try:
            tz = zone(time_zone)
        except ValueError:
            tz = None
        if tz is not None:
            local = when.astimezone(tz)
            wall = local.replace(tzinfo=None)
            if wall.replace(tzinfo=tz, fold=0).utcoffset() == wall.replace(tzinfo=tz, fold=1).utcoffset():
                return f"at({wall.strftime('%Y-%m-%dT%H:%M:%S')})", time_zone
    return f"at({when.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S')})", "UTC"


def due_at(schedule_expression: str, time_zone: str | None) -> datetime | None:
    """The instant a one-time expression fires (as Scheduler reads it); None for any other kind."""
    found = AT.match(schedule_expression or "")
    if not found:
        return None
    wall = datetime.fromisoformat(found.group(1))
    return wall.replace(tzinfo=zone(time_zone) if time_zone and time_zone != "UTC" else UTC).astimezone(UTC)


SOURCE = "newsletter.schedule"


def start_payload(issue_id: str, generation: int) -> dict:
    """What the schedule invokes the publish function with. Scheduler fills in the time it was
    scheduled for (a context attribute), for the log."""
    return {
        "source": SOURCE,
        "issue_id": issue_id,
        "generation": generation,
        "scheduled_time": "<aws.scheduler.scheduled-time>",
    }


def start_request(event) -> tuple[str, int] | None:
    """(issue id, generation) if `event` is a schedule's start payload, else None."""
    if not isinstance(event, dict) or event.get("source") != SOURCE:
        return None
    issue_id, generation = event.get("issue_id"), event.get("generation")
    if not isinstance(issue_id, str) or not isinstance(generation, int) or isinstance(generation, bool):
        return None
    return issue_id, generation


# --- settings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchedulingSettings:
    """The publish function's settings for scheduled issues (beside PublishSettings), from the
    environment template.yaml gives it."""

    schedule_group: str  # the stack's AWS::Scheduler::ScheduleGroup
    scheduler_role_arn: str  # the role Scheduler assumes to invoke the publish function
    schedule_dlq_arn: str  # where Scheduler puts an invocation it could not deliver
    schedule_max_days: int = MAX_DAYS  # ScheduleMaxDays


def scheduling_settings() -> SchedulingSettings:
    """Read each time (a few variables): the local stack swaps a function's environment per run."""
    from .config import _read

    return _read(SchedulingSettings)


def unqualified(function_arn: str) -> str:
    """A Lambda function's ARN without a version or alias (what the scheduler role may invoke)."""
    return ":".join(function_arn.split(":")[:7])
