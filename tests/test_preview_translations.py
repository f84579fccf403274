"""`newsletter preview` of a multilingual issue: every language checked, and the translations
compared with the default (who falls back, untranslated text, links, downloads and dates)."""

from __future__ import annotations

import copy
import json

from conftest import EXAMPLE_ISSUE, issue_doc

from newsletter.issue import parse_document
from newsletter_cli import preview, translations

FRENCH = json.loads(EXAMPLE_ISSUE.with_name("2015-07.fr.json").read_text(encoding="utf-8"))


def multilingual(change_fr=None, change_en=None):
    """The example in English with its French translation, each changed as given."""
    doc, fr = issue_doc(), copy.deepcopy(FRENCH)
    if change_en:
        change_en(doc)
    if change_fr:
        change_fr(fr)
    doc["translations"] = [fr]
    return parse_document(json.dumps(doc).encode("utf-8"), max_bytes=512 * 1024)


def rule(issue, name: str, audience=None) -> list[tuple[str, str]]:
    [(_, _, problems, _)] = [r for r in translations.check(issue, audience) if r[1] == name]
    return problems


# --- Who falls back --------------------------------------------------------------------------------


def test_readers_of_a_language_the_issue_lacks_are_counted_by_language():
    issue = parse_document(
        json.dumps(
            {
                **issue_doc(),
                "translations": [FRENCH, json.loads(EXAMPLE_ISSUE.with_name("2015-07.pt.json").read_text())],
            }
        ).encode(),
        max_bytes=512 * 1024,
    )
    audience = {"en": 5, "fr": 3, "pt-BR": 2, "pt": 1, "de": 4, "de-AT": 1, "es": 1, "": 1, "not a tag": 1}
    problems, summary = translations.fallbacks(issue, audience)
    assert problems == [
        ("warning", "no de variant: 5 readers get en instead"),
        ("warning", "no es variant: 1 reader gets en instead"),
        ("info", "2 readers with no or an unknown language get en"),
    ]
    # pt-BR readers get pt: no warning for them.
    assert summary == "19 active readers: en 13, fr 3, pt 3"


def test_an_audience_in_the_issues_languages_is_ok_and_no_audience_says_how_to_count():
    issue = multilingual()
    assert rule(issue, "languages", {"en": 3, "en-GB": 1, "fr-CA": 2}) == []
    [(level, note)] = rule(issue, "languages", None)
    assert level == "info" and "--local or --stack" in note


# --- Untranslated text --------------------------------------------------------------------------


def test_text_left_as_in_the_default_is_named_by_its_path():
    def leave_english(fr):
        doc = issue_doc()
        fr["news"][1]["title"] = doc["news"][1]["title"]
        fr["sections"][2]["items"][0]["body"] = doc["sections"][2]["items"][0]["body"]
        fr["footer"]["organisation"] = doc["footer"]["organisation"]  # a name: the same everywhere

    [(level, said)] = rule(multilingual(leave_english), "untranslated")
    assert level == "warning"
    assert said.startswith("2 texts read as in en (untranslated?): news[1].title, sections[2].items[0].body")
    assert rule(multilingual(), "untranslated") == []


def test_short_names_and_acronyms_may_read_the_same():
    def same_label(fr):
        fr["spotlight"]["label"] = "ICMPD"

    def same_in_en(doc):
        doc["spotlight"]["label"] = "ICMPD"

    assert rule(multilingual(same_label, same_in_en), "untranslated") == []


# --- Links, downloads, dates --------------------------------------------------------------------


def test_a_link_that_leads_elsewhere_must_name_its_language():
    def elsewhere(fr):
        fr["news"][0]["links"][0]["url"] = "https://www.icmpd.org/news/other-story"

    [(level, said)] = rule(multilingual(elsewhere), "links-per-language")
    assert level == "warning" and said.startswith("news[0].links[0].url leads elsewhere than in en")
    assert "https://www.icmpd.org/news/other-story" in said

    for named in (
        "https://www.icmpd.org/fr/news/story",
        "https://www.icmpd.org/news/story-fr",
        "https://x.org/a?lang=fr",
    ):

        def own_page(fr, url=named):
            fr["news"][0]["links"][0]["url"] = url

        assert rule(multilingual(own_page), "links-per-language") == [], named

    # A language code in the host is no declaration.
    def host(fr):
        fr["news"][0]["links"][0]["url"] = "https://fr.example.org/news"

    assert len(rule(multilingual(host), "links-per-language")) == 1


def test_downloads_are_a_set_each_language_orders_its_way():
    # The example's French lists its own download first: that is no difference.
    assert rule(multilingual(), "downloads-per-language") == []

    def extra(fr, language=None):
        d = {"label": "Résumé", "url": "https://www.icmpd.org/file/summary.pdf"}
        if language:
            d["language"] = language
        fr["sections"][1]["items"][0]["downloads"].append(d)

    [(level, said)] = rule(multilingual(extra), "downloads-per-language")
    assert level == "warning"
    assert said == (
        "sections[1].items[0].downloads: https://www.icmpd.org/file/summary.pdf is offered only in fr, "
        "and says no language: give its `language`"
    )
    assert rule(multilingual(lambda fr: extra(fr, "fr")), "downloads-per-language") == []

    def fewer(fr):
        fr["sections"][1]["items"][0]["downloads"] = [{"label": "Notes", "url": "https://www.icmpd.org/file/notes.pdf"}]

    # The default's three carry their language; the French's one does not.
    [(_, said)] = rule(multilingual(fewer), "downloads-per-language")
    assert "notes.pdf is offered only in fr" in said


def test_free_text_dates_may_differ_but_not_be_given_in_one_language_only():
    def when(text):
        def change(doc):
            doc["sections"][2]["items"][0]["deadline"] = text

        return change

    both = multilingual(when("le 31 août"), when("31 August"))
    assert rule(both, "dates-per-language") == []
    [(level, said)] = rule(multilingual(None, when("31 August")), "dates-per-language")
    assert level == "warning" and said == "sections[2].items[0].deadline is given only in en"


def test_structured_dates_must_say_the_same_day_in_every_language():
    def when(value):
        def change(doc):
            doc["sections"][2]["items"][0]["deadline"] = value

        return change

    # The same date, written per locale by each variant: nothing to say.
    assert rule(multilingual(when("2015-08-31"), when("2015-08-31")), "dates-per-language") == []
    [(level, said)] = rule(multilingual(when("2015-08-30"), when("2015-08-31")), "dates-per-language")
    assert level == "error" and "another day" in said and "sections[2].items[0].deadline" in said
    [(level, said)] = rule(multilingual(when("le 31 août"), when("2015-08-31")), "dates-per-language")
    assert level == "warning" and "free text" in said


# --- The whole preview ----------------------------------------------------------------------------


def test_preview_checks_every_language_and_labels_each_finding(tmp_path):
    doc = tmp_path / "2016-01.json"
    doc.write_text(json.dumps(issue_doc("2016-01")), encoding="utf-8")
    fr = copy.deepcopy(FRENCH)
    fr["subject"] = "Mise à jour mensuelle de juillet 2015 : un objet bien trop long pour un téléphone"
    (tmp_path / "2016-01.fr.json").write_text(json.dumps(fr), encoding="utf-8")
    result = preview.preview(doc, out_dir=tmp_path / "out", audience={"en": 2, "fr": 1, "de": 3})
    assert result.issue.languages == ["en", "fr"]
    subject = {f.language: f.level for f in result.report.findings if f.rule == "subject"}
    assert subject == {"en": "ok", "fr": "warning"}  # only the French is too long for a phone
    assert ("warning", "languages", None, "no de variant: 3 readers get en instead") in [
        (f.level, f.rule, f.language, f.message) for f in result.report.findings
    ]
    assert result.files["fr eml"].name == "2016-01.fr.eml"
    assert "Content-Language: fr" in result.files["fr eml"].read_text("utf-8")


def test_a_one_language_issue_reads_as_before(tmp_path):
    doc = tmp_path / "solo.json"
    doc.write_text(json.dumps(issue_doc("solo")), encoding="utf-8")
    result = preview.preview(doc, out_dir=tmp_path / "out")
    assert all(f.language is None for f in result.report.findings)
    assert not any(f.rule in ("languages", "untranslated") for f in result.report.findings)
    assert sorted(result.files) == ["eml", "html", "text", "web"]
