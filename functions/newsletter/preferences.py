"""The preference centre: a reader changes their name, language and topics, or leaves.

Reached from every message's footer with the same signed token as the unsubscribe link (it names
one list and one address). A GET only shows the reader's choices; a POST saves them, only while
the reader is active, or unsubscribes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import tokens
from .catalogs import N_
from .privacy import normalise_address
from .signup import ListSignup, name_problem, topics_problem
from .store import signups, subscribers

SAVE, UNSUBSCRIBE = "save", "unsubscribe"


@dataclass(frozen=True)
class Answer:
    status: int
    page: str  # form, saved, not-subscribed, unsubscribed, invalid
    reason: str
    list_id: str | None = None
    address: str | None = None
    subscriber: dict | None = None
    problems: dict[str, str] = field(default_factory=dict)
    values: dict = field(default_factory=dict)


def read_token(keys, values: list[str]) -> tuple[str, str] | None:
    distinct = set(values)
    if len(distinct) != 1:
        return None
    try:
        list_id, address = tokens.verify(keys, distinct.pop())
    except tokens.InvalidToken:
        return None
    return list_id, normalise_address(address)


def answer(
    ddb,
    table: str,
    lst: ListSignup | None,
    who: tuple[str, str] | None,
    fields: dict[str, list[str]] | None,
    *,
    at: str,
    client_hash: str,
) -> Answer:
    """GET (fields None): the reader's choices. POST: save them, or unsubscribe."""
    if who is None:
        return Answer(400, "invalid", "invalid")
    list_id, address = who
    seen = {"list_id": list_id, "address": address}
    current = signups.get(ddb, table, list_id, address)
    if current is None or current.get("status") != subscribers.ACTIVE or lst is None:
        return Answer(200, "not-subscribed", "not-subscribed", **seen)
    if fields is None:
        return Answer(200, "form", "shown", subscriber=current, **seen)

    def one(name: str) -> str:
        return ((fields.get(name) or [""])[0]).strip()

    if one("action") == UNSUBSCRIBE:
        changed = subscribers.unsubscribe(ddb, table, list_id, address, at, unsubscribed_via="preferences")
        return Answer(200, "unsubscribed", "unsubscribed" if changed else "unchanged", **seen)
    name, topics = one("name"), list(dict.fromkeys(t.strip() for t in fields.get("topic", []) if t.strip()))
    language = lst.language_for(one("language") or current.get("language"))
    problems = {k: v for k, v in (("name", name_problem(name)), ("topic", topics_problem(topics, lst))) if v}
    values = {"name": name, "language": language, "topics": topics}
    if problems:
        return Answer(400, "form", "invalid", subscriber=current, problems=problems, values=values, **seen)
    saved = signups.update_preferences(
        ddb, table, list_id, address, name=name, language=language, topics=topics, at=at, event={"by": client_hash}
    )
    if not saved:  # they left (or bounced) in between
        return Answer(200, "not-subscribed", "not-subscribed", **seen)
    return Answer(200, "saved", "saved", subscriber={**current, **values}, values=values, **seen)


__all__ = ["N_", "Answer", "answer", "read_token", "SAVE", "UNSUBSCRIBE"]
