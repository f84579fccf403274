"""Rendering an issue once: the email's HTML and text parts and the public web page; and a
list's archive page and Atom feed.

Per-recipient values are left as markers (see `personalize`) in the email parts; the web page is
public and carries none. Email HTML has its CSS inlined, keeping only @media rules in a <style>
block for phones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from newsletter import catalogs, content, dates, personalize
from newsletter.issue import Issue

TEXT_WIDTH = 76


@dataclass(frozen=True)
class Rendered:
    html: str  # email HTML part, with recipient markers
    text: str  # email plain-text part, with recipient markers
    web: str  # public web page, no markers


def templates_dir() -> Path:
    """Templates next to the package when deployed, else the repository's `templates/`."""
    here = Path(__file__).resolve()
    packaged = here.parent / "templates"
    return packaged if packaged.is_dir() else here.parents[2] / "templates"


def _nl2br(value: str) -> Markup:
    return Markup("<br>\n").join(escape(line.strip()) for line in value.strip().splitlines())


def _wrap(value: str, width: int = TEXT_WIDTH, indent: str = "", first: str | None = None) -> str:
    return content.wrap(str(value), width, indent=indent, first=first)


@cache
def _env(language: str = "en") -> Environment:
    """One environment per language (templates compile once per environment), with that
    language's catalog installed for the templates' own words (`_()`; newstyle gettext) and its
    `date` filter (a structured `when` or `deadline` in that language's words)."""
    env = Environment(
        extensions=["jinja2.ext.i18n"],
        loader=FileSystemLoader(templates_dir()),
        # The feed is XML: the same escaping (&, <, >, quotes) makes its text safe.
        autoescape=select_autoescape(enabled_extensions=("html.j2", "atom.j2"), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        md=content.to_html,
        md_text=content.to_text,
        link=content.link_text,
        wrap=_wrap,
        nl2br=_nl2br,
        date=partial(dates.format, language=language),
    )
    env.install_gettext_translations(catalogs.translations(language), newstyle=True)
    return env


@cache
def _css() -> Markup:
    source, _, _ = _env().loader.get_source(_env(), "email.css")
    return Markup(source)


@cache
def _inliner() -> css_inline.CSSInliner:
    # Nothing is fetched: templates carry all their CSS, and Lambda should not reach out here.
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def _tidy_text(text: str) -> str:
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{4,}", "\n\n\n", text).strip("\n") + "\n"


def render_issue(
    issue: Issue, *, web_url: str, list_name: str, sender_name: str, alternates: list[tuple[str, str]] = ()
) -> Rendered:
    """Render an issue's email parts (with recipient markers) and its public web page
    (`alternates`: every language's web version, as (language, URL), for hreflang links)."""
    from .archive import feed_url, page_url
    from .languages import direction

    env = _env(issue.language)
    common = dict(
        issue=issue,
        web_url=web_url,
        list_name=list_name,
        sender_name=sender_name,
        css=_css(),
        direction=direction(issue.language),
        alternates=list(alternates),
        # The list's archive and feed in this language, relative: served from the bucket or a CDN alike.
        archive_url=page_url(issue.list_id, issue.language),
        feed_url=feed_url(issue.list_id, issue.language),
    )
    recipient = personalize.markers()
    html = env.get_template("email.html.j2").render(common, recipient=recipient)
    text = env.get_template("email.txt.j2").render(common, recipient=recipient)
    # No `recipient` in the web page's context: using a marker there fails the render.
    web = env.get_template("web.html.j2").render(common)
    return Rendered(html=_inliner().inline(html), text=_tidy_text(text), web=web)


def _language_name(tag: str) -> str:
    """A language named in its own words (français, Deutsch), for links between languages."""
    from babel import Locale, UnknownLocaleError

    try:
        locale = Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return tag
    return locale.get_display_name(locale) or tag


def render_archive(view: dict, *, feed_entries: int) -> tuple[str, str]:
    """A list's archive page and Atom feed in one language, from `archive.view` (the feed with
    only the newest `feed_entries`)."""
    from .languages import direction

    env = _env(view["language"])
    others = [{**o, "name": _language_name(o["language"])} for o in view["others"]]
    common = dict(view, others=others, direction=direction(view["language"]))
    page = env.get_template("archive.html.j2").render(common, css=_css())
    feed = env.get_template("feed.atom.j2").render(common, entries=view["entries"][:feed_entries])
    return page, feed
