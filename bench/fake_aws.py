"""In-memory S3, SSM, SQS and a rate-limited SES for benchmarks. Thread-safe; standard library
only at module level (the cold-start child loads this before its timer starts)."""

from __future__ import annotations

import io
import os
import random
import threading
import time
from collections import Counter, deque


def _client_error(code: str, message: str, operation: str, status: int = 400):
    from botocore.exceptions import ClientError  # the handler under test has loaded botocore

    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


class SimulatedSES:
    """SES v2 with an account quota: `send_email` is refused with TooManyRequestsException (HTTP
    429) when the calls SES accepted in the trailing second already reach `rate`.

    Each call sleeps a random latency (uniform in `latency` seconds); the quota is checked when
    the request "arrives", a random share of that latency after the call starts, as on the wire.
    Accepted messages are counted per destination address, so a benchmark can tell lost from
    duplicated. `latency=None` answers at once (cold-start and memory runs).
    """

    def __init__(
        self,
        rate: float,
        latency: tuple[float, float] | None = (0.02, 0.06),
        seed: int = 1,
        max_24h: float = 1_000_000.0,
    ):
        self.rate, self.latency, self.max_24h = rate, latency, max_24h
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._window: deque[float] = deque()
        self.accepted: Counter = Counter()
        self.accepted_at: list[float] = []
        self.throttled = 0
        self.calls: Counter = Counter()
        self.bytes = 0
        self.first_call: float | None = None
        self.peak_window = 0

    def get_account(self, **_):
        self.calls["GetAccount"] += 1
        return {
            "DedicatedIpAutoWarmupEnabled": False,
            "EnforcementStatus": "HEALTHY",
            "ProductionAccessEnabled": True,
            "SendQuota": {
                "Max24HourSend": self.max_24h,
                "MaxSendRate": self.rate,
                "SentLast24Hours": float(sum(self.accepted.values())),
            },
            "SendingEnabled": True,
        }

    def _sleep(self) -> tuple[float, float]:
        if not self.latency:
            return 0.0, 0.0
        with self._lock:
            total = self._random.uniform(*self.latency)
            share = self._random.uniform(0.3, 0.7)
        return total * share, total * (1 - share)

    def send_email(
        self, *, Destination, Content, ConfigurationSetName=None, EmailTags=None, FromEmailAddress=None, **_
    ):
        data = Content["Raw"]["Data"]
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise _client_error("BadRequestException", "Raw message data must be bytes", "SendEmail")
        to = Destination["ToAddresses"]
        if len(to) != 1:
            raise _client_error("BadRequestException", "one destination expected", "SendEmail")
        there, back = self._sleep()
        start = time.monotonic()
        if there:
            time.sleep(there)
        with self._lock:
            self.calls["SendEmail"] += 1
            now = time.monotonic()
            if self.first_call is None:
                self.first_call = start
            while self._window and self._window[0] <= now - 1.0:
                self._window.popleft()
            if len(self._window) >= self.rate:
                self.throttled += 1
                throttled = True
            else:
                throttled = False
                self._window.append(now)
                self.peak_window = max(self.peak_window, len(self._window))
                self.accepted[to[0]] += 1
                self.accepted_at.append(now)
                self.bytes += len(data)
        if back:
            time.sleep(back)
        if throttled:
            raise _client_error("TooManyRequestsException", "Maximum sending rate exceeded.", "SendEmail", status=429)
        return {"MessageId": f"0100{os.urandom(12).hex()}-000000"}


class _Body:
    def __init__(self, data: bytes):
        self._stream = io.BytesIO(data)

    def read(self, amt: int | None = None) -> bytes:
        return self._stream.read(amt)


class FakeS3:
    """Objects by (bucket, key): get (with Range), put, head, delete."""

    def __init__(self, objects: dict[tuple[str, str], bytes] | None = None):
        self.objects = dict(objects or {})
        self.calls: Counter = Counter()
        self._lock = threading.Lock()

    def get_object(self, *, Bucket, Key, Range=None, **_):
        self.calls["GetObject"] += 1
        with self._lock:
            data = self.objects.get((Bucket, Key))
        if data is None:
            raise _client_error("NoSuchKey", "The specified key does not exist.", "GetObject", 404)
        if Range:
            first, _, last = Range.removeprefix("bytes=").partition("-")
            data = data[int(first) : int(last) + 1 if last else None]
        return {"Body": _Body(data), "ContentLength": len(data)}

    def put_object(self, *, Bucket, Key, Body, **_):
        self.calls["PutObject"] += 1
        with self._lock:
            self.objects[(Bucket, Key)] = Body if isinstance(Body, bytes) else Body.encode("utf-8")
        return {"ETag": '"0"'}

    def head_object(self, *, Bucket, Key, **_):
        self.calls["HeadObject"] += 1
        with self._lock:
            data = self.objects.get((Bucket, Key))
        if data is None:
            raise _client_error("404", "Not Found", "HeadObject", 404)
        return {"ContentLength": len(data), "ETag": '"0"'}

    def delete_object(self, *, Bucket, Key, **_):
        self.calls["DeleteObject"] += 1
        with self._lock:
            self.objects.pop((Bucket, Key), None)
        return {}


class FakeSSM:
    """get_parameter for any name (the token secret)."""

    def __init__(self, values: dict[str, str] | None = None, default: str = "bench-token-secret-0123456789abcdef"):
        self.values, self.default = dict(values or {}), default
        self.calls: Counter = Counter()

    def get_parameter(self, *, Name, WithDecryption=False, **_):
        self.calls["GetParameter"] += 1
        return {
            "Parameter": {
                "Name": Name,
                "Type": "SecureString",
                "Value": self.values.get(Name, self.default),
                "Version": 1,
            }
        }


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
            self._ready.append({"MessageId": mid, "ReceiptHandle": mid, "Body": body, "receives": 0})
            return mid

    def receive(self, n: int) -> list[dict]:
        with self._lock:
            got = [self._ready.popleft() for _ in range(min(n, len(self._ready)))]
            for m in got:
                m["receives"] += 1
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

    def idle(self) -> bool:
        with self._lock:
            return not self._ready and self._in_flight == 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._ready)


class FakeSQS:
    """The SQS client calls the functions make, onto WorkQueues by URL (other URLs are kept)."""

    def __init__(self, queues: dict[str, WorkQueue] | None = None):
        self.queues = dict(queues or {})
        self.calls: Counter = Counter()
        self.delays: Counter = Counter()
        self.payload_bytes = 0
        self._lock = threading.Lock()

    def _queue(self, url: str) -> WorkQueue:
        with self._lock:
            return self.queues.setdefault(url, WorkQueue())

    def send_message(self, *, QueueUrl, MessageBody, DelaySeconds=0, **_):
        self.calls["SendMessage"] += 1
        self.delays[DelaySeconds] += 1
        self.payload_bytes += len(MessageBody.encode("utf-8"))
        return {"MessageId": self._queue(QueueUrl).put(MessageBody)}

    def send_message_batch(self, *, QueueUrl, Entries, **_):
        if len(Entries) > 10:
            raise _client_error("AWS.SimpleQueueService.TooManyEntriesInBatchRequest", "at most 10", "SendMessageBatch")
        self.calls["SendMessageBatch"] += 1
        q = self._queue(QueueUrl)
        for e in Entries:
            self.payload_bytes += len(e["MessageBody"].encode("utf-8"))
            q.put(e["MessageBody"])
        return {"Successful": [{"Id": e["Id"], "MessageId": e["Id"]} for e in Entries], "Failed": []}


class Clients:
    """A stand-in for `newsletter.aws.client`: one fake per service name."""

    def __init__(self, **by_service):
        self.by_service = by_service
        self.asked: Counter = Counter()

    def __call__(self, service: str):
        self.asked[service] += 1
        try:
            return self.by_service[service]
        except KeyError:
            raise RuntimeError(f"benchmark has no fake for AWS service {service!r}") from None
