"""Benchmark 2: holding the account's SES rate with several send function instances.

N simulated instances (threads; N = the template's SendConcurrency default, the send queue's
MaximumConcurrency) each run their own copy of the real `newsletter/handlers/send.py` (so each has
its own quota, token bucket and message cache, as separate Lambda containers do) against one
shared work queue of recipient batches, written by the real fan-out code (50 to a message), read
10 messages to an invocation as the template's event source mapping does. Everything the handler
asks of AWS is in memory: a simulated SES that throttles above the account's rate (trailing
one-second window, 20-60 ms latency), the send ledger and the subscriber and suppression lookups
in a thread-safe DynamoDB fake with DynamoDB's conditional semantics, the prepared message in a
fake S3. A batch the handler requeues (throttled, out of time) goes back on the work queue as a
new message, without its delay.

Measured: the rate SES accepted against the rate it allows, throttles, and every address SES
accepted, counted: none may be missing, none may be there twice. Also what the run cost in
requests and Lambda time, for the cost model.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from fakes import events
from fakes.clients import Clients
from fakes.dynamodb import FakeDynamoDB
from fakes.s3 import FakeS3
from fakes.ses import SimulatedSES
from fakes.sqs import FakeSQS, WorkQueue
from fakes.ssm import FakeSSM

from . import common

RATE = 200.0  # the simulated account's MaxSendRate (messages per second)
RECIPIENTS = 10_000
LATENCY = (0.02, 0.06)
DEADLINE_S = 240.0  # a stuck run is reported, not waited for
# "Few throttles": at most 2% of SES calls, and none so persistent that a batch is requeued.
GOAL_SHARE, GOAL_THROTTLE_SHARE = 0.90, 0.02


def _handler_copies(n: int) -> list:
    """n independent copies of the send handler module: one per simulated container."""
    import newsletter.handlers.send as original

    path = Path(original.__file__)
    copies = []
    for i in range(n):
        name = f"newsletter.handlers._bench_send_{i}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        copies.append(module)
    return copies


def run(rate: float = RATE, recipients: int = RECIPIENTS) -> dict:
    from devstack.stack import FakeContext
    from newsletter import fanout
    from newsletter.store import to_item

    functions = common.functions()
    fn = functions["SendFunction"]
    env = fn["env"]
    names = common.physical_names()
    template = common.template()
    concurrency = common.send_concurrency()
    source = next(e["Properties"] for e in fn["Events"].values() if e["Type"] == "SQS")
    batch_size = int(source.get("BatchSize", 10))
    timeout, memory = int(fn["Timeout"]), int(fn["MemorySize"])
    prepared = common.prepared_issue()
    issue_id, list_id = prepared["issue_id"], prepared["list_id"]
    # Whole rounds of invocations (instances x batch size x 50): otherwise the last round, with
    # some instances idle, measures how finely the queue divides rather than the pacing.
    per_round = concurrency * batch_size * fanout.RECIPIENTS_PER_BATCH
    recipients = math.ceil(recipients / per_round) * per_round

    ddb = FakeDynamoDB.from_template(template, common.table_names())
    people = [
        {"email": f"reader{n:06d}@example.com", "name": f"Reader {n}", "status": "active", "language": "en"}
        for n in range(recipients)
    ]
    ddb.seed(env["SUBSCRIBERS_TABLE"], common.subscriber_items(list_id, people))
    ddb.seed(
        env["ISSUES_TABLE"], [to_item({"issue_id": issue_id, "sk": "issue", "list_id": list_id, "status": "sending"})]
    )
    from newsletter.store.bucket import prepared_key

    s3 = FakeS3({(env["BUCKET_NAME"], prepared_key(issue_id)): common.json_bytes(prepared)})
    ses = SimulatedSES(rate, LATENCY)
    queue = WorkQueue()
    send_url = env["SEND_QUEUE_URL"]
    # The queue as the fan-out leaves it: its own code, 50 recipients a message.
    filler = FakeSQS({send_url: queue})
    segment = fanout.Segment(issue_id, list_id, 0)
    rows = [(p["email"], p["name"]) for p in people]  # recipients: (address, name)
    for page, i in enumerate(range(0, len(rows), fanout.PAGE_SIZE)):
        fanout.queue_batches(filler, send_url, segment, page, rows[i : i + fanout.PAGE_SIZE])
    batches = len(queue)
    sqs = FakeSQS({send_url: queue})
    clients = Clients(dynamodb=ddb, sesv2=ses, s3=s3, sqs=sqs, ssm=FakeSSM())
    queue_arn = names["SendQueue"]["Arn"]

    invocations: list[tuple[int, float, int, int]] = []
    errors: list[str] = []
    stop = threading.Event()

    def instance(i: int, module) -> None:
        while not stop.is_set():
            messages = queue.receive(batch_size)
            if not messages:
                if queue.idle():
                    return
                time.sleep(0.002)
                continue
            context = FakeContext(f"{common.STACK}-SendFunction", timeout, memory)
            t0 = time.perf_counter()
            try:
                response = module.handler(events.sqs_event(messages, queue_arn=queue_arn), context) or {}
            except Exception as exc:  # noqa: BLE001 - a crashed invocation: SQS redelivers all of it
                errors.append(f"{type(exc).__name__}: {exc}")
                response = {"batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in messages]}
            elapsed = time.perf_counter() - t0
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            queue.settle(messages, failed)
            invocations.append((i, elapsed, len(messages), len(failed)))

    cpu0 = time.process_time()
    try:
        with common.in_process("SendFunction", clients) as sink:
            copies = _handler_copies(concurrency)
            threads = [threading.Thread(target=instance, args=(i, m), name=f"send-{i}") for i, m in enumerate(copies)]
            start = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=max(0.0, DEADLINE_S - (time.monotonic() - start)))
            stuck = any(t.is_alive() for t in threads)
            stop.set()
            for t in threads:
                t.join()
            wall = time.monotonic() - start
    finally:
        for i in range(concurrency):
            sys.modules.pop(f"newsletter.handlers._bench_send_{i}", None)
    cpu = time.process_time() - cpu0

    expected = {p["email"] for p in people}
    accepted = ses.accepted
    lost = len(expected - set(accepted))
    duplicated = sum(c - 1 for c in accepted.values() if c > 1)
    sent = sum(accepted.values())
    span = (ses.accepted_at[-1] - ses.first_call) if sent else float("nan")
    achieved = sent / span if sent else 0.0
    ledger = Counter(i["status"]["S"] for i in ddb.all_items(env["SENDS_TABLE"]))
    times = ses.accepted_at
    # The steady state: the middle 80% of the accepted messages.
    lo, hi = int(len(times) * 0.1), int(len(times) * 0.9) - 1
    steady = (hi - lo) / (times[hi] - times[lo]) if sent > 20 else float("nan")
    cap = ddb.capacity()
    invoked_s = sum(d for _, d, _, _ in invocations)
    share = achieved / rate
    throttle_share = ses.throttled / max(1, ses.calls["SendEmail"])
    met = (
        share >= GOAL_SHARE
        and lost == 0
        and duplicated == 0
        and throttle_share <= GOAL_THROTTLE_SHARE
        and sqs.calls["SendMessage"] == 0
        and not stuck
        and not errors
    )
    per = 1.0 / max(1, sent)
    return common.result(
        "ses_rate",
        round(share, 3),
        "of the allowed SES rate",
        f">= {GOAL_SHARE:.0%} of the allowed rate over the run, 0 lost, 0 duplicated, "
        f"throttles <= {GOAL_THROTTLE_SHARE:.0%} of SES calls and no batch requeued",
        met,
        allowed_per_s=rate,
        achieved_per_s=round(achieved, 1),
        steady_state_per_s=round(steady, 1),
        peak_accepted_in_1s=ses.peak_window,
        instances=concurrency,
        workers_per_instance=_workers(rate / concurrency),
        recipients=recipients,
        batches=batches,
        accepted=sent,
        lost=lost,
        duplicated=duplicated,
        throttles=ses.throttled,
        throttle_share=round(throttle_share, 4),
        requeued_batches=sqs.calls["SendMessage"],
        ledger_states=dict(ledger),
        wall_s=round(wall, 2),
        sending_span_s=round(span, 2),
        stuck=stuck,
        errors=errors[:5],
        invocations=len(invocations),
        invocation_s_total=round(invoked_s, 2),
        billed_ms_per_message=round(invoked_s * 1000 * per, 2),
        cpu_ms_per_message_incl_fakes=round(cpu * 1000 * per, 3),
        ddb_calls_per_recipient={k: round(v * per, 4) for k, v in sorted(cap["calls"].items())},
        ddb_read_units_per_recipient=round(cap["read_units"] * per, 4),
        ddb_write_units_per_recipient=round(cap["write_units"] * per, 4),
        ddb_units_by_table={"read": cap["read_units_by_table"], "write": cap["write_units_by_table"]},
        # The event source mapping's ReceiveMessage and DeleteMessageBatch, one each per invocation.
        sqs_poller_requests_per_recipient=round((queue.receives + len(invocations)) * per, 5),
        sqs_requeue_requests_per_recipient=round(sqs.calls["SendMessage"] * per, 5),
        ses_get_account_calls=ses.calls["GetAccount"],
        s3_gets=s3.calls["GetObject"],
        log_bytes_per_recipient=round(sink.bytes * per, 1),
        log_lines=sink.lines,
        metrics_per_issue=sorted({name for name, dims in sink.metrics if any(d == "issue" for d, _ in dims)}),
        raw_bytes_per_message=round(ses.bytes * per),
    )


def _workers(rate: float) -> int:
    from newsletter.pacing import workers_for

    return workers_for(rate)
