"""Reading an uploaded issue document: good ones validate, bad ones say what is wrong and where."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from newsletter.issue import InvalidIssue, Issue, field_path, parse_document
from newsletter.render import render_issue

ROOT = Path(__file__).resolve().parents[1]
# Whole documents (2015-07.json); their translations (2015-07.fr.json) are checked with them.
EXAMPLES = sorted(p for p in (ROOT / "examples" / "issues").glob("*.json") if p.name.count(".") == 1)
BAD = ROOT / "tests" / "fixtures" / "bad_issues"
CASES = json.loads((BAD / "cases.json").read_text(encoding="utf-8"))
MAX = 524288


def problems_of(raw: bytes, max_bytes: int = MAX) -> list[str]:
    with pytest.raises(InvalidIssue) as info:
        parse_document(raw, max_bytes=max_bytes)
    assert info.value.problems, "InvalidIssue without problems"
    assert str(info.value) == "; ".join(info.value.problems)
    return info.value.problems


def example_doc() -> dict:
    return json.loads(EXAMPLES[0].read_text(encoding="utf-8"))


def test_there_are_two_examples():
    assert [p.name for p in EXAMPLES] == ["2015-07.json", "2015-08.json"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate(path):
    issue = parse_document(path.read_bytes(), max_bytes=MAX)
    assert isinstance(issue, Issue)
    assert issue.issue_id == path.stem
    assert issue.list_id == "infomail"


def test_every_fixture_has_a_case():
    files = {p.name for p in BAD.iterdir() if p.name != "cases.json"}
    assert files == {c["file"] for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_bad_documents_are_refused_with_a_useful_message(case):
    assert case["expect"], "a case must expect something"
    problems = problems_of((BAD / case["file"]).read_bytes())
    for expected in case["expect"]:
        assert any(expected in p for p in problems), f"{case['why']}: {expected!r} not in {problems}"


def test_oversized_document_names_the_limit():
    raw = EXAMPLES[0].read_bytes()
    assert parse_document(raw, max_bytes=len(raw))  # exactly at the limit is fine
    problems = problems_of(raw, max_bytes=len(raw) - 1)
    assert problems == [f"(document): larger than the limit of {len(raw) - 1} bytes"]


def test_utf8_byte_order_mark_is_accepted():
    issue = parse_document(b"\xef\xbb\xbf" + EXAMPLES[0].read_bytes(), max_bytes=MAX)
    assert issue.issue_id == "2015-07"


def test_json_syntax_error_reports_line_and_column():
    raw = b'{\n  "issue_id": "2015-09",\n  "list" "infomail"\n}'
    assert problems_of(raw) == ["line 3, column 10: JSON syntax error: Expecting ':' delimiter"]


def test_json_syntax_error_after_a_bom_counts_from_the_document():
    raw = b'\xef\xbb\xbf{\n  "list": "infomail",,\n}'
    assert problems_of(raw)[0].startswith("line 2, column 22: ")


def test_invalid_utf8_reports_line_and_column():
    raw = b'{\n  "a": "x",\n  "b": "caf\xe9"\n}'
    assert problems_of(raw) == ["(document): not valid UTF-8 at byte 25 (line 3, column 12); save the file as UTF-8"]


def test_invalid_utf8_column_after_non_ascii_text():
    raw = '{\n  "a": "ééé",\n  "b": "caf'.encode() + b'\xe9"\n}'
    assert "(line 3, column 12)" in problems_of(raw)[0]


def test_unknown_field():
    doc = example_doc()
    doc["news"][1]["titel"] = "Typo"
    problems = problems_of(json.dumps(doc).encode())
    assert problems == ["news[1].titel: unknown field (check its spelling against the issue format)"]


def test_several_problems_are_all_reported():
    doc = example_doc()
    del doc["subject"]
    doc["news"][0]["links"][0]["url"] = "ftp://example.org/x"
    problems = problems_of(json.dumps(doc).encode())
    assert problems[0] == "subject: Field required"
    assert problems[1].startswith("news[0].links[0].url: must be an https, http or mailto URL")
    assert len(problems) == 2


@pytest.mark.parametrize(
    "loc, expected",
    [
        (("news", 0, "links", 1, "url"), "news[0].links[1].url"),
        (("footer", "postal_address"), "footer.postal_address"),
        ((), "(document)"),
    ],
)
def test_field_path(loc, expected):
    assert field_path(loc) == expected


def test_markup_in_a_title_is_text_escaped_when_rendered():
    doc = example_doc()
    doc["news"][0]["title"] = '<script>alert("x")</script> & <b>bold</b>'
    issue = parse_document(json.dumps(doc).encode(), max_bytes=MAX)
    assert issue.news[0].title == doc["news"][0]["title"]
    out = render_issue(issue, web_url="https://news.example.org/web/2015-07.html", list_name="L", sender_name="S")
    for page in (out.html, out.web):
        assert "<script>" not in page and "<b>bold</b>" not in page
        assert "&lt;script&gt;" in page
    assert '<script>alert("x")</script> & <b>bold</b>' in out.text
