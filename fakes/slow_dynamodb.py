"""SlowDynamoDB: the DynamoDB calls `newsletter subscribers import` makes, BatchGetItem and
TransactWriteItems of conditional Puts (and the conditional PutItem it made before), in memory and
thread-safe, each answered after a fixed latency: for the import benchmark (bench/import_rate.py),
where many requests wait at once, as they do over the network (time.sleep releases the GIL, so the
importing threads overlap).

What it models
- BatchGetItem: at most 100 keys in all and no key twice (ValidationException, as DynamoDB),
  the items found projected on a ProjectionExpression of top-level attributes (with #name
  placeholders); ConsistentRead accepted (every read sees every write).
- PutItem, without a condition or with `attribute_not_exists(<attribute>)` (the attribute may be
  a #name): a failed condition raises ConditionalCheckFailedException, with the old item when
  ReturnValuesOnConditionCheckFailure is ALL_OLD. The check and the write are one step under a
  lock, as DynamoDB's conditional write is atomic.
- TransactWriteItems of Puts, each without a condition or with `attribute_not_exists(<attribute>)`:
  at most 100 actions and no item twice (ValidationException); all conditions are checked and all
  Puts made as one step under the lock; if a condition fails, nothing is written and
  TransactionCanceledException carries CancellationReasons, one per action in order
  (`ConditionalCheckFailed`, with the old item when the Put asks for ALL_OLD, or `None`).
  ClientRequestToken is accepted, not remembered.
- ResourceNotFoundException for a table it does not hold; ValidationException for a key without
  its key attributes.
- `latency` seconds before every answer (outside the lock, so requests overlap); `calls` counts
  requests by operation.

What it does not model
- Any other call, action (Update, Delete, ConditionCheck), condition or expression
  (NotImplementedError), throttling, conflicts, capacity, item and request size limits,
  UnprocessedKeys, idempotency tokens, response metadata.

Where items are kept: `_get` and `_put` (a dict here). A subclass may keep them otherwise: the
benchmark's million-row memory run keeps one byte a row, so that only the import's memory grows.

Import rule: only the standard library at module level (see fakes/__init__.py).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from functools import lru_cache

from .errors import client_error


class SlowDynamoDB:
    """BatchGetItem, conditional PutItem and TransactWriteItems of Puts over `tables`
    ({name: (hash key, range key or None)})."""

    def __init__(self, tables: dict[str, tuple[str, str | None]], latency: float = 0.010):
        self.tables, self.latency = dict(tables), latency
        self.items: dict[tuple, dict] = {}  # (table, hash value, range value) -> item
        self.calls: Counter = Counter()
        self._lock = threading.Lock()

    # where items are kept -------------------------------------------------------------------

    def key_of(self, table: str, item: dict) -> tuple:
        if table not in self.tables:
            raise client_error("ResourceNotFoundException", "Requested resource not found", "DynamoDB")
        try:
            return (table, *(tuple(item[a].items())[0] for a in self.tables[table] if a))
        except KeyError as exc:
            raise client_error(
                "ValidationException", f"The provided key element does not match the schema: {exc}", "DynamoDB"
            ) from None

    def _get(self, key: tuple) -> dict | None:
        return self.items.get(key)

    def _put(self, key: tuple, item: dict) -> None:
        self.items[key] = item

    def seed(self, table: str, items: list[dict]) -> None:
        """Items (wire format) in place before the run, without latency."""
        for item in items:
            self._put(self.key_of(table, item), dict(item))

    # the calls ------------------------------------------------------------------------------

    def _wait(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] += 1
        if self.latency:
            time.sleep(self.latency)

    def batch_get_item(self, *, RequestItems: dict, **_) -> dict:
        self._wait("BatchGetItem")
        if sum(len(r["Keys"]) for r in RequestItems.values()) > 100:
            raise client_error(
                "ValidationException", "Too many items requested for the BatchGetItem call", "BatchGetItem"
            )
        responses = {}
        with self._lock:
            for table, request in RequestItems.items():
                keys = [self.key_of(table, k) for k in request["Keys"]]
                if len(set(keys)) != len(keys):
                    raise client_error(
                        "ValidationException", "Provided list of item keys contains duplicates", "BatchGetItem"
                    )
                names = _projection(request.get("ProjectionExpression"), request.get("ExpressionAttributeNames") or {})
                found = (self._get(k) for k in keys)
                responses[table] = [_project(item, names) for item in found if item is not None]
        return {"Responses": responses, "UnprocessedKeys": {}}

    def put_item(
        self,
        *,
        TableName: str,
        Item: dict,
        ConditionExpression: str | None = None,
        ExpressionAttributeNames: dict | None = None,
        ReturnValuesOnConditionCheckFailure: str | None = None,
        **rest,
    ) -> dict:
        self._wait("PutItem")
        if rest and (set(rest) - {"ReturnValues"} or rest.get("ReturnValues") != "NONE"):
            raise NotImplementedError(f"PutItem with {sorted(rest)}")
        absent = _not_exists(ConditionExpression, ExpressionAttributeNames or {})
        key = self.key_of(TableName, Item)
        with self._lock:
            old = self._get(key)
            if absent is not None and old is not None and absent in old:
                extra = {"Item": dict(old)} if ReturnValuesOnConditionCheckFailure == "ALL_OLD" else {}
                raise client_error(
                    "ConditionalCheckFailedException", "The conditional request failed", "PutItem", **extra
                )
            self._put(key, dict(Item))
        return {}

    def transact_write_items(self, *, TransactItems: list, ClientRequestToken: str | None = None, **rest) -> dict:
        self._wait("TransactWriteItems")
        if rest:
            raise NotImplementedError(f"TransactWriteItems with {sorted(rest)}")
        if not 0 < len(TransactItems) <= 100:
            raise client_error("ValidationException", "Member must have length between 1 and 100", "TransactWriteItems")
        puts = []
        for action in TransactItems:
            if set(action) != {"Put"}:
                raise NotImplementedError(f"TransactWriteItems action {sorted(action)}")
            put = dict(action["Put"])
            table, item = put.pop("TableName"), put.pop("Item")
            absent = _not_exists(put.pop("ConditionExpression", None), put.pop("ExpressionAttributeNames", None) or {})
            all_old = put.pop("ReturnValuesOnConditionCheckFailure", "NONE") == "ALL_OLD"
            if put:
                raise NotImplementedError(f"Put with {sorted(put)}")
            puts.append((self.key_of(table, item), item, absent, all_old))
        if len({key for key, *_ in puts}) != len(puts):
            raise client_error(
                "ValidationException",
                "Transaction request cannot include multiple operations on one item",
                "TransactWriteItems",
            )
        with self._lock:
            reasons, failed = [], False
            for key, _, absent, all_old in puts:
                old = self._get(key)
                if absent is not None and old is not None and absent in old:
                    failed = True
                    reason = {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
                    reasons.append({**reason, "Item": dict(old)} if all_old else reason)
                else:
                    reasons.append({"Code": "None"})
            if failed:
                codes = ", ".join(r["Code"] for r in reasons)
                raise client_error(
                    "TransactionCanceledException",
                    f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
                    "TransactWriteItems",
                    CancellationReasons=reasons,
                )
            for key, item, _, _ in puts:
                self._put(key, dict(item))
        return {}


def _not_exists(condition: str | None, names: dict) -> str | None:
    """The attribute of `attribute_not_exists(a)`; None without a condition."""
    if condition is None:
        return None
    name = _condition_operand(condition)
    return names[name] if name.startswith("#") else name


@lru_cache(maxsize=64)
def _condition_operand(condition: str) -> str:
    match = re.fullmatch(r"\s*attribute_not_exists\(\s*(#?\w+)\s*\)\s*", condition)
    if not match:
        raise NotImplementedError(f"condition {condition!r}")
    return match.group(1)


def _projection(expression: str | None, names: dict) -> list[str] | None:
    if expression is None:
        return None
    parts = [p.strip() for p in expression.split(",")]
    if not all(re.fullmatch(r"#?\w+", p) for p in parts):
        raise NotImplementedError(f"projection {expression!r}")
    return [names[p] if p.startswith("#") else p for p in parts]


def _project(item: dict, names: list[str] | None) -> dict:
    return dict(item) if names is None else {n: item[n] for n in names if n in item}
