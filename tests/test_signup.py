"""Signing up with double opt-in through the public function: the form, the bot check, the limits,
the confirmation mail and the confirmation, with moto standing in for DynamoDB and SES."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from devstack.stack import sent_messages
from newsletter import config, tokens
from newsletter.mailing_list import MailingList
from newsletter.store import lists, signups, suppressions
from newsletter.store.subscribers import get_subscriber

LIST = {
    "list": "infomail",
    "name": "ICMPD Infomail",
    "languages": ["en", "fr", "pt"],
    "topics": [
        {"id": "news", "labels": {"en": "News", "fr": "Actualités", "pt": "Notícias"}},
        {"id": "vacancies", "labels": {"en": "Vacancies", "fr": "Postes vacants", "pt": "Vagas"}},
        {"id": "events", "labels": {"en": "Events"}},
    ],
    "consent": {
        "version": "2026-01",
        "text": {
            "en": "I agree to receive the ICMPD Infomail by email. I can unsubscribe at any time.",
            "fr": "J'accepte de recevoir l'Infomail de l'ICMPD par courriel. Je peux me désabonner à tout moment.",
        },
    },
    "signup": {"origins": ["https://www.icmpd.org"]},
}
IP = "203.0.113.7"


@pytest.fixture
def site(stack):
    """The stack with a signup list, and a proof of work cheap enough for a test to solve."""
    put_document(stack, LIST)
    env = stack.functions["UnsubscribeFunction"].environment
    env.update({"ALTCHA_COST": "1", "ALTCHA_MAX_NUMBER": "8"})
    config.clear_settings()
    return stack


def put_document(stack, doc: dict) -> None:
    """A list document stored as `newsletter lists put` stores it."""
    from newsletter_cli.lists import put

    put(stack.client("dynamodb"), stack.ref("ListsTable"), MailingList.model_validate(doc))


def request(stack, method: str, path: str, *, query=None, form=None, ip=IP, headers=None) -> dict:
    body = urlencode(form, doseq=True) if form is not None else None
    event = stack.function_url_event(method, query, body, path=path)
    event["requestContext"]["http"]["sourceIp"] = ip
    event["headers"].update(headers or {})
    return stack.invoke("UnsubscribeFunction", event)


def body_of(response: dict) -> str:
    body = response.get("body") or ""
    return base64.b64decode(body).decode() if response.get("isBase64Encoded") else body


def solved(stack, ip=IP) -> str:
    """A genuine ALTCHA payload, as the widget makes it: fetch a challenge, solve it."""
    from altcha import Challenge, Payload, solve_challenge

    answer = request(stack, "GET", "/altcha", ip=ip)
    assert answer["statusCode"] == 200
    challenge = Challenge.from_dict(json.loads(body_of(answer)))
    solution = solve_challenge(challenge, timeout=10)
    return Payload(challenge, solution).to_base64()


def signup_form(stack, address: str, **changes) -> dict:
    form = {
        "email": address,
        "name": "Ana Silva",
        "language": "pt",
        "topic": ["news", "vacancies"],
        "consent": "yes",
        "consent_version": "2026-01",
        "consent_language": "en",
        "altcha": solved(stack),
        "website": "",
    }
    form.update(changes)
    return form


def mails_to(address: str) -> list[email.message.EmailMessage]:
    out = []
    for m in sent_messages():
        msg = email.message_from_string(m.raw_data, policy=email.policy.default)
        if msg["To"].addresses[0].addr_spec == address:
            out.append(msg)
    return out


def link_in(msg) -> str:
    text = msg.get_body(("plain",)).get_content()
    return re.search(r"https://\S+/confirm\?\S+", text).group()


def subscriber(stack, address: str) -> dict | None:
    return get_subscriber(stack.client("dynamodb"), stack.ref("SubscribersTable"), "infomail", address)


# --- the form -------------------------------------------------------------------------------------


def test_the_form_names_the_list_topics_consent_and_bot_check_in_the_readers_language(site):
    page = request(site, "GET", "/subscribe/infomail", headers={"accept-language": "fr-CH, fr;q=0.9, en;q=0.5"})
    assert page["statusCode"] == 200
    html = body_of(page)
    assert '<html lang="fr"' in html and "ICMPD Infomail" in html
    assert "Actualités" in html and "Postes vacants" in html and "Events" in html  # no French label: English
    assert "J&#x27;accepte de recevoir" in html and 'name="consent_version" value="2026-01"' in html
    assert '<script type="module" src="../altcha.js">' in html and '<altcha-widget challenge="../altcha"' in html
    assert 'name="website"' in html and 'tabindex="-1"' in html  # the honeypot, out of sight and reach
    csp = page["headers"]["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    # With no-referrer, browsers would post the form with `Origin: null`, which is refused.
    assert page["headers"]["Referrer-Policy"] == "same-origin"
    assert page["headers"]["Cache-Control"] == "no-store"


def test_a_list_without_a_consent_text_or_closed_has_no_form(site):
    assert request(site, "GET", "/subscribe/nosuchlist")["statusCode"] == 404
    lists.put_list(site.client("dynamodb"), site.ref("ListsTable"), "plain", "No consent text")
    assert request(site, "GET", "/subscribe/plain")["statusCode"] == 404
    put_document(site, {**LIST, "list": "closed", "signup": {"open": False}})
    assert request(site, "GET", "/subscribe/closed")["statusCode"] == 404
    assert request(site, "POST", "/subscribe/closed", form=signup_form(site, "x@example.org"))["statusCode"] == 404


def test_the_widget_is_served_from_here():
    from newsletter.public import STATIC, WIDGET_FILE

    assert os.path.getsize(os.path.join(STATIC, WIDGET_FILE)) > 50_000


def test_the_widget_route(site):
    answer = request(site, "GET", "/altcha.js", headers={"accept-encoding": "gzip"})
    assert answer["statusCode"] == 200 and answer["headers"]["Content-Type"].startswith("text/javascript")
    assert answer["headers"]["Access-Control-Allow-Origin"] == "*"  # module scripts are fetched with CORS
    import gzip

    from newsletter.public import STATIC, WIDGET_FILE

    with open(os.path.join(STATIC, WIDGET_FILE), "rb") as f:
        assert gzip.decompress(base64.b64decode(answer["body"])) == f.read()


def test_the_widget_is_sent_as_it_is_to_a_browser_that_takes_no_gzip(site):
    answer = request(site, "GET", "/altcha.js", headers={"accept-encoding": "br"})
    assert answer["statusCode"] == 200 and "Content-Encoding" not in answer["headers"]
    from newsletter.public import STATIC, WIDGET_FILE

    with open(os.path.join(STATIC, WIDGET_FILE), "rb") as f:
        assert base64.b64decode(answer["body"]) == f.read()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("HEAD", "/subscribe/infomail", 400),  # no HEAD route: the unsubscribe endpoint's answer to no token
        ("PUT", "/confirm", 405),
        ("DELETE", "/preferences", 405),
        ("OPTIONS", "/altcha", 405),
        ("POST", "/altcha", 400),
        ("POST", "/altcha.js", 400),
        ("GET", "/subscribe/", 400),
        ("GET", "/subscribe/infomail/more", 400),
        ("GET", "/subscribe/nosuchlist", 404),
    ],
)
def test_a_method_or_path_no_route_takes_gets_the_unsubscribe_endpoints_answer(site, method, path, status):
    answer = request(site, method, path)
    assert answer["statusCode"] == status
    assert answer["headers"]["Referrer-Policy"] == "no-referrer" and answer["headers"]["Cache-Control"] == "no-store"
    assert answer["headers"].get("Allow") == ("GET, HEAD, POST" if status == 405 else None)
    if method == "HEAD":
        assert answer["body"] == ""


# --- the journey --------------------------------------------------------------------------------


def test_signup_mails_a_confirmation_and_only_the_confirming_post_subscribes(site):
    address = "ana.silva@example.org"
    answer = request(site, "POST", "/subscribe/infomail", form=signup_form(site, "Ana.Silva@Example.org"))
    # In the language the reader chose, which the list offers.
    assert answer["statusCode"] == 200 and "Verifique a sua caixa de correio" in body_of(answer)
    pending = subscriber(site, address)
    assert pending["status"] == "pending" and pending["language"] == "pt" and pending["topics"] == ["news", "vacancies"]
    consent = pending["signup"]["consent"]
    assert consent["method"] == "form" and consent["text_version"] == "2026-01" and consent["text_language"] == "en"
    assert len(consent["ip_hash"]) == 32 and IP not in json.dumps(pending, default=str)
    assert int(pending["expires_at"]) - int(pending["signup"]["mailed_at"]) == 7 * 86400  # TTL, if never confirmed

    [mail] = mails_to(address)
    assert mail["Content-Language"] == "pt" and mail["Subject"] == "Confirme a sua subscrição de ICMPD Infomail"
    assert mail["From"].addresses[0].addr_spec == "news@news.example.org"
    assert "List-Unsubscribe" not in mail  # on no list yet
    link = link_in(mail)
    query = parse_qs(urlsplit(link).query)

    shown = request(site, "GET", "/confirm", query={"token": query["token"][0], "lang": "pt"})
    assert shown["statusCode"] == 200 and 'method="post"' in body_of(shown) and "a***@example.org" in body_of(shown)
    assert subscriber(site, address)["status"] == "pending"  # a GET (a mail scanner) changes nothing

    done = request(site, "POST", "/confirm", query={"lang": "pt"}, form={"token": query["token"][0]})
    assert done["statusCode"] == 200
    active = subscriber(site, address)
    assert active["status"] == "active" and "expires_at" not in active and "signup" not in active
    assert active["consent"]["confirmed_at"] and active["consent"]["confirm_ip_hash"] == consent["ip_hash"]
    assert [e["event"] for e in active["consent_log"]] == ["confirmed"]

    again = request(site, "POST", "/confirm", form={"token": query["token"][0]})
    assert again["statusCode"] == 200 and "already" in body_of(again)
    assert len(mails_to(address)) == 1


def test_the_answer_is_the_same_whoever_the_address_belongs_to(site):
    ddb, table = site.client("dynamodb"), site.ref("SubscribersTable")
    from newsletter.store.subscribers import put_subscribers

    put_subscribers(
        ddb,
        table,
        "infomail",
        [
            {"email": "active@example.org", "name": "A", "status": "active", "language": "en"},
            {"email": "left@example.org", "name": "L", "status": "unsubscribed", "language": "en"},
            {"email": "bounced@example.org", "name": "B", "status": "bounced", "language": "en"},
        ],
    )
    suppressions.suppress(ddb, site.ref("SuppressionsTable"), "suppressed@example.org", "complaint", "2026-01-01")
    pages = {}
    for address in (
        "new@example.org",
        "active@example.org",
        "left@example.org",
        "bounced@example.org",
        "suppressed@example.org",
    ):
        answer = request(site, "POST", "/subscribe/infomail", form=signup_form(site, address, language="en"))
        pages[address] = (answer["statusCode"], body_of(answer))
    assert len(set(pages.values())) == 1  # nothing tells one from another
    mailed = {a for a in pages if mails_to(a)}
    assert mailed == {"new@example.org", "left@example.org"}
    left = subscriber(site, "left@example.org")
    assert left["status"] == "unsubscribed" and left["signup"]  # back only once they confirm
    assert subscriber(site, "suppressed@example.org") is None


def test_an_unsubscribed_reader_comes_back_only_by_confirming(site):
    from newsletter.store.subscribers import put_subscribers

    put_subscribers(
        site.client("dynamodb"),
        site.ref("SubscribersTable"),
        "infomail",
        [{"email": "left@example.org", "name": "L", "status": "unsubscribed", "language": "en"}],
    )
    request(site, "POST", "/subscribe/infomail", form=signup_form(site, "left@example.org", language="fr"))
    [mail] = mails_to("left@example.org")
    token = parse_qs(urlsplit(link_in(mail)).query)["token"][0]
    assert request(site, "POST", "/confirm", form={"token": token})["statusCode"] == 200
    back = subscriber(site, "left@example.org")
    assert back["status"] == "active" and back["language"] == "fr" and "unsubscribed_at" not in back


# --- what keeps bots and floods out ---------------------------------------------------------------


def test_the_bot_check_is_required_genuine_and_used_once(site):
    missing = request(site, "POST", "/subscribe/infomail", form=signup_form(site, "a@example.org", altcha=""))
    assert missing["statusCode"] == 400 and "robot" in body_of(missing)
    payload = solved(site)
    data = json.loads(base64.b64decode(payload))
    data["challenge"]["parameters"]["cost"] = 2  # edited: its signature no longer matches
    forged = base64.b64encode(json.dumps(data).encode()).decode()
    assert (
        request(site, "POST", "/subscribe/infomail", form=signup_form(site, "b@example.org", altcha=forged))[
            "statusCode"
        ]
        == 400
    )
    first = request(site, "POST", "/subscribe/infomail", form=signup_form(site, "c@example.org", altcha=payload))
    replay = request(site, "POST", "/subscribe/infomail", form=signup_form(site, "d@example.org", altcha=payload))
    assert (first["statusCode"], replay["statusCode"]) == (200, 400)
    assert subscriber(site, "c@example.org") and subscriber(site, "d@example.org") is None
    assert all(subscriber(site, a) is None for a in ("a@example.org", "b@example.org"))


def test_the_honeypot_is_answered_as_a_success_and_does_nothing(site):
    answer = request(
        site, "POST", "/subscribe/infomail", form=signup_form(site, "bot@example.org", website="http://spam")
    )
    assert answer["statusCode"] == 200
    assert subscriber(site, "bot@example.org") is None and mails_to("bot@example.org") == []


def test_a_client_is_limited_per_hour_and_another_is_not(site):
    codes = [
        request(site, "POST", "/subscribe/infomail", form=signup_form(site, f"r{i}@example.org"))["statusCode"]
        for i in range(11)
    ]
    assert codes == [200] * 10 + [429]
    other = request(site, "POST", "/subscribe/infomail", form=signup_form(site, "x@example.org"), ip="198.51.100.9")
    assert other["statusCode"] == 200
    site.clock.advance(3600)
    assert request(site, "POST", "/subscribe/infomail", form=signup_form(site, "y@example.org"))["statusCode"] == 200


def test_one_address_gets_one_mail_per_ten_minutes_and_a_few_a_day(site):
    for _ in range(3):
        request(site, "POST", "/subscribe/infomail", form=signup_form(site, "again@example.org"), ip="198.51.100.1")
    assert len(mails_to("again@example.org")) == 1
    for n in range(5):
        site.clock.advance(601)
        request(
            site, "POST", "/subscribe/infomail", form=signup_form(site, "again@example.org"), ip=f"198.51.100.{n + 2}"
        )
    assert len(mails_to("again@example.org")) == 3  # per address per day


def test_a_form_from_another_site_must_be_one_the_list_allows(site):
    evil = request(
        site,
        "POST",
        "/subscribe/infomail",
        form=signup_form(site, "e@example.org"),
        headers={"origin": "https://evil.example"},
    )
    assert evil["statusCode"] == 403 and subscriber(site, "e@example.org") is None
    ok = request(
        site,
        "POST",
        "/subscribe/infomail",
        form=signup_form(site, "f@example.org"),
        headers={"origin": "https://www.icmpd.org"},
    )
    assert ok["statusCode"] == 200 and ok["headers"]["Access-Control-Allow-Origin"] == "https://www.icmpd.org"
    assert subscriber(site, "f@example.org")["signup"]["consent"]["method"] == "embedded-form"
    null = request(
        site, "POST", "/subscribe/infomail", form=signup_form(site, "h@example.org"), headers={"origin": "null"}
    )
    assert null["statusCode"] == 403


def test_the_custom_domains_origin_is_the_pages_own(site):
    site.functions["UnsubscribeFunction"].environment["PUBLIC_BASE_URL"] = "https://news.example.org"
    config.clear_settings()
    own = request(
        site,
        "POST",
        "/subscribe/infomail",
        form=signup_form(site, "c@example.org"),
        headers={"origin": "https://news.example.org"},
    )
    assert own["statusCode"] == 200 and "Access-Control-Allow-Origin" not in own["headers"]
    assert subscriber(site, "c@example.org")["signup"]["consent"]["method"] == "form"
    [mail] = mails_to("c@example.org")
    assert link_in(mail).startswith("https://news.example.org/confirm?token=")


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("email", "not an address", "not a valid email"),
        ("name", "Eve\r\nBcc: victim@example.org", "line breaks"),
        ("name", "=?utf-8?b?QmNjOiB4?=", "line breaks"),
        ("topic", ["news", "politics"], "topics shown"),
        ("consent", "", "agree"),
        ("consent_version", "2025-01", "terms have changed"),
    ],
)
def test_bad_fields_show_the_form_again_with_what_is_wrong_and_store_nothing(site, field, value, says):
    answer = request(
        site, "POST", "/subscribe/infomail", form=signup_form(site, "g@example.org", language="en", **{field: value})
    )
    assert answer["statusCode"] == 400
    html = body_of(answer)
    assert says in html and "<form" in html and 'aria-invalid="true"' in html
    assert subscriber(site, "g@example.org") is None and mails_to("g@example.org") == []


# --- the address check: email-validator's verdict, with or without loading it -------------------

TRICKY_ADDRESSES = [
    # plain, and what case does
    "ana@example.org",
    "Ana.Silva@Example.ORG",
    "INFO@EXAMPLE.COM",
    "a@b.co",
    "a@b.c",
    "x@1.2.3.4.com",
    "a@b.1c",
    "a@b.c1",
    "a@b.123",
    "a@b-c.de",
    "a@b--c.de",
    "a@ab--c.de",
    "a@b-.de",
    "a@-b.de",
    "a@b.-de",
    "a@b.de-",
    "a.b.c@d.e.f.gh",
    "a..b@c.de",
    ".a@b.de",
    "a.@b.de",
    "a@.b.de",
    "a@b..de",
    "a@b.de.",
    "a@b",
    "a@localhost",
    "a@",
    "@b.de",
    "a",
    "",
    " a@b.de",
    "a@b.de ",
    "a b@c.de",
    "a@b c.de",
    "a@@b.de",
    "a@b@c.de",
    # every atom character, and some that are not
    "!#$%&'*+-/=?^_`{|}~@example.org",
    "a+tag@example.org",
    "a/b@example.org",
    "a=b@example.org",
    "a(b)@example.org",
    "a,b@example.org",
    "a:b@example.org",
    "a;b@example.org",
    "a<b>@example.org",
    "a[b]@example.org",
    "a\\b@example.org",
    'a"b@example.org',
    "a_b@ex_ample.org",
    "a@exa!mple.org",
    "a@exam+ple.org",
    # quoted local parts, display names, domain literals, comments
    '"a b"@example.org',
    '"ab"@example.org',
    "Ana <ana@example.org>",
    "<ana@example.org>",
    "ana@[192.0.2.1]",
    "ana@[IPv6:2001:db8::1]",
    "ana(comment)@example.org",
    # special-use names and their subdomains (and names that only look like them)
    "a@b.arpa",
    "a@b.invalid",
    "a@b.local",
    "a@b.localhost",
    "a@b.onion",
    "a@b.test",
    "a@test",
    "a@x.test.org",
    "a@localhost.org",
    "a@b.testing",
    "a@b.LOCAL",
    "a@a.b.c.onion",
    "a@arpa.org",
    # Punycode and what looks like it
    "a@xn--bcher-kva.de",
    "a@XN--BCHER-KVA.DE",
    "a@xn--bcher.de",
    "a@xn--.de",
    "a@xn--a.de",
    "a@axn--b.de",
    "a@ab--cd.de",
    "a@xn-bcher.de",
    "a@xn--80ak6aa92e.com",
    "a@abc.xn--p1ai",
    "a@abc.xn--zzz",
    # internationalised
    "ana@bücher.de",
    "ana@BÜCHER.de",
    "anä@example.org",
    "ana@例え.jp",
    "ana@bücher。de",
    "ana＠example.org",
    "ana@example．org",
    "ana@exam\u200bple.org",
    "a\u0301@example.org",
    "ana@ｅｘａｍｐｌｅ.org",
    "ana@ex\u00adample.org",
    "ana@ıstanbul.com",
    "ana@İstanbul.com",
    "ana@straße.de",
    "ana@ﬁ.de",
    "ana@пример.рф",
    "ana@xn--e1afmkfd.xn--p1ai",
    # control characters and line breaks
    "a\nb@example.org",
    "ana@example.org\n",
    "ana@exa\tmple.org",
    "a\x00@example.org",
    "ana@example.org\r\nBcc: x@y.z",
    # lengths: a label of 63 and 64, a domain of 253 and 254, an address of 254
    "a@" + "b" * 63 + ".de",
    "a@" + "b" * 64 + ".de",
    "a@" + ".".join(["c" * 63] * 3) + "." + "d" * 61,
    "a@" + ".".join(["c" * 63] * 3) + "." + "d" * 62,
    "a" * 64 + "@example.org",
    "a" * 65 + "@example.org",
    "a" * 240 + "@example.org",
    "a" * 242 + "@example.org",
]


def _email_validator_verdict(value: str) -> str:
    """What `newsletter subscribers import` makes of an address (cli/subscribers.py), as check_address reports it."""
    from email_validator import EmailNotValidError, validate_email

    from newsletter.privacy import normalise_address

    if not value:
        return "Please enter your email address."
    if len(value) > 254:
        return "This email address is too long."
    try:
        found = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        return "This is not a valid email address."
    return normalise_address(found.ascii_email or found.normalized)


def _verdict(value: str) -> str:
    from newsletter.signup import check_address

    try:
        return check_address(value)
    except ValueError as exc:
        return str(exc)


def _generated_addresses(n: int) -> list[str]:
    """Addresses built from the pieces the rules are about, at random (seeded)."""
    import random

    rnd = random.Random(14)
    atoms = ["a", "Z", "0", "ana", "x-y", "_", "!#$%&'*+-/=?^`{|}~", "é", " ", '"', "(", "\\", "@", "", "xn--"]
    labels = [
        "b",
        "B",
        "0",
        "9a",
        "a9",
        "a-b",
        "a--b",
        "ab--c",
        "-a",
        "a-",
        "",
        "xn--bcher-kva",
        "xn--a",
        "bü",
        "ex_a",
        "c" * 63,
        "c" * 64,
        "test",
        "local",
        "onion",
        "arpa",
        "localhost",
        "invalid",
        "İ",
        "例",
    ]
    tlds = ["de", "org", "CO", "c1", "1c", "x", "test", "local", "onion", "xn--p1ai", "рф", "", "d" * 63]
    out = []
    for _ in range(n):
        local = rnd.choice([".", ""]).join(rnd.choice(atoms) for _ in range(rnd.randint(1, 3)))
        domain = ".".join([rnd.choice(labels) for _ in range(rnd.randint(0, 3))] + [rnd.choice(tlds)])
        address = f"{local}@{domain}" if rnd.random() > 0.03 else local + domain
        out.append(address.upper() if rnd.random() < 0.1 else address)
    return out


def test_the_address_check_gives_email_validators_verdict_on_tricky_and_generated_addresses():
    from newsletter.signup import plain_address

    addresses = TRICKY_ADDRESSES + _generated_addresses(20_000)
    mismatches = [
        (a, _verdict(a), _email_validator_verdict(a)) for a in addresses if _verdict(a) != _email_validator_verdict(a)
    ]
    assert mismatches == []
    # Both ways are exercised: addresses answered without email-validator, and ones only it can
    # judge, which it accepts (internationalised domains, Punycode) or refuses.
    plain = [a for a in addresses if plain_address(a) is not None]
    judged = [a for a in addresses if plain_address(a) is None]
    assert len(plain) > 500 and "Ana.Silva@Example.ORG" in plain
    assert any("@" in _email_validator_verdict(a) for a in judged)  # accepted by email-validator alone
    assert _verdict("ana@bücher.de") == "ana@xn--bcher-kva.de"


def test_the_plain_address_rules_are_email_validators():
    """The atom characters and the special-use names are email-validator's own."""
    import email_validator
    from email_validator.rfc_constants import ATEXT_RE

    from newsletter.signup import _ATEXT, SPECIAL_USE

    assert tuple(email_validator.SPECIAL_USE_DOMAIN_NAMES) == SPECIAL_USE
    for code in range(128):
        c = chr(code)
        assert bool(re.fullmatch(_ATEXT, c)) == (bool(ATEXT_RE.fullmatch(c)) and c != "."), repr(c)


def test_a_plain_address_is_checked_without_loading_email_validator():
    import subprocess
    import sys

    code = (
        "import sys; from newsletter.signup import check_address; "
        "print(check_address('Ana.Silva@Example.org'), 'email_validator' in sys.modules); "
        "print(check_address('ana@bücher.de'), 'email_validator' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["ana.silva@example.org", "False", "ana@xn--bcher-kva.de", "True"]


# --- tokens -----------------------------------------------------------------------------------------


def test_confirmation_tokens_are_signed_for_their_purpose_and_expire(site):
    request(site, "POST", "/subscribe/infomail", form=signup_form(site, "t@example.org"))
    token = parse_qs(urlsplit(link_in(mails_to("t@example.org")[0])).query)["token"][0]
    edited = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert request(site, "POST", "/confirm", form={"token": edited})["statusCode"] == 400
    unsubscribe_token = tokens.sign(b"test-token-secret", "infomail", "t@example.org", key_version=1)
    assert request(site, "POST", "/confirm", form={"token": unsubscribe_token})["statusCode"] == 400
    # ... and a confirmation token unsubscribes nobody.
    assert (
        request(site, "POST", "/", query={"token": token}, form={"List-Unsubscribe": "One-Click"})["statusCode"] == 400
    )
    site.clock.advance(7 * 86400 + 1)
    expired = request(site, "POST", "/confirm", form={"token": token})
    assert expired["statusCode"] == 410 and subscriber(site, "t@example.org")["status"] == "pending"


def test_a_newer_signup_replaces_the_older_link(site):
    request(site, "POST", "/subscribe/infomail", form=signup_form(site, "n@example.org"))
    site.clock.advance(601)
    request(site, "POST", "/subscribe/infomail", form=signup_form(site, "n@example.org"), ip="198.51.100.3")
    first, second = (parse_qs(urlsplit(link_in(m)).query)["token"][0] for m in mails_to("n@example.org"))
    assert request(site, "POST", "/confirm", form={"token": first})["statusCode"] == 410
    assert request(site, "POST", "/confirm", form={"token": second})["statusCode"] == 200
    assert subscriber(site, "n@example.org")["status"] == "active"


def test_the_store_never_leaves_a_reader_in_two_states(site):
    ddb, table = site.client("dynamodb"), site.ref("SubscribersTable")
    r = signups.Request("s1", "2026-01-01T00:00:00Z", 1_000_000, "N", "en", [], {"method": "form"})
    assert signups.request(ddb, table, "infomail", "z@example.org", r, pending_ttl_s=100, resend_after_s=600) == (
        signups.CREATED,
        "s1",
    )
    again = signups.Request("s2", "2026-01-01T00:01:00Z", 1_000_060, "N", "en", [], {"method": "form"})
    assert signups.request(ddb, table, "infomail", "z@example.org", again, pending_ttl_s=100, resend_after_s=600) == (
        signups.RECENT,
        None,
    )
    assert (
        signups.confirm(ddb, table, "infomail", "z@example.org", "s2", at="t", now=1_000_061, confirmation={})[0]
        == signups.STALE
    )
    outcome, item = signups.confirm(
        ddb, table, "infomail", "z@example.org", "s1", at="t", now=1_000_061, confirmation={}
    )
    assert outcome == signups.CONFIRMED and item["status"] == "active"


# --- the preference centre ----------------------------------------------------------------------


def reader(site, address="pat@example.org", **values) -> str:
    """An active reader of the list; their token, as every message's footer carries it."""
    from newsletter.store.subscribers import put_subscribers

    row = {"email": address, "name": "Pat", "status": "active", "language": "en", "topics": ["news"], **values}
    put_subscribers(site.client("dynamodb"), site.ref("SubscribersTable"), "infomail", [row])
    return tokens.sign(b"test-token-secret", "infomail", address, key_version=1)


def test_the_preference_centre_shows_and_saves_a_readers_choices(site):
    token = reader(site)
    shown = request(site, "GET", "/preferences", query={"token": token})
    html = body_of(shown)
    assert shown["statusCode"] == 200 and 'value="Pat"' in html and "p***@example.org" in html
    assert 'value="news" checked' in html and 'value="vacancies">' in html
    assert subscriber(site, "pat@example.org")["topics"] == ["news"]  # a GET changes nothing

    form = {"token": token, "action": "save", "name": "Pat Lee", "language": "fr", "topic": ["vacancies", "events"]}
    saved = request(site, "POST", "/preferences", form=form)
    assert saved["statusCode"] == 200 and '<html lang="fr"' in body_of(saved)
    now = subscriber(site, "pat@example.org")
    assert (now["name"], now["language"], now["topics"], now["status"]) == (
        "Pat Lee",
        "fr",
        ["vacancies", "events"],
        "active",
    )
    assert now["consent_log"][-1]["event"] == "preferences" and len(now["consent_log"][-1]["by"]) == 32


def test_bad_choices_are_shown_again_and_nothing_is_saved(site):
    token = reader(site)
    bad = request(site, "POST", "/preferences", form={"token": token, "action": "save", "topic": ["politics"]})
    assert bad["statusCode"] == 400 and "topics shown" in body_of(bad)
    none = request(
        site, "POST", "/preferences", form={"token": token, "action": "save", "name": "X\nY", "topic": ["news"]}
    )
    assert none["statusCode"] == 400 and "line breaks" in body_of(none)
    assert subscriber(site, "pat@example.org")["name"] == "Pat"


def test_leaving_from_the_preference_centre_and_coming_back_to_it(site):
    token = reader(site)
    left = request(site, "POST", "/preferences", form={"token": token, "action": "unsubscribe"})
    assert left["statusCode"] == 200 and subscriber(site, "pat@example.org")["status"] == "unsubscribed"
    assert subscriber(site, "pat@example.org")["unsubscribed_via"] == "preferences"
    again = body_of(request(site, "GET", "/preferences", query={"token": token}))
    assert "nothing to change" in again and "<form" not in again
    # Saving after leaving changes nothing either.
    request(site, "POST", "/preferences", form={"token": token, "action": "save", "name": "Back", "topic": ["news"]})
    assert subscriber(site, "pat@example.org")["name"] == "Pat"


def test_the_unsubscribe_page_tells_a_reader_who_left_instead_of_asking_again(site):
    token = reader(site, status="unsubscribed")
    page = request(site, "GET", "/", query={"token": token})
    assert page["statusCode"] == 200 and "nothing to change or unsubscribe" in body_of(page)
    assert "<button" not in body_of(page)


def test_a_forged_preferences_link_shows_nothing(site):
    reader(site)
    forged = tokens.sign(b"another secret", "infomail", "pat@example.org", key_version=1)
    answer = request(site, "GET", "/preferences", query={"token": forged})
    assert answer["statusCode"] == 400 and "Pat" not in body_of(answer)


# --- topics ---------------------------------------------------------------------------------------


def test_an_issue_with_topics_goes_to_readers_of_one_of_them_and_to_those_who_never_chose(site):
    from conftest import add_subscribers, deliver, issue_doc, issue_record, mailed, publish

    add_subscribers(
        site,
        [
            {"email": "news@example.org", "name": "N", "status": "active", "language": "en", "topics": ["news"]},
            {"email": "jobs@example.org", "name": "J", "status": "active", "language": "en", "topics": ["vacancies"]},
            {
                "email": "both@example.org",
                "name": "B",
                "status": "active",
                "language": "en",
                "topics": ["news", "events"],
            },
            {"email": "never@example.org", "name": "V", "status": "active", "language": "en"},  # imported: all
        ],
    )
    assert publish(site, issue_doc(topics=["vacancies", "events"]))["outcomes"][0]["status"] == "published"
    deliver(site)
    assert sorted(mailed()) == ["both@example.org", "jobs@example.org", "never@example.org"]
    record = issue_record(site, "2015-07")
    assert record["topics"] == ["vacancies", "events"] and record["sent"] == 3 and record["status"] == "sent"


def test_an_issue_naming_a_topic_its_list_lacks_is_refused_with_the_reason(site):
    from conftest import issue_doc, publish, s3_text

    answer = publish(site, issue_doc(topics=["vacancy"]))
    assert answer["outcomes"][0]["status"] == "invalid"
    from newsletter.store.bucket import report_key

    report = s3_text(site, report_key("issues/2015-07.json")) or ""
    assert "topics: 'vacancy' not among the list's topics (news, vacancies, events)" in report


def test_every_message_links_to_the_preference_centre_with_the_readers_token(site):
    from conftest import add_subscribers, deliver, issue_doc, publish

    add_subscribers(site, [{"email": "foot@example.org", "name": "F", "status": "active", "language": "en"}])
    publish(site, issue_doc())
    deliver(site)
    [msg] = [m for m in mails_to("foot@example.org")]
    text = msg.get_body(("plain",)).get_content()
    url = re.search(r"https://\S+/preferences\?token=\S+", text).group()
    token = parse_qs(urlsplit(url).query)["token"][0]
    assert f'href="{url}"' in msg.get_body(("html",)).get_content().replace("&amp;", "&")
    page = request(site, "GET", "/preferences", query={"token": token})
    assert page["statusCode"] == 200 and "f***@example.org" in body_of(page)


def test_the_embeddable_form_posts_to_the_list_and_loads_the_widget_from_the_stack():
    from newsletter_cli.lists import form_snippet

    record = MailingList.model_validate(LIST).record()
    html = form_snippet("https://pages.example.org/", record)
    assert '<form method="post" action="https://pages.example.org/subscribe/infomail">' in html
    assert '<script type="module" src="https://pages.example.org/altcha.js"></script>' in html
    assert '<altcha-widget challenge="https://pages.example.org/altcha" name="altcha">' in html
    assert 'name="consent_version" value="2026-01"' in html and 'name="website"' in html
    assert html.count('name="topic"') == 3


# --- the welcome mail -----------------------------------------------------------------------------


def test_confirming_sends_the_lists_welcome_once_in_the_readers_language(site):
    doc = {
        **LIST,
        "welcome": {
            "en": {"subject": "Welcome to the ICMPD Infomail", "body": "Thank you. Our [site](https://www.icmpd.org)."},
            "fr": {"subject": "Bienvenue", "body": "Merci. Notre **site** : <https://www.icmpd.org>."},
        },
    }
    put_document(site, doc)
    request(site, "POST", "/subscribe/infomail", form=signup_form(site, "w@example.org", language="fr"))
    [confirmation] = mails_to("w@example.org")
    token = parse_qs(urlsplit(link_in(confirmation)).query)["token"][0]
    assert request(site, "POST", "/confirm", form={"token": token})["statusCode"] == 200
    assert request(site, "POST", "/confirm", form={"token": token})["statusCode"] == 200  # again: already
    welcome = mails_to("w@example.org")[1:]
    assert [m["Subject"] for m in welcome] == ["Bienvenue"]
    [msg] = welcome
    assert msg["Content-Language"] == "fr" and msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "<strong>site</strong>" in msg.get_body(("html",)).get_content()
    unsubscribe = re.search(r"<(https://[^>]+)>", msg["List-Unsubscribe"]).group(1)
    query = parse_qs(urlsplit(unsubscribe).query)
    one_click = request(site, "POST", "/", query={"token": query["token"][0]}, form={"List-Unsubscribe": "One-Click"})
    assert one_click["statusCode"] == 200 and subscriber(site, "w@example.org")["status"] == "unsubscribed"


def test_a_welcome_must_be_written_in_the_lists_first_language():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="welcome: no mail in en"):
        MailingList.model_validate({**LIST, "welcome": {"fr": {"subject": "Bienvenue", "body": "Merci."}}})


def test_an_erased_person_signing_up_gets_the_same_page_and_nothing_else(site):
    from newsletter_cli import person
    from newsletter_cli.stack import OUTPUTS, Target

    target = Target("local", "test", {logical: site.ref(logical) for logical in OUTPUTS}, local=site)
    reader(site, "gone@example.org")
    person.forget(target, "gone@example.org")
    answer = request(site, "POST", "/subscribe/infomail", form=signup_form(site, "gone@example.org"))
    assert answer["statusCode"] == 200 and "Verifique a sua caixa de correio" in body_of(answer)
    assert subscriber(site, "gone@example.org") is None and mails_to("gone@example.org") == []


def test_the_served_widget_is_the_pinned_release():
    """functions/newsletter/static/altcha.min.js is what `make widget` fetches and checks."""
    import hashlib
    from pathlib import Path

    from newsletter.public import STATIC, WIDGET_FILE

    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text(encoding="utf-8")
    pinned = re.search(r"^WIDGET_SHA256 := ([0-9a-f]{64})$", makefile, re.M).group(1)
    with open(os.path.join(STATIC, WIDGET_FILE), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == pinned
