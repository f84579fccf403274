"""SQS: batches of up to ten messages, with the per-entry retries SendMessageBatch needs."""

from __future__ import annotations

from .. import clock


def send_entries(sqs, queue_url: str, entries: list[dict], attempts: int = 5) -> None:
    """SendMessageBatch (at most 10 entries), resending the entries SQS reports as failed."""
    for attempt in range(attempts):
        failed = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed") or []
        if not failed:
            return
        ids = {f["Id"] for f in failed}
        entries = [e for e in entries if e["Id"] in ids]
        clock.sleep(min(0.1 * 2**attempt, 2.0))
    raise RuntimeError(f"SQS refused {len(entries)} message(s) after {attempts} attempts")
