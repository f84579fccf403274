"""What each function does to AWS, against what the template lets it do.

`Recorder` notes every call a function makes through `newsletter.aws.client` while the local stack
runs it; `needed` turns a call into the IAM actions and resource ARNs AWS authorises it by;
`statements` reads a function's policy statements from the template, resolved as deployed; and
`allowed` matches one against the other. tests/test_iam.py holds the two together: every call is
allowed, and every write or scan the template grants is one some function makes.
"""

from __future__ import annotations

import fnmatch
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import template as tpl
from .proxy import intercept

WRITES = (
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:Scan",
    "s3:PutObject",
    "s3:DeleteObject",
    "sqs:SendMessage",
    "ses:SendEmail",
    "ses:SendRawEmail",
    "ssm:PutParameter",
    "scheduler:CreateSchedule",
    "scheduler:UpdateSchedule",
    "scheduler:DeleteSchedule",
    "iam:PassRole",
)


@dataclass(frozen=True)
class Call:
    function: str
    service: str
    operation: str
    params: dict = field(hash=False, compare=False)


class Recorder:
    def __init__(self):
        self.calls: list[Call] = []
        self.function: str | None = None
        self._active = False

    @contextmanager
    def installed(self):
        """`newsletter.aws.client` hands out recording clients while inside (re-entrant)."""
        if self._active:
            yield self
            return
        from newsletter import aws

        real = aws.client
        recorder = self

        def client(service: str):
            def record(name, method, args, kwargs):
                recorder.calls.append(Call(recorder.function or "?", service, name, kwargs))
                return method(*args, **kwargs)

            return intercept(real(service), record)

        client.cache_clear = real.cache_clear
        aws.client = client
        self._active = True
        try:
            yield self
        finally:
            self._active = False
            aws.client = real


# --- what a call needs ----------------------------------------------------------------------------

_DDB_ITEM = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_"))


def needed(call: Call) -> list[tuple[str, str]]:
    """(IAM action, resource ARN) pairs AWS checks for this call."""
    region, account, p = tpl.REGION, tpl.ACCOUNT, call.params
    table = lambda name: f"arn:aws:dynamodb:{region}:{account}:table/{name}"  # noqa: E731
    if call.service == "dynamodb":
        if call.operation == "batch_get_item":
            return [("dynamodb:BatchGetItem", table(t)) for t in p["RequestItems"]]
        if call.operation == "batch_write_item":
            return [("dynamodb:BatchWriteItem", table(t)) for t in p["RequestItems"]]
        if call.operation == "transact_write_items":
            out = []
            for item in p["TransactItems"]:
                ((kind, body),) = item.items()
                out.append((f"dynamodb:{_DDB_ITEM[kind]}", table(body["TableName"])))
            return out
        resource = table(p["TableName"]) + (f"/index/{p['IndexName']}" if p.get("IndexName") else "")
        return [(f"dynamodb:{_camel(call.operation)}", resource)]
    if call.service == "s3":
        obj = f"arn:aws:s3:::{p['Bucket']}/{p.get('Key', '')}"
        action = {
            "get_object": "s3:GetObjectVersion" if p.get("VersionId") else "s3:GetObject",
            "head_object": "s3:GetObject",
            "put_object": "s3:PutObject",
            "delete_object": "s3:DeleteObject",
        }
        return [(action.get(call.operation, f"s3:{_camel(call.operation)}"), obj)]
    if call.service == "sqs":
        name = p["QueueUrl"].rstrip("/").rsplit("/", 1)[1]
        action = "sqs:SendMessage" if call.operation.startswith("send_message") else f"sqs:{_camel(call.operation)}"
        return [(action, f"arn:aws:sqs:{region}:{account}:{name}")]
    if call.service == "sesv2":
        if call.operation == "get_account":
            return [("ses:GetAccount", "*")]
        # SES API v2's SendEmail is authorised as ses:SendEmail, for the From identity and the
        # configuration set (the template also grants ses:SendRawEmail: see test_iam.py).
        action = f"ses:{_camel(call.operation)}"
        return [
            (action, f"arn:aws:ses:{region}:{account}:configuration-set/{p['ConfigurationSetName']}"),
            (action, f"arn:aws:ses:{region}:{account}:identity/*"),
        ]
    if call.service == "scheduler":
        # A schedule's ARN names its group; creating or replacing one passes its target's role,
        # which IAM authorises as iam:PassRole on that role.
        schedule = f"arn:aws:scheduler:{region}:{account}:schedule/{p.get('GroupName') or 'default'}/{p['Name']}"
        out = [(f"scheduler:{_camel(call.operation)}", schedule)]
        if call.operation in ("create_schedule", "update_schedule"):
            out.append(("iam:PassRole", p["Target"]["RoleArn"]))
        return out
    if call.service == "ssm":
        name = p["Name"].lstrip("/").split(":", 1)[0]  # a version selector (name:3) names the same parameter
        return [(f"ssm:{_camel(call.operation)}", f"arn:aws:ssm:{region}:{account}:parameter/{name}")]
    return [(f"{call.service}:{_camel(call.operation)}", "*")]


# --- what the template grants ---------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]


def statements(stack, function: str) -> list[Grant]:
    """The function's policy statements, resolved as the local stack resolves the template.

    SAM policy templates are not expanded here: the template writes its statements out, and a
    policy template in it is an error (what it grants is SAM's to decide, and wider than the code)."""
    props = tpl.function_specs(stack.template)[function]
    out = []
    for policy in props.get("Policies") or []:
        if not (isinstance(policy, dict) and "Statement" in policy):
            raise ValueError(f"{function}: policy {policy!r} is not a statement list")
        for st in policy["Statement"]:
            st = stack.resolver.resolve(st)
            if st.get("Effect") != "Allow":
                continue
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            out.append(Grant(st.get("Sid", ""), tuple(actions), tuple(resources)))
    return out


def allowed(grants: list[Grant], action: str, resource: str) -> bool:
    return any(
        any(fnmatch.fnmatchcase(action, a) for a in g.actions) and any(_matches(resource, r) for r in g.resources)
        for g in grants
    )


def _matches(resource: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    if resource.endswith("/*"):  # what the call needs is a pattern too (SES: any identity)
        return fnmatch.fnmatchcase(pattern, resource) or pattern == resource
    return fnmatch.fnmatchcase(resource, pattern)
