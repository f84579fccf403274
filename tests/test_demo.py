"""`make demo` end to end: what SES accepted, checked the way a reader's mail client sees it."""

import collections
import csv
import email
import email.policy
import re

import pytest
from conftest import ROOT
from test_render import html_words, seed_fragments

from newsletter import tokens


@pytest.fixture(scope="module")
def demo(tmp_path_factory, subset):
    from devstack import demo

    out = tmp_path_factory.mktemp("demo")
    summary = demo.run(
        out,
        ROOT / "examples" / "issues" / "2015-07.json",
        subset,
        token_secret="demo-secret",
        second_issue=ROOT / "examples" / "issues" / "2015-08.json",
    )
    messages = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted((out / "outbox").glob("*.eml"))
    ]
    return summary, messages, out


def subscribers(path):
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _subset(path):
    """The example list cut to a fifth (the demo's 1,000 take minutes in moto): every inactive
    subscriber and every mailbox simulator address, and the first 150 others."""
    lines = (ROOT / "examples" / "subscribers.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    rows = list(csv.DictReader(lines))
    keep = [lines[0]] + [
        line
        for n, (line, row) in enumerate(zip(lines[1:], rows, strict=False))
        if n < 150 or row["status"] != "active" or "simulator" in row["email"]
    ]
    path.write_text("".join(keep), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    return _subset(tmp_path_factory.mktemp("subscribers") / "subscribers.csv")


def test_every_active_subscriber_gets_one_message_and_nobody_else(demo, subset):
    summary, messages, _ = demo
    active = {r["email"] for r in subscribers(subset) if r["status"] == "active"}
    to = collections.Counter(m["To"].addresses[0].addr_spec for m in messages)
    assert set(to) == active
    assert max(to.values()) == 1
    assert summary["sent"] == len(active) == summary["outbox"] and summary["failed"] == summary["pending"] == 0
    assert "bounce@simulator.amazonses.com" in to  # the simulator addresses are on the list


def test_every_message_is_multipart_alternative_with_unsubscribe_headers(demo):
    _, messages, _ = demo
    for m in messages:
        assert m.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in m.iter_parts()] == ["text/plain", "text/html"]
        assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        links = re.findall(r"<([^>]+)>", m["List-Unsubscribe"])
        assert [l.split(":", 1)[0] for l in links] == ["https", "mailto"]
        assert m["List-Id"] and m["Message-ID"] and m["Date"] and m["Subject"] == "July 2015 Monthly Update"
    assert len({m["Message-ID"] for m in messages}) == len(messages)


def test_unsubscribe_links_name_their_recipient(demo):
    _, messages, _ = demo
    for m in messages[:50]:
        token = re.search(r"token=([^>&]+)", m["List-Unsubscribe"]).group(1)
        assert tokens.verify(b"demo-secret", token) == ("infomail", m["To"].addresses[0].addr_spec)
        html = m.get_body(("html",)).get_content()
        assert "token=" + token in html  # the footer link is the same signed link
        assert m["To"].addresses[0].addr_spec in html  # "sent to <address>"


def test_html_holds_every_heading_and_paragraph_of_the_seed(demo):
    _, messages, out = demo
    html = html_words(messages[0].get_body(("html",)).get_content())
    missing = [f for f in seed_fragments() if f not in html]
    assert missing == []
    web = html_words((out / "web" / "2015-07.html").read_text(encoding="utf-8"))
    assert [f for f in seed_fragments() if f not in web] == []
    assert "In the spotlight: Towards a new European Neighbourhood Policy on Migration" in html


def test_functions_logged_no_address(demo):
    _, messages, out = demo
    logs = (out / "lambda-logs.jsonl").read_text(encoding="utf-8")
    assert "issue published" in logs
    assert [a for a in (m["To"].addresses[0].addr_spec for m in messages) if a in logs] == []


def test_feedback_and_one_click_unsubscribe_keep_the_next_issue_clean(demo):
    summary, _, out = demo
    assert summary["suppressed"] == [
        "bounce@simulator.amazonses.com",
        "complaint@simulator.amazonses.com",
        "suppressionlist@simulator.amazonses.com",
    ]
    assert (summary["bounced_hard"], summary["complained"], summary["unsubscribed"]) == (2, 1, 1)
    assert summary["unsubscribed_reader"]["status"] == 200
    second = summary["second"]
    gone = set(summary["suppressed"]) | {summary["unsubscribed_reader"]["address"]}
    assert second["to"] and not gone & set(second["to"])
    assert second["sent"] == summary["sent"] - len(gone) == len(list((out / "outbox-2015-08").glob("*.eml")))
