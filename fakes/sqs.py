"""FakeSQS and WorkQueue: the SQS calls the functions make, and the queues Lambda's event source
mapping reads, in memory and thread-safe.

What it models
- Calls, with the client's request and response shapes: SendMessage (MessageId) and
  SendMessageBatch (Successful entries with their Id and MessageId, Failed empty); `calls`
  counts requests by operation, `delays` the DelaySeconds asked for, `payload_bytes` the
  bodies' UTF-8 bytes.
- Errors SQS raises for a batch it refuses: AWS.SimpleQueueService.TooManyEntriesInBatchRequest
  (more than 10 entries), AWS.SimpleQueueService.EmptyBatchRequest (none) and
  AWS.SimpleQueueService.BatchEntryIdsNotDistinct (an Id twice), all HTTP 400.
- Queues by URL: a message sent to a URL goes on that URL's WorkQueue (made on first use).
  A WorkQueue is the queue as simulated function instances share it: `receive(n)` hands out up
  to n messages, shaped as ReceiveMessage returns them (MessageId, ReceiptHandle, Body and
  Attributes with ApproximateReceiveCount, SentTimestamp, ApproximateFirstReceiveTimestamp),
  and counts them in flight; `settle` deletes the successful ones and makes the failed ones
  visible again at once (as a Lambda batch response with batchItemFailures does, less the
  visibility timeout). `bodies(url)` and `take(url)` read what a queue holds without a poller.

What it does not model
- Time: DelaySeconds is counted, not applied; there is no visibility timeout (a failed message
  is visible again at once) and no retention period; messages are handed out in order (a
  standard queue's order is only approximate, and it may deliver a message twice: the fake
  never does).
- No maxReceiveCount or dead-letter queue (devstack's local stack, on moto, has both); no FIFO
  queues, message attributes or system attributes on send, MD5 digests, long polling,
  ReceiveMessage/DeleteMessage as client calls (the poller is `receive` and `settle`).
- No limits other than the batch's: no 256 KB message or batch size limit, no in-flight limit,
  no throttling.

Import rule: only the standard library at module level (see fakes/__init__.py); botocore is
imported when an error is raised.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

from .errors import client_error


class WorkQueue:
    """A queue of SQS messages shared by simulated function instances (as the SQS poller sees it).

    `receive` hands out up to n messages and counts them in flight; `settle` deletes the
    successful ones and makes the failed ones visible again at once.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._ready: deque[dict] = deque()
        self._in_flight = 0
        self._next = 0
        self.receives = 0
        self.empty_receives = 0
        self.deletes = 0
        self.returned = 0

    def put(self, body: str) -> str:
        with self._lock:
            self._next += 1
            mid = f"m-{self._next:08d}"
            self._ready.append(
                {
                    "MessageId": mid,
                    "ReceiptHandle": mid,
                    "Body": body,
                    "Attributes": {"ApproximateReceiveCount": "0", "SentTimestamp": str(int(time.time() * 1000))},
                }
            )
            return mid

    def receive(self, n: int) -> list[dict]:
        with self._lock:
            got = [self._ready.popleft() for _ in range(min(n, len(self._ready)))]
            now = str(int(time.time() * 1000))
            for m in got:
                attributes = m["Attributes"]
                attributes["ApproximateReceiveCount"] = str(int(attributes["ApproximateReceiveCount"]) + 1)
                attributes.setdefault("ApproximateFirstReceiveTimestamp", now)
            self._in_flight += len(got)
            if got:
                self.receives += 1
            else:
                self.empty_receives += 1
            return got

    def settle(self, messages: list[dict], failed_ids: set[str]) -> None:
        with self._lock:
            for m in messages:
                if m["MessageId"] in failed_ids:
                    self._ready.append(m)
                    self.returned += 1
                else:
                    self.deletes += 1
            self._in_flight -= len(messages)

    def bodies(self) -> list[str]:
        """The bodies of the messages waiting, in order (nothing is received)."""
        with self._lock:
            return [m["Body"] for m in self._ready]

    def take(self) -> list[str]:
        """Receive and delete every message waiting: their bodies."""
        with self._lock:
            got = [m["Body"] for m in self._ready]
            self.deletes += len(got)
            self._ready.clear()
            return got

    def idle(self) -> bool:
        with self._lock:
            return not self._ready and self._in_flight == 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._ready)


class FakeSQS:
    """The SQS client calls the functions make, onto WorkQueues by URL."""

    def __init__(self, queues: dict[str, WorkQueue] | None = None):
        self.queues = dict(queues or {})
        self.calls: Counter = Counter()
        self.delays: Counter = Counter()
        self.payload_bytes = 0
        self._lock = threading.Lock()

    def queue(self, url: str) -> WorkQueue:
        with self._lock:
            return self.queues.setdefault(url, WorkQueue())

    def bodies(self, url: str) -> list[str]:
        """What the queue at this URL holds (waiting), in order."""
        return self.queue(url).bodies()

    def take(self, url: str) -> list[str]:
        """Receive and delete everything the queue at this URL holds: the bodies."""
        return self.queue(url).take()

    def send_message(self, *, QueueUrl, MessageBody, DelaySeconds=0, **_):
        self.calls["SendMessage"] += 1
        self.delays[DelaySeconds] += 1
        self.payload_bytes += len(MessageBody.encode("utf-8"))
        return {"MessageId": self.queue(QueueUrl).put(MessageBody)}

    def send_message_batch(self, *, QueueUrl, Entries, **_):
        if len(Entries) > 10:
            raise client_error(
                "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
                f"Maximum number of entries per request are 10. You have sent {len(Entries)}.",
                "SendMessageBatch",
            )
        if not Entries:
            raise client_error(
                "AWS.SimpleQueueService.EmptyBatchRequest",
                "There should be at least one SendMessageBatchRequestEntry in the request.",
                "SendMessageBatch",
            )
        if len({e["Id"] for e in Entries}) != len(Entries):
            raise client_error(
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                "Two or more batch entries in the request have the same Id.",
                "SendMessageBatch",
            )
        self.calls["SendMessageBatch"] += 1
        q = self.queue(QueueUrl)
        successful = []
        for e in Entries:
            self.payload_bytes += len(e["MessageBody"].encode("utf-8"))
            self.delays[e.get("DelaySeconds", 0)] += 1
            successful.append({"Id": e["Id"], "MessageId": q.put(e["MessageBody"])})
        return {"Successful": successful, "Failed": []}
