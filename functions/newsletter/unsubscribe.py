"""Unsubscribing through the signed link in every email (and RFC 8058 one-click).

The link carries a token naming one list and one address (`tokens`), so it can unsubscribe that
address from that list and nothing else. A GET only shows a confirmation page: link scanners and
mail previews follow GETs, so a GET never changes anything. A POST (the page's button, or a mail
provider's one-click `List-Unsubscribe=One-Click`) moves the subscriber from `active` to
`unsubscribed`, once; repeating it, or a token for an address that is not subscribed, gets the same
answer and changes nothing, so the answer never tells whether an address is on a list.

The link may also carry `issue=<id>`, unsigned: a hint for statistics only. It is counted (the
issue's `unsubscribed` counter) when it is well formed, names an issue sent to the token's list,
and the POST really unsubscribed someone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from . import tokens
from . import unsubscribe_pages as pages
from .privacy import address_hash, normalise_address
from .store import issues, subscribers

MAX_BODY = 4096  # a one-click body is 26 bytes; the page's form a few hundred
# issue.ID_PATTERN, repeated here so that this function never imports pydantic (a test compares).
ISSUE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
ISSUE_COUNTER = "unsubscribed"


class InvalidLink(ValueError):
    """No token, more than one, or one we did not sign (forged, truncated, edited, old format)."""


@dataclass(frozen=True)
class Link:
    list_id: str
    address: str
    token: str
    issue_id: str | None  # the unsigned statistics hint, when well formed


@dataclass(frozen=True)
class Deps:
    """What the endpoint needs from outside: storage, settings, the token secret, names, the clock."""

    ddb: object
    subscribers_table: str
    issues_table: str
    secret: Callable[[], object]  # the keys (or one secret), asked for only once a token is there to check
    list_name: Callable[[str], str | None]
    now: Callable[[], str]


@dataclass(frozen=True)
class Result:
    status: int
    page: str
    outcome: str  # invalid | shown | unsubscribed | unchanged
    list_id: str | None = None
    address_hash: str | None = None
    reason: str | None = None  # why a link was refused (never an address)
    issue_counted: str | None = None


def mask_address(address: str) -> str:
    """j***@example.com: enough for its owner to recognise, too little to harvest."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def read_link(token_values: list[str], issue_values: list[str], secret: Callable[[], bytes]) -> Link:
    """The link's list, address and issue hint; InvalidLink unless it carries one genuine token."""
    distinct = set(token_values)
    if not distinct or distinct == {""}:
        raise InvalidLink("no token")
    if len(distinct) > 1:
        raise InvalidLink("more than one token")
    (token,) = distinct
    try:
        list_id, address = tokens.verify(secret(), token)
    except tokens.InvalidToken as exc:
        raise InvalidLink(str(exc)) from exc
    hints = set(issue_values)
    issue_id = hints.pop() if len(hints) == 1 else None
    if issue_id is not None and not ISSUE_ID.fullmatch(issue_id):
        issue_id = None  # a malformed hint is dropped; the signed part is what counts
    return Link(list_id, normalise_address(address), token, issue_id)


def respond(
    method: str, token_values: list[str], issue_values: list[str], deps: Deps, *, one_click: bool = False
) -> Result:
    """GET/HEAD: the confirmation page. POST: unsubscribe, then the "You are unsubscribed" page."""
    try:
        link = read_link(token_values, issue_values, deps.secret)
    except InvalidLink as exc:
        return Result(400, pages.invalid_link(), "invalid", reason=str(exc))
    seen = dict(list_id=link.list_id, address_hash=address_hash(link.address))
    name = deps.list_name(link.list_id) or link.list_id
    masked = mask_address(link.address)
    if method != "POST":
        return Result(200, pages.confirm(name, masked, link.token, link.issue_id), "shown", **seen)

    changed = subscribers.unsubscribe(
        deps.ddb,
        deps.subscribers_table,
        link.list_id,
        link.address,
        deps.now(),
        unsubscribed_via="one-click" if one_click else "page",
    )
    counted = None
    if changed and link.issue_id:
        if issues.count_for_list(deps.ddb, deps.issues_table, link.issue_id, link.list_id, ISSUE_COUNTER):
            counted = link.issue_id
    outcome = "unsubscribed" if changed else "unchanged"
    return Result(200, pages.unsubscribed(name, masked), outcome, **seen, issue_counted=counted)
