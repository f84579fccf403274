"""A virtual clock for the local stack: real time plus whatever the stack skipped ahead.

AWS makes a failed message wait out its visibility timeout, a requeued batch its delay, and an
S3 event a minute before its retry. Locally nobody should wait for that, but the code must see
the time pass: an abandoned claim is only abandoned once its deadline is behind us. So the local
stack moves this clock forward instead of sleeping, and both sides read it: moto's SQS (visibility,
delays, receive counts) and the functions (`newsletter.clock`).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager


class VirtualClock:
    def __init__(self):
        self.offset = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self.offset += seconds

    def sleep(self, seconds: float) -> None:
        """What a function's wait costs locally: nothing, but the time passes."""
        self.advance(seconds)


CLOCK = VirtualClock()  # one per process: moto's state is per process too


@contextmanager
def installed(clock: VirtualClock = CLOCK, *, sqs: bool = True):
    """The functions (and, in this process, moto's SQS) read `clock` while inside."""
    from newsletter import clock as fn_clock

    saved = fn_clock.now, fn_clock.sleep
    fn_clock.now, fn_clock.sleep = clock.time, clock.sleep
    moto_saved = None
    if sqs:
        from moto.sqs import models

        moto_saved = models.unix_time, models.unix_time_millis
        models.unix_time = clock.time
        models.unix_time_millis = lambda: clock.time() * 1000.0
    try:
        yield clock
    finally:
        fn_clock.now, fn_clock.sleep = saved
        if moto_saved:
            from moto.sqs import models

            models.unix_time, models.unix_time_millis = moto_saved
