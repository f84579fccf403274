"""Benchmark 5: peak memory of the send function handling a full batch.

A fresh interpreter (bench/_child.py) imports the send handler and handles one SQS event of 10
messages x 50 recipients, all active subscribers, with AWS in memory. Unlike the cold-start
runs, the real boto3 clients are created too (and kept, as the container keeps them), so their
service models count; only the network is missing. The SES quota is set high, so the instance
runs its largest worker pool (pacing.workers_for's bound). Peak RSS is the child's own
high-water mark, the worst of a few runs, beside an interpreter that only imported boto3 after the
same preparation, and the template's MemorySize.

The child reads its peak from /proc/self/status (VmHWM), not from resource.getrusage's
ru_maxrss: on Linux ru_maxrss survives exec, so a child spawned by this (large) benchmark process
reports the parent's size. Both are recorded; ru_maxrss is used where /proc does not exist.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from fakes import events

from . import common
from .coldstart import _load_seed, answered, run_child, targets

MESSAGES, PER_MESSAGE = 10, 50
RUNS = 3
GOAL_MB = 128


def run() -> dict:
    from newsletter import fanout
    from newsletter.pacing import workers_for

    fn = common.functions()["SendFunction"]
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as d:
        tmp = Path(d)
        configs, _ = targets(tmp)
        cfg = _load_seed(configs["SendFunction"])
        env = configs["SendFunction"]["_env"]
        prepared = common.prepared_issue()
        people = [
            {"email": f"memory{n:04d}@example.com", "name": f"Reader {n}", "status": "active", "language": "en"}
            for n in range(MESSAGES * PER_MESSAGE)
        ]
        subscribers = common.table_names()["SubscribersTable"]
        cfg["seed"]["items"][subscribers] = cfg["seed"]["items"].get(subscribers, []) + common.subscriber_items(
            prepared["list_id"], people
        )

        class _Collect:
            bodies: list[str] = []

            def send_message_batch(self, *, QueueUrl, Entries):
                self.bodies.extend(e["MessageBody"] for e in Entries)
                return {"Failed": []}

        collect = _Collect()
        segment = fanout.Segment(prepared["issue_id"], prepared["list_id"], 0)
        fanout.queue_batches(
            collect,
            "send-queue",
            segment,
            0,
            [(p["email"], p["name"]) for p in people],  # (address, name)
        )
        event = events.sqs_event(
            [{"MessageId": f"mem-{i:02d}", "Body": b} for i, b in enumerate(collect.bodies)],
            queue_arn=common.physical_names()["SendQueue"]["Arn"],
        )
        event_path = tmp / "send-full-batch.json"
        event_path.write_text(json.dumps(event))
        cfg.update(event=str(event_path), real_clients=True, after_span=None)
        outs = [run_child(cfg, env, tmp) for _ in range(RUNS)]
        base = run_child({"mode": "baseline", "seed": cfg["seed"]}, env, tmp)
    peak_kb = max(o["peak_rss_kb"] for o in outs)
    peak_mb = peak_kb / 1024
    size = int(fn.get("MemorySize", 128))
    rate = cfg["seed"]["ses_rate"] / common.send_concurrency()
    return common.result(
        "memory",
        round(peak_mb, 1),
        "MB peak RSS (send, full batch)",
        f"<= {GOAL_MB} MB (fits the smallest useful Lambda size), the batch handled",
        # A batch that failed measured the error path, not a full batch's work.
        peak_mb <= GOAL_MB and all(answered(o.get("response")) for o in outs),
        template_memory_size_mb=size,
        share_of_memory_size=round(peak_mb / size, 2),
        python_plus_boto3_mb=round(base["peak_rss_kb"] / 1024, 1),
        ru_maxrss_mb=round(max(o["maxrss_kb"] for o in outs) / 1024, 1),
        batch=f"{len(collect.bodies)} messages x {PER_MESSAGE} recipients",
        responses=[o.get("response") for o in outs],
        workers=workers_for(rate),
        runs_mb=[round(o["peak_rss_kb"] / 1024, 1) for o in outs],
        clients_created=sorted(set(outs[-1].get("services", []))),
        note="includes the in-memory fakes and their seed data (also in the boto3 figure); excludes Lambda's "
        "runtime interface client, which shares the process (a few MB)",
    )
