"""Shared fixtures: a moto-backed copy of the stack, subscribers, and SES fault injection."""

from __future__ import annotations

import email
import email.policy
import json
import os
import random
import sys
from pathlib import Path

import pytest

# Before any boto3 client exists: credentials that can only ever reach moto.
os.environ.update(
    {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
)
os.environ.pop("AWS_PROFILE", None)

ROOT = Path(__file__).resolve().parents[1]
# fakes/ (the test doubles) is not installed: tests import it from the repository root, under
# `python -m pytest` (which puts the working directory on the path) and a bare `pytest` alike.
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
EXAMPLE_ISSUE = ROOT / "examples" / "issues" / "2015-07.json"
EXAMPLE_SUBSCRIBERS = ROOT / "examples" / "subscribers.csv"
SECRET = "test-token-secret"


@pytest.fixture
def aws_mock():
    from moto import mock_aws

    from devstack.stack import new_deployment

    new_deployment()  # per-container caches: each test is a fresh deployment
    with mock_aws():
        yield
    new_deployment()


@pytest.fixture
def stack(aws_mock):
    from devstack.demo import create_list
    from devstack.stack import LocalStack

    s = LocalStack.create(token_secret=SECRET)
    create_list(s, "infomail", "ICMPD Infomail")
    return s


@pytest.fixture
def ddb(aws_mock):
    import boto3

    return boto3.client("dynamodb", region_name="us-east-1")


def people(n: int, *, domain: str = "example.com", status: str = "active") -> list[dict]:
    return [
        {"email": f"reader{i:05d}@{domain}", "name": f"Reader {i}", "status": status, "language": "en"}
        for i in range(n)
    ]


def add_subscribers(stack, rows: list[dict], list_id: str = "infomail") -> None:
    import boto3

    from newsletter.store.subscribers import put_subscribers

    put_subscribers(boto3.client("dynamodb", region_name="us-east-1"), stack.ref("SubscribersTable"), list_id, rows)


def issue_doc(issue_id: str = "2015-07", **changes) -> dict:
    doc = json.loads(EXAMPLE_ISSUE.read_text(encoding="utf-8"))
    doc["issue_id"] = issue_id
    doc.update(changes)
    return doc


def upload(stack, doc: dict | bytes, key: str | None = None) -> dict:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode("utf-8")
    key = key or f"issues/{doc['issue_id'] if isinstance(doc, dict) else 'doc'}.json"
    return stack.upload_issue(key, body)


def publish(stack, doc: dict, key: str | None = None) -> dict:
    return stack.invoke("PublishFunction", upload(stack, doc, key))


def deliver(stack, rounds: int = 2000) -> dict:
    """Run fan-out and sending as Lambda would, until their queues are empty (the reconcile job
    the finished issue queues included)."""
    runs = stack.run("FanoutFunction", "SendFunction", max_invocations=rounds)
    return {"fanout": runs["FanoutFunction"], "send": runs["SendFunction"]}


def mailed() -> list[str]:
    """The address of every message SES accepted, one entry per message."""
    from devstack.stack import sent_messages

    out = []
    for m in sent_messages():
        msg = email.message_from_string(m.raw_data, policy=email.policy.default)
        out.append(msg["To"].addresses[0].addr_spec)
    return out


def issue_record(stack, issue_id: str) -> dict:
    import boto3

    from newsletter.store.issues import get_issue

    return get_issue(boto3.client("dynamodb", region_name="us-east-1"), stack.ref("IssuesTable"), issue_id)


def s3_text(stack, key: str) -> str | None:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    try:
        return s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read().decode("utf-8")
    except s3.exceptions.NoSuchKey:
        return None


def queue_depth(stack, logical: str) -> int:
    import boto3

    sqs = boto3.client("sqs", region_name="us-east-1")
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attrs = sqs.get_queue_attributes(QueueUrl=stack.ref(logical), AttributeNames=names)["Attributes"]
    return sum(int(attrs[n]) for n in names)


def client_error(code: str, status: int = 400, operation: str = "SendEmail"):
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": f"injected {code}"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


class FaultySES:
    """Wraps the real (moto) SES client; `rule(n, address)` may return an exception to raise."""

    def __init__(self):
        self.calls = 0
        self.rule = lambda n, address: None
        self.raised: list[str] = []

    def wrap(self, real):
        outer = self

        class Client:
            def __getattr__(self, name):
                return getattr(real, name)

            def send_email(self, **kwargs):
                outer.calls += 1
                exc = outer.rule(outer.calls, kwargs["Destination"]["ToAddresses"][0])
                if exc is not None:
                    outer.raised.append(type(exc).__name__)
                    raise exc
                return real.send_email(**kwargs)

        return Client()

    def throttle_share(self, share: float, seed: int = 7, code: str = "TooManyRequestsException"):
        rnd = random.Random(seed)
        self.rule = lambda n, address: client_error(code, 429) if rnd.random() < share else None


@pytest.fixture
def ses_faults(monkeypatch):
    from newsletter import aws

    real = aws.client
    faults = FaultySES()

    def client(service):
        c = real(service)
        return faults.wrap(c) if service == "sesv2" else c

    client.cache_clear = real.cache_clear
    monkeypatch.setattr(aws, "client", client)
    return faults


def example_subset(path: Path) -> Path:
    """The example list cut to a fifth (its 1,000 take minutes to import into moto, which copies every
    table for each transaction): every inactive subscriber and every mailbox simulator address, and
    the first 150 others. Written to path."""
    import csv

    lines = EXAMPLE_SUBSCRIBERS.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = list(csv.DictReader(lines))
    keep = [lines[0]] + [
        line
        for n, (line, row) in enumerate(zip(lines[1:], rows, strict=True))
        if n < 150 or row["status"] != "active" or "simulator" in row["email"]
    ]
    path.write_text("".join(keep), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def subscribers_subset(tmp_path_factory) -> Path:
    return example_subset(tmp_path_factory.mktemp("subscribers") / "subscribers.csv")


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """One local stack (a moto server on 127.0.0.1) for a module's --local commands; each test
    uses lists and issue ids of its own."""
    from devstack import server

    directory = tmp_path_factory.mktemp("local")
    old = os.environ.get("NEWSLETTER_LOCAL_DIR")
    os.environ["NEWSLETTER_LOCAL_DIR"] = str(directory)
    server.start(directory)
    yield directory
    server.stop(directory)
    if old is None:
        os.environ.pop("NEWSLETTER_LOCAL_DIR", None)
    else:
        os.environ["NEWSLETTER_LOCAL_DIR"] = old
