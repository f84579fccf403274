"""The unsubscribe endpoint (Function URL): GET shows, POST unsubscribes once, bad links change nothing."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import boto3
import pytest
from conftest import SECRET, add_subscribers, deliver, issue_doc, issue_record, mailed, people, publish

from newsletter import tokens
from newsletter.store import subscribers

READER = "reader00001@example.com"
SECURITY_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
INVALID = "This unsubscribe link is not valid"


def token_for(address: str = READER, list_id: str = "infomail", secret: str = SECRET) -> str:
    return tokens.sign(secret.encode(), list_id, address)


def call(stack, method="GET", query=None, body=None, **kwargs) -> dict:
    return stack.invoke("UnsubscribeFunction", stack.function_url_event(method, query, body, **kwargs))


def ddb():
    return boto3.client("dynamodb", region_name="us-east-1")


def record(stack, address=READER, list_id="infomail"):
    return subscribers.get_subscriber(ddb(), stack.ref("SubscribersTable"), list_id, address)


def table_items(stack, logical="SubscribersTable"):
    items = ddb().scan(TableName=stack.ref(logical), ConsistentRead=True)["Items"]
    return sorted(items, key=repr)


def assert_headers(response):
    headers = response["headers"]
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value, name
    csp = headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "style-src 'unsafe-inline'", "form-action 'self'"):
        assert directive in csp


@pytest.fixture
def readers(stack):
    rows = people(5)
    add_subscribers(stack, rows)
    return rows


# --- GET and HEAD: a page, never a change -------------------------------------------------------


def test_get_shows_the_confirmation_page_and_changes_nothing(stack, readers):
    before = table_items(stack)
    token = token_for()
    response = call(stack, "GET", {"token": token})
    assert response["statusCode"] == 200
    assert_headers(response)
    page = response["body"]
    assert "ICMPD Infomail" in page  # the list's name, from the lists table
    assert "r***@example.com" in page and READER not in page  # the address, masked
    assert re.search(r'<form method="post" action="\?token=' + re.escape(token) + '">', page)
    assert f'<input type="hidden" name="token" value="{token}">' in page
    assert ">Unsubscribe</button>" in page
    assert "max-width: 600px" in page and "#123c69" in page  # the newsletter's card and colours
    assert table_items(stack) == before


def test_head_answers_like_get_without_a_body(stack, readers):
    before = table_items(stack)
    ok = call(stack, "HEAD", {"token": token_for()})
    bad = call(stack, "HEAD", {"token": "v1.nope.nope"})
    assert (ok["statusCode"], ok["body"]) == (200, "")
    assert (bad["statusCode"], bad["body"]) == (400, "")
    assert_headers(ok)
    assert table_items(stack) == before


def test_get_accepts_a_trailing_path(stack, readers):
    response = call(stack, "GET", {"token": token_for()}, path="/unsubscribe/")
    assert response["statusCode"] == 200 and "r***@example.com" in response["body"]


def test_the_confirmation_page_carries_the_issue_hint_into_its_form(stack, readers):
    token = token_for()
    page = call(stack, "GET", {"token": token, "issue": "2015-07"})["body"]
    assert f'action="?token={token}&amp;issue=2015-07"' in page


# --- POST: unsubscribe once ---------------------------------------------------------------------


def test_post_unsubscribes_once_and_is_idempotent(stack, readers):
    token = token_for()
    first = call(stack, "POST", {"token": token}, f"token={token}")
    assert first["statusCode"] == 200
    assert_headers(first)
    assert "You are unsubscribed" in first["body"] and "r***@example.com" in first["body"]
    item = record(stack)
    assert item["status"] == "unsubscribed"
    assert item["unsubscribed_at"] and item["unsubscribed_via"] == "page"
    after_first = table_items(stack)

    second = call(stack, "POST", {"token": token}, f"token={token}")
    assert (second["statusCode"], second["body"]) == (200, first["body"])
    assert table_items(stack) == after_first  # not even unsubscribed_at moved
    others = [r["email"] for r in readers if r["email"] != READER]
    assert all(record(stack, a)["status"] == "active" for a in others)


def test_the_page_form_posts_the_token_as_a_field(stack, readers):
    response = call(stack, "POST", None, f"token={token_for()}")
    assert response["statusCode"] == 200
    assert record(stack)["status"] == "unsubscribed"


@pytest.mark.parametrize("encoded", [True, False], ids=["base64", "plain"])
def test_rfc8058_one_click_post(stack, readers, encoded):
    response = call(stack, "POST", {"token": token_for()}, "List-Unsubscribe=One-Click", base64_body=encoded)
    assert response["statusCode"] == 200
    item = record(stack)
    assert (item["status"], item["unsubscribed_via"]) == ("unsubscribed", "one-click")


def test_one_click_as_multipart_form_data(stack, readers):
    body = '--b0undary\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--b0undary--\r\n'
    response = call(
        stack,
        "POST",
        {"token": token_for()},
        body,
        base64_body=True,
        content_type="multipart/form-data; boundary=b0undary",
    )
    assert response["statusCode"] == 200
    assert record(stack)["unsubscribed_via"] == "one-click"


def test_base64_form_body_with_the_token(stack, readers):
    response = call(stack, "POST", None, f"token={token_for()}", base64_body=True)
    assert response["statusCode"] == 200
    assert record(stack)["status"] == "unsubscribed"


def test_an_address_not_on_the_list_gets_the_same_answer_and_nothing_is_written(stack, readers):
    before = table_items(stack)
    subscribed = call(stack, "POST", {"token": token_for("reader00002@example.com")}, "List-Unsubscribe=One-Click")
    stranger = call(stack, "POST", {"token": token_for("reader99999@example.com")}, "List-Unsubscribe=One-Click")
    assert (stranger["statusCode"], stranger["body"]) == (subscribed["statusCode"], subscribed["body"])
    assert record(stack, "reader99999@example.com") is None
    changed = [i for i in table_items(stack) if i not in before]
    assert [i["email"]["S"] for i in changed] == ["reader00002@example.com"]


@pytest.mark.parametrize("status", ["bounced", "complained"])
def test_a_bounce_or_complaint_is_not_overwritten(stack, status):
    add_subscribers(stack, [{"email": READER, "name": "R", "status": status, "language": "en"}])
    response = call(stack, "POST", {"token": token_for()}, "List-Unsubscribe=One-Click")
    assert response["statusCode"] == 200
    assert record(stack)["status"] == status


def test_a_token_for_one_list_unsubscribes_from_that_list_only(stack, readers):
    add_subscribers(stack, [{"email": READER, "name": "R", "status": "active", "language": "en"}], list_id="jobs")
    response = call(stack, "POST", {"token": token_for(list_id="jobs")}, "List-Unsubscribe=One-Click")
    assert response["statusCode"] == 200
    assert record(stack, list_id="jobs")["status"] == "unsubscribed"
    assert record(stack, list_id="infomail")["status"] == "active"
    # And a token for a list the address is not on touches no other list.
    call(stack, "POST", {"token": token_for("reader00003@example.com", list_id="jobs")}, "List-Unsubscribe=One-Click")
    assert record(stack, "reader00003@example.com")["status"] == "active"


def test_the_next_issue_skips_the_unsubscribed_address(stack, readers):
    call(stack, "POST", {"token": token_for()}, "List-Unsubscribe=One-Click")
    publish(stack, issue_doc("2015-07"))
    deliver(stack)
    assert sorted(mailed()) == sorted(r["email"] for r in readers if r["email"] != READER)


def test_unsubscribed_after_fanout_is_skipped_by_the_sender(stack, readers):
    publish(stack, issue_doc("2015-07"))
    stack.poll("FanoutFunction")  # the address is already queued for sending
    call(stack, "POST", {"token": token_for()}, "List-Unsubscribe=One-Click")
    stack.poll("SendFunction")
    assert READER not in mailed()
    assert sorted(mailed()) == sorted(r["email"] for r in readers if r["email"] != READER)


# --- the issue hint (unsigned, statistics only) -------------------------------------------------


def test_the_issue_hint_is_counted_once_for_an_issue_of_that_list(stack, readers):
    publish(stack, issue_doc("2015-07"))
    token = token_for()
    call(stack, "POST", {"token": token, "issue": "2015-07"}, "List-Unsubscribe=One-Click")
    call(stack, "POST", {"token": token, "issue": "2015-07"}, "List-Unsubscribe=One-Click")  # repeated
    call(
        stack, "POST", {"token": token_for("reader99999@example.com"), "issue": "2015-07"}, "List-Unsubscribe=One-Click"
    )
    assert issue_record(stack, "2015-07")["unsubscribed"] == 1


@pytest.mark.parametrize(
    "hint, why",
    [
        ("2015-08", "no such issue"),
        ("2015-07", "issue of another list"),
        ("../2015-07", "malformed"),
        ("x" * 65, "too long"),
    ],
)
def test_an_issue_hint_that_does_not_fit_is_ignored(stack, readers, hint, why):
    publish(stack, issue_doc("2015-07"))
    list_id = "jobs" if why == "issue of another list" else "infomail"
    add_subscribers(stack, [{"email": READER, "name": "R", "status": "active", "language": "en"}], list_id=list_id)
    response = call(stack, "POST", {"token": token_for(list_id=list_id), "issue": hint}, "List-Unsubscribe=One-Click")
    assert response["statusCode"] == 200
    assert record(stack, list_id=list_id)["status"] == "unsubscribed"  # the unsubscribe itself stands
    assert "unsubscribed" not in issue_record(stack, "2015-07")
    assert issue_record(stack, "2015-08") is None  # no issue item is ever created by a hint


def test_the_issue_pattern_is_the_issue_documents(stack):
    from newsletter import issue, unsubscribe

    assert "^" + unsubscribe.ISSUE_ID.pattern + "$" == issue.ID_PATTERN


# --- links that are not valid -------------------------------------------------------------------


def _swap(text: str, at: int) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :]


def bad_tokens() -> dict[str, dict]:
    good = token_for()
    version, payload, mac = good.split(".")
    other_payload = token_for("reader00002@example.com").split(".")[1]
    return {
        "forged (another secret)": {"token": token_for(secret="not-the-secret")},
        "old version": {"token": "v0." + payload + "." + mac},
        "no version": {"token": payload + "." + mac},
        "truncated": {"token": good[:-6]},
        "truncated to the payload": {"token": f"{version}.{payload}"},
        "tampered payload": {"token": f"{version}.{other_payload}.{mac}"},
        "tampered mac": {"token": f"{version}.{payload}.{_swap(mac, 3)}"},
        "padded": {"token": good + "=="},
        "empty": {"token": ""},
        "missing": {},
        "two different tokens": [("token", good), ("token", token_for("reader00002@example.com"))],
        "markup": {"token": '"><script>alert(1)</script>'},
        "oversized": {"token": "v1." + "A" * 2000 + "." + mac},
    }


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("case", sorted(bad_tokens()))
def test_links_that_are_not_valid_are_refused_and_change_nothing(stack, readers, method, case):
    query = bad_tokens()[case]
    before = table_items(stack)
    body = "List-Unsubscribe=One-Click" if method == "POST" else None
    response = call(stack, method, query, body)
    assert response["statusCode"] == 400, case
    assert_headers(response)
    assert INVALID in response["body"]
    assert "<script>" not in response["body"] and "token" not in response["body"].split("<body>")[1]
    assert table_items(stack) == before


def test_a_token_in_the_form_that_differs_from_the_query_is_refused(stack, readers):
    response = call(stack, "POST", {"token": token_for()}, f"token={token_for('reader00002@example.com')}")
    assert response["statusCode"] == 400
    assert record(stack)["status"] == "active" and record(stack, "reader00002@example.com")["status"] == "active"


def test_a_body_that_is_not_base64_is_refused(stack, readers):
    event = stack.function_url_event("POST", {"token": token_for()}, "x")
    event["body"], event["isBase64Encoded"] = "not base64 at all!", True
    response = stack.invoke("UnsubscribeFunction", event)
    assert response["statusCode"] == 400
    assert record(stack)["status"] == "active"


# --- methods, sizes, escaping, logs -------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_not_allowed(stack, readers, method):
    response = call(stack, method, {"token": token_for()}, "List-Unsubscribe=One-Click")
    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "GET, HEAD, POST"
    assert_headers(response)
    assert record(stack)["status"] == "active"


@pytest.mark.parametrize("encoded", [True, False], ids=["base64", "plain"])
def test_oversized_bodies_are_refused(stack, readers, encoded):
    body = "List-Unsubscribe=One-Click&pad=" + "x" * 5000
    response = call(stack, "POST", {"token": token_for()}, body, base64_body=encoded)
    assert response["statusCode"] == 413
    assert_headers(response)
    assert record(stack)["status"] == "active"


def test_everything_reflected_is_escaped(stack):
    from devstack.demo import create_list

    create_list(stack, "odd", '<script>alert("list")</script> & Co')
    address = "<b>@<i>x</i>.example.com"
    add_subscribers(stack, [{"email": address, "name": "", "status": "active", "language": "en"}], list_id="odd")
    token = token_for(address, list_id="odd")
    pages = [
        call(stack, "GET", {"token": token, "issue": '"><script>x</script>'})["body"],
        call(stack, "POST", {"token": token}, "List-Unsubscribe=One-Click")["body"],
    ]
    for page in pages:
        assert "<script>" not in page and "<i>" not in page and "<b>" not in page
        assert "&lt;script&gt;alert(&quot;list&quot;)&lt;/script&gt; &amp; Co" in page
        assert "&lt;***@&lt;i&gt;x&lt;/i&gt;.example.com" in page
    assert "issue=" not in pages[0]  # a malformed hint is dropped, not reflected
    assert record(stack, address, "odd")["status"] == "unsubscribed"


def test_logs_name_the_outcome_and_list_never_the_address(stack, readers, capsys):
    from newsletter.privacy import address_hash

    token = token_for()
    call(stack, "GET", {"token": token})
    call(stack, "POST", {"token": token}, "List-Unsubscribe=One-Click")
    call(stack, "POST", {"token": token}, "List-Unsubscribe=One-Click")
    call(stack, "GET", {"token": token[:-4]})
    out = capsys.readouterr().out
    assert READER not in out and token not in out and token[:-4] not in out
    for outcome in ("shown", "unsubscribed", "unchanged", "invalid"):
        assert f'"outcome":"{outcome}"' in out
    assert address_hash(READER, secret=SECRET.encode()) in out and '"list_id":"infomail"' in out
    metrics = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]

    def total(name):
        values = [m[name] for m in metrics if name in m]
        return sum(sum(v) if isinstance(v, list) else v for v in values)

    assert total("Unsubscribed") == 1  # the repeated POST changed nothing
    assert total("UnsubscribeLinkInvalid") == 1


def test_the_function_url_is_the_default_unsubscribe_base_url(aws_mock):
    from devstack.stack import LocalStack
    from newsletter.message import unsubscribe_url

    stack = LocalStack.create({"UnsubscribeBaseUrl": ""}, token_secret=SECRET)
    base = stack.functions["SendFunction"].environment["UNSUBSCRIBE_BASE_URL"]
    assert base == stack.physical["UnsubscribeFunctionUrl"]["FunctionUrl"]
    assert re.fullmatch(r"https://[a-z0-9]+\.lambda-url\.us-east-1\.on\.aws/", base)
    assert unsubscribe_url(base, "v1.a.b") == base + "?token=v1.a.b"


def test_a_custom_unsubscribe_domain_wins(aws_mock):
    from devstack.stack import LocalStack

    stack = LocalStack.create({"UnsubscribeBaseUrl": "https://news.example.org/unsubscribe"}, token_secret=SECRET)
    assert stack.functions["SendFunction"].environment["UNSUBSCRIBE_BASE_URL"] == "https://news.example.org/unsubscribe"


def test_mask_address():
    from newsletter.unsubscribe import mask_address

    assert mask_address("jose.alvarez@example.com") == "j***@example.com"
    assert mask_address("j@example.com") == "j***@example.com"
    assert mask_address("not-an-address") == "***"


def test_the_handler_cold_starts_without_jinja_pydantic_or_the_signup_forms_libraries():
    code = (
        "import sys, newsletter.handlers.public; "
        "print(sorted({m for m in sys.modules if m.split('.')[0] in "
        "{'jinja2', 'pydantic', 'css_inline', 'markdown_it', 'nh3', 'markupsafe', 'email_validator', 'altcha'}}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_signup_pages_modules_load_no_router():
    """The pages are routed by a table: Powertools' event handler (about 36 ms of imports) never loads."""
    code = (
        "import sys, newsletter.handlers.public, newsletter.signup, newsletter.signup_pages, "
        "newsletter.preferences, newsletter.signup_mail; "
        "print('aws_lambda_powertools.event_handler' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_query_string_with_too_many_parameters_is_refused(stack, readers):
    query = "&".join([f"token={token_for()}"] + [f"p{i}=x" for i in range(60)])
    response = call(stack, "POST", query, "List-Unsubscribe=One-Click")
    assert response["statusCode"] == 400
    assert record(stack)["status"] == "active"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=x", "application/x-www-form-urlencoded", None])
@pytest.mark.parametrize("body, encoded", [("%%% not base64 %%%", True), ("A" * 400_000, True), ("x" * 400_000, False)])
def test_a_get_or_head_with_any_body_is_answered_as_without_one(stack, readers, method, content_type, body, encoded):
    response = call(stack, method, {"token": token_for()}, body, base64_body=encoded, content_type=content_type)
    assert response["statusCode"] == 200 and record(stack)["status"] == "active"


def test_any_event_gets_an_answer_never_a_crash(stack, readers):
    """Whatever reaches the function (a test event, a misrouted trigger, fields of the wrong type)."""
    import random

    good = stack.function_url_event("POST", {"token": token_for()}, "List-Unsubscribe=One-Click")
    odd = [None, 0, 1.5, "", "x", [], {}, [1], {"a": 1}, True, "\x00" * 3, "%" * 5000]
    rnd = random.Random(3)
    answers = set()
    for event in [None, [], "GET /", {}, {"requestContext": 5}, {"requestContext": {"http": []}}]:
        answers.add(stack.invoke("UnsubscribeFunction", event)["statusCode"])
    for _ in range(300):
        event = json.loads(json.dumps(good))
        for _ in range(rnd.randint(1, 3)):
            context = event.get("requestContext")
            http = context.get("http") if isinstance(context, dict) else None
            places = [event, context, http, event.get("headers")]
            where = rnd.choice([p for p in places if isinstance(p, dict)])
            where[rnd.choice(list(where) or ["x"])] = rnd.choice(odd)
        response = stack.invoke("UnsubscribeFunction", event)
        assert response["statusCode"] in (200, 400, 405, 413), response
        answers.add(response["statusCode"])
    assert answers >= {200, 400, 405}
