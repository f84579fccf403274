"""A local copy of the stack in moto: the template's tables, queues and bucket, with the
environment each function would get, and a loop that delivers queued messages to the handlers
as the Lambda SQS poller would.

Call inside `moto.mock_aws()`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import secrets
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import boto3

from . import template as tpl
from .clock import VirtualClock, installed

ROOT = tpl.ROOT
EVENTS = Path(__file__).resolve().parent / "events"  # shipped inside the package, as the template

DAY = 86_400.0

LOCAL_PARAMETERS = {
    "SenderAddress": "news@news.example.org",
    "SenderName": "ICMPD Infomail",
    "SenderDomain": "news.example.org",
    "UnsubscribeBaseUrl": "https://news.example.org/unsubscribe",
    "UnsubscribeMailto": "unsubscribe@news.example.org",
    "WebBaseUrl": "https://news.example.org/web",
}


class FakeContext:
    """The parts of the Lambda context that handlers and Powertools read."""

    def __init__(self, function_name: str, timeout_s: int, memory_mb: int, clock=None):
        import time

        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = function_arn(function_name)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._monotonic = clock.monotonic if clock is not None else time.monotonic
        self._deadline = self._monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._monotonic()) * 1000))


@dataclass
class Function:
    logical_id: str
    handler: str
    environment: dict[str, str]
    timeout: int
    memory: int
    sqs_source: str | None = None  # logical id of the queue that triggers it
    batch_size: int = 10
    # The event source mapping's FunctionResponseTypes: without it, Lambda ignores a reported
    # batchItemFailures and deletes every message of a batch the handler returned from.
    reports_item_failures: bool = False
    async_retries: int = 2  # EventInvokeConfig.MaximumRetryAttempts (AWS's default: 2)
    on_failure: str | None = None  # logical id of the queue an async event goes to after its retries
    clients: dict = field(default_factory=dict)  # its container's boto3 clients (newsletter.aws)
    secrets: dict = field(default_factory=dict)  # and its cached secret

    def module(self):
        return importlib.import_module(self.handler.rsplit(".", 1)[0])


@dataclass
class LocalStack:
    template: dict
    resolver: tpl.Resolver
    physical: dict[str, dict[str, str]]
    functions: dict[str, Function] = field(default_factory=dict)
    # None: moto in this process (`mock_aws`); else a moto server's URL (`newsletter --local`).
    endpoint_url: str | None = None
    # What the functions (and, in process, moto's SQS) take for "now": see devstack/clock.py.
    clock: VirtualClock = field(default_factory=VirtualClock)
    # Faults injected into the functions' AWS calls while they run (devstack/faults.py).
    faults: object | None = None
    # Notes every AWS call each function makes (devstack/iam.py).
    recorder: object | None = None
    _sequencer: int = 0
    _clients: dict = field(default_factory=dict)

    def client(self, service: str):
        """The stack's own client (set-up, the poller): never one of the functions' clients."""
        found = self._clients.get(service)
        if found is None:
            if self.endpoint_url is None:
                found = boto3.client(service, region_name=tpl.REGION)
            else:  # the server takes any credentials; never hand it real ones
                found = boto3.client(
                    service,
                    region_name=tpl.REGION,
                    endpoint_url=self.endpoint_url,
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                )
            self._clients[service] = found
        return found

    # --- resources -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        parameters: dict[str, str] | None = None,
        *,
        token_secret: str | None = None,
        endpoint_url: str | None = None,
    ) -> LocalStack:
        new_deployment()
        template = tpl.load()
        params = {**LOCAL_PARAMETERS, **(parameters or {})}
        physical: dict[str, dict[str, str]] = {}
        resolver = tpl.Resolver(template, params, physical)
        stack = cls(template, resolver, physical, endpoint_url=endpoint_url)
        region = tpl.REGION
        ddb, sqs, s3 = stack.client("dynamodb"), stack.client("sqs"), stack.client("s3")

        queues = tpl.resources(template, "AWS::SQS::Queue")
        for logical in queues:  # names first: redrive policies refer to other queues
            name = f"local-{logical}"
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            arn = f"arn:aws:sqs:{region}:{tpl.ACCOUNT}:{name}"
            physical[logical] = {"Ref": url, "QueueUrl": url, "Arn": arn, "QueueName": name}
        for logical, res in queues.items():
            props = resolver.resolve(res.get("Properties") or {})
            attrs = {}
            if "VisibilityTimeout" in props:
                attrs["VisibilityTimeout"] = str(props["VisibilityTimeout"])
            if "RedrivePolicy" in props:
                attrs["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
            if attrs:
                sqs.set_queue_attributes(QueueUrl=physical[logical]["Ref"], Attributes=attrs)

        for logical, res in tpl.resources(template, "AWS::DynamoDB::Table").items():
            props = res["Properties"]
            name = f"local-{logical}"
            ddb.create_table(
                TableName=name,
                KeySchema=props["KeySchema"],
                AttributeDefinitions=props["AttributeDefinitions"],
                BillingMode="PAY_PER_REQUEST",
                **(
                    {"GlobalSecondaryIndexes": props["GlobalSecondaryIndexes"]}
                    if "GlobalSecondaryIndexes" in props
                    else {}
                ),
            )
            physical[logical] = {"Ref": name, "Arn": f"arn:aws:dynamodb:{region}:{tpl.ACCOUNT}:table/{name}"}

        for logical, res in tpl.resources(template, "AWS::S3::Bucket").items():
            props = resolver.resolve(res.get("Properties") or {})
            name = props.get("BucketName") or f"local-{logical.lower()}"
            s3.create_bucket(Bucket=name)
            if (props.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            physical[logical] = {
                "Ref": name,
                "Arn": f"arn:aws:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{region}.amazonaws.com",
            }

        # SAM makes an AWS::Lambda::Url named <function>Url for each FunctionUrlConfig.
        for logical in tpl.resources(template, "AWS::Serverless::Function"):
            if "FunctionUrlConfig" in template["Resources"][logical]["Properties"]:
                url_id = f"local{logical.lower()}"[:32]
                physical[f"{logical}Url"] = {
                    "Ref": f"arn:aws:lambda:{region}:{tpl.ACCOUNT}:function:local-{logical}",
                    "FunctionUrl": f"https://{url_id}.lambda-url.{region}.on.aws/",
                    "FunctionArn": f"arn:aws:lambda:{region}:{tpl.ACCOUNT}:function:local-{logical}",
                }

        for logical, res in tpl.resources(template, "AWS::Scheduler::ScheduleGroup").items():
            name = (res.get("Properties") or {}).get("Name") or f"local-{logical}"
            stack.client("scheduler").create_schedule_group(Name=name)
            arn = f"arn:aws:scheduler:{region}:{tpl.ACCOUNT}:schedule-group/{name}"
            physical[logical] = {"Ref": name, "Arn": arn}
        for logical in tpl.resources(template, "AWS::IAM::Role"):
            name = f"local-{logical}"
            physical[logical] = {"Ref": name, "Arn": f"arn:aws:iam::{tpl.ACCOUNT}:role/{name}"}
        for logical in tpl.resources(template, "AWS::Serverless::Function"):
            # The ARN a function's invocations carry (FakeContext), which a schedule's target names.
            physical[logical] = {"Ref": f"local-{logical}", "Arn": function_arn(logical)}

        for logical in tpl.resources(template, "AWS::SNS::Topic"):
            # A topic's Ref is its ARN; the feedback function checks envelopes against it.
            arn = f"arn:aws:sns:{region}:{tpl.ACCOUNT}:newsletter-{logical}-1TQ7HEXAMPLE"
            physical[logical] = {"Ref": arn, "TopicName": arn.rsplit(":", 1)[1]}
        for logical in template["Resources"]:
            physical.setdefault(logical, {"Ref": f"local-{logical}", "Arn": f"arn:aws:local:::{logical}"})

        stack._create_ses_and_secret(params, token_secret)
        stack._read_functions()
        return stack

    @classmethod
    def attach(cls, state: dict) -> LocalStack:
        """The stack that `create` made earlier (in a moto server), from `state()`; creates nothing."""
        template = tpl.load()
        physical = state["physical"]
        stack = cls(
            template, tpl.Resolver(template, state["params"], physical), physical, endpoint_url=state["endpoint_url"]
        )
        stack._read_functions()
        return stack

    def state(self) -> dict:
        """What `attach` needs: JSON."""
        return {"endpoint_url": self.endpoint_url, "params": self.resolver.params, "physical": self.physical}

    def _create_ses_and_secret(self, params: dict[str, str], token_secret: str | None) -> None:
        ses = self.client("sesv2")
        ses.create_email_identity(EmailIdentity=self.param("SenderDomain"))
        ses.create_email_identity(EmailIdentity=self.param("SenderAddress"))
        for name, res in tpl.resources(self.template, "AWS::SES::ConfigurationSet").items():
            props = self.resolver.resolve(res.get("Properties") or {})
            config_name = props.get("Name") or f"local-{name}"
            self.physical[name] = {"Ref": config_name}
            try:
                ses.create_configuration_set(ConfigurationSetName=config_name)
            except Exception:  # noqa: BLE001 - moto versions differ in what they model
                pass
        param = self.param("TokenSecretParameter")
        name = param if param.startswith("/") else "/" + param
        self.client("ssm").put_parameter(
            Name=name, Value=token_secret or secrets.token_urlsafe(32), Type="SecureString", Overwrite=True
        )

    def _read_functions(self) -> None:
        for logical, props in tpl.function_specs(self.template).items():
            env = {
                k: str(v) for k, v in self.resolver.resolve(props["Environment"]["Variables"]).items() if v is not None
            }
            function = Function(
                logical, props["Handler"], env, int(props.get("Timeout", 3)), int(props.get("MemorySize", 128))
            )
            for ev in (props.get("Events") or {}).values():
                if ev.get("Type") == "SQS":
                    function.sqs_source = ev["Properties"]["Queue"]["Fn::GetAtt"][0]
                    function.batch_size = int(ev["Properties"].get("BatchSize", 10))
                    function.reports_item_failures = "ReportBatchItemFailures" in (
                        ev["Properties"].get("FunctionResponseTypes") or []
                    )
            invoke_config = props.get("EventInvokeConfig") or {}
            function.async_retries = int(invoke_config.get("MaximumRetryAttempts", 2))
            destination = ((invoke_config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
            if isinstance(destination, dict) and "Fn::GetAtt" in destination:
                function.on_failure = destination["Fn::GetAtt"][0]
            self.functions[logical] = function

    def param(self, name: str) -> str:
        return self.resolver.params[name]

    def ref(self, logical: str) -> str:
        return self.physical[logical]["Ref"]

    def function_for_handler(self, module: str) -> Function:
        for f in self.functions.values():
            if f.handler.rsplit(".", 1)[0] == module:
                return f
        raise KeyError(module)

    # --- running functions -----------------------------------------------------------------

    @contextmanager
    def environment(self, function: Function):
        """Exactly the function's template environment (plus what the Lambda runtime sets)."""
        from newsletter import aws

        runtime = {
            **({"AWS_ENDPOINT_URL": self.endpoint_url} if self.endpoint_url else {}),
            "AWS_REGION": tpl.REGION,
            "AWS_DEFAULT_REGION": tpl.REGION,
            "AWS_LAMBDA_FUNCTION_NAME": function.logical_id,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing") if not self.endpoint_url else "testing",
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing")
            if not self.endpoint_url
            else "testing",
        }
        # Each function keeps its own clients and cached secret between invocations, as a warm
        # container does.
        saved = aws._clients, aws._secrets
        aws._clients, aws._secrets = function.clients, function.secrets
        try:
            with isolated_environment({**runtime, **function.environment}, keep_prefixes=("MOTO_", "PYTEST_")):
                yield
        finally:
            aws._clients, aws._secrets = saved

    @contextmanager
    def _running(self):
        """While functions run: the stack's clock (and, in process, moto's SQS on it too), and
        the fault plan, if any, in the functions' AWS clients."""
        with (
            installed(self.clock, sqs=self.endpoint_url is None),
            self.faults.installed() if self.faults is not None else contextlib.nullcontext(),
            self.recorder.installed() if self.recorder is not None else contextlib.nullcontext(),
        ):
            yield

    # --- EventBridge Scheduler -----------------------------------------------------------------

    def run_schedules(self) -> list[dict]:
        """Be EventBridge Scheduler for the template's schedule groups: every one-time schedule whose
        time has come (by the stack's clock) invokes its target function asynchronously with its
        input (context attributes filled in), then is deleted if its ActionAfterCompletion says so.
        Returns what each did: the schedule's name, its input, and the handler's answer."""
        from newsletter.schedule import due_at, unqualified
        from newsletter.store.schedules import names

        scheduler = self.client("scheduler")
        by_arn = {self.physical[f.logical_id]["Arn"]: f.logical_id for f in self.functions.values()}
        ran = []
        for group in tpl.resources(self.template, "AWS::Scheduler::ScheduleGroup"):
            name = self.ref(group)
            for found in names(scheduler, name):
                schedule = scheduler.get_schedule(Name=found, GroupName=name)
                when = due_at(schedule["ScheduleExpression"], schedule.get("ScheduleExpressionTimezone"))
                if when is None or schedule.get("State") == "DISABLED" or when.timestamp() > self.clock.time():
                    continue
                target = schedule["Target"]
                logical = by_arn.get(unqualified(target["Arn"]))
                if logical is None:
                    raise ValueError(f"schedule {found} invokes {target['Arn']}, which is not a function of this stack")
                text = target.get("Input") or "{}"
                for attribute, value in {
                    "schedule-arn": schedule["Arn"],
                    "scheduled-time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "execution-id": uuid.uuid4().hex[:16],
                    "attempt-number": "1",
                }.items():
                    text = text.replace(f"<aws.scheduler.{attribute}>", value)
                event = json.loads(text)
                answer = self.invoke_async(logical, event)
                if schedule.get("ActionAfterCompletion") == "DELETE":
                    with contextlib.suppress(scheduler.exceptions.ResourceNotFoundException):
                        scheduler.delete_schedule(Name=found, GroupName=name)
                ran.append({"name": found, "input": event, "answer": answer})
        return ran

    def context(self, logical_id: str) -> FakeContext:
        function = self.functions[logical_id]
        return FakeContext(function.logical_id, function.timeout, function.memory, self.clock)

    def invoke(self, logical_id: str, event: dict, context: FakeContext | None = None):
        """One synchronous invocation: the handler's answer, or its exception."""
        function = self.functions[logical_id]
        with self._running():
            context = context or self.context(logical_id)
            caller = self.recorder.function if self.recorder is not None else None
            if self.recorder is not None:
                self.recorder.function = logical_id
            try:
                with self.environment(function), compressed_waits(self.endpoint_url is not None):
                    return getattr(function.module(), function.handler.rsplit(".", 1)[1])(event, context)
            finally:
                if self.faults is not None:
                    self.faults.invocation_ended()
                if self.recorder is not None:
                    self.recorder.function = caller

    def invoke_async(self, logical_id: str, event: dict):
        """As Lambda handles an asynchronous event (an S3 notification): an invocation that
        raises is tried again a minute later, then two minutes later (MaximumRetryAttempts), and
        then the event goes to the function's OnFailure destination. The handler's answer, or
        None when every attempt failed."""
        function = self.functions[logical_id]
        error: BaseException | None = None
        with self._running():
            for attempt in range(1 + function.async_retries):
                self.clock.advance(60.0 * attempt)
                try:
                    return self.invoke(logical_id, event)
                except FAILURES as exc:
                    error = exc
                    _log_failure(logical_id, exc)
            if function.on_failure:
                record = {
                    "version": "1.0",
                    "timestamp": _iso_ms(self.clock.time()),
                    "requestContext": {
                        "requestId": str(uuid.uuid4()),
                        "functionArn": f"arn:aws:lambda:{tpl.REGION}:{tpl.ACCOUNT}:function:local-{logical_id}:$LATEST",
                        "condition": "RetriesExhausted",
                        "approximateInvokeCount": 1 + function.async_retries,
                    },
                    "requestPayload": event,
                    "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                    "responsePayload": {
                        "errorType": type(error).__name__,
                        "errorMessage": str(error)[:500],
                        "stackTrace": [],
                    },
                }
                self.client("sqs").send_message(QueueUrl=self.ref(function.on_failure), MessageBody=json.dumps(record))
        return None

    # --- events ----------------------------------------------------------------------------

    def s3_put_event(self, key: str) -> dict:
        """The S3 notification for an upload, shaped like events/s3-put-issue.json."""
        s3 = self.client("s3")
        bucket = self.ref(self._bucket())
        head = s3.head_object(Bucket=bucket, Key=key)
        event = json.loads((EVENTS / "s3-put-issue.json").read_text())
        record = event["Records"][0]
        record["s3"]["bucket"]["name"] = bucket
        record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
        from urllib.parse import quote_plus

        self._sequencer = max(self._sequencer + 1, int(self.clock.time() * 1_000_000))
        record["s3"]["object"] = {
            "key": quote_plus(key, safe="/"),
            "size": head["ContentLength"],
            "eTag": head["ETag"].strip('"'),
            **({"versionId": head["VersionId"]} if head.get("VersionId") else {}),
            # S3's sequencer orders the events of one key: a later upload has a greater one.
            "sequencer": f"{self._sequencer:018X}",
        }
        return event

    def _bucket(self) -> str:
        return next(iter(tpl.resources(self.template, "AWS::S3::Bucket")))

    @property
    def bucket(self) -> str:
        return self.ref(self._bucket())

    def upload_issue(self, key: str, body: bytes) -> dict:
        self.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body)
        return self.s3_put_event(key)

    def function_url_event(
        self,
        method: str = "GET",
        query: str | dict | list | None = None,
        body: str | bytes | None = None,
        *,
        base64_body: bool = False,
        content_type: str | None = "application/x-www-form-urlencoded",
        path: str = "/",
    ) -> dict:
        """A Function URL request (payload 2.0), shaped like events/function-url-unsubscribe-*.json.

        `query` is a raw query string or pairs for urlencode; `base64_body` encodes the body as
        the Function URL does for binary or form bodies.
        """
        import base64
        from urllib.parse import parse_qsl, urlencode

        event = json.loads((EVENTS / "function-url-unsubscribe-get.json").read_text())
        raw = query if isinstance(query, str) else urlencode(query or {})
        pairs = parse_qsl(raw, keep_blank_values=True)
        event["rawPath"] = path
        event["rawQueryString"] = raw
        if pairs:
            # As Lambda does: repeated names are joined with commas.
            params: dict[str, str] = {}
            for k, v in pairs:
                params[k] = f"{params[k]},{v}" if k in params else v
            event["queryStringParameters"] = params
        else:
            event.pop("queryStringParameters", None)
        event["requestContext"]["http"].update({"method": method, "path": path})
        event["requestContext"]["requestId"] = str(uuid.uuid4())
        if body is not None:
            data = body.encode("utf-8") if isinstance(body, str) else body
            event["body"] = base64.b64encode(data).decode("ascii") if base64_body else data.decode("utf-8")
            event["isBase64Encoded"] = base64_body
            if content_type:
                event["headers"]["content-type"] = content_type
            event["headers"]["content-length"] = str(len(data))
        return event

    def sqs_event(self, queue_logical: str, messages: list[dict]) -> dict:
        arn = self.physical[queue_logical]["Arn"]
        records = []
        for m in messages:
            records.append(
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": {
                        "ApproximateReceiveCount": m.get("Attributes", {}).get("ApproximateReceiveCount", "1"),
                        "SentTimestamp": m.get("Attributes", {}).get("SentTimestamp", "0"),
                        "SenderId": "LOCAL",
                        "ApproximateFirstReceiveTimestamp": "0",
                    },
                    "messageAttributes": {},
                    "md5OfBody": m.get("MD5OfBody", ""),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": tpl.REGION,
                }
            )
        return {"Records": records}

    def poll(self, logical_id: str, *, max_invocations: int = 100_000, horizon_s: float = DAY) -> dict:
        """Be the function's SQS event source until its queue is empty (see `run`). Returns counts."""
        return self.run(logical_id, max_invocations=max_invocations, horizon_s=horizon_s)[logical_id]

    def run(self, *logical_ids: str, max_invocations: int = 100_000, horizon_s: float = DAY) -> dict[str, dict]:
        """Be Lambda's SQS event sources for these functions (default: every SQS-triggered one),
        exactly as the template configures them, until their queues are empty:

        - up to BatchSize messages per invocation, the message's receive count in each record;
        - an invocation that raises (or overruns its timeout) leaves every message of its batch
          to come back after the queue's visibility timeout;
        - a returned `batchItemFailures` is honoured only when the event source declares
          `ReportBatchItemFailures`: then the listed messages come back and the others are
          deleted (an identifier that is not in the batch fails the whole batch); without it,
          every message of a batch the handler returned from is deleted, as Lambda does;
        - a message received more than the queue's maxReceiveCount times moves to its DLQ.

        In this process, time is the stack's virtual clock: when nothing is visible, it jumps to
        the moment the next message becomes visible (a visibility timeout ends, a delay runs
        out), so retries happen when AWS would make them, without the waiting. `horizon_s` bounds
        how far it may jump in all (a paused issue's batches come back forever). With a moto
        server (`newsletter --local`), a failed message is visible again at once instead.
        """
        functions = [self.functions[i] for i in logical_ids] or [f for f in self.functions.values() if f.sqs_source]
        stats = {f.logical_id: {"invocations": 0, "messages": 0, "failures": 0} for f in functions}
        sqs = self.client("sqs")
        invocations, skipped = 0, 0.0
        with self._running():
            while invocations < max_invocations:
                delivered = False
                for function in functions:
                    if invocations >= max_invocations:
                        break
                    got = sqs.receive_message(
                        QueueUrl=self.ref(function.sqs_source),
                        MaxNumberOfMessages=min(function.batch_size, 10),
                        AttributeNames=["All"],
                    ).get("Messages", [])
                    if got:
                        self._deliver(function, got, stats[function.logical_id])
                        invocations += 1
                        delivered = True
                if delivered:
                    continue
                wait = self._next_visible_in(functions)
                if wait is None or skipped + wait > horizon_s:
                    break
                self.clock.advance(wait)
                skipped += wait
        return stats

    def _deliver(self, function: Function, messages: list[dict], stats: dict) -> None:
        sqs, url = self.client("sqs"), self.ref(function.sqs_source)
        ids = {m["MessageId"] for m in messages}
        context = self.context(function.logical_id)
        try:
            result = self.invoke(function.logical_id, self.sqs_event(function.sqs_source, messages), context)
            failed = _reported_failures(result, ids) if function.reports_item_failures else set()
            if context.get_remaining_time_in_millis() <= 0:
                failed = ids  # Lambda stopped it at its timeout: nothing it said counts
        except FAILURES as exc:
            _log_failure(function.logical_id, exc)
            failed = ids
        stats["invocations"] += 1
        stats["messages"] += len(messages)
        stats["failures"] += len(failed)
        for m in messages:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            elif self.endpoint_url is not None:
                # A server's clock cannot be moved: the visibility timeout ends at once instead.
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)

    def _next_visible_in(self, functions: list[Function]) -> float | None:
        """Seconds until a message of these functions' queues becomes visible; None if they hold none."""
        if self.endpoint_url is not None:
            return None
        from moto.sqs.models import sqs_backends

        backend = sqs_backends[tpl.ACCOUNT][tpl.REGION]
        now_ms = self.clock.time() * 1000.0
        soonest = None
        for function in functions:
            queue = backend.queues.get(self.physical[function.sqs_source]["QueueName"])
            for m in getattr(queue, "_messages", []):
                at = max(m.visible_at, m.delayed_until)
                soonest = at if soonest is None else min(soonest, at)
        if soonest is None:
            return None
        return max(0.0, soonest - now_ms) / 1000.0 + 0.001


def function_arn(logical_id: str) -> str:
    """A local function's ARN, as its context names it (FakeContext.invoked_function_arn)."""
    return f"arn:aws:lambda:{tpl.REGION}:{tpl.ACCOUNT}:function:{logical_id}"


def _failures():
    from .faults import Crash

    return (Exception, Crash)


FAILURES = _failures()


def _reported_failures(result, ids: set[str]) -> set[str]:
    """The messages a handler's partial batch response fails, as Lambda reads it."""
    if not isinstance(result, dict) or result.get("batchItemFailures") is None:
        return set()
    items = result["batchItemFailures"]
    if not isinstance(items, list):
        return set(ids)
    failed = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in ids:
            return set(ids)  # Lambda then fails the whole batch
        failed.add(identifier)
    return failed


def _log_failure(function: str, exc: BaseException) -> None:
    """What Lambda writes to the function's log when an invocation fails."""
    print(
        json.dumps(
            {"level": "ERROR", "function": function, "errorType": type(exc).__name__, "errorMessage": str(exc)[:300]}
        ),
        flush=True,
    )


def _iso_ms(at: float) -> str:
    from datetime import datetime

    when = datetime.fromtimestamp(at, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def new_deployment() -> None:
    """Forget what the functions' containers cached (clients, the secret, issue states, prepared
    messages): a new stack is a new deployment, and nothing of another one's is valid in it."""
    from newsletter import aws, config
    from newsletter.handlers import public, send

    aws.reset()
    config.clear_settings()
    send.sender.reset()
    public.site.reset()


BASICS = ("PATH", "HOME", "TZ", "LANG", "TMPDIR")


@contextmanager
def isolated_environment(env: dict[str, str], *, keep_prefixes: tuple[str, ...] = ()):
    """os.environ set to exactly `env` plus the process's basics, and every function's settings
    read again from it; all restored afterwards."""
    from newsletter import config

    saved = dict(os.environ)
    keep = {k: v for k, v in os.environ.items() if k in BASICS or (keep_prefixes and k.startswith(keep_prefixes))}
    os.environ.clear()
    os.environ.update({**keep, **env})
    config.clear_settings()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        config.clear_settings()


@contextmanager
def compressed_waits(server: bool = False):
    """Locally, waits that only pace a real AWS account (the SES rate, throttle backoff) are cut
    to nothing. Requeue delays (and a rollout's waits) are kept in this process (the virtual clock
    skips them); a moto server's clock cannot be skipped, so there they are cut too."""
    from newsletter import rollout
    from newsletter.handlers import send

    sender = send.sender
    saved = sender.pace, sender.throttle_backoff_s, sender.max_delay_s, rollout.HOP_S
    # moto has no account quota (no GetAccount), and its SES has no rate to keep to.
    sender.pace, sender.throttle_backoff_s = False, 0.0
    if server:
        # A rollout's wait: the CLI moves the stack's clock on to the verdict (cli/publishing.py).
        sender.max_delay_s = rollout.HOP_S = 0
    try:
        yield
    finally:
        sender.pace, sender.throttle_backoff_s, sender.max_delay_s, rollout.HOP_S = saved


def sent_messages() -> list:
    """What moto's SES accepted (raw messages), in order."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID][tpl.REGION].sent_messages)
