"""Least privilege, checked against what the code does: each function's AWS calls in a full local
run are recorded, and the template must allow every one of them and grant no write or scan that
none of them makes."""

import json
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError
from conftest import SECRET, issue_doc

from devstack import iam, ses_feedback
from devstack import template as tpl
from devstack.demo import create_list

FUNCTIONS = sorted(tpl.function_specs(tpl.load()))
# Granted but not seen locally, and why. SES has authorised a v2 SendEmail of raw content as
# ses:SendRawEmail as well as ses:SendEmail; both are granted, on the sender identities only.
NOT_SEEN = {("SendFunction", "ses:SendRawEmail"), ("UnsubscribeFunction", "ses:SendRawEmail")}


@pytest.fixture(scope="module")
def run():
    """Everything the functions do: an invalid upload and its correction, a scheduled issue (its
    schedule made at upload, started at its time), fan-out (with a continuation), sending (a
    throttled call, a refused recipient, a requeued rest), feedback of both formats (a soft bounce
    among them), the reconcile job, and both unsubscribe requests."""
    from moto import mock_aws

    from devstack.stack import LocalStack, new_deployment
    from newsletter import aws, fanout, tokens
    from newsletter.store.subscribers import put_subscribers
    from newsletter.store.suppressions import suppress

    new_deployment()
    with mock_aws():
        stack = LocalStack.create(token_secret=SECRET)
        ddb = stack.client("dynamodb")
        create_list(stack, "infomail", "ICMPD Infomail")
        rows = [
            {
                "email": f"r{i:03d}@example.com",
                "name": f"R {i}",
                "language": "en",
                "status": "unsubscribed" if i == 3 else "active",
            }
            for i in range(60)
        ]
        rows += [{"email": a, "name": "", "status": "active", "language": "en"} for a in ses_feedback.SIMULATOR]
        put_subscribers(ddb, stack.ref("SubscribersTable"), "infomail", rows)
        suppress(ddb, stack.ref("SuppressionsTable"), "r004@example.com", "bounce", "2015-01-01T00:00:00Z")
        stack.recorder = iam.Recorder()

        key = "issues/2015-07.json"
        stack.invoke_async("PublishFunction", stack.upload_issue(key, json.dumps(issue_doc(subject="a\nb")).encode()))
        stack.invoke_async("PublishFunction", stack.upload_issue(key, json.dumps(issue_doc()).encode()))
        later = datetime.fromtimestamp(stack.clock.time() + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        # Scheduled and rolled out: the Judge's wait and verdict make their calls too.
        rolled_out = {"share_percent": 50, "wait_minutes": 30}
        scheduled = json.dumps(issue_doc("2015-08", send_at=later, rollout=rolled_out)).encode()
        stack.invoke_async("PublishFunction", stack.upload_issue("issues/2015-08.json", scheduled))
        stack.clock.advance(3600)
        assert [r["answer"]["outcomes"][0]["status"] for r in stack.run_schedules()] == ["started"]

        real, calls = aws.client, {"n": 0}

        def client(service):
            c = real(service)
            if service != "sesv2":
                return c

            class SES:
                def __getattr__(self, name):
                    return getattr(c, name)

                def send_email(self, **kwargs):
                    calls["n"] += 1
                    if 2 <= calls["n"] <= 5:
                        raise ClientError(
                            {
                                "Error": {"Code": "TooManyRequestsException"},
                                "ResponseMetadata": {"HTTPStatusCode": 429},
                            },
                            "SendEmail",
                        )
                    if kwargs["Destination"]["ToAddresses"] == ["r007@example.com"]:
                        raise ClientError(
                            {"Error": {"Code": "MessageRejected", "Message": "no such user"}}, "SendEmail"
                        )
                    return c.send_email(**kwargs)

            return SES()

        client.cache_clear = real.cache_clear
        saved = fanout.PAGE_SIZE, fanout.SAFETY_MS
        fanout.PAGE_SIZE, fanout.SAFETY_MS = 2, 10**9  # every segment continues itself after a page
        aws.client = client
        try:
            stack.run("FanoutFunction", "SendFunction")
        finally:
            aws.client = real
            fanout.PAGE_SIZE, fanout.SAFETY_MS = saved
        notes = ses_feedback.simulator_outcomes(stack, "infomail")
        one = next(i for i in ses_feedback.sent_ledger(stack, "2015-07") if i["email"].startswith("r"))
        notes += [
            ses_feedback.notification(
                "Bounce",
                one["message_id"],
                [one["email"]],
                issue_id="2015-07",
                list_id="infomail",
                bounce_type="Transient",
                bounce_subtype="MailboxFull",
            ),
            ses_feedback.notification("Delivery", one["message_id"], [one["email"]], event_publishing=False),
        ]
        ses_feedback.deliver(stack, notes)
        token = tokens.sign(SECRET.encode(), "infomail", "r001@example.com")
        for method, body in (("GET", None), ("POST", "List-Unsubscribe=One-Click")):
            stack.invoke(
                "UnsubscribeFunction", stack.function_url_event(method, {"token": token, "issue": "2015-07"}, body)
            )
        signing_up(stack)
        from newsletter.store.issues import get_issue

        staged = get_issue(stack.client("dynamodb"), stack.ref("IssuesTable"), "2015-08")
        assert (staged["status"], staged["rollout_verdict"]) == ("sent", "passed")  # the Judge ran its course
        grants = {f: iam.statements(stack, f) for f in FUNCTIONS}
        yield stack.recorder.calls, grants
    new_deployment()


def signing_up(stack) -> None:
    """The signup pages: a new reader signs up (a proof of work solved) and confirms, a reader who
    had left asks again."""
    import base64
    import re
    from urllib.parse import parse_qs, urlencode, urlsplit

    from altcha import Challenge, Payload, solve_challenge

    from devstack.stack import sent_messages
    from newsletter import config
    from newsletter.mailing_list import MailingList
    from newsletter.store.lists import put_list

    doc = {
        "list": "infomail",
        "name": "ICMPD Infomail",
        "consent": {"version": "1", "text": {"en": "I agree to receive the ICMPD Infomail."}},
    }
    record = MailingList.model_validate(doc).record()
    put_list(
        stack.client("dynamodb"),
        stack.ref("ListsTable"),
        **{k: v for k, v in record.items() if k != "list_id"},
        list_id="infomail",
    )
    stack.functions["UnsubscribeFunction"].environment.update({"ALTCHA_COST": "1", "ALTCHA_MAX_NUMBER": "4"})
    config.clear_settings()

    def call(method, path, query=None, form=None):
        event = stack.function_url_event(method, query, urlencode(form) if form else None, path=path)
        answer = stack.invoke("UnsubscribeFunction", event)
        body = answer["body"]
        return base64.b64decode(body).decode() if answer.get("isBase64Encoded") else body

    for address in ("new.reader@example.com", "r003@example.com"):
        challenge = Challenge.from_dict(json.loads(call("GET", "/altcha")))
        payload = Payload(challenge, solve_challenge(challenge)).to_base64()
        form = {"email": address, "consent": "yes", "consent_version": "1", "altcha": payload}
        call("POST", "/subscribe/infomail", form=form)
    import email
    import email.policy

    raw = next(m for m in sent_messages() if "new.reader@example.com" in m.destinations).raw_data
    text = email.message_from_string(raw, policy=email.policy.default).get_body(("plain",)).get_content()
    token = parse_qs(urlsplit(re.search(r"https://\S+/confirm\?\S+", text).group()).query)["token"][0]
    call("POST", "/confirm", form={"token": token})


def test_the_run_reached_every_function_and_path(run):
    calls, _ = run
    seen = {(c.function, c.operation) for c in calls}
    for expected in [
        ("PublishFunction", "delete_object"),
        ("PublishFunction", "create_schedule"),
        ("FanoutFunction", "send_message"),
        ("SendFunction", "delete_item"),
        ("SendFunction", "batch_get_item"),
        ("FeedbackFunction", "query"),
        ("UnsubscribeFunction", "update_item"),
        ("FeedbackFunction", "get_parameter"),
        ("UnsubscribeFunction", "put_item"),
        ("UnsubscribeFunction", "send_email"),
    ]:
        assert expected in seen, expected


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_template_allows_every_call_the_function_makes(run, function):
    calls, grants = run
    missing = sorted(
        {
            (a, r)
            for c in calls
            if c.function == function
            for a, r in iam.needed(c)
            if not iam.allowed(grants[function], a, r)
        }
    )
    assert missing == [], f"{function} makes calls its policy does not allow"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_template_grants_no_write_or_scan_the_function_does_not_make(run, function):
    calls, grants = run
    made = [(a, r) for c in calls if c.function == function for a, r in iam.needed(c)]
    unused = []
    for grant in grants[function]:
        for action in grant.actions:
            if action not in iam.WRITES or (function, action) in NOT_SEEN:
                continue
            for pattern in grant.resources:
                if not any(a == action and iam._matches(r, pattern) for a, r in made):
                    unused.append((grant.sid, action, pattern))
    assert unused == [], f"{function} is granted writes it never makes"


def test_no_policy_template_no_scan_no_describe_parameters():
    spec = tpl.function_specs(tpl.load())
    for name, props in spec.items():
        for policy in props.get("Policies") or []:
            assert isinstance(policy, dict) and set(policy) == {"Statement"}, f"{name}: a SAM policy template"
            for st in policy["Statement"]:
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                assert not {"dynamodb:Scan", "ssm:DescribeParameters"} & set(actions), name
                assert not any(a.endswith("*") for a in actions), f"{name}: {actions}"


def test_the_public_function_has_a_reserved_concurrency_by_default():
    template = tpl.load()
    props = template["Resources"]["UnsubscribeFunction"]["Properties"]
    assert props["ReservedConcurrentExecutions"] == {
        "Fn::If": ["ReservesUnsubscribeConcurrency", {"Ref": "UnsubscribeConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert template["Parameters"]["UnsubscribeConcurrency"]["Default"] >= 1


def test_the_security_page_lists_every_statement_of_every_function():
    page = (tpl.ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    rows = {
        (line.split("|")[1].strip(), line.split("|")[2].strip().strip("`"))
        for line in page.splitlines()
        if line.startswith("| ") and line.count("|") == 5
    }
    for name, props in tpl.function_specs(tpl.load()).items():
        for policy in props.get("Policies") or []:
            for st in policy["Statement"]:
                assert (name.removesuffix("Function"), st["Sid"]) in rows, f"docs/security.md misses {name} {st['Sid']}"
