"""Staged sending (a rollout): a share of the list first, then a wait while SES feedback comes in,
then a verdict on that cohort: the rest of the list, or the issue paused with the reason.

An issue (or its list) asks for it with `rollout` (issue.Rollout). Its record keeps the plan and
the phase, which only moves forward, each time by a conditional write:

    cohort   publishing queues the cohort's segments (part "cohort": only readers in the sample)
    waiting  every cohort reader is handled (completion.py saw it): the verdict is due at
             `rollout_judge_at`, the wait after the last cohort reader was handled
    rest     the cohort passed (or an operator resumed a held issue): the rest of the list is
             queued (part "rest"), and the issue finishes as any other
    held     the cohort's hard bounce or complaint rate passed its limit: the issue is paused with
             the reason in the same write; `newsletter resume` sends the rest anyway

Who is in the cohort is a hash of the issue id and the address under the share: a reproducible
random sample, the same however often a page is fanned out, another for each issue, and the two
parts never overlap. A reader who joins during the wait and falls in the cohort's share gets
nothing, as a reader who joins after their page was fanned out.

The wait is a chain of `Judge` messages on the fan-out queue, each delayed by at most SQS's 15
minutes: no schedule to clean up and nothing polled. Every step can be repeated: a duplicate
Judge finds the phase moved on, and the rest is queued again only if it was never marked queued
(the ledger would mail nobody twice anyway).

Rates are the cohort's hard bounces and complaints per message sent: a soft bounce says nothing
about the list. They are the issue's counters at the verdict, when only the cohort was sent.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

from . import clock, lifecycle, retry
from .queue_messages import Judge, segments
from .store import issues, queues

COHORT, WAITING, REST, HELD = "cohort", "waiting", "rest", "held"
HOP_S = 900  # SQS delays a message by 15 minutes at most: a longer wait is several hops


def plan_for(issue_rollout, list_rollout: dict | None) -> dict | None:
    """The rollout an issue gets (its record's `rollout`): the document's own (issue.Rollout; False:
    none, whatever the list says), else its list's, else none."""
    if issue_rollout is False:
        return None
    if issue_rollout is not None:
        return issue_rollout.plan()
    return dict(list_rollout) if list_rollout else None


def in_cohort(issue_id: str, address: str, share_percent) -> bool:
    """Whether a reader (a normalised address) is in the issue's cohort of share_percent."""
    digest = hashlib.sha256(b"cohort\0" + issue_id.encode() + b"\0" + address.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < Decimal(share_percent) / 100 * 2**64


def select(recipients: list, issue_id: str, part: str, plan: dict | None) -> list:
    """The (Recipient, language) pairs of a fanned-out page in this part of the rollout."""
    if not part:
        return recipients
    if not plan:
        raise LookupError(f"issue {issue_id!r}: a fan-out of its {part} part, but it has no rollout")
    share = plan["share_percent"]
    want = part == COHORT
    return [(r, lang) for r, lang in recipients if in_cohort(issue_id, r.address, share) == want]


def cohort_handled(record: dict) -> bool:
    """The cohort is fanned out and every reader it queued is handled: its wait can start."""
    return record.get("rollout_phase") == COHORT and issues.finished(record, "cohort_segments_done")


def cohort_figures(record: dict) -> dict:
    """What the verdict is made on (kept on the record as `rollout_cohort`, shown by `status`)."""
    figures = issues.statistics(record)
    sent = figures["sent"]
    out = {k: figures[k] for k in ("queued", "sent", "delivered", "bounced_hard", "bounced_soft", "complained")}
    out["bounce_rate_percent"] = _percent(figures["bounced_hard"], sent)
    out["complaint_rate_percent"] = _percent(figures["complained"], sent)
    return out


def verdict(plan: dict, figures: dict) -> str | None:
    """Why the rest of the list must wait (a rate passed its limit), or None: it may go."""
    sent = figures["sent"]
    if not sent:
        return None  # nobody in the cohort (a small list, or readers all suppressed): nothing against it
    bounce, complaint = Decimal(figures["bounce_rate_percent"]), Decimal(figures["complaint_rate_percent"])
    if bounce > Decimal(plan["max_bounce_rate_percent"]):
        return (
            f"the cohort's hard bounce rate {bounce}% ({figures['bounced_hard']} of {sent} sent) passed "
            f"{plan['max_bounce_rate_percent']}%"
        )
    if complaint > Decimal(plan["max_complaint_rate_percent"]):
        return (
            f"the cohort's complaint rate {complaint}% ({figures['complained']} of {sent} sent) passed "
            f"{plan['max_complaint_rate_percent']}%"
        )
    return None


def _percent(n: int, of: int) -> Decimal:
    """n of `of` in percent, to a thousandth, written short (0, 4, 44.828)."""
    if not of:
        return Decimal(0)
    d = (Decimal(100 * n) / of).quantize(Decimal("0.001"))
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()


# --- the steps ------------------------------------------------------------------------------------


def _move(ddb, table: str, issue_id: str, from_phase: str, *, status=None, **values) -> bool:
    """The phase's one way forward: a conditional write, only from `from_phase` (and, with
    `status`, only while the issue has one of those statuses); False if either changed."""
    statuses = None if status is None else tuple(s.value for s in status)
    return retry.call(
        issues.update_issue,
        ddb,
        table,
        issue_id,
        expect_status=statuses,
        expect={"rollout_phase": from_phase},
        **values,
    )


def start_wait(ddb, sqs, table: str, queue_url: str, record: dict, logger) -> bool:
    """cohort → waiting, once its readers are all handled: the Judge first (a failure after it
    leaves a Judge that finds the cohort handled and moves the phase itself), then the phase with
    the verdict's time. True if this call moved it."""
    issue_id = record["issue_id"]
    wait_s = int(record["rollout"].get("wait_minutes") or 0) * 60 if int(record.get("queued") or 0) else 0
    queues.send(sqs, queue_url, Judge(issue_id).to_message(), delay_s=min(wait_s, HOP_S))
    moved = _move(
        ddb,
        table,
        issue_id,
        COHORT,
        rollout_phase=WAITING,
        rollout_judge_at=int(clock.now()) + wait_s,
        rollout_cohort_done_at=clock.iso(),
    )
    if moved:
        logger.info("rollout: cohort handled; its feedback is awaited", extra={"wait_s": wait_s})
    return moved


def judge(issue_id: str, *, ddb, sqs, table: str, queue_url: str, logger) -> str:
    """A Judge message: wait on (delayed again), or judge the cohort and hold the issue or queue
    the rest. Returns what it did: waiting, held or rest (a verdict made now), requeued (the rest
    of an earlier verdict, never marked queued), or ignored (nothing of its business)."""
    for _ in range(3):  # a conditional write lost to another change: read again and decide again
        record = retry.call(issues.get_issue, ddb, table, issue_id)
        if not record or not record.get("rollout") or record.get("status") in (lifecycle.CANCELLED, lifecycle.SENT):
            return "ignored"
        phase = record.get("rollout_phase")
        if phase == COHORT:
            if not cohort_handled(record):
                return "ignored"  # the last cohort reader's completion queues the Judge again
            start_wait(ddb, sqs, table, queue_url, record, logger)
            return WAITING
        if phase == REST:
            if record.get("rollout_rest_queued_at"):
                return "ignored"  # a Judge delivered again after the verdict
            queue_rest(ddb, sqs, table, queue_url, record, logger)
            return "requeued"
        if phase != WAITING:
            return "ignored"  # held: only an operator moves it on
        left = int(record.get("rollout_judge_at") or 0) - int(clock.now())
        if left > 0:
            queues.send(sqs, queue_url, Judge(issue_id).to_message(), delay_s=min(left, HOP_S))
            return WAITING
        figures = cohort_figures(record)
        reason = verdict(record["rollout"], figures)
        decided = {"rollout_cohort": figures, "rollout_judged_at": clock.iso()}
        if reason:
            if _hold(ddb, table, issue_id, reason, decided):
                logger.warning("rollout held: the issue is paused", extra={"reason": reason, **_log(figures)})
                return HELD
            continue
        if _move(
            ddb,
            table,
            issue_id,
            WAITING,
            status=(lifecycle.SENDING, lifecycle.PAUSED),
            rollout_phase=REST,
            rollout_verdict="passed",
            **decided,
        ):
            logger.info("rollout: the cohort passed; the rest of the list is queued", extra=_log(figures))
            queue_rest(ddb, sqs, table, queue_url, {**record, "rollout_phase": REST}, logger)
            return REST
    raise RuntimeError(f"issue {issue_id!r}: its rollout kept changing under the verdict")


def _hold(ddb, table: str, issue_id: str, reason: str, decided: dict) -> bool:
    """waiting → held, and the issue paused with the reason, in one write (an issue an operator or
    the automatic pause paused already keeps its pause)."""
    held = {"rollout_phase": HELD, "rollout_verdict": "held", "rollout_reason": reason, **decided}
    if retry.call(
        lifecycle.move,
        ddb,
        table,
        issue_id,
        lifecycle.PAUSED,
        from_=lifecycle.SENDING,
        expect={"rollout_phase": WAITING},
        paused_reason=f"rollout held: {reason}",
        paused_at=clock.iso(),
        **held,
    ):
        return True
    return _move(ddb, table, issue_id, WAITING, status=(lifecycle.PAUSED,), **held)


def queue_rest(ddb, sqs, table: str, queue_url: str, record: dict, logger) -> None:
    """The rest of the list's segments, then the mark that they are queued (repeatable)."""
    queues.send_all(sqs, queue_url, [s.to_message() for s in segments(record["issue_id"], record["list_id"], REST)])
    retry.call(issues.update_issue, ddb, table, record["issue_id"], rollout_rest_queued_at=clock.iso())


def after_resume(ddb, sqs, table: str, queue_url: str, issue_id: str, logger) -> str | None:
    """What a resume (`newsletter resume`, the operator's override) does for a rollout, once the
    issue is sending again: a held rollout sends the rest of its list; a cohort handled while
    paused starts its wait. What it did, or None."""
    record = retry.call(issues.get_issue, ddb, table, issue_id) or {}
    if not record.get("rollout") or record.get("status") != lifecycle.SENDING:
        return None
    phase = record.get("rollout_phase")
    if phase == HELD:
        if not _move(
            ddb, table, issue_id, HELD, status=(lifecycle.SENDING,), rollout_phase=REST, rollout_released_at=clock.iso()
        ):
            return None
        logger.info("rollout released by an operator: the rest of the list is queued")
        queue_rest(ddb, sqs, table, queue_url, record, logger)
        return "the rest of the list is queued"
    if phase == REST and not record.get("rollout_rest_queued_at"):
        queue_rest(ddb, sqs, table, queue_url, record, logger)
        return "the rest of the list is queued"
    if cohort_handled(record):
        start_wait(ddb, sqs, table, queue_url, record, logger)
        return "the cohort is handled: its verdict is awaited"
    return None


def describe(record: dict) -> dict | None:
    """A rollout's phase and figures, for `status` (None: the issue has no rollout)."""
    plan = record.get("rollout")
    if not plan:
        return None
    out = {
        "phase": record.get("rollout_phase"),
        "share_percent": plan["share_percent"],
        "wait_minutes": plan.get("wait_minutes"),
        "limits": {
            "bounce_rate_percent": plan["max_bounce_rate_percent"],
            "complaint_rate_percent": plan["max_complaint_rate_percent"],
        },
    }
    if out["phase"] in (COHORT, WAITING):
        out["cohort"] = cohort_figures(record)  # so far: only the cohort has been sent
    for name in ("judge_at", "cohort", "verdict", "reason", "judged_at", "released_at"):
        if record.get(f"rollout_{name}") is not None:
            out[name] = record[f"rollout_{name}"]
    return out


def _log(figures: dict) -> dict:
    return {k: str(v) for k, v in figures.items()}
