"""What a click says: which link of an issue a reader followed, whether it is one of ours (the
unsubscribe link, the preference centre, the web version) or content, and the link as it may be
kept. Pure functions, no AWS; the counting is `store/links.py`.

SES's Click event (`click.link`) gives the link as the message had it, before SES rewrote it.
What is kept of it is bounded, whatever the event says:
- our own links carry the reader's token (which names their address) or are the issue's web
  version: they are recognised and kept without their query, so every reader's unsubscribe
  clicks count on one link and no token is stored;
- a link that holds the reader's address anywhere is kept without its query and fragment (and
  without its path if the address is there too), marked `redacted`;
- control, space and bidirectional-formatting characters are percent-encoded, so a link can
  neither break a line nor reorder a terminal's text;
- a link longer than MAX_URL characters is cut there and marked `cut`; its key is taken over the
  whole link, so two long links that share their first MAX_URL characters stay apart.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qs, quote, unquote, urlsplit, urlunsplit

MAX_URL = 2048  # characters of a link that are kept
MAX_CLICKS_PER_READER = 32  # clicks of one reader on one link that count (bounds their marker)
KEY_CHARS = 16  # hex characters of a link's key: 64 bits, for the few dozen links of an issue

UNSUBSCRIBE, PREFERENCES, WEB_VERSION = "unsubscribe", "preferences", "web_version"
OWN = (UNSUBSCRIBE, PREFERENCES, WEB_VERSION)

# Our tokens (tokens.py): "v1.<payload>.<mac>", "v2.<key version>.<payload>.<mac>", "p1.…".
_TOKEN = re.compile(r"(?:v1|v2|p1)\.[A-Za-z0-9_.-]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSAFE = re.compile("[\x00-\x20\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Click:
    """One click as SES reported it: the link, and an id that is the same for the same event."""

    link: str
    click_id: str


@dataclass(frozen=True)
class Link:
    """A link as it is counted and kept."""

    url: str  # what is kept (at most MAX_URL characters)
    key: str  # the link's key in the issue's partition (`link#<key>`)
    own: str | None = None  # unsubscribe, preferences, web_version; None: content
    cut: bool = False  # longer than MAX_URL: cut
    redacted: bool = False  # held the reader's address: query (and path) left out


def click_of(notification: dict) -> Click | None:
    """The click of an SES Click event, or None if it names no link (nothing to count per link)."""
    detail = notification.get("click")
    if not isinstance(detail, dict):
        return None
    link = detail.get("link")
    if not isinstance(link, str) or not link.strip():
        return None
    # SES gives a click no id. Its time (to the millisecond), link, IP address and user agent
    # together tell one click from another, and are the same when the event is delivered again.
    fields = [detail.get(k) for k in ("timestamp", "ipAddress", "userAgent")]
    identity = "\0".join(f if isinstance(f, str) else "" for f in fields) + "\0" + link
    return Click(link=link, click_id=_digest(identity))


def link_of(link: str, *, issue_id: str, addresses: tuple[str, ...] = ()) -> Link:
    """The link as it is counted: ours or content, and what of it may be kept (module docstring)."""
    clean = _SURROGATE.sub("%EF%BF%BD", link.strip())  # half a UTF-16 pair: not text, cannot be stored
    clean = _UNSAFE.sub(lambda m: quote(m.group(), safe=""), clean)
    try:
        parts = urlsplit(clean)
    except ValueError:  # "http://[::1": no URL of ours; its query and fragment are still told apart
        before, _, _ = clean.partition("#")
        parts = SplitResult("", "", before.partition("?")[0], "", "")
    own = _own(parts, issue_id)
    lowered = unquote(clean).lower()
    redacted = own is None and any(a and a.lower() in lowered for a in addresses)
    if own or redacted:
        kept = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        if redacted and any(a.lower() in unquote(kept).lower() for a in addresses if a):
            kept = urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
        return Link(url=kept[:MAX_URL], key=_digest(kept), own=own, cut=len(kept) > MAX_URL, redacted=redacted)
    return Link(url=clean[:MAX_URL], key=_digest(clean), cut=len(clean) > MAX_URL)


def _own(parts, issue_id: str) -> str | None:
    """Which of our links this is: the reader's token in the query, or the issue's web version."""
    try:
        token = parse_qs(parts.query, max_num_fields=50).get("token") or []
    except ValueError:  # more fields than that: not one of ours
        token = []
    if token and _TOKEN.fullmatch(token[0]):
        return PREFERENCES if parts.path.rstrip("/").endswith("/preferences") else UNSUBSCRIBE
    name = parts.path.rpartition("/")[2]
    # web/<issue>.html, or web/<issue>.<language>.html for a translation (publish.web_url).
    if name == f"{issue_id}.html" or re.fullmatch(re.escape(issue_id) + r"\.[A-Za-z0-9-]{2,35}\.html", name):
        return WEB_VERSION
    return None


def rank(links: list[dict], *, delivered: int | None = None, n: int = 10) -> list[dict]:
    """The n content links most readers clicked (then most clicks, then by URL): url, clicks,
    clickers, share (clickers per delivered message, None when nothing is counted delivered), cut."""
    content = [item for item in links if not item.get("own")]
    content.sort(key=lambda i: (-int(i.get("clickers") or 0), -int(i.get("clicks") or 0), str(i.get("url", ""))))
    return [_row(item, delivered) for item in content[: max(0, n)]]


def own_links(links: list[dict], *, delivered: int | None = None) -> list[dict]:
    """Our own links' rows (not content), in the order of OWN, each kind's URLs added up."""
    rows = []
    for kind in OWN:
        found = [item for item in links if item.get("own") == kind]
        if found:
            clicks = sum(int(i.get("clicks") or 0) for i in found)
            clickers = sum(int(i.get("clickers") or 0) for i in found)
            rows.append({"own": kind, "clicks": clicks, "clickers": clickers, "share": _share(clickers, delivered)})
    return rows


def _row(item: dict, delivered: int | None) -> dict:
    clickers = int(item.get("clickers") or 0)
    return {
        "url": str(item.get("url", "")),
        "clicks": int(item.get("clicks") or 0),
        "clickers": clickers,
        "share": _share(clickers, delivered),
        "cut": bool(item.get("cut")),
    }


def _share(clickers: int, delivered: int | None) -> float | None:
    return clickers / delivered if delivered else None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:KEY_CHARS]
