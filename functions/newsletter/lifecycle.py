"""Pausing, resuming and cancelling an issue, by hand or automatically.

The send function reads the issue's status before each batch (cached 10 s): `paused` puts batches
back on the queue, delayed, so nothing is lost; `cancelled` drops them. Every change is a
conditional write, so two operators (or an operator and the feedback function) cannot undo each
other's decision by accident:

    sending → paused      pause_issue (automatic when the bounce or complaint rate is too high,
                          or when a batch fails for a reason no retry can fix)
    paused  → sending     resume_issue
    rendering, scheduled, sending, paused → cancelled   cancel_issue (nothing more of it is sent)
    cancelled → sending   reopen_issue: only for `newsletter resend --not-sent`, which queues
                          again the readers a cancel left unsent (the ledger mails nobody twice)

Publishing moves an issue from `rendering` to `sending` only if it is still `rendering`, so an
issue cancelled while it renders never sends. An issue with a send time goes `rendering` →
`scheduled` instead; its schedule moves it `scheduled` → `sending` at that time, only if it is
still scheduled with the schedule's generation, which a reschedule (`scheduled` → `scheduled`)
changes (schedule.py). Each status is set with its reason and time.

    python -m newsletter.lifecycle {pause,resume,cancel} ISSUE --table TABLE
"""

from __future__ import annotations

import argparse
import os
import sys
from enum import StrEnum

from . import clock
from .store import issues


class Status(StrEnum):
    """An issue's status (stored as its plain string)."""

    RENDERING = "rendering"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    SENT = "sent"


RENDERING, SCHEDULED, SENDING, PAUSED, CANCELLED, SENT = Status  # short names, for callers here and elsewhere

# Each status, and the statuses it may be reached from. Publishing creates an issue `rendering`.
# `scheduled` → `scheduled` is a reschedule; `scheduled` → `sending`, its schedule's start.
ALLOWED: dict[Status, tuple[Status, ...]] = {
    SCHEDULED: (RENDERING, SCHEDULED),
    SENDING: (RENDERING, SCHEDULED, PAUSED, CANCELLED),
    PAUSED: (SENDING,),
    SENT: (SENDING,),
    CANCELLED: (RENDERING, SCHEDULED, SENDING, PAUSED),
}


def move(
    ddb, table: str, issue_id: str, to: Status, *, from_: Status | None = None, expect: dict | None = None, **values
) -> bool:
    """The one way an issue's status changes: a conditional write, only from a status ALLOWED (or
    only from `from_`, which must be one; `cancelled` only so), and only while `expect`'s
    attributes hold; False if not."""
    allowed = tuple(s for s in ALLOWED[to] if s != CANCELLED)  # a cancel is undone only by name: reopen_issue
    if from_ is not None:
        if from_ not in ALLOWED[to]:
            raise ValueError(f"an issue never goes from {from_} to {to}")
        allowed = (from_,)
    return issues.update_issue(
        ddb, table, issue_id, expect_status=tuple(map(str, allowed)), expect=expect, status=str(to), **values
    )


def pause_issue(
    ddb, table: str, issue_id: str, *, reason: str = "paused by an operator", at: str | None = None
) -> bool:
    """sending → paused; False if the issue is not sending."""
    return move(ddb, table, issue_id, PAUSED, paused_reason=reason, paused_at=at or clock.iso())


def resume_issue(ddb, table: str, issue_id: str, *, at: str | None = None) -> bool:
    """paused → sending; False if the issue is not paused.

    The counts at this moment become the baseline of the automatic pause: from now on the issue
    is judged on what is sent after the resume (else the next bounce would pause it again).
    """
    record = issues.get_issue(ddb, table, issue_id)
    if record is None or record.get("status") != PAUSED:
        return False
    baseline = {"sent": _n(record, "sent"), "bounced": bounced(record), "complained": _n(record, "complained")}
    if not move(ddb, table, issue_id, SENDING, from_=PAUSED, resumed_at=at or clock.iso(), pause_baseline=baseline):
        return False
    # Paused just as its last recipients were handled: nothing more comes to complete it.
    complete_if_finished(ddb, table, issues.get_issue(ddb, table, issue_id))
    return True


def reopen_issue(ddb, table: str, record: dict, *, at: str | None = None) -> bool:
    """cancelled → sending, for a resend to the readers the cancel left unsent; False if the issue
    is no longer cancelled. As after a resume, the automatic pause judges it from here on.

    A staged issue cancelled before its rest was queued is held in the same write: the resend
    finishes its cohort, and the rest of the list waits for an operator's `resume` (a cancel is
    never undone further than the resend asks)."""
    baseline = {"sent": _n(record, "sent"), "bounced": bounced(record), "complained": _n(record, "complained")}
    held = {}
    phase = record.get("rollout_phase")
    if record.get("rollout") and phase in ("cohort", "waiting"):
        held = {
            "expect": {"rollout_phase": phase},
            "rollout_phase": "held",
            "rollout_reason": "cancelled before the rest of the list was queued; resent to the cohort only",
        }
    return move(
        ddb,
        table,
        record["issue_id"],
        SENDING,
        from_=CANCELLED,
        resent_at=at or clock.iso(),
        pause_baseline=baseline,
        **held,
    )


def cancel_issue(ddb, table: str, issue_id: str, *, at: str | None = None) -> bool:
    """rendering, scheduled, sending or paused → cancelled (the rest of the issue is never sent);
    False otherwise. A scheduled issue's schedule may still fire: it finds the issue cancelled and
    does nothing (the CLI's cancel deletes it too)."""
    return move(ddb, table, issue_id, CANCELLED, cancelled_at=at or clock.iso())


def start_scheduled(ddb, table: str, issue_id: str, generation: int, *, at: str | None = None) -> bool:
    """scheduled → sending, only with this schedule generation (a schedule a reschedule replaced,
    or a duplicate invocation after the start, changes nothing); False otherwise."""
    return move(
        ddb,
        table,
        issue_id,
        SENDING,
        from_=SCHEDULED,
        expect={"schedule_generation": generation},
        sending_at=at or clock.iso(),
    )


def reschedule_issue(
    ddb, table: str, issue_id: str, generation: int, *, send_at: str, time_zone: str, at: str | None = None
) -> bool:
    """scheduled → scheduled at another time (`send_at` in UTC, shown in `time_zone`), with the
    next generation, only if the issue is still scheduled with `generation` (the one read); False
    otherwise. The schedule of the generation before then starts nothing."""
    return move(
        ddb,
        table,
        issue_id,
        SCHEDULED,
        from_=SCHEDULED,
        expect={"schedule_generation": generation},
        schedule_generation=generation + 1,
        send_at=send_at,
        time_zone=time_zone,
        rescheduled_at=at or clock.iso(),
    )


def complete_if_finished(ddb, table: str, record: dict | None, at: str | None = None, **values) -> bool:
    """sending → sent once the issue is finished (whoever sees it first: the last send or the last
    fan-out page); True if this call made the change."""
    if not record or record.get("status") != SENDING or not issues.finished(record):
        return False
    return move(ddb, table, record["issue_id"], SENT, sent_at=at or clock.iso(), **values)


def pause_reason(record: dict, *, bounce_rate: float, complaint_rate: float, min_sent: int) -> str | None:
    """Why a sending issue should pause now (its rates passed a limit), or None.

    Rates are bounces (hard + soft) and complaints per message sent, counted since the last resume,
    and judged only once at least min_sent messages went out.
    """
    if record.get("status") != SENDING:
        return None
    base = record.get("pause_baseline") or {}
    sent = _n(record, "sent") - _n(base, "sent")
    bounces = bounced(record) - _n(base, "bounced")
    complaints = _n(record, "complained") - _n(base, "complained")
    if sent <= 0 or sent < min_sent:
        return None
    if bounces / sent > bounce_rate:
        return f"bounce rate {bounces / sent:.2%} ({bounces} of {sent} sent) passed {bounce_rate:.2%}"
    if complaints / sent > complaint_rate:
        return f"complaint rate {complaints / sent:.3%} ({complaints} of {sent} sent) passed {complaint_rate:.3%}"
    return None


def bounced(record: dict) -> int:
    return _n(record, "bounced_hard") + _n(record, "bounced_soft")


def _n(record: dict, name: str) -> int:
    return int(record.get(name) or 0)


# --- the command ------------------------------------------------------------------------------

ACTIONS = {
    "pause": (pause_issue, SENDING),
    "resume": (resume_issue, PAUSED),
    "cancel": (cancel_issue, "rendering, scheduled, sending or paused"),
}


def main(argv: list[str] | None = None, ddb=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m newsletter.lifecycle", description="Pause, resume or cancel an issue."
    )
    parser.add_argument("action", choices=sorted(ACTIONS))
    parser.add_argument("issue", metavar="ISSUE", help="issue id, e.g. 2015-07")
    parser.add_argument(
        "--table", default=os.environ.get("ISSUES_TABLE"), help="the stack's IssuesTable (output IssuesTableName)"
    )
    parser.add_argument("--reason", default="paused by an operator", help="kept on the issue (pause only)")
    args = parser.parse_args(argv)
    if not args.table:
        parser.error("--table is required (or set ISSUES_TABLE)")
    if ddb is None:
        from . import aws

        ddb = aws.client("dynamodb")
    action, needs = ACTIONS[args.action]
    kwargs = {"reason": args.reason} if args.action == "pause" else {}
    if action(ddb, args.table, args.issue, **kwargs):
        record = issues.get_issue(ddb, args.table, args.issue) or {}
        print(f"{args.issue}: {record.get('status')}")
        if args.action == "resume" and record.get("rollout_phase") == "held":
            # Queueing the rest needs the fan-out queue, which this command does not know.
            print(f"{args.issue}: its rollout is held: `newsletter resume {args.issue}` queues the rest of the list")
        return 0
    record = issues.get_issue(ddb, args.table, args.issue)
    status = "no such issue" if record is None else f"status is {record.get('status')}"
    print(f"{args.issue}: not changed ({status}; {args.action} needs {needs})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
