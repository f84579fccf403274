"""The public pages served by the local stack server over HTTP (devstack/public_http.py): a reader's
journey in Chromium (signup form with the real ALTCHA widget, the confirmation mail in the local
outbox, the confirmation page, the welcome mail's preference centre, leaving), and a burst of
concurrent signups.

The server runs in its own process, as `newsletter local start` runs it, with the bot check's
proof of work made cheap through its `--env` (for tests only); everything else is the template's.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import re
import shutil
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from conftest import ROOT

from newsletter.mailing_list import MailingList

CHEAP_ALTCHA = {"UnsubscribeFunction": {"ALTCHA_COST": "1", "ALTCHA_MAX_NUMBER": "8"}}
TOPICS = [
    {"id": "news", "labels": {"en": "News", "fr": "Actualités", "pt": "Notícias"}},
    {"id": "vacancies", "labels": {"en": "Vacancies", "fr": "Postes vacants", "pt": "Vagas"}},
    {"id": "events", "labels": {"en": "Events", "fr": "Événements"}},
]
CONSENT = {
    "version": "2026-01",
    "text": {
        "en": "I agree to receive the ICMPD Infomail by email. I can unsubscribe at any time.",
        "fr": "J'accepte de recevoir l'Infomail de l'ICMPD par courriel. Je peux me désabonner à tout moment.",
    },
}
# .ci/run sets it: there a missing browser is a failure, not a skip.
BROWSER_REQUIRED = os.environ.get("NEWSLETTER_BROWSER_TESTS") == "required"


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The local stack server, in a process of its own; its state (stack.json) and the stack."""
    from devstack import server
    from devstack.stack import LocalStack

    directory = tmp_path_factory.mktemp("public")
    state = server.start(directory, env=CHEAP_ALTCHA)
    try:
        yield directory, state, LocalStack.attach(state)
    finally:
        server.stop(directory)


WELCOME = {
    "en": {"subject": "Welcome to the ICMPD Infomail", "body": "Thank you for subscribing."},
    "fr": {"subject": "Bienvenue à l'Infomail de l'ICMPD", "body": "Merci de votre abonnement."},
}


def put_signup_list(stack, list_id: str, welcome: dict | None = None, **signup) -> None:
    from newsletter.store import lists

    doc = {
        "list": list_id,
        "name": "ICMPD Infomail",
        "languages": ["en", "fr", "pt"],
        "topics": TOPICS,
        "consent": CONSENT,
        **({"signup": signup} if signup else {}),
        **({"welcome": welcome} if welcome else {}),
    }
    record = MailingList.model_validate(doc).record()
    extra = {k: v for k, v in record.items() if k not in ("list_id", "name")}
    lists.put_list(stack.client("dynamodb"), stack.ref("ListsTable"), list_id, name=record["name"], **extra)


def subscriber(stack, list_id: str, address: str) -> dict | None:
    from newsletter.store.subscribers import get_subscriber

    return get_subscriber(stack.client("dynamodb"), stack.ref("SubscribersTable"), list_id, address)


def outbox(directory: Path, folder: str) -> list[email.message.EmailMessage]:
    files = sorted((directory / "outbox" / folder).glob("*.eml"))
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]


def mails_to(directory: Path, domain: str, *, expected: int, folder="confirmations", timeout_s: float = 20.0) -> list:
    """The mails in an outbox folder to addresses at `domain`, once `expected` are there (the
    server writes what SES accepted every 0.1 s) and a moment has shown no more come."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [m for m in outbox(directory, folder) if m["To"].addresses[0].domain == domain]
        if len(found) >= expected or time.monotonic() > deadline:
            time.sleep(0.3)
            return [m for m in outbox(directory, folder) if m["To"].addresses[0].domain == domain]
        time.sleep(0.1)


def link_in(mail, pattern: str) -> str:
    return re.search(pattern, mail.get_body(("plain",)).get_content()).group()


# --- the server's translation, without a server -------------------------------------------------


def test_a_request_becomes_the_event_a_function_url_sends():
    from devstack.public_http import function_url_event, http_response

    sample = json.loads((ROOT / "events" / "function-url-unsubscribe-post.json").read_text(encoding="utf-8"))
    event = function_url_event(
        "POST",
        "/subscribe/infomail?lang=fr&topic=a&topic=b",
        [
            ("Host", "127.0.0.1:8001"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept", "text/html"),
            ("Accept", "application/xhtml+xml"),
            ("Cookie", "a=1; b=2"),
            ("X-Forwarded-For", "198.51.100.1"),  # a client's claim: the Function URL sets its own
        ],
        b"email=ana%40example.org",
        source_ip="127.0.0.2",
        domain="127.0.0.1:8001",
        port=8001,
    )
    assert set(event) == set(sample) | {"cookies"}
    assert set(event["requestContext"]) == set(sample["requestContext"])
    assert set(event["requestContext"]["http"]) == set(sample["requestContext"]["http"])
    assert event["rawPath"] == "/subscribe/infomail" and event["rawQueryString"] == "lang=fr&topic=a&topic=b"
    assert event["queryStringParameters"] == {"lang": "fr", "topic": "a,b"}
    assert event["cookies"] == ["a=1", "b=2"] and "cookie" not in event["headers"]
    assert event["headers"]["accept"] == "text/html,application/xhtml+xml"
    assert event["headers"]["x-forwarded-for"] == "127.0.0.2"
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.2"
    assert event["requestContext"]["domainName"] == "127.0.0.1:8001"
    # A form is not text to a Function URL: it arrives base64-encoded, as in the sample.
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"email=ana%40example.org"
    as_json = function_url_event(
        "POST", "/", [("Content-Type", "application/json")], b'{"a": 1}', source_ip="x", domain="d:1", port=1
    )
    assert as_json["body"] == '{"a": 1}' and as_json["isBase64Encoded"] is False
    plain_get = function_url_event("GET", "/", [], b"", source_ip="x", domain="d:1", port=1)
    assert "body" not in plain_get and "queryStringParameters" not in plain_get

    status, headers, body = http_response(
        {"statusCode": 201, "headers": {"X-A": "1"}, "cookies": ["c=3"], "body": "aGk=", "isBase64Encoded": True}
    )
    assert (status, headers, body) == (201, [("X-A", "1"), ("Set-Cookie", "c=3")], b"hi")
    assert http_response({"ok": True}) == (200, [("Content-Type", "application/json")], b'{"ok": true}')


def test_signup_mails_have_outbox_folders_of_their_own():
    from email.utils import make_msgid

    from devstack.server import outbox_folder

    def head(msgid: str) -> str:
        return f"From: a@example.org\r\nMessage-ID: {msgid}\r\nSubject: x\r\n\r\nbody"

    assert outbox_folder(head(make_msgid(idstring="confirm", domain="news.example.org"))) == "confirmations"
    assert outbox_folder(head(make_msgid(idstring="welcome", domain="news.example.org"))) == "welcomes"
    assert outbox_folder(head("<0123abcd.2015-07@news.example.org>")) == "2015-07"
    assert outbox_folder(head("<0123abcd.confirm@news.example.org>")) == "confirm"  # an issue called so
    assert outbox_folder(head("<nothing@example.org>")) == "other"


# --- the server --------------------------------------------------------------------------------


def test_the_state_and_the_cli_name_the_public_pages(local, monkeypatch):
    from typer.testing import CliRunner

    from newsletter_cli import app as module

    directory, state, stack = local
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", state["public_url"])
    assert state["public_url"] != state["endpoint_url"]
    # The links in confirmation mails lead to the local pages; the template's own default is "".
    assert stack.functions["UnsubscribeFunction"].environment["PUBLIC_BASE_URL"] == state["public_url"]
    monkeypatch.setenv("NEWSLETTER_LOCAL_DIR", str(directory))
    module.console.width = 250
    status = CliRunner().invoke(module.app, ["local", "status"], catch_exceptions=False)
    assert status.exit_code == 0 and f"public pages at {state['public_url']}" in status.output


def test_browser_journey_signup_confirm_preferences_unsubscribe(local):
    """Chromium through the whole journey, on the local server, with the real widget."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = (
        "the python package playwright (pip install -e '.[dev]')"
        if sync_playwright is None
        else "a chromium browser (apt-get install chromium)"
        if chromium is None
        else None
    )
    if missing:
        if BROWSER_REQUIRED:
            pytest.fail(f"the browser test needs {missing}")
        pytest.skip(f"the browser test needs {missing}")
    directory, state, stack = local
    base = state["public_url"]
    put_signup_list(stack, "journey", welcome=WELCOME)
    address = "lea.martin@journey.example.org"

    def sign_up(page):
        """Fill the form as a reader would, solve the bot check, send: (answer, Origin sent, seconds to solve)."""
        page.goto(f"{base}/subscribe/journey")
        assert page.locator("html").get_attribute("lang") == "en"
        page.fill("#email", "Lea.Martin@journey.example.org")
        page.fill("#name", "Léa Martin")
        page.select_option("#language", "fr")
        page.uncheck("input[name=topic][value=vacancies]")  # news and events stay ticked
        page.check("input[name=consent]")
        # The widget starts solving once the form has the focus (auto="onfocus"): it fetches
        # ../altcha and solves the challenge in workers while the reader fills the form. A click on
        # its box, as a reader's, starts it if it has not started.
        started = time.monotonic()
        if page.locator("altcha-widget .altcha").get_attribute("data-state") in (None, "unverified"):
            box = page.locator("altcha-widget .altcha-checkbox").bounding_box()
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_function("() => document.querySelector('input[name=altcha]')?.value", timeout=60_000)
        solved_s = time.monotonic() - started
        assert page.locator("altcha-widget .altcha").get_attribute("data-state") == "verified"
        with page.expect_navigation() as sent:
            page.click("button[type=submit]")
        answer = sent.value
        return answer, answer.request.all_headers().get("origin"), solved_s

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(locale="en-GB")
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "console",
                lambda m: problems.append(f"console: {m.text}") if "Content Security Policy" in m.text else None,
            )
            # Every CSP violation, whatever the console says about it.
            page.add_init_script(
                "document.addEventListener('securitypolicyviolation', e => "
                "console.log('Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI))"
            )

            answer, origin, solved_s = sign_up(page)
            # The form page's Referrer-Policy (same-origin) lets the browser name its origin.
            assert origin == base
            # "Check your inbox", in the language the reader chose.
            assert answer.status == 200 and page.locator("form").count() == 0, page.content()
            assert page.locator("html").get_attribute("lang") == "fr"
            assert not problems, problems

            [mail] = mails_to(directory, "journey.example.org", expected=1)
            assert mail["Content-Language"] == "fr"
            link = link_in(mail, r"\S+/confirm\?\S+")
            assert link.startswith(f"{base}/confirm?token=")  # PUBLIC_BASE_URL: the local pages

            page.goto(link)
            assert page.locator("button[type=submit]").count() == 1
            assert subscriber(stack, "journey", address)["status"] == "pending"  # a GET confirms nothing
            with page.expect_navigation() as sent:
                page.click("button[type=submit]")
            assert sent.value.status == 200
            active = subscriber(stack, "journey", address)
            assert active["status"] == "active" and active["language"] == "fr"
            assert active["topics"] == ["news", "events"] and active["name"] == "Léa Martin"

            # The welcome mail, in French, links to the preference centre and the unsubscribe page here.
            [welcome] = mails_to(directory, "journey.example.org", expected=1, folder="welcomes")
            assert welcome["Content-Language"] == "fr" and welcome["Subject"] == WELCOME["fr"]["subject"]
            assert welcome["List-Unsubscribe"].startswith(f"<{base}/?token=")
            preferences = link_in(welcome, r"\S+/preferences\?\S+")
            assert preferences.startswith(f"{base}/preferences?token=")

            page.goto(preferences)
            assert page.locator("#language").input_value() == "fr"
            assert page.locator("input[name=topic]:checked").evaluate_all("els => els.map(e => e.value)") == [
                "news",
                "events",
            ]
            page.select_option("#language", "pt")
            page.check("input[name=topic][value=vacancies]")
            page.uncheck("input[name=topic][value=events]")
            with page.expect_navigation() as sent:
                page.click("button[name=action][value=save]")
            assert sent.value.status == 200 and page.locator("html").get_attribute("lang") == "pt"
            changed = subscriber(stack, "journey", address)
            assert changed["status"] == "active" and changed["language"] == "pt"
            assert changed["topics"] == ["news", "vacancies"]

            # And leave, from the preference centre.
            with page.expect_navigation() as sent:
                page.click("button[name=action][value=unsubscribe]")
            assert sent.value.status == 200
            assert subscriber(stack, "journey", address)["status"] == "unsubscribed"
            # The unsubscribe link (any other path) now says so, and asks nothing.
            page.goto(welcome["List-Unsubscribe"].strip("<>"))
            assert page.locator("button[type=submit]").count() == 0
            assert not problems, problems
        finally:
            browser.close()
    print(f"widget solved in {solved_s:.2f} s (ALTCHA_COST 1, ALTCHA_MAX_NUMBER 8)")


# --- a burst -----------------------------------------------------------------------------------


def client_addresses() -> list[str]:
    """A few loopback addresses to send from (Linux answers all of 127/8); 127.0.0.1 alone where
    binding another is refused. Not 127.0.0.1 itself where others work: the browser test uses it."""
    found = []
    for last in (2, 3, 4):
        with socket.socket() as s:
            try:
                s.bind((f"127.0.0.{last}", 0))
                found.append(f"127.0.0.{last}")
            except OSError:
                pass
    return found or ["127.0.0.1"]


def call(base: str, method: str, path: str, *, source: str, body: bytes | None = None, headers=None):
    parts = urlsplit(base)
    conn = HTTPConnection(parts.hostname, parts.port, timeout=120, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_a_burst_of_concurrent_signups_is_answered_and_mails_each_address_once(local):
    from altcha import Challenge, Payload, solve_challenge

    from newsletter.store.subscribers import members

    directory, state, stack = local
    base = state["public_url"]
    sources = client_addresses()
    # Every request from a few clients: the per-client limit (10 an hour) would stop the test.
    put_signup_list(stack, "burst", per_client_per_hour=1000, per_list_per_hour=10_000)
    domain = "burst.example.org"
    once = [f"reader{i:03d}@{domain}" for i in range(150)]
    # The same reader, many times, in two spellings (one address: the store keeps it in lower case).
    again = [f"Same.Reader@{domain.upper()}" if i % 2 else f"same.reader@{domain}" for i in range(60)]
    again += [f"other.reader@{domain}"] * 40
    posts = once + again
    started = time.monotonic()

    def challenge(i: int) -> str:
        status, body = call(base, "GET", "/altcha", source=sources[i % len(sources)])
        assert status == 200
        c = Challenge.from_dict(json.loads(body))
        return Payload(c, solve_challenge(c, timeout=10)).to_base64()

    with ThreadPoolExecutor(32) as pool:
        payloads = list(pool.map(challenge, range(len(posts))))
    solved_at = time.monotonic()

    def post(i: int) -> tuple[int, bytes]:
        form = {
            "email": posts[i],
            "name": f"Reader {i}",
            "language": ("en", "fr", "pt")[i % 3],
            "topic": ["news", "events"],
            "consent": "yes",
            "consent_version": "2026-01",
            "consent_language": "en",
            "altcha": payloads[i],
            "website": "",
        }
        return call(
            base,
            "POST",
            "/subscribe/burst",
            source=sources[i % len(sources)],
            body=urlencode(form, doseq=True).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": base},
        )

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(post, range(len(posts))))
    burst_s = time.monotonic() - solved_at

    statuses = Counter(status for status, _ in answers)
    assert statuses == {200: len(posts)}, statuses  # every one answered "check your inbox"
    distinct = {a.lower() for a in posts}
    mails = mails_to(directory, domain, expected=len(distinct))
    per_address = Counter(m["To"].addresses[0].addr_spec for m in mails)
    assert set(per_address) == distinct and set(per_address.values()) == {1}, per_address.most_common(3)
    readers = list(members(stack.client("dynamodb"), stack.ref("SubscribersTable"), "burst"))
    assert Counter(r["email"] for r in readers) == Counter(distinct)  # one item per reader
    assert {r["status"] for r in readers} == {"pending"}
    assert len(mails) == len(readers) == len(distinct) == 152
    print(
        f"{len(posts)} POSTs from {len(sources)} clients in {burst_s:.1f} s "
        f"({len(posts) / burst_s:.0f}/s; challenges fetched and solved in {solved_at - started:.1f} s)"
    )
