"""Subscribers, one item per (list, address), spread over a fixed number of shards per list.

The partition key is `<list_id>#<shard>`: fan-out reads each shard as its own segment, in
parallel and page by page, and a lookup of one address computes its shard. SHARDS is part of the
stored keys: changing it needs a migration.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable, Iterable, Iterator

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as NoConnection

from .. import clock
from . import condition_failed, every_item, from_item, to_item, written

SHARDS = 16
ACTIVE = "active"
STATUSES = ("active", "unsubscribed", "bounced", "complained")


def shard_of(address: str) -> int:
    return int.from_bytes(hashlib.sha256(address.encode("utf-8")).digest()[:4], "big") % SHARDS


def partition(list_id: str, shard: int) -> str:
    return f"{list_id}#{shard:02d}"


def key(list_id: str, address: str) -> dict:
    return {"pk": {"S": partition(list_id, shard_of(address))}, "email": {"S": address}}


def query_active(ddb, table: str, list_id: str, shard: int, start: dict | None, limit: int):
    """One page of a shard's active subscribers: (subscribers, cursor or None when done)."""
    kwargs = {"ExclusiveStartKey": start} if start else {}
    resp = ddb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        FilterExpression="#status = :active",
        ProjectionExpression="email, #name, #lang, #topics",
        ExpressionAttributeNames={"#status": "status", "#name": "name", "#lang": "language", "#topics": "topics"},
        ExpressionAttributeValues={":pk": {"S": partition(list_id, shard)}, ":active": {"S": ACTIVE}},
        Limit=limit,
        **kwargs,
    )
    return [from_item(i) for i in resp.get("Items", [])], resp.get("LastEvaluatedKey")


def batch_get(ddb, requests: dict, attempts: int = 6) -> dict[str, list[dict]]:
    """BatchGetItem with the retries of unprocessed keys that AWS asks callers to make."""
    found: dict[str, list[dict]] = {t: [] for t in requests}
    pending = requests
    for attempt in range(attempts):
        resp = ddb.batch_get_item(RequestItems=pending)
        for table, items in resp.get("Responses", {}).items():
            found[table].extend(from_item(i) for i in items)
        pending = resp.get("UnprocessedKeys") or {}
        if not pending:
            return found
        clock.sleep(min(0.05 * 2**attempt, 1.0))
    raise RuntimeError("DynamoDB left keys unprocessed after retries")


def states(ddb, subscribers_table: str, suppressions_table: str, list_id: str, addresses: list[str]):
    """For each address: its subscriber record (or None) and whether it is suppressed."""
    records: dict[str, dict | None] = dict.fromkeys(addresses)
    suppressed: set[str] = set()
    unique = list(dict.fromkeys(addresses))
    # 50 + 50 keys per call: BatchGetItem takes at most 100.
    for i in range(0, len(unique), 50):
        chunk = unique[i : i + 50]
        found = batch_get(
            ddb,
            {
                subscribers_table: {
                    "Keys": [key(list_id, a) for a in chunk],
                    "ProjectionExpression": "email, #status, #name",
                    "ExpressionAttributeNames": {"#status": "status", "#name": "name"},
                },
                suppressions_table: {"Keys": [{"email": {"S": a}} for a in chunk], "ProjectionExpression": "email"},
            },
        )
        for item in found[subscribers_table]:
            records[item["email"]] = item
        suppressed.update(item["email"] for item in found[suppressions_table])
    return records, suppressed


def suppressed_among(ddb, suppressions_table: str, addresses: list[str]) -> set[str]:
    out: set[str] = set()
    unique = list(dict.fromkeys(addresses))
    for i in range(0, len(unique), 100):
        found = batch_get(ddb, {suppressions_table: {"Keys": [{"email": {"S": a}} for a in unique[i : i + 100]]}})
        out.update(item["email"] for item in found[suppressions_table])
    return out


def put_subscribers(ddb, table: str, list_id: str, subscribers: list[dict], attempts: int = 8) -> None:
    """Write subscribers (dicts with email, name, status, language, attributes) in batches of 25."""
    for i in range(0, len(subscribers), 25):
        pending = {
            table: [
                {
                    "PutRequest": {
                        "Item": to_item({**s, "pk": partition(list_id, shard_of(s["email"])), "list_id": list_id})
                    }
                }
                for s in subscribers[i : i + 25]
            ]
        }
        for attempt in range(attempts):
            pending = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not pending:
                break
            clock.sleep(min(0.05 * 2**attempt, 1.0))
        else:
            raise RuntimeError("DynamoDB left writes unprocessed after retries")


# Errors after which the same write may succeed later (besides any 5xx).
RETRYABLE = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TransactionConflictException",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


def put_new_subscriber(ddb, table: str, list_id: str, subscriber: dict, attempts: int = 8) -> bool:
    """Write a subscriber (a dict as for put_subscribers) only if the address is not on the list:
    True if written, False if it was there already (in any status), which is then left untouched.

    Throttling and DynamoDB's transient errors are retried here too (botocore has retried them
    already), with backoff and jitter; what still fails is raised (a throttled write was not made).
    After an error that may hide a write that was made (a timeout, a 500), a failed condition
    compares the item found with this one: our own write is True.
    """
    item = new_item(list_id, subscriber)
    maybe_written = False
    for attempt in range(attempts):
        try:
            ddb.put_item(
                TableName=table,
                Item=item,
                ConditionExpression="attribute_not_exists(email)",
                **({"ReturnValuesOnConditionCheckFailure": "ALL_OLD"} if maybe_written else {}),
            )
            return True
        except ClientError as exc:
            if condition_failed(exc):
                return maybe_written and exc.response.get("Item") == item
            error = exc.response.get("Error", {}).get("Code")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if (error not in RETRYABLE and status < 500) or attempt == attempts - 1:
                raise
            maybe_written = maybe_written or status >= 500
        except (NoConnection, HTTPClientError):  # no answer: the write may or may not have been made
            if attempt == attempts - 1:
                raise
            maybe_written = True
        clock.sleep(min(0.05 * 2**attempt, 2.0) * random.uniform(0.5, 1.0))
    raise ValueError("attempts must be at least 1")


def new_item(list_id: str, subscriber: dict) -> dict:
    """The item (wire format) that put_new_subscriber and put_new_subscribers write."""
    values = {**subscriber, "pk": partition(list_id, shard_of(subscriber["email"])), "list_id": list_id}
    return {k: _wire(v) for k, v in values.items() if v is not None}


TRANSACT_ITEMS = 100  # TransactWriteItems' limit of actions a call
TRANSACT_BYTES = 3_500_000  # its limit is 4 MB a call: room left for the keys and the request's own fields
# Cancellation reasons after which the same Put may succeed later (with backoff).
RETRYABLE_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})


def put_new_subscribers(
    ddb, table: str, list_id: str, subscribers: Iterable[dict], attempts: int = 8, outcome: list | None = None
) -> list[bool]:
    """Write each subscriber (a dict as for put_subscribers) only if the address is not on the list,
    in one TransactWriteItems of conditional Puts (at most TRANSACT_ITEMS, no address twice; the
    caller splits): for each, True if written, False if it was there already (in any status), which
    is then left untouched. DynamoDB bills 2 write units an item written so, twice a PutItem.

    A transaction is all or nothing. Cancelled, it names a reason per Put: a failed condition is an
    existing subscriber, dropped from the next transaction; the others (reason None) go again at
    once; conflicts and throttling go again after a backoff. Throttling of the whole call and
    DynamoDB's transient errors are retried with backoff and jitter too; what still fails is raised.
    After an answer that may hide a transaction that was made (a timeout, a 500), the items are read
    back (a consistent BatchGetItem) and decided one by one: our own item is True, another is False,
    none is sent again; if such an item later fails its condition, it is read back again the same way.

    Every call carries a ClientRequestToken of its own, so botocore's retries of that call (which
    reuse it) cannot apply it twice. `outcome` (a list of len(subscribers), None for undecided) is
    filled as items are decided: when this raises, it says what was written.
    """
    items = [new_item(list_id, s) for s in subscribers]
    outcome = [None] * len(items) if outcome is None else outcome
    pending = list(range(len(items)))
    maybe: set[int] = set()  # sent in a call whose outcome was unknown: a failed condition may be our own write
    failures = 0  # calls refused or unanswered, and rounds with conflicts or throttled Puts
    while pending:
        retry: list[int] = []
        check: list[int] = []  # to read back and decide
        before = failures
        error: BaseException | None = None  # raised after the read-back: no attempt left
        try:
            ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": table,
                            "Item": items[i],
                            "ConditionExpression": "attribute_not_exists(email)",
                        }
                    }
                    for i in pending
                ],
                ClientRequestToken=uuid.uuid4().hex,
            )
            for i in pending:
                outcome[i] = True
            break
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            reasons = exc.response.get("CancellationReasons") or []
            if code == "TransactionCanceledException" and len(reasons) == len(pending):
                backoff = False  # only a failed condition and reason None: send the rest again at once
                for i, reason in zip(pending, reasons, strict=True):
                    why = reason.get("Code") or "None"
                    if why == "ConditionalCheckFailed":
                        if i in maybe:
                            check.append(i)
                        else:
                            outcome[i] = False
                    elif why == "None" or why in RETRYABLE_REASONS:
                        retry.append(i)
                        backoff = backoff or why != "None"
                    else:
                        raise
                if backoff or len(retry) == len(pending):  # (no reason at all: as a conflict)
                    failures += 1
                    if failures == attempts:
                        error = exc
            elif code in RETRYABLE or code == "TransactionInProgressException" or status >= 500:
                failures += 1
                error = exc if failures == attempts else None
                if status >= 500 or code == "TransactionInProgressException":  # it may have been made
                    check = list(pending)
                elif error is None:  # throttled: nothing was written
                    retry = list(pending)
            else:
                raise
        except (NoConnection, HTTPClientError) as exc:  # no answer: it may or may not have been made
            failures += 1
            error = exc if failures == attempts else None
            check = list(pending)
        if check:
            stored = _read_back(ddb, table, [items[i] for i in check])
            for i in check:
                found = stored.get(items[i]["email"]["S"])
                if found is None:
                    retry.append(i)
                    maybe.add(i)
                else:
                    outcome[i] = found == items[i]  # ours, or someone else's: left as it is
        if error is not None:
            raise error
        pending = sorted(retry)
        if pending and failures > before:
            clock.sleep(min(0.05 * 2 ** (failures - 1), 2.0) * random.uniform(0.5, 1.0))
    return outcome


def _read_back(ddb, table: str, items: list[dict]) -> dict[str, dict]:
    """The stored items with these items' keys (consistent reads), by address."""
    keys = [{"pk": i["pk"], "email": i["email"]} for i in items]
    found: dict[str, dict] = {}
    for n in range(0, len(keys), 100):
        request = {table: {"Keys": keys[n : n + 100], "ConsistentRead": True}}
        for attempt in range(6):
            resp = ddb.batch_get_item(RequestItems=request)
            found.update((i["email"]["S"], i) for i in resp.get("Responses", {}).get(table, []))
            request = resp.get("UnprocessedKeys") or {}
            if not request:
                break
            clock.sleep(min(0.05 * 2**attempt, 1.0))
        else:
            raise RuntimeError("DynamoDB left keys unprocessed after retries")
    return found


def _wire(value) -> dict:
    """to_item's serialisation of one value, without its generic dispatch for what a subscriber
    mostly holds (strings, maps of strings): an import serialises a million of them."""
    if type(value) is str:
        return {"S": value}
    if type(value) is dict and all(type(v) is str for v in value.values()):
        return {"M": {k: {"S": v} for k, v in value.items()}}
    return to_item({"v": value})["v"]


def get_subscriber(ddb, table: str, list_id: str, address: str) -> dict | None:
    return from_item(ddb.get_item(TableName=table, Key=key(list_id, address), ConsistentRead=True).get("Item"))


def set_status(ddb, table: str, list_id: str, address: str, status: str, at: str) -> bool:
    """Change a subscriber's status; False if there is no such subscriber."""
    return written(
        ddb.update_item,
        TableName=table,
        Key=key(list_id, address),
        UpdateExpression="SET #status = :s, updated_at = :at",
        ConditionExpression="attribute_exists(email)",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":s": {"S": status}, ":at": {"S": at}},
    )


def set_status_unless(
    ddb, table: str, list_id: str, address: str, status: str, at: str, keep: tuple[str, ...] = ()
) -> bool:
    """Change a subscriber's status unless it is one of `keep`; False if no such subscriber, or kept."""
    keep = tuple(s for s in keep if s != status)
    names = {"#status": "status"}
    values = {":s": {"S": status}, ":at": {"S": at}, **{f":k{i}": {"S": s} for i, s in enumerate(keep)}}
    condition = "attribute_exists(email)"
    if keep:
        condition += " AND NOT #status IN (" + ", ".join(f":k{i}" for i in range(len(keep))) + ")"
    return written(
        ddb.update_item,
        TableName=table,
        Key=key(list_id, address),
        UpdateExpression="SET #status = :s, updated_at = :at",
        ConditionExpression=condition,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )


def unsubscribe(ddb, table: str, list_id: str, address: str, at: str, **detail) -> bool:
    """Move an active subscriber of this list to `unsubscribed`, recording when (and `detail`).

    False, and nothing written, if the address is not an active subscriber of the list (unknown,
    already unsubscribed, bounced or complained): repeating an unsubscribe changes nothing.
    """
    values = {"status": "unsubscribed", "unsubscribed_at": at, "updated_at": at, **detail}
    return written(
        ddb.update_item,
        TableName=table,
        Key=key(list_id, address),
        UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in values),
        # Only `active` moves: a bounce or complaint is the stronger record and stays.
        ConditionExpression="#status = :active",
        ExpressionAttributeNames={f"#{k}": k for k in values},
        ExpressionAttributeValues=to_item({**{f":{k}": v for k, v in values.items()}, ":active": ACTIVE}),
    )


def lookup(
    ddb,
    subscribers_table: str,
    suppressions_table: str,
    list_id: str,
    addresses: list[str],
    forgotten_id: Callable[[str], str] | None = None,
):
    """(addresses on the list, {suppressed address: reason}), in BatchGetItem calls of 100 keys
    (consistent reads of the list: a row written a moment ago is seen). With `forgotten_id`, an
    erased address (its keyed hash in the suppression list: erasure.py) counts as suppressed too."""
    keys = [(subscribers_table, key(list_id, a)) for a in addresses]
    keys += [(suppressions_table, {"email": {"S": a}}) for a in addresses]
    erased = {forgotten_id(a): a for a in addresses} if forgotten_id else {}
    keys += [(suppressions_table, {"email": {"S": h}}) for h in erased]
    shape = {
        # Consistent: a duplicate in a later chunk must see the row this import just wrote.
        subscribers_table: {"ProjectionExpression": "email", "ConsistentRead": True},
        suppressions_table: {"ProjectionExpression": "email, #r", "ExpressionAttributeNames": {"#r": "reason"}},
    }
    on_list: set[str] = set()
    suppressed: dict[str, str] = {}
    for i in range(0, len(keys), 100):
        request: dict[str, dict] = {}
        for table, k in keys[i : i + 100]:
            request.setdefault(table, {**shape[table], "Keys": []})["Keys"].append(k)
        got = batch_get(ddb, request)
        on_list.update(item["email"] for item in got.get(subscribers_table, []))
        for s in got.get(suppressions_table, []):
            suppressed[erased.get(s["email"], s["email"])] = s.get("reason") or "suppressed"
    return on_list, suppressed


def members(ddb, table: str, list_id: str, status: str | None = None, projection: str | None = None) -> Iterator[dict]:
    """Every subscriber of the list, shard by shard, page by page."""
    for shard in range(SHARDS):
        args: dict = {
            "TableName": table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": partition(list_id, shard)}},
        }
        if status:
            args["FilterExpression"] = "#s = :s"
            args["ExpressionAttributeValues"][":s"] = {"S": status}
        if projection:
            args["ProjectionExpression"] = projection
        if status or (projection and "#s" in projection):  # DynamoDB refuses unused names
            args["ExpressionAttributeNames"] = {"#s": "status"}
        yield from every_item(ddb.query, **args)


def shard_readers(ddb, table: str, list_id: str, shard: int, *, read: int = 1000) -> Iterator[dict]:
    """Every reader of one shard of the list, whatever their status, in key order (as fan-out
    reads them): email, name, language, status; `read` a request."""
    yield from every_item(
        ddb.query,
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ProjectionExpression="email, #name, #lang, #status",
        ExpressionAttributeNames={"#name": "name", "#lang": "language", "#status": "status"},
        ExpressionAttributeValues={":pk": {"S": partition(list_id, shard)}},
        Limit=read,
    )


def status_of(ddb, table: str, list_id: str, address: str) -> str | None:
    """The subscriber's status, or None if the address is not on the list (a consistent read)."""
    found = ddb.get_item(
        TableName=table,
        Key=key(list_id, address),
        ProjectionExpression="#s",
        ExpressionAttributeNames={"#s": "status"},
        ConsistentRead=True,
    ).get("Item")
    return found["status"]["S"] if found and "status" in found else None
