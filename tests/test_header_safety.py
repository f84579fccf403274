"""Nothing a reader, an importer or an editor types can change who gets a message or what its
headers say: refused at the door (import, publish, CLI options), and neutralised again by the
message builder for a value that slipped past the door."""

import email
import email.policy

import pytest

from newsletter import headers
from newsletter.message import MessageTemplate, PreparedIssue

BASE, MAILBOX = "https://news.example.org/unsubscribe", "unsubscribe@news.example.org"
HEADERS = {
    "From",
    "Reply-To",
    "Subject",
    "List-Id",
    "List-Archive",
    "Feedback-ID",
    "Content-Language",
    "To",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
}

BREAKS = [
    "\r\n",
    "\n",
    "\r",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x85",
    "\u2028",
    "\u2029",
    "\r\n\r\n",
    "\x00",
    "\x7f",
    "\x9b",
]
ENCODED = [
    "=?utf-8?q?=0D=0ABcc:_evil@example.net?=",
    "=?UTF-8?B?DQpCY2M6IGV2aWxAZXhhbXBsZS5uZXQ=?=",
    "x =?iso-8859-1?q?=0A?= y",
]


def prepared(**changes) -> PreparedIssue:
    data = {
        "issue_id": "2015-07",
        "list_id": "infomail",
        "list_name": "ICMPD Infomail",
        "subject": "July 2015",
        "from_name": "ICMPD Infomail",
        "from_address": "news@news.example.org",
        "reply_to": None,
        "web_url": "https://news.example.org/web/2015-07.html",
        "html": "<p>\ue000name\ue001</p>",
        "text": "Hi\n",
    }
    return PreparedIssue.from_json({**data, **changes})


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def assert_only_our_headers(msg) -> None:
    assert set(msg.keys()) <= HEADERS, set(msg.keys()) - HEADERS
    assert all(msg.get_all(h) is None or len(msg.get_all(h)) == 1 for h in HEADERS)
    assert msg["List-Unsubscribe"] and msg.get_content_type() == "multipart/alternative"
    assert msg["To"].addresses[0].addr_spec == "victim@example.com"


@pytest.mark.parametrize("brk", BREAKS)
def test_a_name_with_any_line_break_adds_no_header(brk):
    name = f"Eve{brk}Bcc: evil@example.net"
    msg = parsed(
        MessageTemplate(prepared(), base_url=BASE, mailbox=MAILBOX).render(
            address="victim@example.com", name=name, token="T"
        )
    )
    assert_only_our_headers(msg)
    assert msg["To"].addresses[0].display_name == ""  # an unsafe name is left out, never written


@pytest.mark.parametrize(
    "value", ENCODED + ['Eve "the" <evil@example.net>, Bcc', "Zoë; Bcc: evil@example.net", "a" * 300]
)
def test_names_and_subjects_that_look_like_headers_or_encoded_words_read_back_as_text(value):
    """Past the door (say, a row written straight into the table): the builder writes the value
    as encoded words of its own, so it reads back as the same text, and adds nothing."""
    template = MessageTemplate(
        prepared(subject=value, from_name=value, list_name=value), base_url=BASE, mailbox=MAILBOX
    )
    msg = parsed(template.render(address="victim@example.com", name=value, token="T"))
    assert_only_our_headers(msg)
    assert str(msg["Subject"]) == value
    assert msg["To"].addresses[0].display_name == value
    assert (
        msg["From"].addresses[0].display_name == value and msg["From"].addresses[0].addr_spec == "news@news.example.org"
    )
    assert "evil" not in "".join(
        a.addr_spec for h in ("To", "From", "Reply-To") for a in (msg[h].addresses if msg[h] else ())
    )


@pytest.mark.parametrize("brk", BREAKS)
def test_the_builder_refuses_a_subject_with_a_line_break(brk):
    with pytest.raises(headers.UnsafeHeader):
        MessageTemplate(prepared(subject=f"July{brk}Bcc: evil@example.net"), base_url=BASE, mailbox=MAILBOX)


@pytest.mark.parametrize(
    "reply_to",
    [
        "a@example.org, evil@example.net",
        "Eve <evil@example.net>",
        "ed\u00aditor@example.org",
        "josé@example.org",
        "a@example.org\r\nBcc: evil@example.net",
    ],
)
def test_the_builder_refuses_a_reply_to_that_is_not_one_plain_address(reply_to):
    with pytest.raises(headers.UnsafeHeader):
        MessageTemplate(prepared(reply_to=reply_to), base_url=BASE, mailbox=MAILBOX)


@pytest.mark.parametrize("value", [f"a{b}b" for b in BREAKS] + ENCODED)
def test_the_door_refuses_what_the_builder_would_have_to_neutralise(value):
    assert headers.refused(value)


# --- through the documented CLI: import, then a local publish, every message parsed --------------


def test_an_injected_name_in_a_csv_is_refused_with_its_line_and_reason(tmp_path, aws_mock):
    from typer.testing import CliRunner

    from devstack.stack import LocalStack
    from newsletter_cli import app as module
    from newsletter_cli.subscribers import import_csv

    stack = LocalStack.create(token_secret="s")
    rows = [
        'victim@example.com,"Eve\r\nBcc: evil@example.net",en,active',
        'victim2@example.com,"Eve\n\nList-Unsubscribe: <https://evil.example>",en,active',
        "victim3@example.com,=?utf-8?q?=0D=0ABcc:_evil@example.net?=,en,active",
        'victim4@example.com,"Eve\u2028Bcc: evil",en,active',
        "fine@example.com,Fine Reader,en,active",
    ]
    path = tmp_path / "x.csv"
    path.write_text("email,name,language,status\n" + "\n".join(rows) + "\n", encoding="utf-8", newline="")
    report = import_csv(
        stack.client("dynamodb"),
        path=path,
        list_id="infomail",
        subscribers_table=stack.ref("SubscribersTable"),
        suppressions_table=stack.ref("SuppressionsTable"),
    )
    assert report.imported == 1
    reasons = [p.reason for p in report.problems]
    assert len(reasons) == 4 and all(r.startswith("name ") for r in reasons)
    assert "LINE FEED" in reasons[0] or "CARRIAGE RETURN" in reasons[0]
    assert "encoded word" in reasons[2]
    bad = CliRunner().invoke(
        module.app,
        ["--local", "subscribers", "import", str(path), "--list", "x", "--list-name", "Eve\nBcc: evil@example.net"],
    )
    assert bad.exit_code == 2 and "--list-name must be a single line" in bad.output


def test_a_local_publish_with_every_value_at_its_limit_sends_only_our_headers(stack):
    """Names that pass the door (quotes, commas, angle brackets, semicolons, non-ASCII) and a list
    whose settings do: every message parses to our headers and its one recipient."""
    from conftest import add_subscribers, deliver, issue_doc, publish

    from devstack.stack import sent_messages

    names = ['Eve "the" <evil@example.net>, Bcc', "Zoë; Bcc: evil@example.net", "王芳", "O'Brien, Pat", ""]
    add_subscribers(
        stack,
        [
            {"email": f"reader{i}@example.com", "name": n, "status": "active", "language": "en"}
            for i, n in enumerate(names)
        ],
    )
    publish(stack, issue_doc(subject='Infomail: July; Bcc <evil@example.net>, "quoted"'))
    deliver(stack)
    messages = [parsed(m.raw_data.encode("utf-8")) for m in sent_messages()]
    assert len(messages) == len(names)
    for msg in messages:
        assert set(msg.keys()) <= HEADERS
        assert len(msg["To"].addresses) == 1 and msg["To"].addresses[0].addr_spec.startswith("reader")
        assert str(msg["Subject"]) == 'Infomail: July; Bcc <evil@example.net>, "quoted"'
    assert sorted(m["To"].addresses[0].display_name for m in messages) == sorted(names)


def test_a_long_plain_subject_is_folded_not_encoded():
    subject = (
        "Infomail July 2015: the European Neighbourhood Policy, migration partnerships and more news from the region"
    )
    raw = MessageTemplate(prepared(subject=subject), base_url=BASE, mailbox=MAILBOX).render(
        address="victim@example.com", name="", token="T"
    )
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"=?" not in head.split(b"Subject:", 1)[1].split(b"\r\nList-Id", 1)[0]  # readable as it is
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    assert str(parsed(raw)["Subject"]) == subject
