"""Issues in several languages: the document's translations, language tags, and who gets which."""

import json
from pathlib import Path

import pytest

from newsletter.issue import InvalidIssue, parse_document
from newsletter.languages import check_tag, choose, direction

ROOT = Path(__file__).resolve().parents[1]


def july() -> dict:
    return json.loads((ROOT / "examples" / "issues" / "2015-07.json").read_text(encoding="utf-8"))


def translated(doc: dict, language: str, **changes) -> dict:
    """The document's content as a translation (texts marked, structure kept)."""
    names = ("subject", "preheader", "title", "view_in_browser_text", "toc_heading", "spotlight", "news")
    t = {k: doc[k] for k in (*names, "read_more", "sections", "footer") if k in doc}
    t["subject"] = f"[{language}] {doc['subject']}"
    return {**t, "language": language, **changes}


def parse(doc: dict):
    return parse_document(json.dumps(doc).encode(), max_bytes=1 << 20)


@pytest.mark.parametrize(
    "tag, spelled", [("en", "en"), ("PT-br", "pt-BR"), ("sr-latn", "sr-Latn"), ("es-419", "es-419")]
)
def test_tags_are_spelled_one_way(tag, spelled):
    assert check_tag(tag) == spelled


@pytest.mark.parametrize("tag", ["xx", "english", "pt-Brazil1", "zz-BR"])
def test_what_is_not_a_language_is_refused(tag):
    with pytest.raises(ValueError):
        check_tag(tag)


@pytest.mark.parametrize(
    "reader, expected",
    [("pt-BR", "pt"), ("pt", "pt"), ("fr-CA", "fr"), ("de", "en"), (None, "en"), ("", "en"), ("garbage!", "en")],
)
def test_each_reader_gets_their_language_or_a_broader_one_or_the_default(reader, expected):
    assert choose(reader, ["en", "fr", "pt"], "en") == expected


def test_a_broad_reader_tag_finds_the_only_narrow_variant():
    assert choose("pt", ["en", "pt-BR"], "en") == "pt-BR"
    assert choose("pt-PT", ["en", "pt-BR"], "en") == "pt-BR"  # Portuguese, if not theirs, beats English


def test_right_to_left_languages_say_so():
    assert (direction("ar"), direction("he-IL"), direction("fr")) == ("rtl", "rtl", "ltr")


def test_one_issue_carries_its_translations_and_each_reads_as_the_issue():
    doc = july()
    doc["translations"] = [translated(doc, "fr"), translated(doc, "pt")]
    issue = parse(doc)
    assert issue.languages == ["en", "fr", "pt"]
    fr = issue.variant("fr")
    assert (fr.language, fr.subject, fr.issue_id, fr.translations) == ("fr", f"[fr] {doc['subject']}", "2015-07", [])
    assert issue.variant("en").subject == doc["subject"]
    with pytest.raises(KeyError):
        issue.variant("de")


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: [translated(d, "fr"), translated(d, "FR")], "translations[1].language: 'fr' is already"),
        (lambda d: [translated(d, "en")], "translations[0].language: 'en' is already the language of language"),
        (lambda d: [translated(d, "xx")], "translations[0].language"),
        (lambda d: [translated(d, "fr", news=d["news"][:2])], "translations[0].news: 2 news items here, 4 in"),
        (lambda d: [translated(d, "fr", sections=d["sections"][1:])], "translations[0].sections:"),
        (lambda d: [dict(translated(d, "fr"), subject="")], "translations[0].subject"),
        (lambda d: [{k: v for k, v in translated(d, "fr").items() if k != "footer"}], "translations[0].footer"),
    ],
)
def test_a_translation_that_is_not_the_same_issue_is_refused_naming_the_field(change, expected):
    doc = july()
    doc["translations"] = change(doc)
    with pytest.raises(InvalidIssue) as caught:
        parse(doc)
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


def test_links_in_a_translation_must_match_the_default_one_for_one():
    doc = july()
    fr = translated(doc, "fr")
    fr["news"] = [dict(item, links=item["links"][:1]) if n == 1 else item for n, item in enumerate(fr["news"])]
    doc["translations"] = [fr]
    with pytest.raises(InvalidIssue) as caught:
        parse(doc)
    assert "translations[0].news[1].links: 1 links here, 2 in the default language" in caught.value.problems


def test_translators_keep_files_of_their_own_and_the_cli_uploads_one_document(tmp_path):
    from newsletter_cli.publishing import read_issue

    doc = july()
    (tmp_path / "2015-07.json").write_text(json.dumps(doc), encoding="utf-8")
    (tmp_path / "2015-07.pt.json").write_text(json.dumps(translated(doc, "pt")), encoding="utf-8")
    fr = translated(doc, "fr")
    del fr["language"]  # the file's name says it
    (tmp_path / "2015-07.fr.json").write_text(json.dumps(fr), encoding="utf-8")
    (tmp_path / "2015-07.notes.json").write_text("{}", encoding="utf-8")  # not a language: not a translation
    issue, raw = read_issue(tmp_path / "2015-07.json")
    assert issue.languages == ["en", "fr", "pt"]
    assert parse_document(raw, max_bytes=1 << 20) == issue  # what is uploaded is what was checked

    (tmp_path / "2015-07.de.json").write_text(json.dumps(translated(doc, "es")), encoding="utf-8")
    with pytest.raises(InvalidIssue) as caught:
        read_issue(tmp_path / "2015-07.json")
    assert caught.value.problems == ["2015-07.de.json: its language is 'es', its name says 'de'"]


# --- sending each reader their language -------------------------------------------------------


def test_each_reader_gets_their_language_once_and_the_figures_say_how_many(stack):
    import email
    import email.policy

    from conftest import add_subscribers, deliver, issue_doc, issue_record, publish, s3_text

    from devstack.stack import sent_messages
    from newsletter.store.issues import statistics_by_language

    readers = {  # address -> (their language, the variant they must get)
        "ana@example.org": ("pt-BR", "pt"),
        "bia@example.org": ("pt", "pt"),
        "chloe@example.org": ("fr", "fr"),
        "dora@example.org": ("fr-CA", "fr"),
        "erik@example.org": ("de", "en"),  # no German: the default
        "fay@example.org": ("en", "en"),
        "gus@example.org": ("", "en"),
    }
    add_subscribers(
        stack,
        [
            {"email": a, "name": a.split("@")[0], "status": "active", "language": lang}
            for a, (lang, _) in readers.items()
        ],
    )
    doc = issue_doc()
    doc["translations"] = [translated(doc, "fr"), translated(doc, "pt")]
    assert publish(stack, doc)["outcomes"][0]["status"] == "published"
    deliver(stack)

    got = {}
    for m in sent_messages():
        msg = email.message_from_string(m.raw_data, policy=email.policy.default)
        html = msg.get_body(("html",)).get_content()
        got.setdefault(msg["To"].addresses[0].addr_spec, []).append((msg["Content-Language"], msg["Subject"], html))
    assert sorted(got) == sorted(readers)
    for address, (_, variant) in readers.items():
        ((language, subject, html),) = got[address]  # once
        assert language == variant and f'<html lang="{variant}" dir="ltr">' in html
        assert subject == (doc["subject"] if variant == "en" else f"[{variant}] {doc['subject']}")
        suffix = "" if variant == "en" else f".{variant}"
        assert f"https://news.example.org/web/2015-07{suffix}.html" in html  # "view in browser": theirs

    record = issue_record(stack, "2015-07")
    assert record["status"] == "sent" and record["sent"] == len(readers)
    assert {k: v["sent"] for k, v in statistics_by_language(record).items()} == {"en": 3, "fr": 2, "pt": 2}
    for lang in ("fr", "pt"):
        page = s3_text(stack, f"web/2015-07.{lang}.html")
        assert f'<html lang="{lang}"' in page and f"[{lang}] {doc['subject']}" in page
        assert '<link rel="alternate" hreflang="en" href="https://news.example.org/web/2015-07.html">' in page
    assert '<link rel="alternate" hreflang="pt" href="https://news.example.org/web/2015-07.pt.html">' in s3_text(
        stack, "web/2015-07.html"
    )


def test_an_issue_in_one_language_is_sent_as_before(stack):
    from conftest import add_subscribers, deliver, issue_doc, issue_record, people, publish

    from newsletter.store.issues import statistics_by_language

    add_subscribers(stack, [dict(p, language="fr") for p in people(3)])
    publish(stack, issue_doc())
    deliver(stack)
    record = issue_record(stack, "2015-07")
    assert record["sent"] == 3 and statistics_by_language(record) == {} and "prepared_keys" not in record


def test_feedback_is_counted_per_language_when_the_message_says_its_language(stack):
    from conftest import add_subscribers, deliver, issue_doc, issue_record, publish

    from devstack import ses_feedback
    from newsletter.store.issues import statistics_by_language

    add_subscribers(
        stack,
        [
            {"email": "chloe@example.org", "name": "Chloé", "status": "active", "language": "fr"},
            {"email": "fay@example.org", "name": "Fay", "status": "active", "language": "en"},
        ],
    )
    doc = issue_doc()
    doc["translations"] = [translated(doc, "fr")]
    publish(stack, doc)
    deliver(stack)
    sent = {i["email"]: i for i in ses_feedback.sent_ledger(stack, "2015-07")}
    bounce = ses_feedback.notification(
        "Bounce",
        sent["chloe@example.org"]["message_id"],
        ["chloe@example.org"],
        issue_id="2015-07",
        list_id="infomail",
        language="fr",
    )
    delivery = ses_feedback.notification(
        "Delivery",
        sent["fay@example.org"]["message_id"],
        ["fay@example.org"],
        issue_id="2015-07",
        list_id="infomail",
        language="en",
    )
    ses_feedback.deliver(stack, [bounce, delivery, bounce])  # the bounce twice: counted once
    by_language = statistics_by_language(issue_record(stack, "2015-07"))
    assert (by_language["fr"]["bounced"], by_language["fr"]["delivered"]) == (1, 0)
    assert (by_language["en"]["bounced"], by_language["en"]["delivered"]) == (0, 1)


def test_the_ledger_keeps_the_language_sent_and_the_local_feedback_carries_it_as_ses_would(stack):
    from conftest import add_subscribers, deliver, issue_doc, issue_record, publish

    from devstack import ses_feedback
    from newsletter.store.issues import statistics_by_language

    add_subscribers(
        stack,
        [
            {"email": "bounce@simulator.amazonses.com", "name": "B", "status": "active", "language": "fr"},
            {"email": "complaint@simulator.amazonses.com", "name": "C", "status": "active", "language": "pt-BR"},
            {"email": "success@simulator.amazonses.com", "name": "S", "status": "active", "language": "de"},
        ],
    )
    doc = issue_doc()
    doc["translations"] = [translated(doc, "fr"), translated(doc, "pt")]
    publish(stack, doc)
    deliver(stack)
    sent = {i["email"].split("@")[0]: i.get("language") for i in ses_feedback.sent_ledger(stack, "2015-07")}
    assert sent == {"bounce": "fr", "complaint": "pt", "success": "en"}
    ses_feedback.deliver(stack, ses_feedback.simulator_outcomes(stack, "infomail", issue_id="2015-07"))
    figures = {
        lang: (c["sent"], c["delivered"], c["bounced"], c["complained"])
        for lang, c in statistics_by_language(issue_record(stack, "2015-07")).items()
    }
    assert figures == {"en": (1, 1, 0, 0), "fr": (1, 0, 1, 0), "pt": (1, 1, 0, 1)}


def test_an_issue_in_one_language_keeps_no_language_in_its_ledger(stack):
    from conftest import add_subscribers, deliver, issue_doc, people, publish

    from devstack import ses_feedback

    add_subscribers(stack, [dict(p, language="fr") for p in people(2)])
    publish(stack, issue_doc())
    deliver(stack)
    ledger = ses_feedback.sent_ledger(stack, "2015-07")
    assert len(ledger) == 2 and all("language" not in item for item in ledger)
    notes = ses_feedback.simulator_outcomes(stack, "infomail", issue_id="2015-07")
    assert all("language" not in n["mail"]["tags"] for n in notes)


def test_the_unsubscribe_page_speaks_the_language_the_reader_was_mailed_in(stack):
    import email
    import email.policy
    from urllib.parse import parse_qs, urlsplit

    from conftest import add_subscribers, deliver, issue_doc, publish

    from devstack.stack import sent_messages

    add_subscribers(
        stack,
        [
            {"email": "chloe@example.org", "name": "Chloé", "status": "active", "language": "fr"},
            {"email": "fay@example.org", "name": "Fay", "status": "active", "language": "en"},
        ],
    )
    doc = issue_doc()
    doc["translations"] = [translated(doc, "fr")]
    publish(stack, doc)
    deliver(stack)
    links = {}
    for m in sent_messages():
        msg = email.message_from_string(m.raw_data, policy=email.policy.default)
        links[msg["To"].addresses[0].addr_spec] = msg["List-Unsubscribe"].split("<", 1)[1].split(">", 1)[0]
    assert parse_qs(urlsplit(links["chloe@example.org"]).query)["lang"] == ["fr"]
    assert "lang=" not in links["fay@example.org"]  # English: as before

    def page(method: str, url: str, body: str = "") -> dict:
        event = stack.function_url_event(method, urlsplit(url).query, body)
        return stack.invoke("UnsubscribeFunction", event)

    shown = page("GET", links["chloe@example.org"])
    assert shown["statusCode"] == 200 and '<html lang="fr"' in shown["body"] and "lang=fr" in shown["body"]
    done = page("POST", links["chloe@example.org"])
    assert done["statusCode"] == 200 and '<html lang="fr"' in done["body"]
    english = page("GET", links["fay@example.org"])
    assert '<html lang="en"' in english["body"]
    for forged in ("xx", "it", "fr&lang=de"):  # not a language, no catalog, two hints: English
        url = links["fay@example.org"] + "&lang=" + forged
        assert '<html lang="en"' in page("GET", url)["body"]
