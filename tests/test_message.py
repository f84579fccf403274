"""One recipient's message: well-formed MIME, the bulk-sender headers, values escaped per part."""

from __future__ import annotations

import email
import email.policy
import html
import json
import re
from functools import cache
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from newsletter import message, personalize, tokens
from newsletter.issue import Issue
from newsletter.message import PreparedIssue
from newsletter.personalize import Splice
from newsletter.render import render_issue

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "issues" / "2015-07.json"
WEB_URL = "https://news.example.org/web/2015-07.html"
SECRET = b"test-token-secret"
BASE_URL = "https://news.example.org/unsubscribe?list=infomail"
MAILBOX = "unsubscribe@news.example.org"
FROM = "infomail@news.example.org"


@cache
def prepared() -> PreparedIssue:
    issue = Issue.model_validate(json.loads(EXAMPLE.read_text(encoding="utf-8")))
    rendered = render_issue(issue, web_url=WEB_URL, list_name="ICMPD Infomail", sender_name="ICMPD Infomail")
    return PreparedIssue(
        issue_id=issue.issue_id,
        list_id=issue.list_id,
        list_name="ICMPD Infomail",
        subject=issue.subject,
        from_name="ICMPD Infomail",
        from_address=FROM,
        reply_to=None,
        web_url=WEB_URL,
        html=Splice(rendered.html),
        text=Splice(rendered.text),
    )


def build(address: str = "reader@example.com", name: str = "Reader", *, base_url: str = BASE_URL) -> bytes:
    p = prepared()
    token = tokens.sign(SECRET, p.list_id, address)
    return message.build(p, address=address, name=name, token=token, base_url=base_url, mailbox=MAILBOX)


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def parts(msg) -> tuple[str, str]:
    text, html_part = msg.get_payload()
    return text.get_content(), html_part.get_content()


def raw_header(raw: bytes, name: str) -> str:
    """A header exactly as sent, folded lines included."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    match = re.search(rf"^{name}:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.M | re.I)
    assert match, f"no {name} header"
    return match.group(1)


def unsubscribe_https(msg) -> str:
    return re.search(r"<(https://[^>]+)>", str(msg["List-Unsubscribe"])).group(1)


def test_structure_is_text_then_html_in_utf8():
    msg = parse(build())
    assert msg.get_content_type() == "multipart/alternative"
    subparts = msg.get_payload()
    assert [p.get_content_type() for p in subparts] == ["text/plain", "text/html"]
    assert [p.get_content_charset() for p in subparts] == ["utf-8", "utf-8"]
    assert not any(p.is_multipart() for p in subparts)
    text, body = parts(msg)
    assert "July 2015 Monthly Update" in text
    assert "<html" in body.lower()


def test_headers():
    raw = build("reader@example.com", "Reader")
    msg = parse(raw)
    assert msg["From"].addresses[0].display_name == "ICMPD Infomail"
    assert msg["From"].addresses[0].addr_spec == FROM
    assert msg["To"].addresses[0].addr_spec == "reader@example.com"
    assert msg["To"].addresses[0].display_name == "Reader"
    assert msg["Subject"] == "July 2015 Monthly Update"
    assert msg["Date"].datetime.tzinfo is not None
    assert re.fullmatch(r"<[^<>@\s]+@news\.example\.org>", msg["Message-ID"])
    assert msg["List-Id"] == "ICMPD Infomail <infomail.news.example.org>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert raw_header(raw, "List-Unsubscribe-Post") == " List-Unsubscribe=One-Click"
    assert msg["List-Archive"] == f"<{WEB_URL}>"
    assert "Reply-To" not in msg


def test_reply_to_only_when_given():
    from dataclasses import replace

    p = replace(prepared(), reply_to="editors@example.org")
    raw = message.build(p, address="r@example.com", name="", token="t", base_url=BASE_URL, mailbox=MAILBOX)
    assert parse(raw)["Reply-To"] == "editors@example.org"


def test_message_ids_are_unique():
    assert parse(build())["Message-ID"] != parse(build())["Message-ID"]


def test_list_unsubscribe_carries_https_and_mailto_with_a_genuine_token():
    address = "reader@example.com"
    msg = parse(build(address))
    value = str(msg["List-Unsubscribe"])
    assert re.fullmatch(r"<https://[^<>]*[?&]token=[^<>]+>, <mailto:[^<>]+>", value), value

    url = unsubscribe_https(msg)
    assert url.startswith(BASE_URL + "&token=")
    token = parse_qs(urlsplit(url).query)["token"][0]
    assert tokens.verify(SECRET, token) == ("infomail", address)

    mailto = re.search(r"<(mailto:[^>]+)>", value).group(1)
    assert mailto.startswith(f"mailto:{MAILBOX}?subject=")
    assert unquote(mailto.split("subject=", 1)[1]) == f"unsubscribe {token}"


def test_unsubscribe_query_separator_follows_the_base_url():
    url = unsubscribe_https(parse(build(base_url="https://news.example.org/u")))
    assert url.startswith("https://news.example.org/u?token=v1.")


@pytest.mark.parametrize("name", ["Zoë Müller", "Reader"])
def test_list_unsubscribe_is_never_encoded(name):
    raw = build("reader@example.com", name)
    value = raw_header(raw, "List-Unsubscribe")
    assert "=?" not in value
    assert "<https://" in value and "<mailto:" in value


def test_non_ascii_recipient_name_round_trips():
    raw = build("zoe@example.com", "Zoë Müller")
    to = parse(raw)["To"].addresses[0]
    assert (to.display_name, to.addr_spec) == ("Zoë Müller", "zoe@example.com")
    raw.decode("ascii")  # the header was encoded, not sent as 8-bit


def test_no_markers_left_and_recipient_values_arrive():
    text, body = parts(parse(build("reader@example.com")))
    for part in (text, body):
        assert personalize.OPEN not in part and personalize.CLOSE not in part
        assert "reader@example.com" in part


def test_unsubscribe_url_in_both_parts():
    msg = parse(build())
    url = unsubscribe_https(msg)
    assert "&" in url
    text, body = parts(msg)
    assert url in text.split()
    assert f'href="{html.escape(url)}"' in body
    assert "&amp;token=" in body and "&token=" not in body


def test_html_special_characters_are_escaped_in_html_only():
    address = "o'brien&co@example.com"
    raw = build(address, "<script>alert(1)</script>")
    msg = parse(raw)
    text, body = parts(msg)
    assert "<script>" not in body.lower()
    assert "o&#x27;brien&amp;co@example.com" in body
    assert address not in body
    assert address in text
    assert msg["To"].addresses[0].display_name == "<script>alert(1)</script>"
    assert msg["To"].addresses[0].addr_spec == address


@pytest.mark.parametrize(
    "escape, expected",
    [
        (True, "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;co&quot;, a&amp;b@x.org</p>"),
        (False, '<p>Hi <script>alert(1)</script> & "co", a&b@x.org</p>'),
    ],
)
def test_splice_escapes_only_when_asked(escape, expected):
    splice = Splice(f"<p>Hi {personalize.marker('name')}, {personalize.marker('email')}</p>")
    values = {"name": '<script>alert(1)</script> & "co"', "email": "a&b@x.org"}
    assert splice.fill(values, escape=escape) == expected


def test_splice_repeats_and_missing_values():
    splice = Splice(f"{personalize.marker('email')}|{personalize.marker('email')}|{personalize.marker('name')}")
    assert splice.fill({"email": "a@x.org"}, escape=True) == "a@x.org|a@x.org|"
    with pytest.raises(ValueError):
        Splice(f"{personalize.OPEN}password{personalize.CLOSE}")


@pytest.mark.parametrize(
    "address",
    ["reader@example.com", "a" * 64 + "@" + ("b" * 58 + ".") * 3 + "example.com"],
    ids=["short", "254-char address"],
)
def test_no_line_exceeds_998_bytes(address):
    assert len(address) <= 254
    raw = build(address, "Zoë Müller " * 20, base_url="https://news.example.org/" + "x" * 120 + "/unsubscribe")
    assert raw.endswith(b"\n")
    lines = raw.split(b"\r\n")
    assert all(b"\n" not in line and b"\r" not in line for line in lines)
    assert max(len(line) for line in lines) <= 998
    msg = parse(raw)
    assert tokens.verify(SECRET, parse_qs(urlsplit(unsubscribe_https(msg)).query)["token"][0])[1] == address


def test_internationalised_domain_is_not_an_encoded_word():
    value = raw_header(build("zoe@exämple.org", ""), "To")
    assert "=?" not in value, value
