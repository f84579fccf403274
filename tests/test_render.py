"""Rendering an issue: all of the content arrives, nothing unsafe does, markers only in email."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from newsletter import personalize
from newsletter.content import to_html, to_text
from newsletter.issue import Issue
from newsletter.render import Rendered, render_issue

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "issues" / "2015-07.json"
WEB_URL = "https://news.example.org/infomail/2015-07.html"

# The July 2015 newsletter as its readers saw it (seed-newsletter-2015-07.txt), one line per
# heading, paragraph or link row.
SEED = """\
If the infomail is not displayed properly, click here
July 2015 Monthly Update
In this issue In the spotlight: Towards a new European Neighbourhood Policy on Migration
EU-funded ENIGMMA project trains a new generation of migration specialists in Georgia
With the links between Georgia and the EU growing ever stronger, a coherent and functional approach to migration management and research is fast becoming a vital necessity for Georgia’s development. It is with this idea in mind that leading academics from around the world came to Kvareli, Georgia, to train a new generation of future experts in migration management.
Find out more about the Project  |  Visit ICMPD in Georgia’s Facebook page
Trafficking: steps the Council of Europe should take to put a truly victim-focused approach into practice
ICMPD’s Director for the Eastern Dimension, Martijn Pluim, spoke at the conference held to mark the 10th anniversary of the Council of Europe Convention on Action against Trafficking in Human Beings. In his speech, Martijn commended the contribution the Convention has made to international cooperation between countries against trafficking in human beings, while also setting out guidelines as to how it could be further enhanced in the next ten years.
Read or watch the full speech  |  ICMPD’s Anti-Trafficking Programme
Addressing irregular migration in the Silk routes region
Countries involved in the Silk Routes region are either points of origin, transit, or destination for irregular migration routes. Officials from 22 countries and multiple international organisations met at the 6th Silk Routes Working Group Meeting to discuss best practices to effectively prevent and counteract criminal networks accountable for irregular migration as well as how to facilitate the return of irregular migrants.
Find out more about the meeting  |  Our work in the Silk Routes region
MICIC consultation: experts seek solutions for migrants affected by crises in Europe's neighbourhood
Preparedness, cooperation and coordination of state actors, international organisations, civil society and the private sector are key to saving lives, reducing vulnerability, and enhancing protection of migrants in countries hit by acute crisis. The consultation allowed for representatives to share experiences and contribute to the formulation of future guidelines aimed at enhancing the assistance and protection of migrants in countries in crisis. Taking place in the context of a new European Migration Agenda, this consultation reiterated the EU’s commitment to addressing migration issues in its neighbourhood.
Project: Migrants in Countries in Crisis (MICIC)  |  ICMPD’s Brussels Mission
Read more news from ICMPD
Current vacancies Latest publications
Study: A Survey on Migration Policies in West Africa
Governments in West Africa continue to make progress towards an area of free movement
In West Africa, the movement of people take places mainly within the region. South-South migration is seven times greater than migration flows from West African countries to other parts of the world. This regional migration plays a crucial role in promoting development and poverty reduction, as well as contributing to the regional integration process in West Africa and strengthening the Economic Community of West African States (ECOWAS), established in 1975. Forty years after the foundation of ECOWAS, it is time to take stock of the progress made and the challenges ahead in promoting free movement in West Africa. The new publication “A Survey on Migration Policies in West Africa”, jointly prepared by ICMPD and IOPM does exactly that. It is the first comprehensive study on migration policies in the region, analysing policies and trends in 15 countries.
Download the study in English or French. Parts of the publication are also available in Portuguese
Call for Proposals Upcoming events
The project ‘Support to Free Movement of Persons and Migration in West Africa (FMM West Africa) aims to boost the development potential of free movement and migration in West Africa. The Non-State Actors (NSA) Fund seeks to strengthen the capacities of NSAs and local public authorities to promote and protect the rights of migrants and to develop networks and cross-border cooperation projects through a call for proposals.
"""

# Lines where the original layout put several headings side by side.
_SIDE_BY_SIDE = {
    "In this issue In the spotlight: Towards a new European Neighbourhood Policy on Migration": [
        "In this issue",
        "In the spotlight",
        "Towards a new European Neighbourhood Policy on Migration",
    ],
    "Current vacancies Latest publications": ["Current vacancies", "Latest publications"],
    "Call for Proposals Upcoming events": ["Call for Proposals", "Upcoming events"],
}
_VIEW_IN_BROWSER = SEED.splitlines()[0]


def seed_fragments() -> list[str]:
    """Every heading, paragraph and link text of the seed, the view-in-browser line excepted."""
    out = []
    for line in SEED.splitlines()[1:]:
        pieces = _SIDE_BY_SIDE.get(line) or line.split("|")
        out.extend(_squash(p) for p in pieces if p.strip())
    return out


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()  # \s includes the no-break spaces of the original


_INLINE_TAGS = r"a|em|strong|b|i|span|code"


def html_words(markup: str) -> str:
    """The visible text of an HTML page, as one line."""
    markup = re.sub(r"<(style|head)\b.*?</\1>", " ", markup, flags=re.S | re.I)
    markup = re.sub(rf"</?(?:{_INLINE_TAGS})\b[^>]*>", "", markup, flags=re.I)
    markup = re.sub(r"<[^>]+>", " ", markup)
    return _squash(html.unescape(markup))


def text_words(text: str) -> str:
    """A text part as one line, with the `(url)` after link texts taken out."""
    return _squash(re.sub(r"\s*\((?:https?|mailto):[^\s)]*\)", "", text))


SEED_ISSUE = {
    "issue_id": "2015-07",
    "list": "infomail",
    "subject": "July 2015 Monthly Update",
    "preheader": "Towards a new European Neighbourhood Policy on Migration",
    "title": "July 2015 Monthly Update",
    "view_in_browser_text": "If the infomail is not displayed properly, click here",
    "spotlight": {
        "title": "Towards a new European Neighbourhood Policy on Migration",
        "url": "https://www.example.org/spotlight",
    },
    "news": [
        {
            "title": "EU-funded ENIGMMA project trains a new generation of migration specialists in Georgia",
            "body": SEED.splitlines()[4],
            "links": [
                {"text": "Find out more about the Project", "url": "https://www.example.org/enigmma"},
                {"text": "Visit ICMPD in Georgia’s Facebook page", "url": "https://www.facebook.com/x"},
            ],
            "image": {"src": "https://www.example.org/kvareli.jpg", "alt": "Trainees in Kvareli", "width": 560},
        },
        {
            "title": SEED.splitlines()[6],
            "body": SEED.splitlines()[7],
            "links": [
                {"text": "Read or watch the full speech", "url": "https://www.example.org/speech"},
                {"text": "ICMPD’s Anti-Trafficking Programme", "url": "https://www.example.org/atp"},
            ],
        },
        {
            "title": SEED.splitlines()[9],
            "body": SEED.splitlines()[10],
            "links": [
                {"text": "Find out more about the meeting", "url": "https://www.example.org/meeting"},
                {"text": "Our work in the Silk Routes region", "url": "https://www.example.org/silk"},
            ],
        },
        {
            "title": SEED.splitlines()[12],
            "body": SEED.splitlines()[13],
            "links": [
                {"text": "Project: Migrants in Countries in Crisis (MICIC)", "url": "https://www.example.org/micic"},
                {"text": "ICMPD’s Brussels Mission", "url": "https://www.example.org/brussels"},
            ],
        },
    ],
    "read_more": {"text": "Read more news from ICMPD", "url": "https://www.example.org/news"},
    "sections": [
        {"kind": "vacancies", "title": "Current vacancies", "empty_text": "No open vacancies at the moment."},
        {
            "kind": "publications",
            "title": "Latest publications",
            "items": [
                {
                    "title": "Study: A Survey on Migration Policies in West Africa",
                    "subtitle": SEED.splitlines()[18],
                    "body": SEED.splitlines()[19]
                    + "\n\nDownload the study in [English](https://www.example.org/en.pdf) or"
                    " [French](https://www.example.org/fr.pdf). Parts of the publication are also"
                    " available in [Portuguese](https://www.example.org/pt.pdf)",
                    "downloads": [
                        {"label": "English", "url": "https://www.example.org/en.pdf", "language": "en"},
                        {"label": "French", "url": "https://www.example.org/fr.pdf", "language": "fr"},
                    ],
                }
            ],
        },
        {
            "kind": "calls",
            "title": "Call for Proposals",
            "items": [{"body": SEED.splitlines()[22], "url": "https://www.example.org/call"}],
        },
        {
            "kind": "events",
            "title": "Upcoming events",
            "items": [
                {
                    "title": "Workshop on migration data",
                    "when": "15-17 September 2015",
                    "where": "Vienna",
                    "deadline": "1 September 2015",
                }
            ],
        },
    ],
    "footer": {
        "organisation": "ICMPD",
        "postal_address": "Gonzagagasse 1\n1010 Vienna\nAustria",
        "text": "Questions? Write to [infomail@example.org](mailto:infomail@example.org).",
        "links": [{"text": "Privacy policy", "url": "https://www.example.org/privacy"}],
    },
}


def render(issue: Issue) -> Rendered:
    return render_issue(issue, web_url=WEB_URL, list_name="ICMPD Infomail", sender_name="ICMPD")


def issue_from(**changes) -> Issue:
    return Issue.model_validate({**SEED_ISSUE, **changes})


def example_issue() -> Issue:
    if not EXAMPLE.exists():
        pytest.skip(f"{EXAMPLE.relative_to(ROOT)} is not there yet")
    return Issue.model_validate(json.loads(EXAMPLE.read_text(encoding="utf-8")))


@pytest.fixture(params=["dict", "example"])
def issue(request) -> Issue:
    return issue_from() if request.param == "dict" else example_issue()


@pytest.fixture
def rendered(issue) -> Rendered:
    return render(issue)


def test_every_seed_text_is_in_the_email_html(rendered):
    words = html_words(rendered.html)
    missing = [f for f in seed_fragments() + [_VIEW_IN_BROWSER] if f not in words]
    assert missing == []


def test_every_seed_text_is_on_the_web_page(rendered):
    words = html_words(rendered.web)
    assert [f for f in seed_fragments() if f not in words] == []


def test_every_seed_text_is_in_the_text_part(rendered):
    words = text_words(rendered.text)
    missing = [f for f in seed_fragments() + [_VIEW_IN_BROWSER] if f not in words]
    assert missing == []


def test_content_comes_in_the_same_order_in_html_and_text(rendered):
    def order(words):
        return sorted(seed_fragments(), key=lambda f: words.find(f))

    visible = re.sub(r'<span class="preheader".*?</span>', "", rendered.html, flags=re.S)
    assert order(html_words(visible)) == order(text_words(rendered.text))


def test_email_carries_view_in_browser_link(rendered):
    assert f'href="{WEB_URL}"' in rendered.html
    assert WEB_URL in rendered.text


def test_markers_in_email_parts_and_none_on_the_web_page(rendered):
    unsubscribe = personalize.marker("unsubscribe_url")
    email = personalize.marker("email")
    assert f'href="{unsubscribe}"' in rendered.html
    assert email in rendered.html
    assert unsubscribe in rendered.text and email in rendered.text
    assert personalize.OPEN not in rendered.web and personalize.CLOSE not in rendered.web
    # The sender cuts both parts at their markers; nothing unknown in them.
    for part in (rendered.html, rendered.text):
        assert set(personalize.Splice(part).fields) <= set(personalize.FIELDS)


def test_personalised_email_has_the_recipient_values(rendered):
    values = {"name": "A & B", "email": "a@example.org", "unsubscribe_url": "https://x.example/u?t=1&s=2"}
    filled = personalize.Splice(rendered.html).fill(values, escape=True)
    assert 'href="https://x.example/u?t=1&amp;s=2"' in filled
    assert "a@example.org" in filled


def test_css_is_inlined_and_media_rules_kept(rendered):
    assert re.search(r'<h1 class="title" style="[^"]*font-size', rendered.html)
    assert re.search(r'<td class="item px" style="[^"]*padding', rendered.html)
    styles = re.findall(r"<style>(.*?)</style>", rendered.html, flags=re.S)
    assert styles and all(s.strip().startswith("@media") for s in styles)
    assert "max-width: 620px" in styles[0] or "max-width:620px" in styles[0]


def test_web_page_keeps_a_stylesheet(rendered):
    assert "<style>" in rendered.web and ".container" in rendered.web


def test_layout_is_accessible(issue, rendered):
    for page in (rendered.html, rendered.web):
        assert f'<html lang="{issue.language}"' in page
        tables = re.findall(r"<table\b[^>]*>", page)
        assert tables and all('role="presentation"' in t for t in tables)
        assert all(" alt=" in img and " width=" in img for img in re.findall(r"<img\b[^>]*>", page))


def test_preheader_is_hidden(issue, rendered):
    assert re.search(r'<span class="preheader" style="[^"]*display: ?none', rendered.html)
    assert issue.preheader in html_words(rendered.html)


def test_text_lines_wrap_at_76_unless_a_url_is_in_the_way(rendered):
    long = [line for line in rendered.text.splitlines() if len(line) > 76]
    assert all(re.search(r"\S{30,}", line) for line in long), long


def test_text_part_has_no_html(rendered):
    assert not re.search(r"&(?:amp|lt|gt|quot|#\d+);|</?(?:p|a|em|strong)\b", rendered.text)


def test_section_details_are_shown():
    r = render(issue_from())
    for page in (html_words(r.html), text_words(r.text)):
        assert "15-17 September 2015" in page and "Vienna" in page and "1 September 2015" in page
        assert "No open vacancies at the moment." in page
    assert 'hreflang="fr"' in r.html
    assert "Gonzagagasse 1<br>" in r.html
    assert 'alt="Trainees in Kvareli"' in r.html


def test_no_toc_when_heading_is_null():
    r = render(issue_from(toc_heading=None))
    assert "In this issue" not in html_words(r.html)


HOSTILE = (
    "Hello <script>alert(1)</script> and <img src=x onerror=alert(1)>\n\n"
    '[click](javascript:alert(1)) [also](JAVASCRIPT:alert(1)) <a href="javascript:alert(1)">x</a> '
    "[data](data:text/html;base64,PHNjcmlwdD4=) <javascript:alert(1)>"
)


def test_hostile_body_is_escaped_everywhere():
    news = [{"title": "Hostile", "body": HOSTILE}]
    r = render(issue_from(news=news, spotlight={"title": "S", "body": HOSTILE}))
    for page in (r.html, r.web):
        assert not re.search(r"<script|<img src=x|<a href=\"javascript", page, re.I)
        # Escaped text may show `href="javascript:`; no tag may carry it.
        assert not re.search(r"<[a-z][^<>]*\bhref=\"\s*(?:javascript|data):", page, re.I)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_title_is_autoescaped():
    r = render(issue_from(title="Big <b>news</b> & more"))
    for page in (r.html, r.web):
        assert "Big &lt;b&gt;news&lt;/b&gt; &amp; more" in page
        assert "<b>news</b>" not in page
    assert "Big <b>news</b> & more" in r.text


def test_to_html_allows_only_a_few_tags():
    out = to_html("# Big\n\n### Small\n\n*a* **b** `c`\n\n> q\n\n- x\n\n![pic](https://x.org/p.png)")
    assert "<h3>Big</h3>" in out and "<h4>Small</h4>" in out
    assert "<em>a</em>" in out and "<strong>b</strong>" in out and "<code>c</code>" in out
    assert "<blockquote>" in out and "<li>x</li>" in out
    assert "<img" not in out and "pic" in out
    assert "<h1" not in out


def test_to_html_keeps_links_plain():
    out = to_html('[a](https://x.org/?a=1&b=2 "T") [m](mailto:m@x.org) [rel](/local)')
    assert '<a href="https://x.org/?a=1&amp;b=2" title="T">a</a>' in out
    assert '<a href="mailto:m@x.org">m</a>' in out
    assert "rel=" not in out and "target=" not in out and 'href="/local"' not in out


def test_to_text():
    md = (
        "Some *emph* and **strong** &amp; [a link](https://x.org/a?b=1&c=2), "
        "[https://x.org](https://x.org) and [me@x.org](mailto:me@x.org).\n\n"
        "- one\n- two\n\n1. first\n2. second"
    )
    assert to_text(md) == (
        "Some emph and strong & a link (https://x.org/a?b=1&c=2), https://x.org and me@x.org.\n\n"
        "- one\n- two\n\n1. first\n2. second"
    )


def test_to_text_wraps_without_breaking_urls():
    url = "https://www.example.org/" + "x" * 80
    out = to_text("word " * 30 + f"[link]({url}) end", width=40)
    assert all(len(line) <= 40 or url in line for line in out.splitlines())
    assert f"({url})" in out
