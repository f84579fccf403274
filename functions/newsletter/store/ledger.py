"""The send ledger: one item per (issue, recipient), written with conditions, so that each
recipient of an issue is mailed at most once however often a batch is delivered.

States: `sending` (claimed by one send attempt, SES call under way), `sent`, `rejected` (SES
refused the address for good), `skipped` (inactive or suppressed when its turn came),
`uncertain` (the SES call's outcome is unknown, or its attempt died holding the claim: never
retried, reported).

A claim names its attempt (`claim`, a random id) and when that attempt is certainly over
(`until`: its Lambda invocation's deadline). So every write can tell its own earlier write from
somebody else's (an SDK retry after a lost answer finds its own claim, not a duplicate), and a
claim whose attempt died is recognised as abandoned once `until` has passed.

Who fan-out queued has no item here (that would be a write per reader before any is sent): each
fan-out page's marker in the issues table names the readers it queued by `queued_key`, 8 bytes
a reader and no address. A reader queued and never claimed (the issue cancelled, the batch in the
DLQ) is one a page names and the ledger does not hold.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from botocore.exceptions import ClientError

from . import condition_failed, every_item, from_item, to_item

# Long enough for late feedback (complaints can arrive weeks later) to find its issue.
TTL_DAYS = 90
SENDING = "sending"
FINAL = frozenset({"sent", "rejected", "skipped", "uncertain"})
QUEUED_KEY_BYTES = 8  # for a million readers, two of a shard sharing a key: about 1 in 10^10
# Lambda instances' clocks agree to well under this (NTP): a claim is abandoned this long after `until`.
CLOCK_SKEW_S = 5


def _key(issue_id: str, address: str) -> dict:
    return {"issue_id": {"S": issue_id}, "email": {"S": address}}


def abandoned(item: dict, now: float) -> bool:
    """An open claim whose attempt is certainly over (its invocation's deadline has passed)."""
    return item.get("status") == SENDING and now > float(item.get("until") or 0) + CLOCK_SKEW_S


def claim(
    ddb,
    table: str,
    issue_id: str,
    address: str,
    *,
    claim_id: str,
    status: str,
    now: float,
    until: float = 0,
    take_over: str | None = None,
    **detail,
) -> dict | None:
    """Write the recipient's first state for this attempt: `sending` (a claim) or `skipped`.

    None if the attempt holds it now; else the item that was there (a final state, or another
    attempt's claim). `take_over` names a claim of our own that was never used to send (its
    release failed): that one is replaced instead of refused.
    """
    values = {
        "status": status,
        "claim": claim_id,
        "at": int(now),
        "expires_at": int(now) + TTL_DAYS * 86400,
        **({"until": int(until) + 1} if status == SENDING else {}),
        **detail,
    }
    condition, names, bound = "attribute_not_exists(email)", {}, {}
    if take_over:
        condition += " OR (#status = :sending AND #claim = :old)"
        names = {"#status": "status", "#claim": "claim"}
        bound = to_item({":sending": SENDING, ":old": take_over})
    try:
        ddb.put_item(
            TableName=table,
            Item=to_item({"issue_id": issue_id, "email": address, **values}),
            ConditionExpression=condition,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
            **({"ExpressionAttributeNames": names, "ExpressionAttributeValues": bound} if take_over else {}),
        )
        return None
    except ClientError as exc:
        if not condition_failed(exc):
            raise
        old = from_item(exc.response.get("Item")) or get(ddb, table, issue_id, address) or {}
    if old.get("claim") == claim_id and old.get("status") == status:
        return None  # our own write, answered late: the SDK's retry found it
    return old


def settle(ddb, table: str, issue_id: str, address: str, claim_id: str, status: str, now: float, **detail) -> str:
    """Move this attempt's claim to its outcome; the state the ledger holds after (the outcome, or
    what somebody else recorded first: an abandoned claim resolved as `uncertain`)."""
    values = {"status": status, "at": int(now), **detail}
    try:
        ddb.update_item(
            TableName=table,
            Key=_key(issue_id, address),
            UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in values) + " REMOVE #until",
            ConditionExpression="#status = :sending AND #claim = :claim",
            ExpressionAttributeNames={**{f"#{k}": k for k in values}, "#claim": "claim", "#until": "until"},
            ExpressionAttributeValues=to_item(
                {**{f":{k}": v for k, v in values.items()}, ":sending": SENDING, ":claim": claim_id}
            ),
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        return status
    except ClientError as exc:
        if not condition_failed(exc):
            raise
        old = from_item(exc.response.get("Item")) or get(ddb, table, issue_id, address) or {}
    return str(old.get("status") or status)


def release(ddb, table: str, issue_id: str, address: str, claim_id: str) -> None:
    """Drop this attempt's claim: its send certainly did not happen, and a later attempt sends it."""
    try:
        ddb.delete_item(
            TableName=table,
            Key=_key(issue_id, address),
            ConditionExpression="#status = :sending AND #claim = :claim",
            ExpressionAttributeNames={"#status": "status", "#claim": "claim"},
            ExpressionAttributeValues=to_item({":sending": SENDING, ":claim": claim_id}),
        )
    except ClientError as exc:
        if not condition_failed(exc):
            raise


def resolve_abandoned(ddb, table: str, issue_id: str, address: str, item: dict, now: float) -> dict:
    """Record an abandoned claim as `uncertain` (its attempt may have sent before it died: never
    resent). The item as it is after: `uncertain`, or what another writer put there first."""
    try:
        ddb.update_item(
            TableName=table,
            Key=_key(issue_id, address),
            UpdateExpression="SET #status = :uncertain, #at = :at, #error = :error REMOVE #until",
            ConditionExpression="#status = :sending AND #claim = :claim",
            ExpressionAttributeNames={
                "#status": "status",
                "#at": "at",
                "#error": "error",
                "#claim": "claim",
                "#until": "until",
            },
            ExpressionAttributeValues=to_item(
                {
                    ":uncertain": "uncertain",
                    ":at": int(now),
                    ":sending": SENDING,
                    ":claim": item.get("claim") or "",
                    ":error": "attempt ended holding the claim",
                }
            ),
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        return {**item, "status": "uncertain"}
    except ClientError as exc:
        if not condition_failed(exc):
            raise
        return from_item(exc.response.get("Item")) or get(ddb, table, issue_id, address) or {}


def get(ddb, table: str, issue_id: str, address: str) -> dict | None:
    return from_item(ddb.get_item(TableName=table, Key=_key(issue_id, address), ConsistentRead=True).get("Item"))


def get_many(ddb, table: str, issue_id: str, addresses: list[str]) -> dict[str, dict]:
    """The ledger items of these recipients (consistent reads), by address; absent ones left out."""
    from .subscribers import batch_get

    found: dict[str, dict] = {}
    unique = list(dict.fromkeys(addresses))
    for i in range(0, len(unique), 100):
        request = {table: {"Keys": [_key(issue_id, a) for a in unique[i : i + 100]], "ConsistentRead": True}}
        for item in batch_get(ddb, request)[table]:
            found[item["email"]] = item
    return found


def items(ddb, table: str, issue_id: str):
    """Every item of the issue's ledger (email, status), page by page: for reconciling counters."""
    yield from every_item(
        ddb.query,
        TableName=table,
        KeyConditionExpression="issue_id = :i",
        ProjectionExpression="email, #status",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":i": {"S": issue_id}},
    )


def entries(ddb, table: str, issue_id: str, statuses: Iterable[str], page: int = 1000) -> Iterator[dict]:
    """The issue's ledger items in these states, every attribute, `page` items read at a time (an
    operator's export: one Query of the issue's partition, filtered)."""
    wanted = sorted(set(statuses))
    values = {":i": {"S": issue_id}, **{f":s{n}": {"S": s} for n, s in enumerate(wanted)}}
    yield from every_item(
        ddb.query,
        TableName=table,
        KeyConditionExpression="issue_id = :i",
        FilterExpression="#status IN (" + ", ".join(f":s{n}" for n in range(len(wanted))) + ")",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues=values,
        Limit=page,
    )


def queued_key(address: str) -> bytes:
    """How a fan-out page marker names a reader it queued (the issues table holds no address)."""
    return hashlib.sha256(b"queued\0" + address.encode("utf-8")).digest()[:QUEUED_KEY_BYTES]


def queued_keys(addresses: Iterable[str]) -> bytes | None:
    """A page's readers as its marker keeps them, packed (None for none): 4 KB for 500."""
    return b"".join(queued_key(a) for a in addresses) or None


def unpack_queued(blob: bytes | None) -> frozenset[bytes]:
    """The keys a page marker's `readers` holds."""
    blob = bytes(blob or b"")
    return frozenset(blob[i : i + QUEUED_KEY_BYTES] for i in range(0, len(blob), QUEUED_KEY_BYTES))
