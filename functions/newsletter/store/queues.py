"""SQS: the only module that sends to the stack's queues (what the messages say: queue_messages.py).

`send_all` puts many messages on a queue, ten to a SendMessageBatch call, resending the entries
SQS reports as failed; `send` puts one, optionally delayed. Both take the message's text: the
domain decides what is sent, this module how.
"""

from __future__ import annotations

from .. import clock, retry

MAX_DELAY_S = 900  # SQS's longest DelaySeconds


def send(sqs, queue_url: str, body: str, *, delay_s: int | None = None) -> int | None:
    """One message, delayed by at most SQS's 15 minutes (transient failures tried again in place);
    the delay it was given."""
    request = {"QueueUrl": queue_url, "MessageBody": body}
    if delay_s is not None:
        request["DelaySeconds"] = delay_s = max(0, min(MAX_DELAY_S, int(delay_s)))
    retry.call(sqs.send_message, **request)
    return delay_s


def send_all(sqs, queue_url: str, bodies: list[str]) -> int:
    """Every message, ten to a call; how many calls it took."""
    calls = 0
    for i in range(0, len(bodies), 10):
        entries = [{"Id": str(n), "MessageBody": body} for n, body in enumerate(bodies[i : i + 10])]
        retry.call(send_entries, sqs, queue_url, entries)
        calls += 1
    return calls


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
