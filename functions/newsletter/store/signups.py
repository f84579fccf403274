"""Signups with double opt-in, on the subscriber items (store/subscribers.py keys).

A signup is a request, kept in the item's `signup` map until it is confirmed or expires: its id
(what the confirmation token names), when it was made and last mailed, and what the reader asked
for (name, language, topics) with the consent they gave. A new address is written as `pending`,
with `expires_at` for DynamoDB TTL to remove it unconfirmed; an unsubscribed reader keeps their
record and status until they confirm. Every write is conditional, so concurrent requests for one
address leave one state and one confirmation mail.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import from_item, to_item, written
from .subscribers import ACTIVE, key

PENDING = "pending"
UNSUBSCRIBED = "unsubscribed"

# What a request may lead to; only CREATED and RENEWED send a confirmation mail.
CREATED = "created"  # a new, pending reader
RENEWED = "renewed"  # a pending or unsubscribed reader asked again: a new mail
RECENT = "recent"  # a mail for this address went out moments ago: not another
ACTIVE_ALREADY = "active"  # already subscribed: nothing to confirm
BLOCKED = "blocked"  # bounced or complained: never mailed again from a form

CONFIRMED = "confirmed"
ALREADY_CONFIRMED = "already"
STALE = "stale"  # no such signup (replaced by a newer one, expired, or never made)


@dataclass(frozen=True)
class Request:
    signup_id: str
    at: str  # ISO time
    now: int  # epoch seconds
    name: str
    language: str
    topics: list[str]
    consent: dict  # method, text_version, text_hash, language, ip_hash, ua_hash


def _signup_map(r: Request, expires_at: int) -> dict:
    return {
        "id": r.signup_id,
        "at": r.at,
        "mailed_at": r.now,
        "expires_at": expires_at,
        "name": r.name,
        "language": r.language,
        "topics": r.topics,
        "consent": {**r.consent, "at": r.at},
    }


def request(
    ddb, table: str, list_id: str, address: str, r: Request, *, pending_ttl_s: int, resend_after_s: int
) -> tuple[str, str | None]:
    """Record a signup for (list, address): (outcome, the signup id a confirmation mail must name,
    when one is to be sent)."""
    expires_at = r.now + pending_ttl_s
    signup = _signup_map(r, expires_at)
    item = {
        **key_values(list_id, address),
        "list_id": list_id,
        "status": PENDING,
        "name": r.name,
        "language": r.language,
        "topics": r.topics,
        "created_at": r.at,
        "updated_at": r.at,
        "signup": signup,
        "expires_at": expires_at,  # TTL: an unconfirmed address leaves no trace
    }
    if written(
        ddb.put_item,
        TableName=table,
        Item=to_item(item),
        ConditionExpression="attribute_not_exists(email)",
    ):
        return CREATED, r.signup_id
    # Someone is there: a pending or unsubscribed reader may ask again, once the last mail is old
    # enough. The new request replaces the old: only the newest mail's link confirms.
    before = r.now - resend_after_s
    if written(
        ddb.update_item,
        TableName=table,
        Key=key(list_id, address),
        UpdateExpression="SET signup = :signup, #name = :name, #language = :language, topics = :topics, "
        "updated_at = :at, expires_at = :exp",
        ConditionExpression="#status = :pending AND signup.mailed_at <= :before",
        ExpressionAttributeNames={"#status": "status", "#name": "name", "#language": "language"},
        ExpressionAttributeValues=to_item(
            {
                ":signup": signup,
                ":name": r.name,
                ":language": r.language,
                ":topics": r.topics,
                ":at": r.at,
                ":exp": expires_at,
                ":pending": PENDING,
                ":before": before,
            }
        ),
    ) or written(
        ddb.update_item,
        TableName=table,
        Key=key(list_id, address),
        # The record of having left stays until they confirm: nothing else changes before.
        UpdateExpression="SET signup = :signup, updated_at = :at",
        ConditionExpression="#status = :unsubscribed AND (attribute_not_exists(signup) OR signup.mailed_at <= :before)",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues=to_item(
            {":signup": signup, ":at": r.at, ":unsubscribed": UNSUBSCRIBED, ":before": before}
        ),
    ):
        return RENEWED, r.signup_id
    status = (get(ddb, table, list_id, address) or {}).get("status")
    if status == ACTIVE:
        return ACTIVE_ALREADY, None
    if status in (PENDING, UNSUBSCRIBED):
        return RECENT, None
    return BLOCKED, None  # bounced or complained (or gone this very moment: asking again works)


def key_values(list_id: str, address: str) -> dict:
    k = key(list_id, address)
    return {"pk": k["pk"]["S"], "email": k["email"]["S"]}


def get(ddb, table: str, list_id: str, address: str) -> dict | None:
    return from_item(ddb.get_item(TableName=table, Key=key(list_id, address), ConsistentRead=True).get("Item"))


def confirm(
    ddb, table: str, list_id: str, address: str, signup_id: str, *, at: str, now: int, confirmation: dict
) -> tuple[str, dict | None]:
    """Make the signup `signup_id` an active subscription: (outcome, the subscriber as now stored).
    `confirmation`: how it was confirmed (ip_hash, ua_hash), added to the consent record."""
    current = get(ddb, table, list_id, address)
    signup = (current or {}).get("signup") or {}
    if current is None or signup.get("id") != signup_id or int(signup.get("expires_at") or 0) < now:
        if current is not None and current.get("status") == ACTIVE:
            return ALREADY_CONFIRMED, current
        return STALE, None
    consent = {**signup.get("consent", {}), "confirmed_at": at, **{f"confirm_{k}": v for k, v in confirmation.items()}}
    event = {"event": "confirmed", **consent}
    values = {
        ":active": ACTIVE,
        ":name": signup.get("name") or current.get("name") or "",
        ":language": signup.get("language") or current.get("language") or "",
        ":topics": signup.get("topics") or [],
        ":consent": consent,
        ":log": [event],
        ":empty": [],
        ":at": at,
        ":id": signup_id,
        ":seen": current.get("status"),
    }
    ok = written(
        ddb.update_item,
        TableName=table,
        Key=key(list_id, address),
        UpdateExpression=(
            "SET #status = :active, #name = :name, #language = :language, topics = :topics, consent = :consent, "
            "consent_log = list_append(if_not_exists(consent_log, :empty), :log), confirmed_at = :at, "
            "updated_at = :at REMOVE signup, expires_at, unsubscribed_at, unsubscribed_via"
        ),
        ConditionExpression="signup.id = :id AND #status = :seen",
        ExpressionAttributeNames={"#status": "status", "#name": "name", "#language": "language"},
        ExpressionAttributeValues=to_item(values),
    )
    if not ok:  # somebody else confirmed, or asked again, in between: what is there now decides
        now_there = get(ddb, table, list_id, address)
        if now_there is not None and now_there.get("status") == ACTIVE:
            return ALREADY_CONFIRMED, now_there
        return STALE, None
    return CONFIRMED, get(ddb, table, list_id, address)


def update_preferences(
    ddb, table: str, list_id: str, address: str, *, name: str, language: str, topics: list[str], at: str, event: dict
) -> bool:
    """An active reader's own choices (from the preference centre); False, nothing written, unless
    they are active (someone who left signs up again instead)."""
    return written(
        ddb.update_item,
        TableName=table,
        Key=key(list_id, address),
        UpdateExpression=(
            "SET #name = :name, #language = :language, topics = :topics, updated_at = :at, "
            "consent_log = list_append(if_not_exists(consent_log, :empty), :log)"
        ),
        ConditionExpression="#status = :active",
        ExpressionAttributeNames={"#status": "status", "#name": "name", "#language": "language"},
        ExpressionAttributeValues=to_item(
            {
                ":name": name,
                ":language": language,
                ":topics": topics,
                ":at": at,
                ":empty": [],
                ":log": [{"event": "preferences", "at": at, **event}],
                ":active": ACTIVE,
            }
        ),
    )
