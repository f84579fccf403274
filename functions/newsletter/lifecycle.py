"""Pausing, resuming and cancelling an issue, by hand or automatically.

The send function reads the issue's status before each batch (cached 10 s): `paused` puts batches
back on the queue, delayed, so nothing is lost; `cancelled` drops them. Every change is a
conditional write, so two operators (or an operator and the feedback function) cannot undo each
other's decision by accident:

    sending → paused      pause_issue (automatic when the bounce or complaint rate is too high,
                          or when a batch fails for a reason no retry can fix)
    paused  → sending     resume_issue
    rendering, sending, paused → cancelled   cancel_issue (for good)

Publishing moves an issue from `rendering` to `sending` only if it is still `rendering`, so an
issue cancelled while it renders never sends. Each status is set with its reason and time.

    python -m newsletter.lifecycle {pause,resume,cancel} ISSUE --table TABLE
"""

from __future__ import annotations

import argparse
import os
import sys

from . import clock
from .store import issues

RENDERING, SENDING, PAUSED, CANCELLED, SENT = "rendering", "sending", "paused", "cancelled", "sent"


def _now() -> str:
    return clock.iso()


def pause_issue(
    ddb, table: str, issue_id: str, *, reason: str = "paused by an operator", at: str | None = None
) -> bool:
    """sending → paused; False if the issue is not sending."""
    return issues.change_status(
        ddb, table, issue_id, PAUSED, allowed_from=(SENDING,), paused_reason=reason, paused_at=at or _now()
    )


def resume_issue(ddb, table: str, issue_id: str, *, at: str | None = None) -> bool:
    """paused → sending; False if the issue is not paused.

    The counts at this moment become the baseline of the automatic pause: from now on the issue
    is judged on what is sent after the resume (else the next bounce would pause it again).
    """
    record = issues.get_issue(ddb, table, issue_id)
    if record is None or record.get("status") != PAUSED:
        return False
    baseline = {"sent": _n(record, "sent"), "bounced": bounced(record), "complained": _n(record, "complained")}
    if not issues.change_status(
        ddb, table, issue_id, SENDING, allowed_from=(PAUSED,), resumed_at=at or _now(), pause_baseline=baseline
    ):
        return False
    # Paused just as its last recipients were handled: nothing more comes to complete it.
    issues.complete_if_finished(ddb, table, issues.get_issue(ddb, table, issue_id), at=_now())
    return True


def cancel_issue(ddb, table: str, issue_id: str, *, at: str | None = None) -> bool:
    """rendering, sending or paused → cancelled (the rest of the issue is never sent); False otherwise."""
    return issues.change_status(
        ddb, table, issue_id, CANCELLED, allowed_from=(RENDERING, SENDING, PAUSED), cancelled_at=at or _now()
    )


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
    "cancel": (cancel_issue, "rendering, sending or paused"),
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
        return 0
    record = issues.get_issue(ddb, args.table, args.issue)
    status = "no such issue" if record is None else f"status is {record.get('status')}"
    print(f"{args.issue}: not changed ({status}; {args.action} needs {needs})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
