"""Benchmark 6: what a million emails cost us, beside what SES charges for them.

A small model, fed from what the other benchmarks measured in the same run:
- send side (benchmark 2): DynamoDB read and write units per recipient (subscriber and suppression
  BatchGetItem, ledger claim and settle, issue counters), SQS requests (the event source
  mapping's receive and delete, requeues), billed Lambda time per message, log bytes, metrics;
- fan-out (benchmark 3): SQS and DynamoDB requests and units per 1,000 recipients, CPU;
- per-recipient CPU with the SDK (benchmark 1), and cold starts (benchmark 4);
- feedback (measured here): each sample SES event in events/ run once through the real
  feedback handler against the in-memory DynamoDB, its units, log bytes and CPU counted; the
  mix of events per email is an assumption (below);
- memory sizes from template.yaml.
Prices are parameters per region (list prices as of 2025, no free tiers, first pricing tier); the
page each comes from is named beside it. Assumptions that are not measured are named too.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass

from fakes.clients import Clients
from fakes.dynamodb import FakeDynamoDB, item_size

from . import common

EMAILS = 1_000_000
GOAL_SHARE = 0.03
LAMBDA_FULL_VCPU_MB = 1769


@dataclass(frozen=True)
class Prices:
    lambda_gb_s: float  # "AWS Lambda pricing": duration, x86, first tier, per GB-second
    lambda_request: float  # "AWS Lambda pricing": per request ($0.20 per 1M)
    sqs_request: float  # "Amazon SQS pricing": standard queue, per request (each 64 KB chunk is a request)
    ddb_wru: float  # "Amazon DynamoDB pricing" (on-demand): per write request unit
    ddb_rru: float  # "Amazon DynamoDB pricing" (on-demand): per read request unit
    ddb_storage_gb_month: float  # "Amazon DynamoDB pricing": Standard table class storage, per GB-month
    s3_get: float  # "Amazon S3 pricing": S3 Standard GET, per request ($0.0004 per 1,000)
    s3_put: float  # "Amazon S3 pricing": S3 Standard PUT, per request ($0.005 per 1,000)
    sns_publish: float  # "Amazon SNS pricing": per publish ($0.50 per 1M); delivery to SQS has no charge
    logs_gb: float  # "Amazon CloudWatch pricing": Logs, standard ingestion, per GB
    metric_month: float  # "Amazon CloudWatch pricing": custom metric, per metric-month (prorated by the hour)
    ses_message: float  # "Amazon SES pricing": outbound email, per message ($0.10 per 1,000)


PRICES = {
    "us-east-1": Prices(
        lambda_gb_s=0.0000166667,
        lambda_request=0.20e-6,
        sqs_request=0.40e-6,
        ddb_wru=0.625e-6,
        ddb_rru=0.125e-6,
        ddb_storage_gb_month=0.25,
        s3_get=0.0004e-3,
        s3_put=0.005e-3,
        sns_publish=0.50e-6,
        logs_gb=0.50,
        metric_month=0.30,
        ses_message=0.10e-3,
    ),
    # Europe (Ireland). DynamoDB on-demand: the Ireland list prices ($1.4135 per 1M WRU, $0.283 per
    # 1M RRU) halved by the November 2024 on-demand price cut; storage $0.283 per GB-month; Logs
    # ingestion $0.57 per GB. The other prices are the same as us-east-1. Check these against the
    # pricing pages before quoting them.
    "eu-west-1": Prices(
        lambda_gb_s=0.0000166667,
        lambda_request=0.20e-6,
        sqs_request=0.40e-6,
        ddb_wru=0.70675e-6,
        ddb_rru=0.1415e-6,
        ddb_storage_gb_month=0.283,
        s3_get=0.0004e-3,
        s3_put=0.005e-3,
        sns_publish=0.50e-6,
        logs_gb=0.57,
        metric_month=0.30,
        ses_message=0.10e-3,
    ),
}

# --- assumptions (not measured) ----------------------------------------------------------------

# SES events per email sent. The configuration set publishes every event type to SNS (template:
# MatchingEventTypes); each becomes an SNS publish, an SQS message and work for the feedback
# function. Opens and clicks depend on the audience (and on image loading); a bounce rate near
# 2% and complaints near 0.05% are what SES tolerates without review.
FEEDBACK_MIX = {
    "send": 1.0,
    "delivery": 0.97,
    "open": 0.25,
    "click": 0.04,
    "bounce-permanent": 0.015,
    "bounce-transient": 0.005,
    "complaint": 0.0005,
    "delivery-delay": 0.01,
    "reject": 0.0005,
    "rendering-failure": 0.0,
}
# The configuration set's name for each kind above (template: MatchingEventTypes).
SES_EVENT_TYPE = {
    "send": "send",
    "delivery": "delivery",
    "open": "open",
    "click": "click",
    "bounce-permanent": "bounce",
    "bounce-transient": "bounce",
    "complaint": "complaint",
    "delivery-delay": "deliveryDelay",
    "reject": "reject",
    "rendering-failure": "renderingFailure",
}


def published_event_types(parameters: dict | None = None) -> set[str]:
    """The event types the template's configuration set publishes with its default parameters."""
    from devstack import template as tpl

    template = tpl.load()
    resolver = tpl.Resolver(template, parameters or {}, {})
    dest = tpl.resources(template, "AWS::SES::ConfigurationSetEventDestination")
    return {
        t
        for res in dest.values()
        for t in resolver.resolve(res["Properties"]["EventDestination"]["MatchingEventTypes"])
    }


DDB_LATENCY_S = 0.008  # one DynamoDB round trip inside a region, for feedback durations
PLATFORM_LOG_BYTES = 450  # START, END and REPORT lines (with the X-Ray trace id) per invocation
FEEDBACK_METRIC_HOURS = 72  # feedback (opens, clicks, late bounces) keeps an issue's metrics alive this long
PUBLISH_SECONDS = 3.0  # one publish invocation per issue: cold start, render, three S3 calls
ESM_IDLE_REQUESTS_PER_MONTH = 5 * 3 * 60 * 730  # an SQS event source idles with ~5 pollers, 20 s long polls
ALARM_MONTH = 0.10  # "Amazon CloudWatch pricing": standard-resolution metric alarm, per alarm-month
MONTH_HOURS = 730
DDB_ITEM_OVERHEAD = 100  # bytes DynamoDB adds to every item for storage


# --- feedback, measured ------------------------------------------------------------------------


def measure_feedback() -> dict:
    """Each sample SES event through the real feedback handler, on a fresh in-memory DynamoDB."""
    from devstack.stack import FakeContext
    from newsletter.store import to_item

    names = common.table_names()
    prepared = common.prepared_issue()
    issue_id, list_id = prepared["issue_id"], prepared["list_id"]
    fn = common.functions().get("FeedbackFunction")
    if fn is None:
        return {"measured": False, "why": "no FeedbackFunction in template.yaml"}
    out: dict[str, dict] = {}
    metrics: set[str] = set()
    service: set[str] = set()
    retention_days: dict[str, float] = {}
    for kind in FEEDBACK_MIX:
        path = common.EVENTS / f"sqs-feedback-event-{kind}.json"
        if not path.exists():
            continue
        event = json.loads(path.read_text())
        body = json.loads(event["Records"][0]["body"])
        ses_event = json.loads(body["Message"]) if "Message" in body else body
        address = ses_event["mail"]["destination"][0]

        def fresh() -> FakeDynamoDB:
            ddb = FakeDynamoDB.from_template(common.template(), names)
            ddb.seed(
                names["IssuesTable"],
                [
                    to_item(
                        {
                            "issue_id": issue_id,
                            "sk": "issue",
                            "list_id": list_id,
                            "status": "sending",
                            "queued": 1000,
                            "sent": 1000,
                        }
                    )
                ],
            )
            ddb.seed(
                names["SubscribersTable"],
                common.subscriber_items(
                    list_id, [{"email": address, "name": "", "status": "active", "language": "en"}]
                ),
            )
            ddb.seed(
                names["SendsTable"],
                [
                    to_item(
                        {
                            "issue_id": issue_id,
                            "email": address,
                            "status": "sent",
                            "at": 1,
                            "message_id": ses_event["mail"]["messageId"],
                        }
                    )
                ],
            )
            return ddb

        import newsletter.handlers.feedback as handler_module

        ddb = fresh()
        with common.in_process("FeedbackFunction", Clients(dynamodb=ddb)) as sink:
            handler_module.handler(event, FakeContext("feedback", int(fn["Timeout"]), int(fn["MemorySize"])))
        cpu = []
        for _ in range(5):
            timed = fresh()
            with common.in_process("FeedbackFunction", Clients(dynamodb=timed)):
                c0 = time.process_time()
                handler_module.handler(event, FakeContext("feedback", int(fn["Timeout"]), int(fn["MemorySize"])))
                cpu.append(time.process_time() - c0)
        cap = ddb.capacity()
        now = time.time()
        for item in ddb.all_items(names["FeedbackTable"]) if "FeedbackTable" in names else []:
            if "expires_at" in item:
                retention_days[kind] = max(retention_days.get(kind, 0.0), (int(item["expires_at"]["N"]) - now) / 86400)
        out[kind] = {
            "calls": sum(cap["calls"].values()),
            "calls_by_op": cap["calls"],
            "read_units": cap["read_units"],
            "write_units": cap["write_units"],
            "log_bytes": sink.bytes,
            "cpu_ms": round(min(cpu) * 1000, 3),
            "stored_bytes": sum(item_size(i) + DDB_ITEM_OVERHEAD for i in ddb.all_items(names["FeedbackTable"]))
            if "FeedbackTable" in names
            else 0,
        }
        metrics |= {name for name, dims in sink.metrics if any(d == "issue" for d, _ in dims)}
        service |= {name for name, dims in sink.metrics if not any(d == "issue" for d, _ in dims)}
    # A notification the function dropped costs nothing, and would make the model a lie.
    dropped = service & {"FeedbackUntrusted", "FeedbackMalformed", "FeedbackUnknown"}
    if dropped:
        raise RuntimeError(f"the feedback function dropped the sample events ({', '.join(sorted(dropped))})")
    return {
        "measured": True,
        "by_event": out,
        "metrics_per_issue": sorted(metrics),
        "service_metrics": sorted(service),
        "retention_days": retention_days,
    }


def ledger_item_bytes() -> int:
    """A settled send-ledger item, as the ledger writes it (claim, then settle 'sent')."""
    from newsletter.store import ledger

    names = common.table_names()
    ddb = FakeDynamoDB.from_template(common.template(), names)
    address = "reader000001@example.com"
    now = int(time.time())
    ledger.claim(
        ddb,
        names["SendsTable"],
        "2015-07",
        address,
        claim_id="0" * 32,
        status="sending",
        now=now,
        until=now + 60,
        batch_id="00-000000-00",
    )
    ledger.settle(
        ddb,
        names["SendsTable"],
        "2015-07",
        address,
        "0" * 32,
        "sent",
        now,
        message_id="0100014e4c9a3b1d-bbbbbbbb-0004-4e9a-8c2f-1d5e7a9b3c4d-000000",
    )
    return item_size(ddb.all_items(names["SendsTable"])[0])


# --- the model ---------------------------------------------------------------------------------


@dataclass
class Inputs:
    emails: int
    list_size: int
    ses_rate: float
    instances: int
    send_memory_mb: int
    fanout_memory_mb: int
    publish_memory_mb: int
    feedback_memory_mb: int
    send_batch_messages: int
    recipients_per_message: int
    send_billed_s_per_msg: float
    send_cpu_s_per_msg_full_core: float
    send_ddb_rru: float
    send_ddb_wru: float
    send_sqs_requests: float
    send_log_bytes: float
    send_invocations_per_msg: float
    send_metrics: int
    fanout_sqs_per_1000: float
    fanout_ddb_rru_per_1000: float
    fanout_ddb_wru_per_1000: float
    fanout_s_per_1000: float
    ledger_item_bytes: int
    ledger_retention_days: float
    feedback_events_per_email: float
    feedback_rru_per_email: float
    feedback_wru_per_email: float
    feedback_s_per_email: float
    feedback_log_bytes_per_email: float
    feedback_stored_byte_days_per_email: float
    feedback_metrics: int
    other_metrics_per_issue: int


def model(i: Inputs, p: Prices) -> list[dict]:
    """Cost lines for `i.emails` emails: what, which service, how many, at what price, total."""
    issues = i.emails / i.list_size
    lines: list[dict] = []

    def line(component: str, service: str, quantity: float, unit: str, price: float) -> None:
        lines.append(
            {"component": component, "service": service, "quantity": quantity, "unit": unit, "cost": quantity * price}
        )

    gb = lambda mb: mb / 1024  # noqa: E731
    # SES itself.
    line("SES outbound email", "SES", i.emails, "messages", p.ses_message)
    # Send function.
    send_inv = i.emails * i.send_invocations_per_msg
    line("send: Lambda requests", "Lambda", send_inv, "requests", p.lambda_request)
    line(
        "send: Lambda duration",
        "Lambda",
        i.emails * i.send_billed_s_per_msg * gb(i.send_memory_mb),
        "GB-s",
        p.lambda_gb_s,
    )
    line("send: DynamoDB reads (status, suppression)", "DynamoDB", i.emails * i.send_ddb_rru, "RRU", p.ddb_rru)
    line(
        "send: DynamoDB writes (ledger claim+settle, counters)", "DynamoDB", i.emails * i.send_ddb_wru, "WRU", p.ddb_wru
    )
    line(
        "send: SQS (poller receive+delete, requeues)", "SQS", i.emails * i.send_sqs_requests, "requests", p.sqs_request
    )
    line(
        "send: ledger storage over its TTL",
        "DynamoDB",
        i.emails * (i.ledger_item_bytes + DDB_ITEM_OVERHEAD) / 1e9 * i.ledger_retention_days / 30.4,
        "GB-months",
        p.ddb_storage_gb_month,
    )
    # Fan-out.
    k = i.emails / 1000
    line("fan-out: SQS SendMessageBatch", "SQS", k * i.fanout_sqs_per_1000, "requests", p.sqs_request)
    line("fan-out: DynamoDB reads (query, suppression)", "DynamoDB", k * i.fanout_ddb_rru_per_1000, "RRU", p.ddb_rru)
    line("fan-out: DynamoDB writes (page markers)", "DynamoDB", k * i.fanout_ddb_wru_per_1000, "WRU", p.ddb_wru)
    line("fan-out: Lambda duration", "Lambda", k * i.fanout_s_per_1000 * gb(i.fanout_memory_mb), "GB-s", p.lambda_gb_s)
    line(
        "fan-out: Lambda requests and segment messages",
        "Lambda+SQS",
        issues * 16,
        "segments",
        p.lambda_request + 3 * p.sqs_request,
    )
    # Publish, once per issue.
    line("publish: Lambda", "Lambda", issues * PUBLISH_SECONDS * gb(i.publish_memory_mb), "GB-s", p.lambda_gb_s)
    line("publish: S3 GET issue, PUT web page and message", "S3", issues, "issues", p.s3_get + 2 * p.s3_put)
    line(
        "send: S3 GET message.json per container",
        "S3",
        issues * i.instances * max(1, math.ceil(i.emails / issues / i.ses_rate / 3600)),
        "requests",
        p.s3_get,
    )
    # Feedback.
    ev = i.emails * i.feedback_events_per_email
    line("feedback: SNS publishes", "SNS", ev, "publishes", p.sns_publish)
    line("feedback: SQS poller receive+delete", "SQS", ev * 2 / 10, "requests", p.sqs_request)
    # Assumed: SNS's delivery into the queue is billed to the queue's owner as a request.
    line("feedback: SQS message delivered by SNS (assumed billed)", "SQS", ev, "requests", p.sqs_request)
    line("feedback: Lambda requests", "Lambda", ev / 10, "requests", p.lambda_request)
    line(
        "feedback: Lambda duration",
        "Lambda",
        i.emails * i.feedback_s_per_email * gb(i.feedback_memory_mb),
        "GB-s",
        p.lambda_gb_s,
    )
    line("feedback: DynamoDB reads", "DynamoDB", i.emails * i.feedback_rru_per_email, "RRU", p.ddb_rru)
    line(
        "feedback: DynamoDB writes (seen markers, counters, suppressions)",
        "DynamoDB",
        i.emails * i.feedback_wru_per_email,
        "WRU",
        p.ddb_wru,
    )
    line(
        "feedback: table storage over its TTL",
        "DynamoDB",
        i.emails * i.feedback_stored_byte_days_per_email / 1e9 / 30.4,
        "GB-months",
        p.ddb_storage_gb_month,
    )
    # Observability.
    invocations = send_inv + ev / 10 + issues * 17
    log_bytes = i.emails * (i.send_log_bytes + i.feedback_log_bytes_per_email) + invocations * PLATFORM_LOG_BYTES
    line(
        "CloudWatch Logs ingestion (function logs, EMF, platform lines)", "CloudWatch", log_bytes / 1e9, "GB", p.logs_gb
    )
    send_hours = math.ceil(i.list_size / i.ses_rate / 3600) + 1
    metric_hours = (
        i.send_metrics * send_hours + i.feedback_metrics * FEEDBACK_METRIC_HOURS + i.other_metrics_per_issue * 1
    )
    line(
        "EMF custom metrics (issue dimension, prorated hourly)",
        "CloudWatch",
        issues * metric_hours / MONTH_HOURS,
        "metric-months",
        p.metric_month,
    )
    return lines


def fixed_monthly(p: Prices, service_metrics: int) -> list[dict]:
    """What the stack costs each month whatever it sends: alarms, idle queue polling, service metrics."""
    resources = common.template()["Resources"].values()
    alarms = sum(1 for r in resources if r.get("Type") == "AWS::CloudWatch::Alarm")
    pollers = sum(
        1 for f in common.functions().values() for e in (f.get("Events") or {}).values() if e.get("Type") == "SQS"
    )
    return [
        {"component": f"{alarms} CloudWatch alarms", "cost": alarms * ALARM_MONTH},
        {
            "component": f"{pollers} SQS event sources polling while idle",
            "cost": pollers * ESM_IDLE_REQUESTS_PER_MONTH * p.sqs_request,
        },
        {
            "component": f"{service_metrics} service metrics (no issue dimension)",
            "cost": service_metrics * p.metric_month,
        },
    ]


def totals(lines: list[dict]) -> dict:
    ses = sum(l["cost"] for l in lines if l["service"] == "SES")
    ours = sum(l["cost"] for l in lines if l["service"] != "SES")
    by_service: Counter = Counter()
    for l in lines:
        if l["service"] != "SES":
            by_service[l["service"]] += l["cost"]
    return {"ses": ses, "ours": ours, "share": ours / ses, "by_service": dict(by_service)}


def inputs_from(results: dict[str, dict], feedback: dict, parameters: dict | None = None) -> Inputs:
    fns = common.functions()
    rate = results["ses_rate"]["details"]
    fan = results["fanout_scale"]["details"]
    per = results["per_recipient"]["details"]
    send_props = fns["SendFunction"]
    source = next(e["Properties"] for e in send_props["Events"].values() if e["Type"] == "SQS")
    mem = lambda name, default=256: int(fns.get(name, {}).get("MemorySize", default))  # noqa: E731
    ddb_calls = rate["ddb_calls_per_recipient"]
    fb_mem = mem("FeedbackFunction")
    fb_share = fb_mem / LAMBDA_FULL_VCPU_MB
    sdk_per_call_s = (
        max(0.0, per["with_sdk_cpu_us_per_recipient"] - per["fast_cpu_us_per_msg"])
        / 1e6
        / max(1.0, sum(ddb_calls.values()) + 1)
    )  # the recipient's DynamoDB calls plus its SendEmail
    by_event = feedback.get("by_event", {}) if feedback.get("measured") else {}
    published = published_event_types(parameters)
    mix = {k: v for k, v in FEEDBACK_MIX.items() if k in by_event and SES_EVENT_TYPE[k] in published}
    per_email = lambda key: sum(w * by_event[k][key] for k, w in mix.items())  # noqa: E731
    fb_seconds = sum(
        w
        * (
            (by_event[k]["cpu_ms"] / 1000 + by_event[k]["calls"] * sdk_per_call_s) / fb_share
            + by_event[k]["calls"] * DDB_LATENCY_S
        )
        for k, w in mix.items()
    )
    retention = max(feedback.get("retention_days", {}).values(), default=30.0)
    fan_memory = mem("FanoutFunction", 512)
    fan_s_per_1000 = (fan["cpu_ms_per_1000"] / 1000) / (fan_memory / LAMBDA_FULL_VCPU_MB) + fan[
        "segment_io_estimate_s"
    ] * fan["segments"] / fan["queued"] * 1000
    from newsletter.store.ledger import TTL_DAYS

    return Inputs(
        emails=EMAILS,
        list_size=1_000_000,
        ses_rate=rate["allowed_per_s"],
        instances=rate["instances"],
        send_memory_mb=mem("SendFunction"),
        fanout_memory_mb=fan_memory,
        publish_memory_mb=mem("PublishFunction", 512),
        feedback_memory_mb=fb_mem,
        send_batch_messages=int(source.get("BatchSize", 10)),
        recipients_per_message=50,
        send_billed_s_per_msg=rate["billed_ms_per_message"] / 1000,
        send_cpu_s_per_msg_full_core=per["with_sdk_cpu_us_per_recipient"] / 1e6,
        send_ddb_rru=rate["ddb_read_units_per_recipient"],
        send_ddb_wru=rate["ddb_write_units_per_recipient"],
        send_sqs_requests=rate["sqs_poller_requests_per_recipient"] + rate["sqs_requeue_requests_per_recipient"],
        send_log_bytes=rate["log_bytes_per_recipient"],
        send_invocations_per_msg=rate["invocations"] / max(1, rate["accepted"]),
        send_metrics=len(rate.get("metrics_per_issue", [])),
        fanout_sqs_per_1000=results["fanout_scale"]["figure"],
        fanout_ddb_rru_per_1000=fan["ddb_read_units_per_1000"],
        fanout_ddb_wru_per_1000=fan["ddb_write_units_per_1000"],
        fanout_s_per_1000=fan_s_per_1000,
        ledger_item_bytes=ledger_item_bytes(),
        ledger_retention_days=TTL_DAYS,
        feedback_events_per_email=sum(mix.values()),
        feedback_rru_per_email=per_email("read_units"),
        feedback_wru_per_email=per_email("write_units"),
        feedback_s_per_email=fb_seconds,
        feedback_log_bytes_per_email=per_email("log_bytes"),
        feedback_stored_byte_days_per_email=per_email("stored_bytes") * retention,
        feedback_metrics=len(feedback.get("metrics_per_issue", [])),
        other_metrics_per_issue=2,  # RecipientsQueued (fan-out), PublishPublished (publish)
    )


def run(results: dict[str, dict]) -> dict:
    missing = [n for n in ("per_recipient", "ses_rate", "fanout_scale") if n not in results]
    if missing:
        return common.result(
            "cost",
            None,
            "% of SES cost",
            f"ours < {GOAL_SHARE:.0%} of SES's",
            False,
            error=f"needs the results of {', '.join(missing)}",
        )
    feedback = measure_feedback()
    base = inputs_from(results, feedback)
    breakdown, summary, monthly = {}, {}, {}
    for region, prices in PRICES.items():
        fixed = fixed_monthly(prices, len(feedback.get("service_metrics", [])))
        monthly[region] = {
            "lines": [{**f, "cost": round(f["cost"], 3)} for f in fixed],
            "total_usd": round(sum(f["cost"] for f in fixed), 2),
        }
        lines = model(base, prices)
        breakdown[region] = [{**l, "cost": round(l["cost"], 4), "quantity": round(l["quantity"], 3)} for l in lines]
        t = totals(lines)
        summary[region] = {
            "ses_usd": round(t["ses"], 2),
            "ours_usd": round(t["ours"], 2),
            "share": round(t["share"], 4),
            "by_service_usd": {k: round(v, 3) for k, v in sorted(t["by_service"].items(), key=lambda kv: -kv[1])},
        }
    worst = max(s["share"] for s in summary.values())
    # How the share moves with what this run did not measure.
    us = PRICES["us-east-1"]
    scenarios = {}
    engaged = inputs_from(results, feedback, {"TrackEngagement": "true"})
    for name, change in {
        "list of 10,000 (100 issues per million)": {"list_size": 10_000},
        "SES rate 14/s, 5 instances (new account)": {
            "ses_rate": 14.0,
            "send_billed_s_per_msg": base.send_billed_s_per_msg * base.ses_rate / 14.0,
        },
        "TrackEngagement=true (delivery, open and click events published)": asdict(engaged),
        "TrackEngagement=true, list of 10,000": {**asdict(engaged), "list_size": 10_000},
        "list of 10,000, metrics without the issue dimension": {
            "list_size": 10_000,
            "send_metrics": 0,
            "feedback_metrics": 0,
            "other_metrics_per_issue": 0,
        },
    }.items():
        changed = Inputs(**{**asdict(base), **change})
        scenarios[name] = round(totals(model(changed, us))["share"], 4)
    lambda_share = base.send_memory_mb / LAMBDA_FULL_VCPU_MB
    return common.result(
        "cost",
        round(worst * 100, 2),
        "% of SES's cost (worst region)",
        f"all of ours < {GOAL_SHARE:.0%} of SES's own cost per million emails",
        worst < GOAL_SHARE,
        emails=EMAILS,
        summary=summary,
        breakdown=breakdown,
        fixed_monthly=monthly,
        scenarios_us_east_1_share=scenarios,
        inputs={k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(base).items()},
        feedback_measured=feedback,
        send_cpu_bound_msgs_per_s_per_instance=round(lambda_share / base.send_cpu_s_per_msg_full_core, 1),
        assumptions={
            "feedback_mix_per_email": FEEDBACK_MIX,
            "ddb_latency_s": DDB_LATENCY_S,
            "platform_log_bytes": PLATFORM_LOG_BYTES,
            "feedback_metric_hours": FEEDBACK_METRIC_HOURS,
            "publish_seconds": PUBLISH_SECONDS,
            "tracing": "off (nothing traces; no X-Ray charge)",
            "free_tiers": "ignored",
            "lambda_cpu": f"{LAMBDA_FULL_VCPU_MB} MB = 1 vCPU, this machine's core = 1 vCPU",
        },
    )


def table(result: dict, region: str = "us-east-1") -> list[str]:
    """The breakdown as text lines, largest first."""
    d = result["details"]
    if "breakdown" not in d:
        return [f"cost: {d.get('error')}"]
    rows = sorted(d["breakdown"][region], key=lambda l: -l["cost"])
    out = [
        f"Cost per {d['emails']:,} emails, {region} (list prices, no free tiers):",
        f"  {'component':64} {'quantity':>16} {'unit':<12} {'USD':>10}",
    ]
    for l in rows:
        out.append(f"  {l['component'][:64]:64} {l['quantity']:>16,.1f} {l['unit']:<12} {l['cost']:>10.4f}")
    for reg, s in d["summary"].items():
        out.append(
            f"  {reg}: SES ${s['ses_usd']:.2f}, ours ${s['ours_usd']:.2f} = {s['share']:.2%} of SES "
            f"({', '.join(f'{k} ${v:.2f}' for k, v in s['by_service_usd'].items())})"
        )
    for name, share in d["scenarios_us_east_1_share"].items():
        out.append(f"  if {name}: {share:.2%}")
    fixed = d["fixed_monthly"][region]
    parts = "; ".join(f"{f['component']} ${f['cost']:.2f}" for f in fixed["lines"])
    out.append(f"  fixed, per month, whatever is sent ({region}): ${fixed['total_usd']:.2f} ({parts})")
    return out
