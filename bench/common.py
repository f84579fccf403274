"""What the benchmarks share: the template (functions, their environment), the example issue
rendered once as the publish function stores it, and the shape of a result."""

from __future__ import annotations

import json
import os
import platform
import sys
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from devstack import template as tpl
from devstack.stack import LOCAL_PARAMETERS, isolated_environment

ROOT = tpl.ROOT
BENCH = ROOT / "bench"
EVENTS = ROOT / "events"
EXAMPLE_ISSUE = ROOT / "examples" / "issues" / "2015-07.json"
EXAMPLE_SUBSCRIBERS = ROOT / "examples" / "subscribers.csv"
STACK = "newsletter"
# The token secret the sample events in events/ are signed with (tests/conftest.py SECRET).
SECRET = "test-token-secret"


def result(name: str, figure, unit: str, goal: str, met: bool, **details) -> dict:
    """One entry of results.json."""
    return {"name": name, "figure": figure, "unit": unit, "goal": goal, "met": bool(met), "details": details}


def log(message: str) -> None:
    """Progress goes to stderr: stdout is the results table."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@cache
def template() -> dict:
    return tpl.load()


class _Attributes(dict):
    """A resource's attributes; any the template asks for that is not listed gets a plausible value."""

    def __init__(self, name: str, values: dict[str, str]):
        super().__init__(values)
        self.name = name

    def __missing__(self, attr: str) -> str:
        if attr == "FunctionUrl":
            return f"https://{self.name.lower()}.lambda-url.{tpl.REGION}.on.aws/"
        return f"{self.name}-{attr}"


def physical_names() -> dict[str, dict[str, str]]:
    """A deployed-looking name for every resource of the template (stack "newsletter")."""
    out = {}
    for logical, res in template()["Resources"].items():
        name = f"{STACK}-{logical}"
        kind = res.get("Type", "")
        if kind == "AWS::SQS::Queue":
            url = f"https://sqs.{tpl.REGION}.amazonaws.com/{tpl.ACCOUNT}/{name}"
            out[logical] = {
                "Ref": url,
                "QueueUrl": url,
                "QueueName": name,
                "Arn": f"arn:aws:sqs:{tpl.REGION}:{tpl.ACCOUNT}:{name}",
            }
        elif kind == "AWS::S3::Bucket":
            bucket = f"{STACK}-{tpl.ACCOUNT}-{tpl.REGION}"
            out[logical] = {
                "Ref": bucket,
                "Arn": f"arn:aws:s3:::{bucket}",
                "DomainName": f"{bucket}.s3.amazonaws.com",
                "RegionalDomainName": f"{bucket}.s3.{tpl.REGION}.amazonaws.com",
            }
        elif kind == "AWS::SNS::Topic":
            # Named as SNS names a stack's topic (and as the local stack and events/ samples do):
            # the feedback function acts only on envelopes of this topic.
            arn = f"arn:aws:sns:{tpl.REGION}:{tpl.ACCOUNT}:{name}-1TQ7HEXAMPLE"
            out[logical] = {"Ref": arn, "TopicName": arn.rsplit(":", 1)[1], "Arn": arn}
        elif kind == "AWS::DynamoDB::Table":
            out[logical] = {
                "Ref": name,
                "Arn": f"arn:aws:dynamodb:{tpl.REGION}:{tpl.ACCOUNT}:table/{name}",
                "StreamArn": f"arn:aws:dynamodb:{tpl.REGION}:{tpl.ACCOUNT}:table/{name}/stream/x",
            }
        else:
            out[logical] = {
                "Ref": name,
                "Arn": f"arn:aws:local:{tpl.REGION}:{tpl.ACCOUNT}:{name}",
                "Name": name,
                "TopicName": name,
                "Id": name,
            }
    return {logical: _Attributes(f"{STACK}-{logical}", attrs) for logical, attrs in out.items()}


def resolver() -> tpl.Resolver:
    return tpl.Resolver(template(), {**LOCAL_PARAMETERS, "AWS::StackName": STACK}, physical_names())


def table_names() -> dict[str, str]:
    return {
        logical: v["Ref"]
        for logical, v in physical_names().items()
        if template()["Resources"][logical]["Type"] == "AWS::DynamoDB::Table"
    }


def functions() -> dict[str, dict]:
    """Each function's properties (Globals merged), with its environment resolved to strings."""
    r = resolver()
    out = {}
    for logical, props in tpl.function_specs(template()).items():
        try:
            env = {k: str(v) for k, v in r.resolve(props["Environment"]["Variables"]).items() if v is not None}
        except KeyError as exc:  # a reference this local resolver cannot follow: say which
            env = {"_UNRESOLVED": str(exc)}
        out[logical] = {**props, "env": env}
    return out


def lambda_environment(logical: str) -> dict[str, str]:
    """What Lambda gives the function: its template variables and the runtime's own."""
    f = functions()[logical]
    return {
        "AWS_REGION": tpl.REGION,
        "AWS_DEFAULT_REGION": tpl.REGION,
        "AWS_LAMBDA_FUNCTION_NAME": f"{STACK}-{logical}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(f.get("MemorySize", 128)),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        # Credentials as Lambda puts them in the environment: no provider chain, no network.
        "AWS_ACCESS_KEY_ID": "ASIABENCHMARK000000",
        "AWS_SECRET_ACCESS_KEY": "bench/secret/key/0000000000000000000000",
        "AWS_SESSION_TOKEN": "bench-session-token",
        **f["env"],
    }


def send_concurrency() -> int:
    """The template's SendConcurrency default (the SendQueue's MaximumConcurrency)."""
    return int(template()["Parameters"]["SendConcurrency"]["Default"])


# os.environ set to exactly a function's environment (plus the process basics), settings re-read.
environment = isolated_environment


class LogSink:
    """stdout while functions run in-process: counts what they log (CloudWatch Logs ingests it)
    and keeps the names of the EMF metrics they emit."""

    def __init__(self):
        import threading

        self.bytes = 0
        self.lines = 0
        self.metrics: set[tuple[str, tuple]] = set()  # (metric name, dimension names)
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self.bytes += len(text.encode("utf-8"))
            self.lines += text.count("\n")
            if '"_aws"' in text:
                for line in text.splitlines():
                    self._metrics(line)
        return len(text)

    def _metrics(self, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return
        for directive in record.get("_aws", {}).get("CloudWatchMetrics", []):
            for dims in directive.get("Dimensions", [[]]):
                key = tuple(sorted((d, str(record.get(d))) for d in dims))
                for m in directive.get("Metrics", []):
                    self.metrics.add((m["Name"], key))

    def flush(self) -> None:
        pass


@contextmanager
def in_process(logical: str, clients):
    """Run a function's handler here: its Lambda environment, `newsletter.aws.client` answered by
    `clients`, its logs counted (yields the LogSink)."""
    import contextlib

    from newsletter import aws

    sink = LogSink()
    real = aws.client
    aws.reset()
    aws.client = clients
    try:
        with environment(lambda_environment(logical)), contextlib.redirect_stdout(sink):
            yield sink
    finally:
        aws.client = real
        aws.reset()


class _Capture:
    """An S3 stand-in that keeps what is put."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}

    def put_object(self, *, Bucket, Key, Body, **_):
        self.objects[Key] = Body


@cache
def publish_settings():
    """The publish function's settings, from its environment in the template."""
    from newsletter.config import PublishSettings

    env = functions()["PublishFunction"]["env"]
    return PublishSettings(
        bucket_name=env["BUCKET_NAME"],
        lists_table=env["LISTS_TABLE"],
        issues_table=env["ISSUES_TABLE"],
        fanout_queue_url=env["FANOUT_QUEUE_URL"],
        web_base_url=env["WEB_BASE_URL"],
        sender_address=env["SENDER_ADDRESS"],
        sender_name=env["SENDER_NAME"],
    )


def prepared_issue() -> dict:
    """The example issue as the publish function stores it for the senders (message.json)."""
    from newsletter.issue import parse_document
    from newsletter.publish import prepared_key, render_and_store

    settings = publish_settings()
    issue = parse_document(EXAMPLE_ISSUE.read_bytes(), max_bytes=settings.max_issue_bytes)
    s3 = _Capture()
    render_and_store(issue, {"list_id": issue.list_id, "name": "ICMPD Infomail"}, settings=settings, s3=s3)
    return json.loads(s3.objects[prepared_key(issue.issue_id)])


def prepared_variants() -> list[dict]:
    """The example issue with its translations (en, fr, pt), as the publish function stores
    each language's message for the senders."""
    from newsletter.publish import render_variants
    from newsletter_cli.publishing import read_issue

    settings = publish_settings()
    issue, _ = read_issue(EXAMPLE_ISSUE)
    variants = render_variants(issue, {"list_id": issue.list_id, "name": "ICMPD Infomail"}, settings=settings)
    return [v.prepared for v in variants]


def json_bytes(value) -> bytes:
    """JSON as the publish function writes it (bucket.put_json)."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def machine() -> dict:
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "processor": platform.processor() or platform.machine(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
    }


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def subscribers_from_csv(path: Path = EXAMPLE_SUBSCRIBERS) -> list[dict]:
    import csv

    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.append(
                {
                    "email": row["email"].strip().lower(),
                    "name": row.get("name") or "",
                    "language": row.get("language") or "en",
                    "status": row.get("status") or "active",
                }
            )
    return rows


def subscriber_items(list_id: str, rows: list[dict]) -> list[dict]:
    """Subscribers-table items (wire format), as put_subscribers writes them."""
    from newsletter.store import to_item
    from newsletter.store.subscribers import partition, shard_of

    return [to_item({**r, "pk": partition(list_id, shard_of(r["email"])), "list_id": list_id}) for r in rows]
