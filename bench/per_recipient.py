"""Benchmark 1: the sender's inner loop per recipient, fast path against the naive way.

Fast (what `sending._send_one` does between the ledger writes): `tokens.sign`,
`MessageTemplate.render` (the issue's message encoded once), and the SES v2 `send_email` request
handed to a stub client. Naive: per recipient a full Jinja2 render of the issue
(`render.render_issue`, CSS inlining included), the recipient's values spliced in
(`personalize.Splice`), and the whole stdlib `email` build (`message.build`); then the same
request. Single thread; best of a few repeats; the naive side is kept short.

Beside the figure, what the rest of a recipient costs in the SDK: the real boto3 clients
serialising, signing and parsing the recipient's calls (ledger claim and settle, SendEmail with
the raw message, a fiftieth of the BatchGetItem), with the HTTP exchange replaced by canned
responses. That is the CPU a send function spends per recipient besides the fast path.
"""

from __future__ import annotations

import gc
import json
import time

from . import common

FAST_N, FAST_REPEATS = 20_000, 5
NAIVE_N, NAIVE_REPEATS = 200, 3
SDK_N = 300
GOAL_RATIO, GOAL_FAST = 40.0, 10_000.0
GOAL_LANGUAGES = 0.90  # a three-language issue: per-recipient throughput within 10% of one language
BATCH = 50  # the fan-out's recipients per message: one language per batch


class StubSES:
    """send_email that only looks at its request, as a client stub would."""

    def __init__(self):
        self.sent = 0
        self.bytes = 0

    def send_email(self, *, Destination, Content, ConfigurationSetName, EmailTags):
        self.sent += 1
        self.bytes += len(Content["Raw"]["Data"])
        return {"MessageId": "0100-bench"}


def recipients(n: int) -> list[tuple[str, str]]:
    names = ["Reader", "Zoë Müller", "", "José Álvarez", "Łukasz Wiśniewski"]
    return [(f"reader{i:07d}@example.com", names[i % len(names)]) for i in range(n)]


def _request(ses, address: str, raw: bytes, issue_id: str, list_id: str, config_set: str):
    return ses.send_email(
        Destination={"ToAddresses": [address]},
        Content={"Raw": {"Data": raw}},
        ConfigurationSetName=config_set,
        EmailTags=[{"Name": "issue", "Value": issue_id}, {"Name": "list", "Value": list_id}],
    )


def _best_rate(loop, n: int, repeats: int) -> tuple[float, float]:
    """(best messages/s by wall clock, CPU seconds per message of that repeat)."""
    best, best_cpu = 0.0, 0.0
    for _ in range(repeats):
        gc.collect()
        w0, c0 = time.perf_counter(), time.process_time()
        loop()
        w, c = time.perf_counter() - w0, time.process_time() - c0
        if n / w > best:
            best, best_cpu = n / w, c / n
    return best, best_cpu


def run() -> dict:
    from newsletter import message, tokens
    from newsletter.issue import parse_document
    from newsletter.message import MessageTemplate, PreparedIssue
    from newsletter.personalize import Splice
    from newsletter.render import render_issue

    env = common.functions()["SendFunction"]["env"]
    base_url, mailbox, config_set = env["UNSUBSCRIBE_BASE_URL"], env["UNSUBSCRIBE_MAILTO"], env["CONFIGURATION_SET"]
    data = common.prepared_issue()
    prepared = PreparedIssue.from_json(data)
    secret = common.SECRET.encode()
    issue_id, list_id = prepared.issue_id, prepared.list_id
    template = MessageTemplate(prepared, base_url=base_url, mailbox=mailbox)
    ses = StubSES()

    people = recipients(FAST_N)

    def fast():
        sign, render = tokens.sign, template.render
        for address, name in people:
            raw = render(address=address, name=name, token=sign(secret, list_id, address))
            _request(ses, address, raw, issue_id, list_id, config_set)

    # The same readers, for an issue in three languages: each batch of 50 gets one language's
    # message (the fan-out groups readers by language), as the send function meets them.
    templates = [
        MessageTemplate(PreparedIssue.from_json(p), base_url=base_url, mailbox=mailbox)
        for p in common.prepared_variants()
    ]
    batches = [
        (templates[(i // BATCH) % len(templates)].render, people[i : i + BATCH]) for i in range(0, FAST_N, BATCH)
    ]

    def fast_languages():
        sign = tokens.sign
        for render, batch in batches:
            for address, name in batch:
                raw = render(address=address, name=name, token=sign(secret, list_id, address))
                _request(ses, address, raw, issue_id, list_id, config_set)

    issue = parse_document(common.EXAMPLE_ISSUE.read_bytes(), max_bytes=512 * 1024)
    few = people[:NAIVE_N]

    def naive():
        for address, name in few:
            token = tokens.sign(secret, list_id, address)
            r = render_issue(
                issue, web_url=prepared.web_url, list_name=prepared.list_name, sender_name=prepared.from_name
            )
            one = PreparedIssue(
                issue_id,
                list_id,
                prepared.list_name,
                prepared.subject,
                prepared.from_name,
                prepared.from_address,
                prepared.reply_to,
                prepared.web_url,
                Splice(r.html),
                Splice(r.text),
            )
            raw = message.build(one, address=address, name=name, token=token, base_url=base_url, mailbox=mailbox)
            _request(ses, address, raw, issue_id, list_id, config_set)

    for _address, _name in few[:3]:  # warm: Jinja2 compiles its templates once per process
        render_issue(issue, web_url=prepared.web_url, list_name=prepared.list_name, sender_name=prepared.from_name)
    fast_rate, fast_cpu = _best_rate(fast, FAST_N, FAST_REPEATS)
    languages_rate, languages_cpu = _best_rate(fast_languages, FAST_N, FAST_REPEATS)
    languages_ratio = languages_rate / fast_rate
    naive_rate, naive_cpu = _best_rate(naive, NAIVE_N, NAIVE_REPEATS)
    message_bytes = len(
        template.render(address=people[0][0], name=people[0][1], token=tokens.sign(secret, list_id, people[0][0]))
    )
    sdk = sdk_cost_per_recipient(template, secret, env)
    ratio = fast_rate / naive_rate
    met = ratio >= GOAL_RATIO and fast_rate >= GOAL_FAST and languages_ratio >= GOAL_LANGUAGES
    return common.result(
        "per_recipient",
        round(ratio, 1),
        "x faster than naive",
        f">= {GOAL_RATIO:.0f}x the naive way, >= {GOAL_FAST:,.0f} fast msgs/s (one thread), and an issue in "
        f"three languages within {1 - GOAL_LANGUAGES:.0%} of one language's per-recipient rate",
        met,
        fast_msgs_per_s=round(fast_rate),
        naive_msgs_per_s=round(naive_rate, 1),
        fast_cpu_us_per_msg=round(fast_cpu * 1e6, 1),
        three_languages_msgs_per_s=round(languages_rate),
        three_languages_cpu_us_per_msg=round(languages_cpu * 1e6, 1),
        three_languages_to_one=round(languages_ratio, 3),
        languages=[t.prepared.language for t in templates],
        naive_cpu_ms_per_msg=round(naive_cpu * 1e3, 2),
        fast_iterations=f"{FAST_REPEATS} x {FAST_N}",
        naive_iterations=f"{NAIVE_REPEATS} x {NAIVE_N}",
        message_bytes=message_bytes,
        **sdk,
    )


# --- the SDK's share: real clients, canned HTTP ----------------------------------------------


class _Raw:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_):
        yield self.data


def _canned(body: dict, content_type: str):
    from botocore.awsrequest import AWSResponse

    data = json.dumps(body).encode()

    def answer(request, **_):
        return AWSResponse(
            request.url, 200, {"Content-Type": content_type, "Content-Length": str(len(data))}, _Raw(data)
        )

    return answer


def sdk_cost_per_recipient(template, secret: bytes, env: dict) -> dict:
    """CPU of the boto3 calls a recipient makes: serialise, sign, (no network), parse."""
    import os

    import boto3

    from newsletter import aws, tokens
    from newsletter.store import ledger, subscribers

    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "ASIABENCH",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_SESSION_TOKEN": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    try:
        session = boto3.session.Session(region_name="us-east-1")
        ddb = session.client("dynamodb", config=aws.config_for("dynamodb"))
        ses = session.client("sesv2", config=aws.config_for("sesv2"))
        ddb.meta.events.register("before-send.dynamodb", _canned({}, "application/x-amz-json-1.0"))
        ses.meta.events.register("before-send.sesv2", _canned({"MessageId": "0100-bench"}, "application/json"))
        people = recipients(SDK_N)
        sends, subs, sups = env["SENDS_TABLE"], env["SUBSCRIBERS_TABLE"], env["SUPPRESSIONS_TABLE"]
        batch_ddb = session.client("dynamodb", config=aws.config_for("dynamodb"))
        batch_ddb.meta.events.register(
            "before-send.dynamodb",
            _canned({"Responses": {subs: [], sups: []}, "UnprocessedKeys": {}}, "application/x-amz-json-1.0"),
        )

        def one_recipient(address, name, now=1_435_737_600):
            ledger.claim(
                ddb,
                sends,
                "2015-07",
                address,
                claim_id="0" * 32,
                status="sending",
                now=now,
                until=now + 60,
                batch_id="00-000000-00",
            )
            raw = template.render(address=address, name=name, token=tokens.sign(secret, "infomail", address))
            resp = _request(ses, address, raw, "2015-07", "infomail", env["CONFIGURATION_SET"])
            ledger.settle(ddb, sends, "2015-07", address, "0" * 32, "sent", now, message_id=resp["MessageId"])

        def loop():
            for i in range(0, SDK_N, 50):
                subscribers.states(batch_ddb, subs, sups, "infomail", [a for a, _ in people[i : i + 50]])
            for address, name in people:
                one_recipient(address, name)

        loop()  # warm the clients (models, endpoint rules)
        rate, cpu = _best_rate(loop, SDK_N, 3)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {
        "with_sdk_cpu_us_per_recipient": round(cpu * 1e6),
        "with_sdk_msgs_per_s_one_core": round(rate),
        "with_sdk_note": "fast path plus real boto3 claim/SendEmail/settle and 1/50 BatchGetItem, "
        "HTTP replaced by canned responses",
    }
