"""An issue is sent once every segment has fanned out and every queued recipient is handled; then
its counters are checked against the send ledger.

Whoever sees the last count first (the last send batch, or the last fan-out page) moves the issue
from `sending` to `sent` and queues a reconcile job on the fan-out queue: the fan-out function,
made for paging through large partitions, counts the issue's ledger and records the result
(`ledger_counts`, `reconciled_at`). Counting is exact by construction (`issues.count_batch`); if
the ledger ever disagrees, its numbers win, the difference is kept on the issue
(`counters_corrected`) and an error is logged.
"""

from __future__ import annotations

import uuid

from . import clock, lifecycle, retry, rollout
from .queue_messages import Reconcile
from .store import issues, queues


def finish_if_done(ddb, issues_table: str, record: dict | None, *, sqs, fanout_queue_url: str, logger) -> bool:
    """sending → sent if the record says every recipient is handled; True if this call did it.
    A rollout's cohort, all handled, starts its wait instead (rollout.py)."""
    if record and record.get("status") != lifecycle.CANCELLED and rollout.cohort_handled(record):
        rollout.start_wait(ddb, sqs, issues_table, fanout_queue_url, record, logger)
        return False
    if not record or record.get("status") != lifecycle.SENDING or not issues.finished(record):
        return False
    token = uuid.uuid4().hex
    if not retry.call(lifecycle.complete_if_finished, ddb, issues_table, record, completed_by=token):
        # The change may have been ours with its answer lost (a retry then found it made).
        now = retry.call(issues.get_issue, ddb, issues_table, record["issue_id"]) or {}
        if now.get("completed_by") != token:
            return False
    logger.info(
        "issue sent: every queued recipient handled", extra={k: int(record.get(k) or 0) for k in issues.HANDLED}
    )
    queues.send(sqs, fanout_queue_url, Reconcile(record["issue_id"]).to_message())
    return True


def reconcile(ddb, issues_table: str, sends_table: str, issue_id: str, logger) -> dict:
    """Count the issue's ledger and hold its counters to it; what the ledger says."""
    found = issues.ledger_counts(ddb, sends_table, issue_id)
    record = issues.get_issue(ddb, issues_table, issue_id) or {}
    counters = {k: int(record.get(k) or 0) for k in issues.HANDLED}
    ledger = {k: found[k] for k in issues.HANDLED}
    values = {"ledger_counts": {**ledger, "open": found["open"]}, "reconciled_at": clock.iso()}
    if counters != ledger:
        values.update(ledger)
        values["counters_corrected"] = {k: ledger[k] - counters[k] for k in ledger if ledger[k] != counters[k]}
        logger.error(
            "issue counters differed from the send ledger; set to the ledger's",
            extra={"counters": counters, "ledger": ledger},
        )
    issues.update_issue(ddb, issues_table, issue_id, **values)
    return values
