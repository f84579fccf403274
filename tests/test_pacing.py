"""Pacing to the account's SES rate, and sending with several calls in flight."""

import collections
import threading

import boto3
import pytest
from conftest import SECRET, add_subscribers, client_error, issue_doc, issue_record, mailed, people, publish

from newsletter import pacing
from newsletter.pacing import Quota, RateLimiter, workers_for


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.lock = threading.Lock()

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        with self.lock:
            self.now += seconds


def test_limiter_spaces_calls_at_the_rate():
    clock = FakeClock()
    limiter = RateLimiter(rate=50, clock=clock, sleep=clock.sleep)
    for _ in range(501):
        limiter.acquire()
    assert clock.now == pytest.approx(500 / 50)  # the first call is free, then one every 20 ms


def test_limiter_lets_idle_time_buy_only_its_burst():
    clock = FakeClock()
    limiter = RateLimiter(rate=10, burst=1, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    clock.now += 60  # a minute idle does not allow 600 calls at once
    limiter.acquire()
    start = clock.now
    limiter.acquire()
    assert clock.now - start == pytest.approx(0.1)


def test_workers_hold_the_rate_without_flooding():
    assert workers_for(1) == 2
    assert workers_for(14 / 5) == 2
    assert workers_for(100) == 16  # bounded


class FakeAccountSES:
    def __init__(self, answer):
        self.answer, self.calls = answer, 0

    def get_account(self):
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_quota_reads_the_account_and_falls_back_when_it_cannot():
    from newsletter.telemetry import logger

    clock = FakeClock()
    q = Quota(clock=clock)
    ses = FakeAccountSES({"SendQuota": {"MaxSendRate": 200.0, "Max24HourSend": 1e6}, "SendingEnabled": True})
    q.refresh(ses, logger)
    q.refresh(ses, logger)  # cached
    assert (q.max_send_rate, ses.calls) == (200.0, 1)
    clock.now += pacing.QUOTA_TTL_S + 1
    ses.answer = {"SendQuota": {"MaxSendRate": 300.0}, "SendingEnabled": False}
    q.refresh(ses, logger)
    assert (q.max_send_rate, q.sending_enabled) == (300.0, False)
    fresh = Quota(clock=clock)
    fresh.refresh(FakeAccountSES(client_error("AccessDeniedException", operation="GetAccount")), logger)
    assert fresh.max_send_rate == pacing.DEFAULT_MAX_SEND_RATE


def test_each_instance_takes_its_share_of_the_rate(monkeypatch):
    from dataclasses import fields

    from newsletter.config import SendSettings
    from newsletter.sender import Sender

    settings = SendSettings(
        **{f.name: "x" for f in fields(SendSettings) if f.name != "send_concurrency"}, send_concurrency=4
    )
    limiter = Sender().pacer(FakeAccountSES({"SendQuota": {"MaxSendRate": 100.0}, "SendingEnabled": True}), settings)
    assert limiter.rate == 25.0


def test_parallel_workers_send_each_recipient_once(stack):
    from newsletter import sending
    from newsletter.config import send_settings
    from newsletter.handlers.send import sender
    from newsletter.telemetry import logger

    readers = people(120)
    add_subscribers(stack, readers)
    publish(stack, issue_doc())
    with stack.environment(stack.functions["SendFunction"]):
        deps = sending.Deps(
            ddb=boto3.client("dynamodb"),
            ses=boto3.client("sesv2"),
            settings=send_settings(),
            secret=SECRET.encode(),
            workers=8,
            limiter=RateLimiter(rate=10_000, burst=50),
        )
        counts = sending.Counts()
        for n in range(0, 120, 50):
            batch = sending.Batch("2015-07", "infomail", f"b{n}", tuple((r["email"], "") for r in readers[n : n + 50]))
            template = sender.message_template(send_settings(), "2015-07", issue_record(stack, "2015-07"))
            sending.send_batch(batch, template, deps, counts, logger)
            sending.send_batch(batch, template, deps, counts, logger)  # redelivered
    got = collections.Counter(mailed())
    assert sorted(got) == sorted(r["email"] for r in readers) and max(got.values()) == 1
    assert (counts.sent, counts.duplicate) == (120, 120)


def test_a_throttle_in_one_worker_returns_everyone_not_yet_sent(stack, ses_faults):
    from newsletter import sending
    from newsletter.config import send_settings
    from newsletter.handlers.send import sender
    from newsletter.telemetry import logger

    readers = people(50)
    add_subscribers(stack, readers)
    publish(stack, issue_doc())
    ses_faults.rule = lambda n, address: client_error("SendingPausedException") if n == 10 else None
    from newsletter import aws

    with stack.environment(stack.functions["SendFunction"]):
        deps = sending.Deps(
            ddb=boto3.client("dynamodb"),
            ses=aws.client("sesv2"),
            settings=send_settings(),
            secret=SECRET.encode(),
            workers=4,
        )
        batch = sending.Batch("2015-07", "infomail", "b", tuple((r["email"], "") for r in readers))
        result = sending.send_batch(
            batch,
            sender.message_template(send_settings(), "2015-07", issue_record(stack, "2015-07")),
            deps,
            sending.Counts(),
            logger,
        )
    sent = set(mailed())
    remaining = {r.address for r in result.rest}
    assert result.stop and "paused" in result.reason
    assert sent | remaining == {r["email"] for r in readers} and not sent & remaining
    assert set(result.outcomes) == sent  # everyone sent has a final state to count
