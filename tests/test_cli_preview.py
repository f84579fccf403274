"""`newsletter preview`: the issue rendered as publishing would, checked, written; nothing sent."""

from __future__ import annotations

import email
import email.policy
import json
import shutil
from dataclasses import replace

import pytest
from conftest import EXAMPLE_ISSUE, issue_doc
from rich.console import Console

from newsletter.issue import InvalidIssue, parse_document
from newsletter.personalize import marker
from newsletter_cli import preview
from newsletter_cli.preview import Finding, PreviewResult, Report

RULES = [
    "html-size",
    "subject",
    "preheader",
    "images",
    "links",
    "list-unsubscribe",
    "unsubscribe-link",
    "postal-address",
    "text-headings",
    "text-length",
]
UNSUBSCRIBE = marker("unsubscribe_url")
KINDS = {"html": "html", "text": "txt", "web": "web.html", "eml": "eml"}


def parse(doc: dict):
    return parse_document(json.dumps(doc).encode("utf-8"), max_bytes=512 * 1024)


@pytest.fixture(scope="module")
def example():
    issue = parse(issue_doc())
    rendered, prepared = preview.render(issue)
    return issue, rendered, prepared


def check(example, *, html: str | None = None, text: str | None = None, message=None, issue=None) -> Report:
    """The rules over the example with its rendered parts (or its sample message) changed."""
    base_issue, rendered, prepared = example
    rendered = replace(rendered, html=rendered.html if html is None else html)
    rendered = replace(rendered, text=rendered.text if text is None else text)
    raw = preview.sample_message({**prepared, "html": rendered.html, "text": rendered.text})
    return preview.check(issue or base_issue, rendered, message(raw) if message else raw)


def check_doc(doc: dict) -> Report:
    issue = parse(doc)
    rendered, prepared = preview.render(issue)
    return preview.check(issue, rendered, preview.sample_message(prepared))


def found(report: Report, rule: str, level: str | None = None) -> list[Finding]:
    return [f for f in report.findings if f.rule == rule and (level is None or f.level == level)]


def levels(report: Report, rule: str) -> list[str]:
    return [f.level for f in found(report, rule)]


# --- The example, end to end --------------------------------------------------------------------


def test_example_has_no_errors_and_every_rule_is_on_the_checklist(example):
    report = check(example)
    assert report.errors == []
    assert [f.rule for f in report.findings if f.level == "ok"] == [r for r in RULES if r != "preheader"]
    # Its preheader (150 characters) is the one thing to improve.
    assert [(f.rule, f.level) for f in report.warnings] == [("preheader", "warning")]


def test_preview_writes_what_a_reader_gets(tmp_path):
    result = preview.preview(EXAMPLE_ISSUE, out_dir=tmp_path / "out", screenshots=False)
    assert isinstance(result, PreviewResult) and result.issue.issue_id == "2015-07"
    assert result.report.errors == []
    # The translations beside the document are previewed too, each under its language.
    assert {k: p.name for k, p in result.files.items()} == {
        "html": "2015-07.html",
        "text": "2015-07.txt",
        "web": "2015-07.web.html",
        "eml": "2015-07.eml",
        **{f"{lang} {kind}": f"2015-07.{lang}.{ext}" for lang in ("fr", "pt") for kind, ext in KINDS.items()},
    }
    for lang in ("fr", "pt"):
        translated = email.message_from_bytes(result.files[f"{lang} eml"].read_bytes(), policy=email.policy.default)
        assert translated["Content-Language"] == lang
        assert f'<html lang="{lang}"' in result.files[f"{lang} html"].read_text("utf-8")
    msg = email.message_from_bytes(result.files["eml"].read_bytes(), policy=email.policy.default)
    html, text = result.files["html"].read_text("utf-8"), result.files["text"].read_text("utf-8")
    assert html == msg.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert text == msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    # Markers filled for the sample reader, in both parts; none left anywhere.
    url = "https://example.org/unsubscribe?token=preview-token&amp;issue=2015-07"
    assert f'href="{url}"' in html and url.replace("&amp;", "&") in text
    assert all("\ue000" not in p.read_text("utf-8") for k, p in result.files.items() if k != "eml")
    assert "Towards a new European Neighbourhood Policy" in result.files["web"].read_text("utf-8")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["From"].addresses[0].addr_spec == "news@example.org"


def test_rendering_goes_through_publish_with_the_given_settings(tmp_path):
    result = preview.preview(
        EXAMPLE_ISSUE,
        out_dir=tmp_path,
        sender_name="ICMPD",
        sender_address="infomail@news.icmpd.org",
        web_base_url="https://news.icmpd.org/web/",
        list_name="ICMPD Infomail",
    )
    msg = email.message_from_bytes(result.files["eml"].read_bytes(), policy=email.policy.default)
    assert str(msg["From"]) == "ICMPD <infomail@news.icmpd.org>"
    assert msg["List-Id"] == "ICMPD Infomail <infomail.news.icmpd.org>"
    assert msg["List-Archive"] == "<https://news.icmpd.org/web/2015-07.html>"
    assert "ICMPD Infomail" in result.files["text"].read_text("utf-8")


def test_without_a_list_name_the_list_id_stands_in(example):
    _, _, prepared = example
    assert prepared["list_name"] == "infomail" and prepared["from_name"] == "Newsletter"


def test_invalid_document_and_unreadable_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(issue_doc(subject="")), encoding="utf-8")
    with pytest.raises(InvalidIssue) as exc:
        preview.preview(bad, out_dir=tmp_path / "out")
    assert any(p.startswith("subject:") for p in exc.value.problems)
    assert not (tmp_path / "out").exists()  # nothing written for a document publishing would refuse
    with pytest.raises(OSError):
        preview.preview(tmp_path / "missing.json", out_dir=tmp_path / "out")


# --- One test per rule --------------------------------------------------------------------------


def test_html_over_gmails_clipping_limit_is_an_error(tmp_path):
    doc = issue_doc()
    doc["news"][0]["body"] = "Migration policy in a few words. " * 4700  # about 150 KB
    path = tmp_path / "big.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    result = preview.preview(path, out_dir=tmp_path)
    [f] = found(result.report, "html-size")
    assert f.level == "error" and "clipped" in f.message and "104,448 bytes" in f.message


def test_html_near_the_limit_is_a_warning(example):
    size = len(example[1].html.encode("utf-8"))
    padding = "<!--" + "x" * (90 * 1024 - size) + "-->"  # 90 KB: over 80 % of 102 KB, under the limit
    assert levels(check(example, html=example[1].html + padding), "html-size") == ["warning"]


def test_image_alt_text():
    doc = issue_doc()
    doc["news"][1]["image"] = {"src": "https://www.icmpd.org/img/decor.png"}  # alt defaults to ""
    [f] = found(check_doc(doc), "images")
    assert f.level == "warning" and "https://www.icmpd.org/img/decor.png" in f.message
    doc["news"][1]["image"]["alt"] = "Martijn Pluim speaking"
    assert levels(check_doc(doc), "images") == ["ok"]


def test_image_without_alt_attribute_is_an_error(example):
    html = example[1].html.replace("</h1>", '</h1><img src="https://cdn.example.org/banner.png" width="600">')
    [f] = found(check(example, html=html), "images")
    assert f.level == "error" and "banner.png" in f.message


def test_http_link_is_a_warning_naming_it():
    doc = issue_doc()
    doc["news"][0]["links"][0]["url"] = "http://www.icmpd.org/enigmma"
    [f] = found(check_doc(doc), "links")
    assert f.level == "warning" and "http://www.icmpd.org/enigmma" in f.message and "Find out more" in f.message


def test_links_that_go_nowhere_or_run_code_are_errors(example):
    bad = (
        '<a href="">Empty</a><a href="#">Hash</a><a href="javascript:alert(1)">Script</a>'
        '<a href="data:text/html,hi">Data</a><a href="page.html">Relative</a>'
    )
    fine = '<a href="mailto:infomail@icmpd.org">Write</a><a href="#news-1">Jump</a><a name="top">anchor</a>'
    report = check(example, html=example[1].html.replace("</h1>", "</h1>" + bad + fine))
    errors = found(report, "links", "error")
    assert len(errors) == 5 and not found(report, "links", "warning")
    for text in ("Empty", "Hash", "Script", "Data", "Relative"):
        assert any(f"'{text}'" in f.message for f in errors)


def test_missing_list_unsubscribe_headers_are_errors(example):
    no_post = check(example, message=lambda m: m.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b""))
    [f] = found(no_post, "list-unsubscribe")
    assert f.level == "error" and "List-Unsubscribe-Post" in f.message
    no_header = check(example, message=lambda m: m.replace(b"List-Unsubscribe: <", b"X-Removed: <"))
    assert levels(no_header, "list-unsubscribe") == ["error"]


def test_unsubscribe_link_must_be_in_both_parts_and_per_reader(example):
    _, rendered, _ = example
    fixed = "https://example.org/unsubscribe"  # the same for everyone: unsubscribes nobody
    for part in ("html", "text"):
        report = check(example, **{part: getattr(rendered, part).replace(UNSUBSCRIBE, fixed)})
        [f] = found(report, "unsubscribe-link")
        assert f.level == "error" and ("HTML" if part == "html" else "text") in f.message


def test_unsubscribe_url_of_the_message_must_be_in_the_parts(example):
    # The headers name another URL than the body links to.
    header = b"List-Unsubscribe: <https://"
    report = check(example, message=lambda m: m.replace(header, header + b"other."))
    assert levels(report, "unsubscribe-link") == ["error", "error"]


def test_postal_address_must_be_in_both_parts(example):
    _, rendered, _ = example
    for part, name in (("html", "HTML"), ("text", "text")):
        report = check(example, **{part: getattr(rendered, part).replace("Gonzagagasse 1, 1010 Vienna", "Vienna")})
        [f] = found(report, "postal-address")
        assert f.level == "error" and f"from the {name} part" in f.message and "Gonzagagasse" in f.message


def test_multi_line_postal_address_is_found_and_a_vague_one_warned():
    doc = issue_doc()
    doc["footer"]["postal_address"] = "ICMPD\nGonzagagasse 1\n1010 Vienna, Austria"
    assert levels(check_doc(doc), "postal-address") == ["ok"]
    doc["footer"]["postal_address"] = "Vienna, Austria"
    [f] = found(check_doc(doc), "postal-address")
    assert f.level == "warning" and "no number" in f.message


def test_subject(example):
    issue = example[0]
    assert levels(check(example, issue=issue.model_copy(update={"subject": ""})), "subject") == ["error"]
    subject = "July 2015 Monthly Update: migration policy, trafficking and the Silk Routes"
    long = issue.model_copy(update={"subject": subject})
    [f] = found(check(example, issue=long), "subject")
    assert f.level == "warning" and "75 characters" in f.message
    shouting = issue.model_copy(update={"subject": "MONTHLY UPDATE!!!"})
    assert levels(check(example, issue=shouting), "subject") == ["warning", "warning"]


@pytest.mark.parametrize(
    ("preheader", "level"),
    [
        (None, "warning"),
        ("Migration news", "warning"),  # too short
        ("x" * 101, "warning"),
        ("A new Neighbourhood Policy, specialists trained in Georgia, West Africa", "ok"),
    ],
)
def test_preheader(example, preheader, level):
    issue = example[0].model_copy(update={"preheader": preheader})
    assert levels(check(example, issue=issue), "preheader") == [level]


def test_text_and_html_carry_the_same_headings(example):
    _, rendered, _ = example
    title = "Addressing irregular migration in the Silk routes region"
    text = check(example, text=rendered.text.replace(title, "Silk routes"))
    [f] = found(text, "text-headings")
    assert f.level == "error" and "text part" in f.message and title in f.message
    html = check(example, html=rendered.html.replace("Current vacancies", "Jobs"))
    [f] = found(html, "text-headings")
    assert f.level == "error" and "HTML part" in f.message and "Current vacancies" in f.message


def test_text_part_not_trivially_short(example):
    _, rendered, _ = example
    words = rendered.text.split(" ")
    assert levels(check(example, text=" ".join(words[:100]) + "\n" + UNSUBSCRIBE), "text-length") == ["error"]
    assert levels(check(example, text=" ".join(words[: len(words) // 2])), "text-length") == ["warning"]


# --- Screenshots --------------------------------------------------------------------------------


def test_screenshots_skipped_without_chromium(tmp_path, monkeypatch):
    monkeypatch.setattr(preview.shutil, "which", lambda name: None)
    result = preview.preview(EXAMPLE_ISSUE, out_dir=tmp_path, screenshots=True)
    [f] = found(result.report, "screenshots")
    assert f.level == "info" and "apt-get install chromium" in f.message
    # Said once, not once per language; the warnings are the three languages' long preheaders.
    assert not any("screenshot" in k for k in result.files)
    warned = [(f.rule, f.language) for f in result.report.warnings]
    assert warned == [("preheader", lang) for lang in ("en", "fr", "pt")]


def test_failing_browser_is_a_warning_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setattr(preview, "find_browser", lambda: shutil.which("false") or "/bin/false")
    result = preview.preview(EXAMPLE_ISSUE, out_dir=tmp_path, screenshots=True)
    # Two windows for each of the three languages.
    assert levels(result.report, "screenshots") == ["warning"] * 6
    assert not any("screenshot" in k for k in result.files) and result.report.errors == []
    monkeypatch.setattr(preview, "find_browser", lambda: str(tmp_path / "no-such-browser"))
    result = preview.preview(EXAMPLE_ISSUE, out_dir=tmp_path, screenshots=True)
    assert levels(result.report, "screenshots") == ["warning"] * 6


@pytest.mark.skipif(preview.find_browser() is None, reason="no chromium on this machine")
def test_screenshots_with_chromium(tmp_path, monkeypatch):
    # One small window keeps this test fast; the two-window path is the failing-browser test's.
    monkeypatch.setattr(preview, "VIEWPORTS", {"phone": (375, 600)})
    result = preview.preview(EXAMPLE_ISSUE, out_dir=tmp_path, screenshots=True)
    shots = [(f.level, f.message, f.language) for f in found(result.report, "screenshots")]
    assert shots == [("ok", "phone 375 px", lang) for lang in ("en", "fr", "pt")]
    for key in ("screenshot-phone", "fr screenshot-phone", "pt screenshot-phone"):
        assert result.files[key].read_bytes().startswith(b"\x89PNG")
    assert result.files["fr screenshot-phone"].name == "2015-07.fr.phone.png"


# --- The printed report -------------------------------------------------------------------------


def test_print_report(tmp_path):
    result = preview.preview(EXAMPLE_ISSUE, out_dir=tmp_path)
    result.report.findings.append(Finding("warning", "links", "odd link text '[bold]x[/bold]'"))
    console = Console(record=True, width=200, color_system=None)
    preview.print_report(console, result)
    out = console.export_text()
    assert "0 errors, 4 warnings" in out  # a long preheader in each of three languages, and the one added
    assert "[bold]x[/bold]" in out  # shown as written, not taken for markup
    for rule in RULES:
        assert rule in out
    assert str(result.files["eml"]) in out and str(result.files["html"]) in out
