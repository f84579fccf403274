"""Clicks per link, for `newsletter status ISSUE`: the issue's most clicked content links, and the
clicks on our own links (unsubscribe, preference centre, view in browser) in rows of their own.
One Query of the issue's links (store/links.py); what counts is docs/feedback.md's."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from newsletter import clicks
from newsletter.store import links

OWN_NAMES = {
    clicks.UNSUBSCRIBE: "the unsubscribe link",
    clicks.PREFERENCES: "the preference centre",
    clicks.WEB_VERSION: "view in browser",
}


def links_table(ddb, table: str, record: dict, n: int = 10) -> Table | None:
    """The "Most clicked links" table of an issue (its record as read for `status`), or None when
    none of its links was clicked (or clicks are not tracked)."""
    found = links.issue_links(ddb, table, record["issue_id"])
    if not found:
        return None
    delivered = links.delivered(record)
    out = Table(title="Most clicked links", title_justify="left", caption=_caption(delivered), caption_justify="left")
    out.add_column("", justify="right")
    out.add_column("link", overflow="fold")
    out.add_column("readers", justify="right")
    out.add_column("clicks", justify="right")
    out.add_column("of delivered", justify="right")
    for rank, row in enumerate(clicks.rank(found, delivered=delivered, n=n), 1):
        # Text, not markup: a link is whatever the event said, brackets included.
        url = Text(row["url"] + (" …(cut)" if row["cut"] else ""))
        out.add_row(str(rank), url, str(row["clickers"]), str(row["clicks"]), _percent(row["share"]))
    own = clicks.own_links(found, delivered=delivered)
    if own:
        out.add_section()
        for row in own:
            name = Text(f"{OWN_NAMES[row['own']]} (ours, not content)", style="dim")
            out.add_row("", name, str(row["clickers"]), str(row["clicks"]), _percent(row["share"]))
    return out


def _percent(share: float | None) -> str:
    return "" if share is None else f"{share:.1%}"


def _caption(delivered: int | None) -> str:
    base = "readers: who clicked the link at least once; clicks: every click"
    if delivered is None:
        return base + " (no deliveries counted: no share)"
    return base + f"; of delivered: readers among the {delivered} delivered"
