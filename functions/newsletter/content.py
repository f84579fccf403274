"""Issue bodies: Markdown to safe HTML and to plain text.

Bodies are CommonMark with raw HTML switched off, so any markup an editor types is shown as text.
Links may only point to https, http or mailto URLs. The HTML is then passed through nh3 with a
small allow-list, a second line of defence should the Markdown side ever let something through.
"""

from __future__ import annotations

import re
import textwrap
from functools import cache

import nh3
from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode
from markupsafe import Markup, escape

SCHEMES = frozenset({"https", "http", "mailto"})

_TAGS = {"p", "a", "strong", "em", "b", "i", "br", "ul", "ol", "li", "blockquote", "code", "h3", "h4"}
_ATTRIBUTES = {"a": {"href", "title"}}
# Content headings sit below the template's own h1 (issue) and h2 (item titles).
_HEADING_TAG = {1: "h3", 2: "h3"}


def is_safe_url(url: str) -> bool:
    """An absolute https/http URL with a host, or a mailto URL."""
    url = url.strip()
    if re.search(r"[\x00-\x20\x7f]", url):
        return False
    scheme, sep, rest = url.partition(":")
    if not sep or scheme.lower() not in SCHEMES:
        return False
    if scheme.lower() == "mailto":
        return bool(rest)
    return re.match(r"^//[^/?#\s]+", rest) is not None


def _heading_tag(token) -> str:
    return _HEADING_TAG.get(int(token.tag[1]), "h4")


def _render_heading_open(self, tokens, idx, options, env):
    return f"<{_heading_tag(tokens[idx])}>"


def _render_heading_close(self, tokens, idx, options, env):
    return f"</{_heading_tag(tokens[idx])}>\n"


def _render_link_open(self, tokens, idx, options, env):
    token = tokens[idx]
    href = token.attrGet("href") or ""
    if not is_safe_url(href):
        # validateLink already refuses these; keep the text, drop the link.
        token.attrs.pop("href", None)
    return self.renderToken(tokens, idx, options, env)


def _render_image(self, tokens, idx, options, env):
    # Images belong in the image fields (with width and alt); in a body only the alt
    # text is kept.
    return str(escape(self.renderInlineAsText(tokens[idx].children or [], options, env)))


@cache
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.validateLink = is_safe_url
    md.add_render_rule("heading_open", _render_heading_open)
    md.add_render_rule("heading_close", _render_heading_close)
    md.add_render_rule("link_open", _render_link_open)
    md.add_render_rule("image", _render_image)
    return md


def to_html(md: str) -> Markup:
    """Markdown as an HTML fragment that is safe to put in an email or web page."""
    html = _parser().render(md or "")
    cleaned = nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=set(SCHEMES),
        link_rel=None,
        strip_comments=True,
    )
    return Markup(cleaned.strip())


def to_text(md: str, width: int | None = None) -> str:
    """Markdown as plain text: blocks separated by blank lines, links as `text (url)`.

    With a width, lines are wrapped at it; words longer than a line (URLs) are never broken.
    """
    root = SyntaxTreeNode(_parser().parse(md or ""))
    return "\n\n".join(_blocks(root.children, width)).strip("\n")


def wrap(text: str, width: int | None, indent: str = "", first: str | None = None) -> str:
    """Wrap each line of `text` at `width`, never breaking words or URLs."""
    first = indent if first is None else first
    lines = text.split("\n")
    if not width:
        return "\n".join((first if i == 0 else indent) + line for i, line in enumerate(lines))
    out: list[str] = []
    for i, line in enumerate(lines):
        lead = first if i == 0 else indent
        wrapped = textwrap.wrap(
            line,
            width=max(width, len(lead) + 20),
            initial_indent=lead,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        out.extend(wrapped or [lead.rstrip()])
    return "\n".join(out)


def _blocks(nodes, width: int | None) -> list[str]:
    out = []
    for node in nodes:
        block = _block(node, width)
        if block is not None and block.strip():
            out.append(block)
    return out


def _indented(text: str, first: str, rest: str) -> str:
    lines = text.split("\n")
    return "\n".join([first + lines[0]] + [(rest + line if line else line) for line in lines[1:]])


def _block(node, width: int | None) -> str | None:
    kind = node.type
    if kind in ("paragraph", "heading"):
        return wrap(_inline(node.children), width)
    if kind in ("bullet_list", "ordered_list"):
        start = int(node.attrs.get("start", 1)) if kind == "ordered_list" else 1
        # Tight lists (no blank lines between items) hide their paragraphs.
        gap = (
            "\n" if all(p.hidden for item in node.children for p in item.children if p.type == "paragraph") else "\n\n"
        )
        items = []
        for n, item in enumerate(node.children):
            bullet = f"{start + n}. " if kind == "ordered_list" else "- "
            inner_width = width - len(bullet) if width else None
            body = gap.join(_blocks(item.children, inner_width))
            items.append(_indented(body, bullet, " " * len(bullet)))
        return gap.join(items)
    if kind == "blockquote":
        inner_width = width - 2 if width else None
        body = "\n\n".join(_blocks(node.children, inner_width))
        return "\n".join(("> " + line) if line else ">" for line in body.split("\n"))
    if kind in ("code_block", "fence"):
        return node.content.rstrip("\n")
    if kind == "hr":
        return "-" * 20
    return None


def _inline(nodes) -> str:
    parts = []
    for node in nodes:
        if node.type == "inline":
            parts.append(_inline(node.children))
        elif node.type in ("text", "text_special", "code_inline"):
            parts.append(node.content)
        elif node.type == "softbreak":
            parts.append(" ")
        elif node.type == "hardbreak":
            parts.append("\n")
        elif node.type == "link":
            parts.append(link_text(_inline(node.children), node.attrs.get("href", "")))
        elif node.type == "image":
            parts.append(node.content)
        else:  # em, strong: emphasis is dropped, the words stay
            parts.append(_inline(node.children))
    return "".join(parts)


def link_text(text: str, href: str) -> str:
    """A link in plain text: `text (url)`, or the text alone when it already is the URL."""
    if not is_safe_url(href):
        return text
    shown = text.strip()
    if not shown or shown in (href, href.removeprefix("mailto:")):
        return href.removeprefix("mailto:") if not shown else text
    return f"{text} ({href})"
