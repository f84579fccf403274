"""The per-recipient fast path makes the same message as the stdlib `email` build, line-safe."""

import email
import email.policy
from pathlib import Path

import pytest

from newsletter import tokens
from newsletter.issue import Issue
from newsletter.message import InvalidAddress, MessageTemplate, PreparedIssue, build
from newsletter.personalize import marker
from newsletter.render import render_issue

ROOT = Path(__file__).resolve().parents[1]
BASE, MAILBOX = "https://news.example.org/unsubscribe", "unsubscribe@news.example.org"


def prepared(subject="July 2015 Monthly Update", html=None, text=None, from_name="ICMPD Infomail"):
    issue = Issue.model_validate_json((ROOT / "examples" / "issues" / "2015-07.json").read_text(encoding="utf-8"))
    r = render_issue(
        issue, web_url="https://news.example.org/web/2015-07.html", list_name="ICMPD Infomail", sender_name=from_name
    )
    return PreparedIssue.from_json(
        {
            "issue_id": "2015-07",
            "list_id": "infomail",
            "list_name": "ICMPD Infomail",
            "subject": subject,
            "from_name": from_name,
            "from_address": "news@news.example.org",
            "reply_to": "info@example.org",
            "web_url": "https://news.example.org/web/2015-07.html",
            "html": r.html if html is None else html,
            "text": r.text if text is None else text,
        }
    )


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


CASES = [
    ("reader@example.com", "Reader"),
    ("zoe@example.org", "Zoë Müller"),
    ("w@example.net", 'Wiśniewski, Łukasz "Łu"'),
    ("x@exämple.org", "王芳"),
    ("esc@example.com", "<script>alert('x') & co</script>"),
    ("noname@example.com", ""),
]


@pytest.mark.parametrize("address, name", CASES)
def test_fast_path_equals_the_stdlib_message(address, name):
    p = prepared(subject="Juli 2015 – Monatsbericht für Sie", from_name="ICMPD, Infomail")
    token = tokens.sign(b"k", "infomail", address)
    fast = parse(MessageTemplate(p, base_url=BASE, mailbox=MAILBOX).render(address=address, name=name, token=token))
    slow = parse(build(p, address=address, name=name, token=token, base_url=BASE, mailbox=MAILBOX))
    for header in (
        "From",
        "To",
        "Reply-To",
        "Subject",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "List-Archive",
        "Feedback-ID",
        "MIME-Version",
    ):
        assert str(fast[header]) == str(slow[header]), header
    assert fast.get_content_type() == "multipart/alternative"
    parts = [(p.get_content_type(), p.get_content().replace("\r\n", "\n")) for p in fast.iter_parts()]
    assert parts == [(p.get_content_type(), p.get_content().replace("\r\n", "\n")) for p in slow.iter_parts()]
    assert fast["Message-ID"] != slow["Message-ID"] and fast["Date"]


def test_spliced_values_survive_any_position_and_length():
    """Markers at line starts and ends, side by side, and values far longer than a line."""
    m = marker
    text = f"{m('unsubscribe_url')}\nx{m('email')}{m('name')}y\n" + "a" * 75 + m("name") + "\n=" + m("email") + "\n"
    p = prepared(text=text, html=f"<p>{m('name')}</p>")
    long_name = "Ĳsbrand " * 40 + "=?utf-8?q?no?= \t"
    raw = MessageTemplate(p, base_url=BASE, mailbox=MAILBOX).render(address="a@example.com", name=long_name, token="T")
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    msg = parse(raw)
    text_part, html_part = (p.get_content().replace("\r\n", "\n") for p in msg.iter_parts())
    url = f"{BASE}?token=T&issue=2015-07"
    assert text_part == f"{url}\nxa@example.com{long_name}y\n" + "a" * 75 + long_name + "\n=a@example.com\n"
    assert html_part == "<p>" + long_name.replace('"', "&quot;") + "</p>\n"


def test_boundary_cannot_occur_in_a_body():
    p = prepared(text="--=_nl_ and =_nl_ in text\n")
    t = MessageTemplate(p, base_url=BASE, mailbox=MAILBOX)
    raw = t.render(address="a@example.com", name="", token="T")
    assert raw.count(b"--" + t.boundary.encode()) == 3  # two parts and the closing delimiter


def test_addresses_ses_cannot_take_are_refused():
    t = MessageTemplate(prepared(), base_url=BASE, mailbox=MAILBOX)
    with pytest.raises(InvalidAddress):
        t.render(address="jörg@example.com", name="", token="T")
