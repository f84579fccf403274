"""`make demo` end to end: what SES accepted, checked the way a reader's mail client sees it."""

import collections
import contextlib
import csv
import email
import email.policy
import io
import re

import pytest
from conftest import ROOT
from test_render import html_words, seed_fragments

from newsletter import languages, tokens
from newsletter_cli.publishing import read_issue

JULY = ROOT / "examples" / "issues" / "2015-07.json"


@pytest.fixture(scope="module")
def demo(tmp_path_factory, subscribers_subset):
    from devstack import demo

    out = tmp_path_factory.mktemp("demo")
    summary = demo.run(
        out,
        JULY,
        subscribers_subset,
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


def test_every_active_subscriber_gets_one_message_and_nobody_else(demo, subscribers_subset):
    summary, messages, _ = demo
    active = {r["email"] for r in subscribers(subscribers_subset) if r["status"] == "active"}
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
        assert m["List-Id"] and m["Message-ID"] and m["Date"] and m["Subject"]
    assert len({m["Message-ID"] for m in messages}) == len(messages)


@pytest.fixture(scope="module")
def july():
    """The example issue with its translation files merged, as the demo (and `newsletter publish`) uploads it."""
    issue, _ = read_issue(JULY)
    return issue


def test_the_example_issue_comes_in_english_french_and_portuguese(july):
    assert july.languages == ["en", "fr", "pt"]
    subjects = {language: july.variant(language).subject for language in july.languages}
    assert subjects["en"] == "July 2015 Monthly Update"
    assert len(set(subjects.values())) == 3  # every language has a subject of its own


def test_each_reader_gets_their_language_or_the_default(demo, subscribers_subset, july):
    summary, messages, _ = demo
    own = {r["email"]: r["language"] for r in subscribers(subscribers_subset)}
    assert {"fr", "pt", "pt-BR", "de", "es"} <= set(own.values())  # the mix the list is there to show
    got = collections.Counter()
    for m in messages:
        to = m["To"].addresses[0].addr_spec
        expected = languages.choose(own[to], july.languages, july.language)
        assert m["Content-Language"] == expected, to
        assert m["Subject"] == july.variant(expected).subject, to
        html = m.get_body(("html",)).get_content()
        assert f'lang="{expected}"' in html
        assert july.variant(expected).title in html_words(html)
        got[expected] += 1
    assert set(got) == {"en", "fr", "pt"}  # every language is actually sent
    assert summary["sent_per_language"] == dict(got)
    assert sum(summary["sent_per_language"].values()) == summary["sent"] == summary["outbox"] == len(messages)
    # what the issue record counts per language (`newsletter status`) agrees with the outbox
    assert {k: v["sent"] for k, v in summary["statistics_per_language"].items()} == dict(got)


def test_readers_of_a_language_the_issue_lacks_are_counted_as_falling_back(demo, subscribers_subset, july):
    summary, messages, _ = demo
    own = {r["email"]: r["language"] for r in subscribers(subscribers_subset)}
    mailed = [own[m["To"].addresses[0].addr_spec] for m in messages]
    lacking = collections.Counter(language for language in mailed if language.split("-")[0] not in july.languages)
    assert lacking and set(lacking) <= {"de", "es", "ka"}
    assert summary["fell_back"] == sum(lacking.values()) and summary["fell_back_from"] == dict(lacking)
    assert summary["broader"] == {"pt-BR→pt": mailed.count("pt-BR")} and mailed.count("pt-BR") > 0


def test_the_demo_prints_the_messages_per_language(tmp_path, monkeypatch, demo):
    from devstack import demo as module

    summary, _, _ = demo
    monkeypatch.setattr(module, "run", lambda *args, **kwargs: summary)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert module.main(["--out", str(tmp_path)]) == 0
    printed = out.getvalue()
    shown = dict(re.findall(r"\b(en|fr|pt) (\d+)", printed.split("messages per language", 1)[1].split("(total")[0]))
    assert {k: int(v) for k, v in shown.items()} == summary["sent_per_language"]
    assert f"(total {summary['sent']})" in printed
    assert f"{summary['fell_back']} readers of a language the issue lacks" in printed


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
    english = next(m for m in messages if m["Content-Language"] == "en")
    html = html_words(english.get_body(("html",)).get_content())
    missing = [f for f in seed_fragments() if f not in html]
    assert missing == []
    web = html_words((out / "web" / "2015-07.html").read_text(encoding="utf-8"))
    assert [f for f in seed_fragments() if f not in web] == []
    assert "In the spotlight: Towards a new European Neighbourhood Policy on Migration" in html


def test_each_language_has_its_web_version(demo, july):
    _, _, out = demo
    for language in july.languages:
        name = "2015-07.html" if language == july.language else f"2015-07.{language}.html"
        page = (out / "web" / name).read_text(encoding="utf-8")
        assert f'<html lang="{language}"' in page
        assert july.variant(language).spotlight.title in html_words(page)


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
