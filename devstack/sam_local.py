"""`make sam-local`: every function, built by `sam build`, run by `sam local invoke` in a Lambda
container against the local stack, in the order the pipeline runs them, each answer and the state
it leaves checked. docs/sam-local.md tells how to do the same by hand.

    python -m devstack.sam_local [--image auto|official|local|IMAGE] [--no-build] [--keep]

1. `sam build` (scripts/check-build.sh: the build, then each handler imported as Lambda would).
2. The invoke image: the official `public.ecr.aws/lambda/python:3.12-x86_64` when Docker has it or can
   pull it; else one built here from the apt mirror and this machine's CPython 3.12
   (scripts/sam-local-image.sh, kept between runs).
3. The local stack (`newsletter local start --host <the Docker bridge's gateway>`), in its own
   directory (out/sam-local), with the `--env-vars` file it writes: each function's table names,
   queue URLs, bucket, topic and parameter names as the local stack has them, and
   AWS_ENDPOINT_URL (the template declares it; see its LocalEndpoint parameter).
4. A list and a few readers (`newsletter --local subscribers import`), the example issue uploaded,
   then `sam local invoke` with events made from the samples in events/:
   PublishFunction (the S3 notification of the upload) → FanoutFunction (each segment the publish
   queued, one per invocation as its event source's BatchSize says) → SendFunction (the batches the
   fan-out queued, ten messages at a time; the mail lands in the outbox) → FanoutFunction (the
   reconcile job the last batch queued) → FeedbackFunction (a bounce and a complaint for messages
   sent, in SNS envelopes of the stack's own topic) → UnsubscribeFunction (GET: the page, nothing
   changes; one-click POST: the reader is unsubscribed), with the token of a sent message's
   List-Unsubscribe header.

`sam local invoke` exits 0 even when the handler raised: the answer on its stdout is read, and an
`errorType` there fails the run, as does any answer or state other than the expected one. Each
event, answer and log is kept in out/sam-local/invocations/.
"""

from __future__ import annotations

import argparse
import base64
import copy
import csv
import email
import email.policy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, quote_plus, urlsplit

from .template import ROOT

EVENTS = ROOT / "events"
ENV_FILE = "sam-env.json"
# What sam local invoke runs python3.12 x86_64 functions in by default (and pulls when it may).
OFFICIAL_IMAGE = "public.ecr.aws/lambda/python:3.12-x86_64"
ISSUE_FILE = ROOT / "examples" / "issues" / "2015-07.json"
SUBSCRIBERS_FILE = ROOT / "examples" / "subscribers.csv"
LIST_ID, LIST_NAME = "infomail", "ICMPD Infomail"
BOUNCE, COMPLAINT, SUCCESS = (f"{box}@simulator.amazonses.com" for box in ("bounce", "complaint", "success"))
READERS = 10  # ordinary readers besides the simulator's addresses: two send invocations in all
INVOKE_TIMEOUT_S = 900


# --- the env-vars file (written by `newsletter local start`) --------------------------------------


def env_vars(stack) -> dict[str, dict[str, str]]:
    """`sam local invoke --env-vars` for the local stack: per function, its environment as the local
    stack resolves the template (its own table names, queue URLs, bucket, topic ARN, parameter
    names), and AWS_ENDPOINT_URL, the stack's endpoint. sam sets only variables the template
    declares: AWS_ENDPOINT_URL is declared in Globals (empty unless LocalEndpoint is given)."""
    return {
        logical: {**function.environment, "AWS_ENDPOINT_URL": stack.endpoint_url}
        for logical, function in sorted(stack.functions.items())
    }


def write_env_vars(stack, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(env_vars(stack), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# --- events, from the samples in events/ ----------------------------------------------------------


def sample(name: str) -> dict:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def _now_iso_ms() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def s3_put_event(bucket: str, key: str, head: dict) -> dict:
    """events/s3-put-issue.json for one upload: its bucket, key, size, ETag, version and a sequencer."""
    event = sample("s3-put-issue.json")
    record = event["Records"][0]
    record["eventTime"] = _now_iso_ms()
    record["s3"]["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
    obj = record["s3"]["object"]
    obj.update(
        key=quote_plus(key, safe="/"),
        size=head["ContentLength"],
        eTag=head["ETag"].strip('"'),
        sequencer=f"{time.time_ns() // 1000:018X}",
    )
    if head.get("VersionId"):
        obj["versionId"] = head["VersionId"]
    else:
        obj.pop("versionId", None)
    return event


def sqs_event(sample_name: str, queue_arn: str, messages: list[dict]) -> dict:
    """An SQS event with the sample's record as the envelope of each message received."""
    event = sample(sample_name)
    proto = event["Records"][0]
    records = []
    for m in messages:
        record = copy.deepcopy(proto)
        attributes = m.get("Attributes") or {}
        record.update(
            messageId=m["MessageId"],
            receiptHandle=m["ReceiptHandle"],
            body=m["Body"],
            md5OfBody=m.get("MD5OfBody") or hashlib.md5(m["Body"].encode()).hexdigest(),
            eventSourceARN=queue_arn,
        )
        record["attributes"].update(
            {k: str(attributes[k]) for k in ("ApproximateReceiveCount", "SentTimestamp", "SenderId") if k in attributes}
        )
        record["attributes"]["ApproximateFirstReceiveTimestamp"] = str(
            attributes.get("ApproximateFirstReceiveTimestamp") or int(time.time() * 1000)
        )
        records.append(record)
    event["Records"] = records
    return event


def feedback_record(
    sample_name: str, *, topic_arn: str, queue_arn: str, issue_id: str, list_id: str, address: str, message_id: str
) -> dict:
    """The sample's SES event for one message sent: its SES message id, recipient and tags, in an SNS
    envelope from the stack's own topic (the function trusts no other), as an SQS record."""
    record = sample(sample_name)["Records"][0]
    envelope = json.loads(record["body"])
    notification = json.loads(envelope["Message"])
    mail = notification["mail"]
    mail["messageId"] = message_id
    mail["destination"] = [address]
    mail["timestamp"] = _now_iso_ms()
    if "tags" in mail:
        mail["tags"].update(issue=[issue_id], list=[list_id])
    for header in mail.get("headers") or []:
        if header["name"].lower() == "to":
            header["value"] = address
    if "commonHeaders" in mail:
        mail["commonHeaders"]["to"] = [address]
    kind = (notification.get("eventType") or notification.get("notificationType") or "").lower()
    detail = notification.get(kind)
    if isinstance(detail, dict):
        detail["feedbackId"] = f"{uuid.uuid4()}-000000"
        detail["timestamp"] = _now_iso_ms()
        for field in ("bouncedRecipients", "complainedRecipients"):
            if field in detail:
                detail[field] = [{**detail[field][0], "emailAddress": address}]
    envelope.update(
        TopicArn=topic_arn, MessageId=str(uuid.uuid4()), Timestamp=_now_iso_ms(), Message=json.dumps(notification)
    )
    body = json.dumps(envelope, indent=2)
    record.update(
        messageId=str(uuid.uuid4()),
        body=body,
        md5OfBody=hashlib.md5(body.encode()).hexdigest(),
        eventSourceARN=queue_arn,
    )
    return record


def function_url_event(sample_name: str, query: str, *, body: bytes | None = None) -> dict:
    """A Function URL request like the sample, for this query string (and body, base64 as the URL sends a form)."""
    event = sample(sample_name)
    event["rawQueryString"] = query
    params: dict[str, str] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        params[k] = f"{params[k]},{v}" if k in params else v  # as Lambda joins repeated names
    if params:
        event["queryStringParameters"] = params
    else:
        event.pop("queryStringParameters", None)
    now = datetime.now(UTC)
    event["requestContext"].update(
        requestId=str(uuid.uuid4()),
        time=now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        timeEpoch=int(now.timestamp() * 1000),
    )
    if body is not None:
        event["body"] = base64.b64encode(body).decode("ascii")
        event["isBase64Encoded"] = True
        event["headers"]["content-length"] = str(len(body))
    return event


# --- running it -----------------------------------------------------------------------------------


class Failed(Exception):
    """What went wrong, for the last line of the run."""


def _short(value, limit: int = 220) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Run:
    def __init__(self, args):
        self.args = args
        self.dir: Path = args.dir.resolve()
        self.sam = args.sam
        self.invocations: list[tuple[str, str, float]] = []  # function, label, seconds
        self.durations: list[float] = []  # what the handler took, by the emulator's REPORT line
        self.phases: list[tuple[str, float]] = []
        self.count = 0
        self.image_name = "official"  # for scripts/sam-invoke.sh: "official" or an image's name
        self.stack = None
        self.started_stack = False

    # -- helpers

    def say(self, text: str) -> None:
        print(f"sam-local: {text}", flush=True)

    def phase(self, name: str, started: float) -> None:
        self.phases.append((name, time.monotonic() - started))

    def run(self, cmd: list[str], *, env: dict | None = None, timeout: float = 600, what: str = "") -> str:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
            raise Failed(f"{what or cmd[0]} failed (exit {proc.returncode}):\n{tail}")
        return proc.stdout

    def cli(self, *args: str) -> str:
        exe = Path(sys.executable).with_name("newsletter")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "newsletter_cli.app"]
        env = {**os.environ, "NEWSLETTER_LOCAL_DIR": str(self.dir), "COLUMNS": "200"}
        self.say("$ newsletter " + " ".join(args))
        out = self.run(cmd + list(args), env=env, what="newsletter " + " ".join(args[:3]))
        for line in out.strip().splitlines():
            print(f"    {line}", flush=True)
        return out

    def invoke(self, function: str, event: dict, label: str):
        """`sam local invoke` one event; its answer, or Failed if the handler raised."""
        self.count += 1
        where = self.dir / "invocations"
        where.mkdir(parents=True, exist_ok=True)
        stem = f"{self.count:02d}-{function}"
        event_file = where / f"{stem}.event.json"
        event_file.write_text(json.dumps(event, indent=1, ensure_ascii=False), encoding="utf-8")
        # scripts/sam-invoke.sh: the built template, the stack's env-vars file, the image, no credentials.
        cmd = ["bash", str(ROOT / "scripts" / "sam-invoke.sh"), function, str(event_file)]
        env = {**os.environ, "SAM": self.sam, "NEWSLETTER_LOCAL_DIR": str(self.dir), "SAM_LOCAL_IMAGE": self.image_name}
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=INVOKE_TIMEOUT_S, cwd=ROOT)
        except subprocess.TimeoutExpired:
            raise Failed(f"{label}: sam local invoke {function} did not finish in {INVOKE_TIMEOUT_S} s") from None
        took = time.monotonic() - started
        (where / f"{stem}.stdout").write_text(proc.stdout, encoding="utf-8")
        (where / f"{stem}.stderr").write_text(proc.stderr, encoding="utf-8")
        self.invocations.append((function, label, took))
        report = re.search(r"REPORT RequestId: .*?(?<!Init )Duration: ([\d.]+) ms", proc.stderr)
        handler_s = float(report.group(1)) / 1000 if report else float("nan")
        self.durations.append(handler_s)
        log_tail = "\n".join("      " + line for line in proc.stderr.strip().splitlines()[-20:])
        if proc.returncode != 0:
            raise Failed(f"{label}: sam local invoke {function} exited {proc.returncode}:\n{log_tail}")
        text = proc.stdout.strip()
        try:
            answer = json.loads(text.splitlines()[-1]) if text else None
        except ValueError:
            raise Failed(f"{label}: {function} answered something that is not JSON: {_short(text)}") from None
        # sam exits 0 when the handler raised: the error is the answer.
        if isinstance(answer, dict) and "errorType" in answer:
            raise Failed(
                f"{label}: {function} RAISED {answer['errorType']}: {answer.get('errorMessage')}\n"
                f"    its log ({where / (stem + '.stderr')}):\n{log_tail}"
            )
        if answer is None:
            raise Failed(f"{label}: {function} gave no answer (sam's log: {where / (stem + '.stderr')}):\n{log_tail}")
        print(
            f"  [{self.count:02d}] {function:<19} {label:<28} {took:5.1f} s (handler {handler_s:4.1f} s) -> "
            + _short(answer, 160),
            flush=True,
        )
        return answer

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            raise Failed(what)

    # -- set-up

    def check_docker(self) -> None:
        if not shutil.which("docker"):
            raise Failed(
                "Docker is needed (sam local invoke runs each function in a container) and this machine has no "
                "`docker` command. Install Docker (Debian: apt-get install docker.io), then start it "
                "(scripts/docker-engine.sh start, as root)."
            )
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["no answer"])[-1]
            raise Failed(
                f"Docker cannot run containers here: the engine does not answer ({why}). Start it (systemctl "
                "start docker, or scripts/docker-engine.sh start as root) and run make sam-local again; "
                "sam local invoke cannot work without it."
            )
        self.say(f"Docker engine {proc.stdout.strip()}")

    def build(self) -> None:
        if self.args.no_build:
            self.expect((ROOT / ".aws-sam" / "build" / "template.yaml").is_file(), "--no-build, but nothing is built")
            self.say("sam build: skipped (--no-build), using .aws-sam/build")
            return
        self.say("sam build (scripts/check-build.sh: build, then each handler imported as Lambda would)")
        out = self.run(["bash", str(ROOT / "scripts" / "check-build.sh")], what="scripts/check-build.sh")
        for line in out.strip().splitlines():
            print(f"    {line}", flush=True)

    def image(self) -> None:
        choice = self.args.image

        def has(name: str) -> bool:
            return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0

        if choice in ("auto", "official"):
            if has(OFFICIAL_IMAGE):
                self.say(f"invoke image: {OFFICIAL_IMAGE} (official, present)")
                self.image_name = "official"
                return
            self.say(f"docker pull {OFFICIAL_IMAGE}")
            pull = subprocess.run(["docker", "pull", OFFICIAL_IMAGE], capture_output=True, text=True, timeout=900)
            if pull.returncode == 0:
                self.say(f"invoke image: {OFFICIAL_IMAGE} (official, pulled)")
                self.image_name = "official"
                return
            why = (pull.stderr.strip().splitlines() or ["?"])[-1]
            if choice == "official":
                raise Failed(f"cannot pull {OFFICIAL_IMAGE}: {why}")
            self.say(f"no registry ({why}): the invoke image is built here instead")
            choice = "local"
        if choice == "local":
            out = self.run(["bash", str(ROOT / "scripts" / "sam-local-image.sh")], what="scripts/sam-local-image.sh")
            name = out.strip().splitlines()[-1]
        else:
            name = choice
            self.expect(has(name), f"no image {name} in Docker")
        self.say(f"invoke image: {name}")
        self.image_name = name

    def gateway(self) -> str:
        """The host's address on Docker's default bridge: what a container reaches the host by."""
        import ipaddress

        if self.args.host:
            return self.args.host
        out = self.run(
            ["docker", "network", "inspect", "bridge", "--format", "{{json .}}"], what="docker network inspect bridge"
        )
        network = json.loads(out)
        for config in (network.get("IPAM") or {}).get("Config") or []:
            gateway = config.get("Gateway") or ""
            if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", gateway):
                return gateway
        # Older engines record no gateway for the default bridge: the bridge interface's own address.
        name = (network.get("Options") or {}).get("com.docker.network.bridge.name", "docker0")
        shown = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", name], capture_output=True, text=True)
        found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", shown.stdout)
        if found:
            return found.group(1)
        for config in (network.get("IPAM") or {}).get("Config") or []:
            if ":" not in config.get("Subnet", ":"):
                return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
        raise Failed("cannot tell the address of Docker's bridge on this host: give --host ADDRESS")

    def start_stack(self) -> None:
        from . import server
        from .stack import LocalStack

        host = self.gateway()
        if server.running(self.dir):
            self.cli("local", "stop")  # each run starts from an empty stack
        for stale in ("outbox", "invocations"):
            shutil.rmtree(self.dir / stale, ignore_errors=True)
        self.cli("local", "start", "--host", host, "--env-vars", str(self.dir / ENV_FILE))
        self.started_stack = True
        state = server.running(self.dir)
        self.expect(state is not None, f"the local stack did not stay up (see {self.dir / 'server.log'})")
        self.stack = LocalStack.attach(state)
        written = json.loads((self.dir / ENV_FILE).read_text(encoding="utf-8"))
        self.expect(
            set(written) == set(self.stack.functions)
            and all(v.get("AWS_ENDPOINT_URL") == state["endpoint_url"] for v in written.values()),
            f"{ENV_FILE} does not give every function the stack's endpoint",
        )

    def subscribers(self) -> list[str]:
        """A few readers from examples/subscribers.csv (one of them unsubscribed), and the simulator's boxes."""
        with SUBSCRIBERS_FILE.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        readers = [r for r in rows if r["status"] == "active" and "simulator" not in r["email"]][:READERS]
        gone = next(r for r in rows if r["status"] == "unsubscribed")
        boxes = [r for r in rows if r["email"] in (SUCCESS, BOUNCE, COMPLAINT)]
        chosen = readers + [gone] + boxes
        path = self.dir / "subscribers.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(chosen)
        self.import_subscribers(path)
        return [r["email"] for r in chosen if r["status"] == "active"]

    def import_subscribers(self, path: Path) -> None:
        self.cli("--local", "subscribers", "import", str(path), "--list", LIST_ID, "--list-name", LIST_NAME)

    # -- state

    def issue(self, issue_id: str) -> dict:
        from newsletter.store.issues import get_issue

        return get_issue(self.stack.client("dynamodb"), self.stack.ref("IssuesTable"), issue_id) or {}

    def subscriber_status(self, address: str) -> str | None:
        from newsletter.store.subscribers import get_subscriber

        found = get_subscriber(self.stack.client("dynamodb"), self.stack.ref("SubscribersTable"), LIST_ID, address)
        return (found or {}).get("status")

    def suppressed(self, address: str) -> dict | None:
        item = (
            self.stack.client("dynamodb")
            .get_item(TableName=self.stack.ref("SuppressionsTable"), Key={"email": {"S": address}}, ConsistentRead=True)
            .get("Item")
        )
        return {k: next(iter(v.values())) for k, v in item.items()} if item else None

    def receive(self, queue: str, most: int) -> list[dict]:
        return (
            self.stack.client("sqs")
            .receive_message(
                QueueUrl=self.stack.ref(queue),
                MaxNumberOfMessages=min(most, 10),
                AttributeNames=["All"],
                WaitTimeSeconds=0,
            )
            .get("Messages", [])
        )

    def queued(self, queue: str) -> int:
        attrs = (
            self.stack.client("sqs")
            .get_queue_attributes(
                QueueUrl=self.stack.ref(queue),
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )
            .get("Attributes", {})
        )
        return sum(
            int(attrs.get(name, 0)) for name in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
        )

    def drain(self, function: str, sample_name: str, label: str) -> int:
        """Be the function's SQS event source until its queue is empty: BatchSize messages per
        invocation, each batch deleted once the function reports no failure."""
        spec = self.stack.functions[function]
        queue, sqs = spec.sqs_source, self.stack.client("sqs")
        arn = self.stack.physical[queue]["Arn"]
        invocations = 0
        while messages := self.receive(queue, spec.batch_size):
            invocations += 1
            answer = self.invoke(function, sqs_event(sample_name, arn, messages), f"{label} ({len(messages)} msg)")
            self.expect(answer == {"batchItemFailures": []}, f"{function} reported failed messages: {_short(answer)}")
            for m in messages:
                sqs.delete_message(QueueUrl=self.stack.ref(queue), ReceiptHandle=m["ReceiptHandle"])
        return invocations

    def mail(self, issue_id: str, expected: int) -> list[tuple[str, bytes]]:
        """What SES accepted for the issue, as (recipient, message): the server's outbox."""
        folder = self.dir / "outbox" / issue_id
        deadline = time.monotonic() + 10  # the server writes what SES accepted every 0.1 s
        while True:
            found = sorted(folder.glob("*.eml")) if folder.is_dir() else []
            if len(found) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        out = []
        for path in found:
            raw = path.read_bytes()
            message = email.message_from_bytes(raw, policy=email.policy.default)
            out.append((message["To"].addresses[0].addr_spec, raw))
        if found:
            self.say(f"  outbox: {len(found)} messages in {folder}")
        return out

    # -- the pipeline

    def pipeline(self) -> None:
        from newsletter.store import ledger

        t = time.monotonic()
        active = self.subscribers()
        document = json.loads(ISSUE_FILE.read_text(encoding="utf-8"))
        issue_id, list_id = document["issue_id"], document["list"]
        self.expect(list_id == LIST_ID, f"{ISSUE_FILE.name} is for list {list_id}, not {LIST_ID}")
        key = f"issues/{issue_id}.json"
        s3, bucket = self.stack.client("s3"), self.stack.bucket
        s3.put_object(Bucket=bucket, Key=key, Body=ISSUE_FILE.read_bytes(), ContentType="application/json")
        head = s3.head_object(Bucket=bucket, Key=key)
        self.say(f"uploaded s3://{bucket}/{key} (version {head.get('VersionId')})")
        self.phase("list, readers, upload", t)

        self.say("the pipeline, one `sam local invoke` at a time:")
        t = time.monotonic()
        answer = self.invoke("PublishFunction", s3_put_event(bucket, key, head), "S3 put of the issue")
        outcomes = answer.get("outcomes") or [{}]
        self.expect(outcomes[0].get("status") == "published", f"the issue was not published: {_short(answer)}")
        record = self.issue(issue_id)
        self.expect(record.get("status") == "sending", f"issue status {record.get('status')!r} after publish")
        segments = self.queued("FanoutQueue")
        self.expect(segments > 0, "the publish queued no fan-out segment")
        self.say(f"  issue {issue_id}: status sending; {segments} segments on the fan-out queue")

        self.drain("FanoutFunction", "sqs-fanout-segment.json", "segment")
        record = self.issue(issue_id)
        self.expect(
            int(record.get("queued") or 0) == len(active),
            f"fan-out queued {record.get('queued')} recipients, not the {len(active)} active readers",
        )
        batches = self.queued("SendQueue")
        self.say(f"  fan-out: {record.get('queued')} recipients queued in {batches} batches")

        self.drain("SendFunction", "sqs-send-batch.json", "recipient batches")
        record = self.issue(issue_id)
        self.expect(
            int(record.get("sent") or 0) == len(active), f"{record.get('sent')} sent, not {len(active)}: {record}"
        )
        mail = self.mail(issue_id, len(active))
        recipients = sorted(to for to, _ in mail)
        self.expect(recipients == sorted(active), f"mail went to {recipients}, not to the active readers {active}")
        self.say(f"  send: {record.get('sent')} sent, one message to each active reader")

        reconciled = self.drain("FanoutFunction", "sqs-fanout-segment.json", "reconcile job")
        record = self.issue(issue_id)
        self.expect(record.get("status") == "sent", f"issue status {record.get('status')!r} after the last batch")
        self.say(f"  issue {issue_id}: status sent ({reconciled} reconcile invocation(s))")

        ddb, sends = self.stack.client("dynamodb"), self.stack.ref("SendsTable")
        topic, queue_arn = self.stack.ref("FeedbackTopic"), self.stack.physical["FeedbackQueue"]["Arn"]
        records = []
        for name, address in (
            ("sqs-feedback-event-bounce-permanent.json", BOUNCE),
            ("sqs-feedback-event-complaint.json", COMPLAINT),
        ):
            item = ledger.get(ddb, sends, issue_id, address) or {}
            self.expect(bool(item.get("message_id")), f"no SES message id in the send ledger for {address}")
            records.append(
                feedback_record(
                    name,
                    topic_arn=topic,
                    queue_arn=queue_arn,
                    issue_id=issue_id,
                    list_id=list_id,
                    address=address,
                    message_id=item["message_id"],
                )
            )
        event = sample("sqs-feedback-event-bounce-permanent.json")
        event["Records"] = records
        answer = self.invoke("FeedbackFunction", event, "a bounce and a complaint")
        self.expect(answer == {"batchItemFailures": []}, f"feedback failed: {_short(answer)}")
        record = self.issue(issue_id)
        for address, status, counter in ((BOUNCE, "bounced", "bounced_hard"), (COMPLAINT, "complained", "complained")):
            self.expect(self.suppressed(address) is not None, f"{address} is not suppressed after its {status}")
            self.expect(
                self.subscriber_status(address) == status,
                f"{address} is {self.subscriber_status(address)!r}, not {status!r}",
            )
            self.expect(int(record.get(counter) or 0) == 1, f"issue counter {counter} = {record.get(counter)}, not 1")
        self.say("  feedback: bounce@ and complaint@ suppressed, marked bounced/complained; issue counters 1 and 1")

        reader = active[0]
        raw = next(raw for to, raw in mail if to == reader)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        header = str(message["List-Unsubscribe"] or "")
        link = re.search(r"<(https://[^>]+)>", header)
        self.expect(link is not None, f"no https link in List-Unsubscribe: {header!r}")
        self.expect(
            "List-Unsubscribe=One-Click" in str(message["List-Unsubscribe-Post"] or ""), "no List-Unsubscribe-Post"
        )
        query = urlsplit(link.group(1)).query
        self.say(f"  List-Unsubscribe of the message to {reader}: {_short(link.group(1), 90)}")

        answer = self.invoke(
            "UnsubscribeFunction", function_url_event("function-url-unsubscribe-get.json", query), "GET (the page)"
        )
        page = answer.get("body") or ""
        if answer.get("isBase64Encoded"):
            page = base64.b64decode(page).decode("utf-8", "replace")
        self.expect(answer.get("statusCode") == 200, f"GET answered {answer.get('statusCode')}")
        self.expect("<form" in page and "method" in page, "GET's page has no form to confirm with")
        self.expect(self.subscriber_status(reader) == "active", "a GET changed the reader's status")
        before = int(self.issue(issue_id).get("unsubscribed") or 0)
        answer = self.invoke(
            "UnsubscribeFunction",
            function_url_event("function-url-unsubscribe-post.json", query, body=b"List-Unsubscribe=One-Click"),
            "one-click POST",
        )
        self.expect(answer.get("statusCode") == 200, f"POST answered {answer.get('statusCode')}")
        self.expect(
            self.subscriber_status(reader) == "unsubscribed",
            f"after the POST the reader is {self.subscriber_status(reader)!r}",
        )
        after = int(self.issue(issue_id).get("unsubscribed") or 0)
        self.expect(after == before + 1, f"the issue's unsubscribed counter went {before} -> {after}")
        self.say(f"  unsubscribe: GET left {reader} active; the POST unsubscribed them (issue counter {after})")
        self.phase("invocations", t)

    def main(self) -> int:
        started = time.monotonic()
        try:
            t = time.monotonic()
            self.check_docker()
            self.build()
            self.phase("sam build", t)
            t = time.monotonic()
            self.image()
            self.phase("invoke image", t)
            t = time.monotonic()
            self.start_stack()
            self.phase("local stack", t)
            self.pipeline()
        except Failed as exc:
            print(f"sam-local: FAIL: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            if self.started_stack and not self.args.keep:
                try:
                    self.cli("local", "stop")
                except Failed as exc:
                    print(f"sam-local: could not stop the local stack: {exc}", file=sys.stderr)
        total = time.monotonic() - started
        times = [took for _, _, took in self.invocations]
        self.say("timings: " + ", ".join(f"{name} {took:.1f} s" for name, took in self.phases))
        handlers = [d for d in self.durations if d == d]  # not NaN
        self.say(
            f"{len(times)} invocations: {sum(times):.1f} s in all, {min(times):.1f} to {max(times):.1f} s each "
            f"(mean {sum(times) / len(times):.1f} s; of that the handlers {sum(handlers):.1f} s in all)"
        )
        for function in dict.fromkeys(f for f, _, _ in self.invocations):
            mine = [took for f, _, took in self.invocations if f == function]
            self.say(f"  {function}: {len(mine)} x, mean {sum(mine) / len(mine):.1f} s")
        self.say(f"ok: every function ran in a Lambda container against the local stack ({total:.0f} s in all)")
        if self.args.keep:
            self.say(f"the local stack keeps running: NEWSLETTER_LOCAL_DIR={self.dir}, env vars in {ENV_FILE} there")
        return 0


# --- events for a hand-run `sam local invoke` (docs/sam-local.md) ---------------------------------

QUEUE_SAMPLES = {
    "FanoutQueue": "sqs-fanout-segment.json",
    "SendQueue": "sqs-send-batch.json",
    "FeedbackQueue": "sqs-feedback-event-bounce-permanent.json",
}


def _running_stack():
    from . import server
    from .stack import LocalStack

    state = server.running()
    if not state:
        raise Failed(f"no local stack runs in {server.state_dir()}: newsletter local start --host ADDRESS")
    return LocalStack.attach(state)


def upload(path: Path, key: str | None, out: Path | None) -> Path:
    """Put an issue document into the running local stack's bucket; write the S3 event of that upload."""
    stack = _running_stack()
    body = path.read_bytes()
    key = key or f"issues/{json.loads(body)['issue_id']}.json"
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key=key, Body=body, ContentType="application/json")
    event = s3_put_event(stack.bucket, key, s3.head_object(Bucket=stack.bucket, Key=key))
    out = out or Path("out") / "events" / f"s3-put-{Path(key).stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(event, indent=1), encoding="utf-8")
    return out


def receive(queue: str, most: int | None, out: Path | None) -> tuple[Path, int]:
    """Take messages off one of the running local stack's queues (as Lambda's poller would, then
    deleting them, since nothing else will) and write them as the function's SQS event."""
    stack = _running_stack()
    if queue not in QUEUE_SAMPLES:
        raise Failed(f"queue {queue!r}: one of {', '.join(QUEUE_SAMPLES)}")
    consumer = next(f for f in stack.functions.values() if f.sqs_source == queue)
    sqs, url = stack.client("sqs"), stack.ref(queue)
    got = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=min(most or consumer.batch_size, 10), AttributeNames=["All"]
    ).get("Messages", [])
    event = sqs_event(QUEUE_SAMPLES[queue], stack.physical[queue]["Arn"], got)
    out = out or Path("out") / "events" / f"{queue}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(event, indent=1), encoding="utf-8")
    for m in got:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return out, len(got)


def events_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.sam_local", description="Events for sam local invoke.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upload", help="upload an issue to the local stack; write its S3 event")
    up.add_argument("file", type=Path)
    up.add_argument("--key", help="[default: issues/<issue_id>.json]")
    up.add_argument("--out", type=Path, help="[default: out/events/s3-put-<id>.json]")
    rc = sub.add_parser("receive", help="take messages off a local queue; write them as an SQS event")
    rc.add_argument("queue", choices=sorted(QUEUE_SAMPLES))
    rc.add_argument("--max", type=int, help="[default: the consuming function's BatchSize]")
    rc.add_argument("--out", type=Path, help="[default: out/events/<queue>.json]")
    args = parser.parse_args(argv)
    try:
        if args.command == "upload":
            print(upload(args.file, args.key, args.out))
        else:
            path, count = receive(args.queue, args.max, args.out)
            if not count:
                print(f"{args.queue} is empty: no event written", file=sys.stderr)
                return 1
            print(path)
            print(f"{count} message(s), deleted from {args.queue}", file=sys.stderr)
    except Failed as exc:
        print(f"sam-local: FAIL: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("upload", "receive"):
        return events_main(argv)
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Also: python -m devstack.sam_local upload|receive ... (events for a hand-run sam local invoke)",
    )
    parser.add_argument(
        "--image",
        default=os.environ.get("SAM_LOCAL_IMAGE", "auto"),
        help="auto (official if Docker has or can pull it, else built here), official, local, or an image name "
        "[default: $SAM_LOCAL_IMAGE or auto]",
    )
    parser.add_argument("--no-build", action="store_true", help="use .aws-sam/build as it is")
    parser.add_argument("--keep", action="store_true", help="leave the local stack running afterwards")
    parser.add_argument("--dir", type=Path, default=ROOT / "out" / "sam-local", help="the stack's state directory")
    parser.add_argument("--host", help="the address the stack listens on [default: the Docker bridge's gateway]")
    parser.add_argument("--sam", default=os.environ.get("SAM") or str(ROOT / ".venv-sam" / "bin" / "sam"))
    args = parser.parse_args(argv)
    if not Path(args.sam).is_file() and not shutil.which(args.sam):
        print(f"sam-local: FAIL: no sam at {args.sam} (make .venv-sam/.installed, or set SAM=...)", file=sys.stderr)
        return 1
    return Run(args).main()


if __name__ == "__main__":
    sys.exit(main())
