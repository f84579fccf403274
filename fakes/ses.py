"""SimulatedSES: SES v2 as the send function meets it, with an account's sending rate, network
latency and throttling; thread-safe, for several simulated function instances at once.

What it models
- SendEmail with raw content and one destination: refused with TooManyRequestsException (HTTP
  429) when the calls SES accepted in the trailing second already reach the account's rate
  (checked when the request "arrives", a random share of its latency after the call starts, as
  on the wire); BadRequestException (400) for raw data that is not bytes or is empty, or for other
  than one destination address; otherwise a MessageId in SES's format.
- Latency: each call sleeps a random time, uniform in `latency` seconds (seeded, so runs
  repeat); `latency=None` answers at once (cold-start and memory runs).
- GetAccount with the response's SendQuota (MaxSendRate, Max24HourSend, SentLast24Hours),
  SendingEnabled, ProductionAccessEnabled and EnforcementStatus.
- What a benchmark checks: `accepted` counts accepted messages per destination address (to tell
  lost from duplicated), `accepted_at` their times, `throttled`, `bytes`, `peak_window` (the most
  accepted in one second), `calls` by operation.

What it does not model
- The daily quota is reported, never enforced; no sandbox (unverified recipients), no
  suppression list, no MessageRejected, no paused sending or account suspension, no
  configuration-set or identity checks; tags and the configuration set are accepted unread.
- No simple or templated content, no bulk email, no message size limit (40 MB raw).
- Nothing is delivered: there are no bounce, complaint or delivery notifications (see
  fakes.events for those, as the feedback queue receives them).
- No lost answers (a request that reached SES and timed out): the fault injection in
  devstack/faults.py does that for the local stack.

Import rule: only the standard library at module level (see fakes/__init__.py); botocore is
imported when an error is raised.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter, deque

from .errors import client_error as _client_error


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
