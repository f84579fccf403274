"""Dates in issues: `when` and `deadline` in ISO 8601, shown in each reader's language (Babel);
free text shown as written."""

from __future__ import annotations

import copy
import html
import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from newsletter import dates
from newsletter.config import PublishSettings
from newsletter.issue import InvalidIssue, parse_document
from newsletter.publish import render_variants

ROOT = Path(__file__).resolve().parents[1]
ISSUES = ROOT / "examples" / "issues"


def plain(text: str) -> str:
    """Babel's thin and narrow no-break spaces as plain spaces, so expectations read plainly."""
    return text.replace("\u2009", " ").replace("\u202f", " ").replace("\xa0", " ")


def fmt(value: str, language: str) -> str:
    return plain(dates.format(value, language))


# --- parsing -----------------------------------------------------------------------------------

PLUS_TWO = timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    "value, start, end",
    [
        ("2015-09-15", date(2015, 9, 15), None),
        ("2015-09-15T10:00+02:00", datetime(2015, 9, 15, 10, 0, tzinfo=PLUS_TWO), None),
        ("2015-09-15T10:00:30+0200", datetime(2015, 9, 15, 10, 0, 30, tzinfo=PLUS_TWO), None),
        ("2015-09-15T08:00Z", datetime(2015, 9, 15, 8, 0, tzinfo=UTC), None),
        ("2015-09-15/2015-09-17", date(2015, 9, 15), date(2015, 9, 17)),
        ("2015-09-15/2015-09-15", date(2015, 9, 15), date(2015, 9, 15)),
        (
            "2015-09-15T10:00+02:00/2015-09-15T17:30+02:00",
            datetime(2015, 9, 15, 10, 0, tzinfo=PLUS_TWO),
            datetime(2015, 9, 15, 17, 30, tzinfo=PLUS_TWO),
        ),
        # Ends in different offsets are compared as instants: 09:30Z is after 10:00+02:00.
        (
            "2015-09-15T10:00+02:00/2015-09-15T09:30Z",
            datetime(2015, 9, 15, 10, 0, tzinfo=PLUS_TWO),
            datetime(2015, 9, 15, 9, 30, tzinfo=UTC),
        ),
    ],
)
def test_structured_values_are_parsed(value, start, end):
    when = dates.parse(value)
    assert (when.start, when.end) == (start, end)
    assert type(when.start) is type(start)
    if isinstance(start, datetime):  # the offset as written is kept, not only the instant
        assert when.start.utcoffset() == start.utcoffset()
        assert when.end is None or when.end.utcoffset() == end.utcoffset()


@pytest.mark.parametrize(
    "value", ["15-17 September 2015", "September 2015", "2015-09", "2015-W38", "Every Monday", "15/09/2015", "2015"]
)
def test_free_text_is_not_a_structured_value(value):
    assert dates.parse(value) is None
    assert dates.format(value, "fr") == value


@pytest.mark.parametrize(
    "value, message",
    [
        ("2015-13-45", "2015-13-45 is not a date: month must be in 1..12"),
        ("2015-02-30", "2015-02-30 is not a date: day is out of range for month"),
        ("2015-09-15T10:00", "2015-09-15T10:00 has no UTC offset"),
        ("2015-09-15T10:00+02:00/2015-09-15T17:30", "2015-09-15T17:30 has no UTC offset"),
        ("2015-09-15T25:00Z", "2015-09-15T25:00Z is not a date-time: hour must be in 0..23"),
        ("2015-09-15T10:00+24:00", "the UTC offset +24:00 is out of range"),
        ("2015-09-17/2015-09-15", "the interval ends (2015-09-15) before it starts (2015-09-17)"),
        ("2015-09-15T18:00+02:00/2015-09-15T10:00+02:00", "the interval ends (2015-09-15T10:00+02:00) before"),
        ("2015-09-15/2015-09-17T10:00Z", "both be dates or both be date-times"),
        ("2015-09-15/17", "the interval's end (17) is not a date or a date-time"),
        ("2015-09-15/2015-09-16/2015-09-17", "starts like an ISO 8601 date but is not one"),
        ("2015-09-15 to 2015-09-17", "starts like an ISO 8601 date but is not one"),
        ("2015-09-15 10:00+02:00", "separate the date and the time with a T"),
    ],
)
def test_what_looks_like_iso_but_is_not_is_refused_saying_why(value, message):
    with pytest.raises(ValueError) as caught:
        dates.parse(value)
    assert message in str(caught.value)


def test_a_refusal_says_how_to_write_a_date_or_free_text():
    with pytest.raises(ValueError, match=r"2015-09-15T10:00\+02:00.*free text that does not start with YYYY-MM-DD"):
        dates.parse("2015-09-15, Vienna")


# --- formatting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "language, day, days",
    [
        ("en", "August 31, 2015", "Sep 15 – 17, 2015"),
        ("fr", "31 août 2015", "15–17 sept. 2015"),
        ("pt", "31 de agosto de 2015", "15 – 17 de set. de 2015"),
        ("pt-BR", "31 de agosto de 2015", "15 – 17 de set. de 2015"),
        ("de", "31. August 2015", "15.–17. Sept. 2015"),
        ("es", "31 de agosto de 2015", "15–17 sept 2015"),
    ],
)
def test_dates_and_intervals_in_each_language(language, day, days):
    assert fmt("2015-08-31", language) == day
    assert fmt("2015-09-15/2015-09-17", language) == days
    assert fmt("2015-09-15/2015-09-15", language) == fmt("2015-09-15", language)  # a one-day interval


def test_an_interval_across_months_names_both():
    assert fmt("2015-09-28/2015-10-02", "en") == "Sep 28 – Oct 2, 2015"
    assert fmt("2015-09-28/2015-10-02", "fr") == "28 sept. – 2 oct. 2015"


@pytest.mark.parametrize(
    "language, expected",
    [
        ("en", "September 15, 2015, 10:00 AM GMT+02:00"),
        ("fr", "15 septembre 2015, 10:00 UTC+02:00"),
        ("pt-BR", "15 de setembro de 2015 10:00 +02:00 GMT"),
        ("de", "15. September 2015, 10:00 GMT+02:00"),
        ("es", "15 de septiembre de 2015, 10:00 GMT+02:00"),
    ],
)
def test_a_date_time_is_shown_in_its_own_offset_and_names_it(language, expected):
    assert fmt("2015-09-15T10:00+02:00", language) == expected


def test_the_time_is_never_converted():
    assert fmt("2015-09-15T10:00-03:30", "en") == "September 15, 2015, 10:00 AM GMT-03:30"
    assert fmt("2015-09-15T23:30Z", "fr") == "15 septembre 2015, 23:30 UTC+00:00"


def test_a_date_time_interval_on_one_day_gives_the_date_and_the_offset_once():
    value = "2015-09-15T10:00+02:00/2015-09-15T17:30+02:00"
    assert fmt(value, "en") == "September 15, 2015, 10:00 AM – 5:30 PM GMT+02:00"
    assert fmt(value, "fr") == "15 septembre 2015, 10:00 – 17:30 UTC+02:00"
    assert fmt(value, "de") == "15. September 2015, 10:00–17:30 Uhr GMT+02:00"


def test_a_date_time_interval_over_days_or_offsets_gives_both_in_full():
    assert fmt("2015-09-15T10:00+02:00/2015-09-17T12:00+02:00", "fr") == (
        "15 septembre 2015, 10:00 UTC+02:00 – 17 septembre 2015, 12:00 UTC+02:00"
    )
    assert fmt("2015-09-15T10:00+02:00/2015-09-15T17:30+03:00", "en") == (
        "September 15, 2015, 10:00 AM GMT+02:00 – September 15, 2015, 5:30 PM GMT+03:00"
    )


def test_a_quoted_h_in_a_time_pattern_is_not_a_12_hour_clock():
    # fr-CA writes "10 h 00": the h is literal text, the clock is 24-hour.
    assert fmt("2015-09-15T10:00+02:00/2015-09-15T17:30+02:00", "fr-CA") == (
        "15 septembre 2015, 10 h 00 – 17 h 30 UTC+02:00"
    )


@pytest.mark.parametrize(
    "language, babel",
    [("en", "en"), ("fr", "fr"), ("pt-BR", "pt_BR"), ("sr-Latn", "sr_Latn"), ("es-419", "es_419"), ("ho", "en")],
)
def test_a_tag_becomes_babels_locale_or_a_broader_one_or_english(language, babel):
    assert str(dates._locale(language)) == babel


def test_a_tag_babel_does_not_know_falls_back():
    # Hiri Motu is an ISO 639-1 language (the issue accepts it) without CLDR data: English.
    assert fmt("2015-08-31", "ho") == fmt("2015-08-31", "ho-PG") == "August 31, 2015"
    assert fmt("2015-08-31", "fr-ZZ") == "31 août 2015"


def test_empty_values_format_to_nothing():
    assert dates.format(None, "fr") == dates.format("", "fr") == ""


def test_babel_is_imported_only_to_format_a_structured_value():
    code = (
        "import sys\n"
        "from newsletter import dates, issue, render\n"
        "assert dates.format('15-17 September 2015', 'fr') == '15-17 September 2015'\n"
        "dates.parse('2015-09-15/2015-09-17')\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'babel'], 'babel imported'\n"
        "assert dates.format('2015-08-31', 'fr') == '31 août 2015'\n"
        "assert 'babel.dates' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --- in an issue -------------------------------------------------------------------------------

SETTINGS = PublishSettings(
    bucket_name="bucket",
    lists_table="lists",
    issues_table="issues",
    fanout_queue_url="https://sqs.example/fanout",
    web_base_url="https://news.example.org/web",
    sender_address="news@example.org",
    sender_name="ICMPD",
)


def load(name: str) -> dict:
    return json.loads((ISSUES / name).read_text(encoding="utf-8"))


def with_dates(content: dict, event_title: str) -> dict:
    """The content with a dated event (sections[3], events) and a deadline on the call (sections[2])."""
    content = copy.deepcopy(content)
    sections = content["sections"]
    assert [s["kind"] for s in sections[2:4]] == ["calls", "events"]
    sections[2]["items"][0]["deadline"] = "2015-08-31"
    sections[3]["items"] = [{"title": event_title, "when": "2015-09-15/2015-09-17", "where": "Vienna"}]
    return content


def dated_document() -> dict:
    doc = with_dates(load("2015-07.json"), "Migration Dialogue")
    doc["translations"] = [with_dates(load("2015-07.fr.json"), "Dialogue sur les migrations")]
    return doc


def parse(doc: dict):
    return parse_document(json.dumps(doc).encode(), max_bytes=1 << 20)


def rendered_variants(doc: dict) -> dict:
    variants = render_variants(parse(doc), {"name": "ICMPD Infomail"}, settings=SETTINGS)
    return {v.language: v for v in variants}


def test_each_language_reads_the_dates_in_its_own_words_in_every_part():
    variants = rendered_variants(dated_document())
    assert set(variants) == {"en", "fr"}
    expected = {"en": ("August 31, 2015", "Sep 15 – 17, 2015"), "fr": ("31 août 2015", "15–17 sept. 2015")}
    for language, (deadline, when) in expected.items():
        v = variants[language]
        for part in (html.unescape(v.prepared["html"]), v.prepared["text"], html.unescape(v.web)):
            part = plain(part)
            assert deadline in part, (language, part[:200])
            assert when in part, language
            assert "2015-08-31" not in part and "2015-09-15/2015-09-17" not in part
    assert "31 août 2015" not in plain(variants["en"].prepared["text"])
    assert "August 31, 2015" not in plain(variants["fr"].prepared["text"])


def test_the_text_part_labels_the_dates_in_the_readers_language():
    text = plain(rendered_variants(dated_document())["fr"].prepared["text"])
    lines = [line.strip() for line in text.splitlines()]
    assert any(line.endswith("31 août 2015") and line != "31 août 2015" for line in lines)
    assert any(line.endswith("15–17 sept. 2015") for line in lines)


def test_free_text_dates_are_shown_as_written_and_escaped():
    doc = dated_document()
    doc["sections"][3]["items"][0]["when"] = "Autumn <b>2015</b> & later"
    doc["translations"][0]["sections"][3]["items"][0]["when"] = "Automne 2015"
    variants = rendered_variants(doc)
    assert "Autumn &lt;b&gt;2015&lt;/b&gt; &amp; later" in variants["en"].prepared["html"]
    assert "<b>2015</b>" not in variants["en"].prepared["html"]
    assert "Autumn <b>2015</b> & later" in variants["en"].prepared["text"]
    assert "Automne 2015" in variants["fr"].prepared["text"]


@pytest.mark.parametrize(
    "where, value, message",
    [
        ("default", "2015-13-45", "sections[3].items[0].when: 2015-13-45 is not a date: month must be in 1..12"),
        ("default", "2015-09-15T10:00", "sections[3].items[0].when: 2015-09-15T10:00 has no UTC offset"),
        ("default", "2015-09-17/2015-09-15", "sections[3].items[0].when: the interval ends (2015-09-15) before"),
        ("translation", "2015-09-31", "translations[0].sections[3].items[0].when: 2015-09-31 is not a date"),
    ],
)
def test_an_invalid_date_is_refused_with_its_field_path(where, value, message):
    doc = dated_document()
    content = doc if where == "default" else doc["translations"][0]
    content["sections"][3]["items"][0]["when"] = value
    with pytest.raises(InvalidIssue) as caught:
        parse(doc)
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems
    assert len(caught.value.problems) == 1


def test_an_invalid_deadline_is_refused_with_its_field_path():
    doc = dated_document()
    doc["sections"][2]["items"][0]["deadline"] = "2015-08-31T17:00"
    with pytest.raises(InvalidIssue) as caught:
        parse(doc)
    assert caught.value.problems == [
        "sections[2].items[0].deadline: 2015-08-31T17:00 has no UTC offset: add the one its time is in "
        "(2015-08-31T17:00+02:00, or 2015-08-31T17:00Z for UTC), else readers in other time zones cannot "
        "tell when it is (got '2015-08-31T17:00')"
    ]
