"""A local copy of the stack in moto: the template's tables, queues and bucket, with the
environment each function would get, and a loop that delivers queued messages to the handlers
as the Lambda SQS poller would.

Call inside `moto.mock_aws()`.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field

import boto3

from . import template as tpl

ROOT = tpl.ROOT
EVENTS = ROOT / "events"

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

    def __init__(self, function_name: str, timeout_s: int, memory_mb: int):
        import time

        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:{tpl.REGION}:{tpl.ACCOUNT}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        import time

        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class Function:
    logical_id: str
    handler: str
    environment: dict[str, str]
    timeout: int
    memory: int
    sqs_source: str | None = None  # logical id of the queue that triggers it
    batch_size: int = 10

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

    def client(self, service: str):
        if self.endpoint_url is None:
            return boto3.client(service, region_name=tpl.REGION)
        # The server takes any credentials; never hand it real ones.
        return boto3.client(
            service, region_name=tpl.REGION, endpoint_url=self.endpoint_url,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )

    # --- resources -------------------------------------------------------------------------

    @classmethod
    def create(
        cls, parameters: dict[str, str] | None = None, *, token_secret: str | None = None, endpoint_url: str | None = None
    ) -> "LocalStack":
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
                **({"GlobalSecondaryIndexes": props["GlobalSecondaryIndexes"]} if "GlobalSecondaryIndexes" in props else {}),
            )
            physical[logical] = {"Ref": name, "Arn": f"arn:aws:dynamodb:{region}:{tpl.ACCOUNT}:table/{name}"}

        for logical, res in tpl.resources(template, "AWS::S3::Bucket").items():
            props = resolver.resolve(res.get("Properties") or {})
            name = props.get("BucketName") or f"local-{logical.lower()}"
            s3.create_bucket(Bucket=name)
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

        for logical, res in template["Resources"].items():
            physical.setdefault(logical, {"Ref": f"local-{logical}", "Arn": f"arn:aws:local:::{logical}"})

        stack._create_ses_and_secret(params, token_secret)
        stack._read_functions()
        return stack

    @classmethod
    def attach(cls, state: dict) -> "LocalStack":
        """The stack that `create` made earlier (in a moto server), from `state()`; creates nothing."""
        template = tpl.load()
        physical = state["physical"]
        stack = cls(template, tpl.Resolver(template, state["params"], physical), physical, endpoint_url=state["endpoint_url"])
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
            env = {k: str(v) for k, v in self.resolver.resolve(props["Environment"]["Variables"]).items() if v is not None}
            source, batch = None, 10
            for ev in (props.get("Events") or {}).values():
                if ev.get("Type") == "SQS":
                    source = ev["Properties"]["Queue"]["Fn::GetAtt"][0]
                    batch = int(ev["Properties"].get("BatchSize", 10))
            self.functions[logical] = Function(
                logical, props["Handler"], env, int(props.get("Timeout", 3)), int(props.get("MemorySize", 128)), source, batch
            )

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
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing") if not self.endpoint_url else "testing",
        }
        try:
            with isolated_environment({**runtime, **function.environment}, keep_prefixes=("MOTO_", "PYTEST_")):
                yield
        finally:
            aws.reset()

    def invoke(self, logical_id: str, event: dict, context: FakeContext | None = None):
        function = self.functions[logical_id]
        context = context or FakeContext(function.logical_id, function.timeout, function.memory)
        with self.environment(function), compressed_waits():
            return getattr(function.module(), function.handler.rsplit(".", 1)[1])(event, context)

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

        record["s3"]["object"].update(
            {"key": quote_plus(key, safe="/"), "size": head["ContentLength"], "eTag": head["ETag"].strip('"')}
        )
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

    def poll(self, logical_id: str, *, max_invocations: int = 100_000, retry_failed: bool = True) -> dict:
        """Deliver the function's queue to it until the queue is empty, as the SQS poller would.

        Messages reported as failed become visible again at once (instead of after the
        visibility timeout), so retries happen within the run. Returns counts.
        """
        function = self.functions[logical_id]
        sqs = self.client("sqs")
        url = self.ref(function.sqs_source)
        stats = {"invocations": 0, "messages": 0, "failures": 0}
        while stats["invocations"] < max_invocations:
            got = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=min(function.batch_size, 10), AttributeNames=["All"]
            ).get("Messages", [])
            if not got:
                break
            result = self.invoke(logical_id, self.sqs_event(function.sqs_source, got)) or {}
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
            stats["invocations"] += 1
            stats["messages"] += len(got)
            stats["failures"] += len(failed)
            for m in got:
                if m["MessageId"] in failed:
                    if retry_failed:
                        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
                else:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return stats


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
def compressed_waits():
    """Locally, waits that only pace a real AWS account (the SES rate, throttle backoff, requeue
    delays) are cut to nothing, so that a run with injected throttling takes seconds, not minutes."""
    from newsletter import sending
    from newsletter.handlers import send

    saved = sending.THROTTLE_BACKOFF_S, sending.requeue_delay, send.pacer
    # moto has no account quota (no GetAccount), and its SES has no rate to keep to.
    sending.THROTTLE_BACKOFF_S, sending.requeue_delay, send.pacer = 0.0, lambda attempt: 0, lambda ses, settings: None
    try:
        yield
    finally:
        sending.THROTTLE_BACKOFF_S, sending.requeue_delay, send.pacer = saved


def sent_messages() -> list:
    """What moto's SES accepted (raw messages), in order."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID][tpl.REGION].sent_messages)
