"""Benchmark 3: fanning out a list of 1,000,000 subscribers.

The real fan-out code (`newsletter.fanout.fan_out`) over 16 segments (one per subscriber shard)
of a simulated list, against fakes/'s FakeDynamoDB (the template's tables) and FakeSQS as in
tests/test_fanout.py (every 97th subscriber inactive, 1,000 suppressed). Each segment runs as one
invocation with a real clock and Lambda's 900 s budget (it would continue itself with less than a
minute left). Measured: CPU seconds (time.process_time) of the fan-out alone, the API requests per
1,000 recipients queued, and the CPU of the biggest segment against the 900 s limit, also scaled
to the CPU share Lambda gives the function's memory size (1,769 MB = one vCPU).
"""

from __future__ import annotations

import collections
import gc
import json
import math
import time

from fakes.dynamodb import FakeDynamoDB, item_size
from fakes.sqs import FakeSQS

from . import common

TOTAL = 1_000_000
TABLES = {
    "IssuesTable": "issues",
    "SubscribersTable": "subscribers",
    "SuppressionsTable": "suppressions",
    "SendsTable": "sends",
}
GOAL_SQS_PER_1000 = 2.5
GOAL_SEGMENT_SHARE = 0.10  # "well within": a tenth of the 900 s limit, at Lambda's CPU share
LAMBDA_FULL_VCPU_MB = 1769
# Assumed round trips inside a region (not measured here: no network), to estimate wall time.
ASSUMED_LATENCY_S = {
    "Query": 0.020,
    "BatchGetItem": 0.012,
    "TransactWriteItems": 0.015,
    "GetItem": 0.006,
    "SendMessageBatch": 0.020,
    "SendMessage": 0.010,
}


def run(total: int = TOTAL) -> dict:
    from newsletter.config import FanoutSettings
    from newsletter.fanout import PAGE_SIZE, fan_out
    from newsletter.queue_messages import Segment, parse_fanout
    from newsletter.store import to_item
    from newsletter.store.subscribers import SHARDS
    from newsletter.telemetry import logger

    fn = common.functions()["FanoutFunction"]
    memory, timeout = int(fn["MemorySize"]), int(fn["Timeout"])
    t_setup = time.perf_counter()
    addresses = [f"u{n:07d}@example.com" for n in range(total)]
    suppressed = set(addresses[5::1000])
    ddb = FakeDynamoDB.from_template(common.template(), TABLES)
    ddb.seed_subscribers("subscribers", "big", addresses, inactive_every=97)
    ddb.seed("suppressions", [{"email": {"S": a}, "reason": {"S": "bounce"}} for a in sorted(suppressed)])
    ddb.seed("issues", [to_item({"issue_id": "big-1", "sk": "issue", "list_id": "big", "status": "sending"})])
    sqs = FakeSQS()
    settings = FanoutSettings("issues", "subscribers", "suppressions", "send-queue", "fanout-queue", "sends")
    setup_s = time.perf_counter() - t_setup

    cpu_by_shard: dict[int, float] = collections.defaultdict(float)
    wall_by_shard: dict[int, float] = collections.defaultdict(float)
    pages_by_shard: dict[int, int] = collections.defaultdict(int)
    invocations = 0
    pending = [Segment("big-1", "big", shard).to_message() for shard in range(SHARDS)]
    # The million items stand for DynamoDB's, not the function's memory: they are kept out of
    # the cyclic garbage collector's passes, which would charge their traversal to a segment.
    gc.collect()
    gc.freeze()
    try:
        cpu0 = time.process_time()
        while pending:
            segment = parse_fanout(pending.pop(0))
            deadline = time.monotonic() + timeout
            c0, w0 = time.process_time(), time.perf_counter()
            progress = fan_out(
                segment,
                settings=settings,
                ddb=ddb,
                sqs=sqs,
                time_left_ms=lambda: int((deadline - time.monotonic()) * 1000),
                logger=logger,
            )
            cpu_by_shard[segment.shard] += time.process_time() - c0
            wall_by_shard[segment.shard] += time.perf_counter() - w0
            pages_by_shard[segment.shard] += progress.pages
            invocations += 1
            pending.extend(sqs.take("fanout-queue"))
        cpu = time.process_time() - cpu0
    finally:
        gc.unfreeze()

    bodies = sqs.bodies("send-queue")
    queued = [r["email"] for b in bodies for r in json.loads(b)["recipients"]]
    expected = sum(1 for n, a in enumerate(addresses) if n % 97 and a not in suppressed)
    duplicates = len(queued) - len(set(queued))
    per_k = 1000 / len(queued)
    sqs_requests = sqs.calls["SendMessageBatch"] + sqs.calls["SendMessage"]
    ddb_requests = sum(ddb.calls.values())
    biggest = max(cpu_by_shard, key=cpu_by_shard.get)
    cpu_share = memory / LAMBDA_FULL_VCPU_MB
    biggest_lambda_cpu = cpu_by_shard[biggest] / cpu_share
    shard_calls = {k: v / SHARDS for k, v in {**ddb.calls, **sqs.calls}.items()}
    io_estimate = sum(ASSUMED_LATENCY_S.get(k, 0.01) * v for k, v in shard_calls.items())

    # Capacity, for the cost model: the subscriber item as put_subscribers writes it.
    sample = common.subscriber_items("infomail", common.subscribers_from_csv()[:200])
    avg_item = sum(item_size(i) for i in sample) / len(sample)
    scanned_per_page = PAGE_SIZE
    query_rru = ddb.calls["Query"] * math.ceil(scanned_per_page * avg_item / 4096) * 0.5  # eventually consistent
    bgi_rru = len(queued) * 0.5 + len(suppressed) * 0.5  # every key asked costs at least half a unit
    getitem_rru = ddb.calls["GetItem"] * 1.0
    twi_wru = ddb.calls["TransactWriteItems"] * 2 * 2  # two small items, transactional (double)
    max_body = max(len(b.encode()) for b in bodies)
    chunks_per_request = math.ceil(10 * max_body / 65536)

    sqs_per_k = sqs_requests * per_k
    segment_ok = biggest_lambda_cpu <= GOAL_SEGMENT_SHARE * 900
    met = sqs_per_k <= GOAL_SQS_PER_1000 and segment_ok and len(queued) == expected and duplicates == 0
    return common.result(
        "fanout_scale",
        round(sqs_per_k, 3),
        "SQS requests per 1,000 recipients",
        f"<= {GOAL_SQS_PER_1000} SQS requests per 1,000 queued; biggest segment's CPU (at Lambda's {memory} MB share) "
        f"<= {GOAL_SEGMENT_SHARE:.0%} of 900 s",
        met,
        subscribers=total,
        queued=len(queued),
        expected=expected,
        duplicates=duplicates,
        segments=SHARDS,
        invocations=invocations,
        cpu_s=round(cpu, 2),
        cpu_ms_per_1000=round(cpu * 1000 * per_k, 2),
        ddb_requests_per_1000=round(ddb_requests * per_k, 2),
        ddb_calls=dict(ddb.calls),
        sqs_calls=dict(sqs.calls),
        sqs_64kb_chunks_per_request=chunks_per_request,
        largest_send_message_bytes=max_body,
        biggest_segment={
            "shard": biggest,
            "cpu_s": round(cpu_by_shard[biggest], 2),
            "wall_s": round(wall_by_shard[biggest], 2),
            "pages": pages_by_shard[biggest],
        },
        biggest_segment_lambda_cpu_s=round(biggest_lambda_cpu, 1),
        lambda_cpu_share=f"{memory} MB = {cpu_share:.2f} vCPU",
        segment_io_estimate_s=round(io_estimate, 1),
        segment_io_assumption={k: f"{v * 1000:.0f} ms" for k, v in ASSUMED_LATENCY_S.items()},
        limit_s=900,
        ddb_read_units_per_1000=round((query_rru + bgi_rru + getitem_rru) * per_k, 2),
        ddb_write_units_per_1000=round(twi_wru * per_k, 3),
        avg_subscriber_item_bytes=round(avg_item),
        setup_s=round(setup_s, 1),
        note="CPU includes the in-memory fakes (not the garbage collector's passes over their million items) and "
        "excludes botocore's (de)serialisation of real responses",
    )
