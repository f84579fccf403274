"""Pacing sends to the account's SES rate, so that throttling is the exception, not the control.

Each send function instance gets an equal share of the account's maximum send rate: the rate SES
reports (GetAccount) divided by the send queue's MaximumConcurrency (SEND_CONCURRENCY). A token
bucket spaces the SES calls of all the instance's worker threads.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

DEFAULT_MAX_SEND_RATE = 14.0  # what SES grants a new production account; used if GetAccount fails
QUOTA_TTL_S = 300.0
SES_LATENCY_S = 0.15  # a generous SES call time: how many calls must be in flight to hold a rate


class RateLimiter:
    """A thread-safe token bucket: `acquire()` returns when the caller may make one call."""

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate, self.burst = rate, max(burst, 1.0)
        self._clock, self._sleep = clock, sleep
        self._tokens, self._at = self.burst, clock()
        self._lock = threading.Lock()

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self.rate = rate

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


def workers_for(rate: float) -> int:
    """Concurrent SES calls needed to hold `rate` per second (bounded for a 128-256 MB function)."""
    return max(1, min(16, math.ceil(rate * SES_LATENCY_S) + 1))


class Quota:
    """The account's send rate, asked of SES at most every QUOTA_TTL_S seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._at = -math.inf
        self.max_send_rate = DEFAULT_MAX_SEND_RATE
        self.sending_enabled = True

    def refresh(self, ses, logger) -> None:
        if self._clock() - self._at < QUOTA_TTL_S:
            return
        self._at = self._clock()
        from .store import ses as ses_adapter

        try:
            account = ses_adapter.account(ses, DEFAULT_MAX_SEND_RATE)
        except Exception as exc:  # noqa: BLE001 - pacing must not stop sending; fall back, say so
            logger.warning("SES GetAccount failed; pacing at the default rate", extra={"error": type(exc).__name__})
            return
        self.max_send_rate, self.sending_enabled = account.max_send_rate, account.sending_enabled
