"""The gettext catalogs of the templates' and the unsubscribe pages' own words
(functions/newsletter/locale): complete for every shipped language, compiled as committed,
placeholders kept, and read at render time in the issue's language."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from test_languages import july, parse, translated

from newsletter import unsubscribe_pages as pages
from newsletter.catalogs import LOCALE_DIR, SHIPPED
from newsletter.render import render_issue

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
WEB_URL = "https://news.example.org/web/2015-07.html"


def read(path: Path):
    with path.open("rb") as f:
        return read_po(f)


def template_ids() -> set[str]:
    return {m.id for m in read(LOCALE_DIR / "messages.pot") if m.id}


def po(language: str):
    return read(LOCALE_DIR / language / "LC_MESSAGES" / "messages.po")


def test_the_template_has_every_marked_string_of_the_sources():
    """messages.pot is what `make catalogs-extract` gives today (run it after marking a string)."""
    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    keywords = {**DEFAULT_KEYWORDS, "N_": None}
    found = {msg for _, _, msg, _, _ in extract_from_dir(str(ROOT), method_map, options_map, keywords)}
    assert found == template_ids()


@pytest.mark.parametrize("language", SHIPPED)
def test_every_shipped_catalog_translates_every_string(language):
    catalog = po(language)
    ids = template_ids()
    translated_ids = {m.id for m in catalog if m.id and m.string and not m.fuzzy}
    assert not catalog.fuzzy
    assert ids - translated_ids == set(), f"{language}: untranslated or fuzzy"
    assert {m.id for m in catalog if m.id} - ids == set(), f"{language}: strings no source uses (make catalogs-update)"


@pytest.mark.parametrize("language", SHIPPED)
def test_the_committed_mo_is_the_compiled_po(language):
    compiled = io.BytesIO()
    write_mo(compiled, po(language))
    assert (LOCALE_DIR / language / "LC_MESSAGES" / "messages.mo").read_bytes() == compiled.getvalue(), (
        f"{language}: run make catalogs-compile"
    )


@pytest.mark.parametrize("language", SHIPPED)
def test_placeholders_survive_translation(language):
    for m in po(language):
        if m.id:
            assert sorted(PLACEHOLDER.findall(m.string)) == sorted(PLACEHOLDER.findall(m.id)), (language, m.id)
            assert m.string.count("%") == m.id.count("%"), (language, m.id)


def test_english_reads_as_the_source():
    for m in po("en"):
        if m.id:
            assert m.string == m.id


def rendered(language: str):
    doc = july()
    doc["translations"] = [translated(doc, "fr", toc_heading="Dans ce numéro")]
    issue = parse(doc)
    return render_issue(issue.variant(language), web_url=WEB_URL, list_name="ICMPD Infomail", sender_name="ICMPD")


def test_a_french_issue_says_its_fixed_words_in_french():
    out = rendered("fr")
    # The document's words (its translation) and the templates' own (the French catalog).
    assert "Dans ce numéro" in out.html and "Dans ce numéro:" in out.text
    assert "Cet e-mail a été envoyé à" in out.html and "suite à votre abonnement à ICMPD Infomail." in out.html
    assert ">Se désinscrire</a>" in out.html
    assert "Se désinscrire\u00a0: " in out.text and "Cet e-mail a été envoyé à" in out.text
    # css-inline writes the no-break space before the colon as &nbsp;
    assert "Télécharger&nbsp;:" in out.html and "Télécharger\u00a0:" in out.text
    assert "Ceci est la version web de ICMPD Infomail" in out.web
    for english in ("This email was sent to", "Unsubscribe", "Download:", "This is the web version"):
        assert english not in out.html + out.text + out.web


def test_an_english_issue_stays_as_it_was():
    out = rendered("en")
    assert "In this issue" in out.html
    assert "This email was sent to " in out.html and "because you subscribed to ICMPD Infomail." in out.html
    assert ">Unsubscribe</a></p>" in out.html
    assert "\nUnsubscribe: " in out.text and "\nDownload:\n" in out.text
    assert "Download: <a" in out.html
    assert "This is the web version of ICMPD Infomail, sent by email to its subscribers.\n" in out.web
    assert "Each email contains a link to unsubscribe." in out.web


def test_a_language_without_a_catalog_reads_english():
    doc = july()
    doc["translations"] = [translated(doc, "it")]
    out = render_issue(parse(doc).variant("it"), web_url=WEB_URL, list_name="L", sender_name="S")
    assert ">Unsubscribe</a></p>" in out.html


def test_a_regional_tag_reads_its_language_catalog():
    doc = july()
    doc["translations"] = [translated(doc, "pt-BR")]
    out = render_issue(parse(doc).variant("pt-BR"), web_url=WEB_URL, list_name="L", sender_name="S")
    assert ">Anular subscrição</a></p>" in out.html


@pytest.mark.parametrize(
    "language, button, title",
    [
        ("en", "Unsubscribe", "Unsubscribe?"),
        ("fr", "Se désinscrire", "Se désinscrire\u00a0?"),
        ("pt", "Anular subscrição", "Anular a subscrição?"),
        ("de", "Abmelden", "Abmelden?"),
        ("es", "Darse de baja", "¿Darse de baja?"),
    ],
)
def test_the_unsubscribe_pages_speak_the_pages_language(language, button, title):
    page = pages.confirm("ICMPD Infomail", "r***@example.com", "tok", language=language)
    assert f'<html lang="{language}" dir="ltr">' in page
    assert f'<button class="button" type="submit">{button}</button>' in page
    assert f"<title>{title}</title>" in page
    assert "<strong>ICMPD Infomail</strong>" in page and '<span class="address">r***@example.com</span>' in page


def test_the_unsubscribe_pages_default_to_english():
    assert "Do you want to stop receiving <strong>L</strong> at" in pages.confirm("L", "a***@b.c", "t")
    assert "You are unsubscribed" in pages.unsubscribed("L", "a***@b.c")
    assert "This unsubscribe link is not valid" in pages.invalid_link()
    assert "Méthode non autorisée" in pages.error("Method not allowed", "x", language="fr")
    assert "<title>Method not allowed</title>" in pages.error("Method not allowed", "x")
