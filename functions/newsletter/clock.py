"""What time it is, for every function: one place that says "now" and "wait".

Epoch seconds for what is compared (claims, deadlines, caches), UTC ISO 8601 for what people read.
Call them through the module (`clock.now()`), never `from .clock import now`: the local stack puts
its virtual clock here, so that visibility timeouts, delays and abandoned claims behave locally
as they do on AWS, without the waiting.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now() -> float:
    return time.time()


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def iso(at: float | None = None) -> str:
    """UTC, to the second: 2015-07-01T08:00:00Z."""
    return datetime.fromtimestamp(now() if at is None else at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
