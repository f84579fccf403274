"""A thread-safe, in-memory DynamoDB for benchmarks: the low-level client calls the stores make,
with DynamoDB's conditional semantics, and an estimate of the capacity each call consumes.

Items are kept in the wire format (`{"S": ...}`, `{"N": ...}`), keyed by each table's key schema
(read from template.yaml by `from_template`). Condition, key-condition, filter and update
expressions are parsed by a small grammar that covers what the stores write: comparisons,
IN, BETWEEN, AND/OR/NOT, attribute_exists/attribute_not_exists/begins_with/contains; SET (with
`+`, `-`, if_not_exists), ADD, REMOVE, DELETE. Anything else raises NotImplementedError, so a
benchmark never measures a call this fake silently misunderstood.

Capacity follows the pricing page's rules (item size rounded up to 1 KB per write unit and 4 KB
per read unit; eventually consistent reads cost half; transactions cost double; a failed
conditional write still costs its write). Only the standard library is imported at module level,
so the cold-start child can load this before its timer without pre-loading anything a handler
imports.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from functools import lru_cache

# --- attribute values ------------------------------------------------------------------------


def _number(text: str):
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)


def _num_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _plain(av: dict | None):
    """A comparable Python value for an attribute value (None when absent)."""
    if av is None:
        return None
    ((kind, value),) = av.items()
    if kind == "N":
        return _number(value)
    if kind in ("S", "B", "BOOL"):
        return value
    if kind == "NULL":
        return None
    if kind in ("SS", "BS"):
        return frozenset(value)
    if kind == "NS":
        return frozenset(_number(v) for v in value)
    return repr(av)  # L and M compare by equality only


def _size_of_value(av: dict) -> int:
    ((kind, value),) = av.items()
    if kind == "S":
        return len(value.encode("utf-8"))
    if kind == "N":
        return (len(value.lstrip("-").replace(".", "")) + 1) // 2 + 1
    if kind == "B":
        return len(value)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(_size_of_value({kind[0]: v}) for v in value)
    if kind == "L":
        return 3 + sum(1 + _size_of_value(v) for v in value)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _size_of_value(v) for k, v in value.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict | None) -> int:
    """DynamoDB's item size: attribute names plus values, in bytes."""
    if not item:
        return 0
    return sum(len(name.encode("utf-8")) + _size_of_value(av) for name, av in item.items())


def _copy(item: dict) -> dict:
    return {k: dict(v) for k, v in item.items()}


# --- expressions -----------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<op><>|<=|>=|=|<|>)|(?P<punct>[(),+\-])|(?P<name>#[A-Za-z0-9_]+)|(?P<value>:[A-Za-z0-9_]+)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "BETWEEN", "SET", "ADD", "REMOVE", "DELETE"}


@lru_cache(maxsize=512)
def _tokens(text: str) -> tuple:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise NotImplementedError(f"fake DynamoDB cannot parse {text!r} at {pos}")
        kind = m.lastgroup
        tok = m.group(kind)
        if kind == "word" and tok.upper() in _KEYWORDS:
            kind, tok = "kw", tok.upper()
        out.append((kind, tok))
        pos = m.end()
    return tuple(out)


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokens(text)
        self.i = 0
        self.text = text

    def peek(self, offset: int = 0):
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else (None, None)

    def take(self, kind=None, tok=None):
        k, t = self.peek()
        if (kind and k != kind) or (tok and t != tok):
            raise NotImplementedError(f"fake DynamoDB: expected {tok or kind} in {self.text!r}, got {t!r}")
        self.i += 1
        return t

    def done(self) -> bool:
        return self.i >= len(self.toks)

    # Operands compile to functions (item, names, values) -> attribute value or None.
    def operand(self):
        kind, tok = self.peek()
        if kind == "value":
            self.i += 1
            return lambda item, names, values, tok=tok: values[tok]
        if kind in ("name", "word"):
            if kind == "word" and self.peek(1) == ("punct", "("):
                return self.function()
            self.i += 1
            return lambda item, names, values, tok=tok: item.get(names[tok] if tok.startswith("#") else tok)
        raise NotImplementedError(f"fake DynamoDB: unexpected {tok!r} in {self.text!r}")

    def path(self) -> str:
        kind, tok = self.peek()
        if kind not in ("name", "word"):
            raise NotImplementedError(f"fake DynamoDB: expected an attribute in {self.text!r}")
        self.i += 1
        return tok

    def function(self):
        fn = self.take("word").lower()
        self.take("punct", "(")
        args = [self.operand()]
        while self.peek() == ("punct", ","):
            self.i += 1
            args.append(self.operand())
        self.take("punct", ")")
        if fn == "attribute_exists":
            return lambda item, n, v: {"BOOL": args[0](item, n, v) is not None}
        if fn == "attribute_not_exists":
            return lambda item, n, v: {"BOOL": args[0](item, n, v) is None}
        if fn == "begins_with":
            return lambda item, n, v: {
                "BOOL": str(_plain(args[0](item, n, v)) or "").startswith(str(_plain(args[1](item, n, v))))
            }
        if fn == "contains":

            def contains(item, n, v):
                hay, needle = _plain(args[0](item, n, v)), _plain(args[1](item, n, v))
                return {"BOOL": hay is not None and needle in hay}

            return contains
        if fn == "if_not_exists":
            return lambda item, n, v: args[0](item, n, v) or args[1](item, n, v)
        if fn == "size":
            return lambda item, n, v: {"N": str(len(_plain(args[0](item, n, v)) or ""))}
        raise NotImplementedError(f"fake DynamoDB: function {fn}() in {self.text!r}")

    # Conditions compile to functions (item, names, values) -> bool.
    def condition(self):
        left = self.conjunction()
        while self.peek() == ("kw", "OR"):
            self.i += 1
            right = self.conjunction()
            left = (lambda a, b: lambda *x: a(*x) or b(*x))(left, right)
        return left

    def conjunction(self):
        left = self.negation()
        while self.peek() == ("kw", "AND"):
            self.i += 1
            right = self.negation()
            left = (lambda a, b: lambda *x: a(*x) and b(*x))(left, right)
        return left

    def negation(self):
        if self.peek() == ("kw", "NOT"):
            self.i += 1
            inner = self.negation()
            return lambda *x: not inner(*x)
        return self.comparison()

    def comparison(self):
        if self.peek() == ("punct", "("):
            self.i += 1
            inner = self.condition()
            self.take("punct", ")")
            return inner
        left = self.operand()
        kind, tok = self.peek()
        if kind == "op":
            self.i += 1
            right = self.operand()
            return _compare(tok, left, right)
        if (kind, tok) == ("kw", "IN"):
            self.i += 1
            self.take("punct", "(")
            options = [self.operand()]
            while self.peek() == ("punct", ","):
                self.i += 1
                options.append(self.operand())
            self.take("punct", ")")
            return lambda item, n, v: _plain(left(item, n, v)) in {_plain(o(item, n, v)) for o in options}
        if (kind, tok) == ("kw", "BETWEEN"):
            self.i += 1
            low = self.operand()
            self.take("kw", "AND")
            high = self.operand()

            def between(item, n, v):
                x = _plain(left(item, n, v))
                return x is not None and _plain(low(item, n, v)) <= x <= _plain(high(item, n, v))

            return between
        # A bare function call: attribute_exists(...) and friends.
        return lambda item, n, v: bool((left(item, n, v) or {}).get("BOOL"))


def _compare(op: str, left, right):
    def test(item, names, values):
        a, b = left(item, names, values), right(item, names, values)
        if op == "=":
            return a is not None and b is not None and _plain(a) == _plain(b)
        if op == "<>":
            return _plain(a) != _plain(b)
        if a is None or b is None:
            return False
        a, b = _plain(a), _plain(b)
        try:
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        except TypeError:
            return False

    return test


@lru_cache(maxsize=512)
def compile_condition(text: str):
    p = _Parser(text)
    fn = p.condition()
    if not p.done():
        raise NotImplementedError(f"fake DynamoDB: trailing tokens in {text!r}")
    return fn


@lru_cache(maxsize=512)
def compile_update(text: str):
    """A list of actions (kind, path, operand-function or None)."""
    p = _Parser(text)
    actions, mode = [], None
    while not p.done():
        kind, tok = p.peek()
        if kind == "kw" and tok in ("SET", "ADD", "REMOVE", "DELETE"):
            mode = tok
            p.i += 1
            continue
        if kind == "punct" and tok == ",":
            p.i += 1
            continue
        if mode is None:
            raise NotImplementedError(f"fake DynamoDB: update {text!r} has no clause keyword")
        path = p.path()
        if mode == "SET":
            p.take("op", "=")
            first = p.operand()
            if p.peek() in (("punct", "+"), ("punct", "-")):
                sign = p.take("punct")
                second = p.operand()

                def arith(item, n, v, a=first, b=second, sign=sign):
                    x, y = _plain(a(item, n, v)), _plain(b(item, n, v))
                    return {"N": _num_text(x + y if sign == "+" else x - y)}

                actions.append(("SET", path, arith))
            else:
                actions.append(("SET", path, first))
        elif mode == "REMOVE":
            actions.append(("REMOVE", path, None))
        else:
            actions.append((mode, path, p.operand()))
    return actions


def _apply_update(item: dict, text: str, names: dict, values: dict) -> dict:
    new = _copy(item)
    for mode, path, operand in compile_update(text):
        attr = names[path] if path.startswith("#") else path
        if mode == "SET":
            new[attr] = dict(operand(item, names, values))
        elif mode == "REMOVE":
            new.pop(attr, None)
        elif mode == "ADD":
            add = operand(item, names, values)
            ((kind, value),) = add.items()
            old = new.get(attr)
            if kind == "N":
                base = _number(old["N"]) if old else 0
                new[attr] = {"N": _num_text(base + _number(value))}
            else:
                new[attr] = {kind: sorted(set(old[kind] if old else []) | set(value))}
        elif mode == "DELETE":
            remove = operand(item, names, values)
            ((kind, value),) = remove.items()
            if attr in new:
                left = [x for x in new[attr][kind] if x not in set(value)]
                if left:
                    new[attr] = {kind: left}
                else:
                    new.pop(attr)
    return new


def _project(item: dict, projection: str | None, names: dict) -> dict:
    if not projection:
        return _copy(item)
    out = {}
    for part in projection.split(","):
        part = part.strip()
        attr = names[part] if part.startswith("#") else part
        if attr in item:
            out[attr] = dict(item[attr])
    return out


# --- errors ----------------------------------------------------------------------------------


def _client_error(code: str, message: str, operation: str, **extra):
    from botocore.exceptions import ClientError  # loaded by the caller's boto3 use already

    response = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}, **extra}
    return ClientError(response, operation)


class _ConditionFailed(Exception):
    def __init__(self, old: dict | None):
        self.old = old


# --- tables ----------------------------------------------------------------------------------


class _Table:
    def __init__(self, name: str, hash_key: str, range_key: str | None, indexes: dict[str, tuple[str, str | None]]):
        self.name, self.hash_key, self.range_key, self.indexes = name, hash_key, range_key, indexes
        self.parts: dict[tuple, dict[tuple, dict]] = {}

    def key_of(self, key: dict) -> tuple[tuple, tuple]:
        try:
            h = tuple(key[self.hash_key].items())[0]
            r = tuple(key[self.range_key].items())[0] if self.range_key else ("", "")
        except KeyError as exc:
            raise _client_error("ValidationException", f"missing key attribute {exc}", "Key") from None
        return h, r

    def get(self, key: dict) -> dict | None:
        h, r = self.key_of(key)
        return self.parts.get(h, {}).get(r)

    def put(self, item: dict) -> None:
        h, r = self.key_of(item)
        self.parts.setdefault(h, {})[r] = item

    def delete(self, key: dict) -> None:
        h, r = self.key_of(key)
        self.parts.get(h, {}).pop(r, None)

    def key_attrs(self, item: dict, index: str | None = None) -> dict:
        attrs = [self.hash_key] + ([self.range_key] if self.range_key else [])
        if index:
            attrs += [a for a in self.indexes[index] if a]
        return {a: dict(item[a]) for a in attrs if a in item}

    def items(self):
        for part in self.parts.values():
            yield from part.values()


class FakeDynamoDB:
    """The low-level DynamoDB client calls of the stores, in memory, thread-safe."""

    def __init__(self, tables: dict[str, dict]):
        self._tables = {
            name: _Table(name, spec["hash"], spec.get("range"), spec.get("indexes") or {})
            for name, spec in tables.items()
        }
        self._lock = threading.RLock()
        self.calls: Counter = Counter()
        self.read_units: Counter = Counter()  # by table
        self.write_units: Counter = Counter()  # by table

    @classmethod
    def from_template(cls, template: dict, physical: dict[str, str]) -> FakeDynamoDB:
        """Tables of template.yaml (logical id → physical name in `physical`), with their GSIs."""
        tables = {}
        for logical, res in template["Resources"].items():
            if res.get("Type") != "AWS::DynamoDB::Table":
                continue
            props = res["Properties"]
            keys = {k["KeyType"]: k["AttributeName"] for k in props["KeySchema"]}
            indexes = {}
            for gsi in props.get("GlobalSecondaryIndexes") or []:
                gk = {k["KeyType"]: k["AttributeName"] for k in gsi["KeySchema"]}
                indexes[gsi["IndexName"]] = (gk["HASH"], gk.get("RANGE"))
            tables[physical.get(logical, logical)] = {
                "hash": keys["HASH"],
                "range": keys.get("RANGE"),
                "indexes": indexes,
            }
        return cls(tables)

    def table(self, name: str) -> _Table:
        try:
            return self._tables[name]
        except KeyError:
            raise _client_error("ResourceNotFoundException", f"Requested resource not found: {name}", "Table") from None

    def seed(self, table: str, items: list[dict]) -> None:
        """Put items (wire format) without counting calls or capacity."""
        t = self.table(table)
        with self._lock:
            for item in items:
                t.put(_copy(item))

    def all_items(self, table: str) -> list[dict]:
        with self._lock:
            return [_copy(i) for i in self.table(table).items()]

    # capacity ------------------------------------------------------------------------------

    def _write(self, table: str, *sizes: int, factor: float = 1.0) -> None:
        self.write_units[table] += factor * max(1, math.ceil(max(sizes or (0,)) / 1024))

    def _read(self, table: str, size: int, consistent: bool, factor: float = 1.0) -> None:
        units = max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)
        self.read_units[table] += factor * units

    # single-item calls ---------------------------------------------------------------------

    @staticmethod
    def _check(condition: str | None, old: dict | None, names: dict, values: dict) -> None:
        if condition and not compile_condition(condition)(old or {}, names, values):
            raise _ConditionFailed(old)

    def _fail(self, exc: _ConditionFailed, operation: str, return_old: str | None):
        extra = {"Item": _copy(exc.old)} if return_old == "ALL_OLD" and exc.old else {}
        return _client_error("ConditionalCheckFailedException", "The conditional request failed", operation, **extra)

    def get_item(
        self, *, TableName, Key, ConsistentRead=False, ProjectionExpression=None, ExpressionAttributeNames=None, **_
    ):
        self.calls["GetItem"] += 1
        with self._lock:
            item = self.table(TableName).get(Key)
            self._read(TableName, item_size(item), ConsistentRead)
            return {"Item": _project(item, ProjectionExpression, ExpressionAttributeNames or {})} if item else {}

    def put_item(
        self,
        *,
        TableName,
        Item,
        ConditionExpression=None,
        ExpressionAttributeNames=None,
        ExpressionAttributeValues=None,
        ReturnValuesOnConditionCheckFailure=None,
        **_,
    ):
        self.calls["PutItem"] += 1
        with self._lock:
            t = self.table(TableName)
            old = t.get(Item)
            self._write(TableName, item_size(old), item_size(Item))
            try:
                self._check(ConditionExpression, old, ExpressionAttributeNames or {}, ExpressionAttributeValues or {})
            except _ConditionFailed as exc:
                raise self._fail(exc, "PutItem", ReturnValuesOnConditionCheckFailure) from None
            t.put(_copy(Item))
        return {}

    def update_item(
        self,
        *,
        TableName,
        Key,
        UpdateExpression,
        ConditionExpression=None,
        ExpressionAttributeNames=None,
        ExpressionAttributeValues=None,
        ReturnValues=None,
        ReturnValuesOnConditionCheckFailure=None,
        **_,
    ):
        self.calls["UpdateItem"] += 1
        names, values = ExpressionAttributeNames or {}, ExpressionAttributeValues or {}
        with self._lock:
            t = self.table(TableName)
            old = t.get(Key)
            try:
                self._check(ConditionExpression, old, names, values)
            except _ConditionFailed as exc:
                self._write(TableName, item_size(old))
                raise self._fail(exc, "UpdateItem", ReturnValuesOnConditionCheckFailure) from None
            new = _apply_update(old or _copy(Key), UpdateExpression, names, values)
            self._write(TableName, item_size(old), item_size(new))
            t.put(new)
        if ReturnValues == "ALL_NEW":
            return {"Attributes": _copy(new)}
        if ReturnValues == "ALL_OLD" and old:
            return {"Attributes": _copy(old)}
        return {}

    def delete_item(
        self,
        *,
        TableName,
        Key,
        ConditionExpression=None,
        ExpressionAttributeNames=None,
        ExpressionAttributeValues=None,
        ReturnValuesOnConditionCheckFailure=None,
        **_,
    ):
        self.calls["DeleteItem"] += 1
        with self._lock:
            t = self.table(TableName)
            old = t.get(Key)
            self._write(TableName, item_size(old))
            try:
                self._check(ConditionExpression, old, ExpressionAttributeNames or {}, ExpressionAttributeValues or {})
            except _ConditionFailed as exc:
                raise self._fail(exc, "DeleteItem", ReturnValuesOnConditionCheckFailure) from None
            t.delete(Key)
        return {}

    # batches and transactions --------------------------------------------------------------

    def batch_get_item(self, *, RequestItems, **_):
        self.calls["BatchGetItem"] += 1
        if sum(len(r["Keys"]) for r in RequestItems.values()) > 100:
            raise _client_error(
                "ValidationException", "Too many items requested for the BatchGetItem call", "BatchGetItem"
            )
        responses = {}
        with self._lock:
            for table, req in RequestItems.items():
                t = self.table(table)
                names = req.get("ExpressionAttributeNames") or {}
                found = []
                for key in req["Keys"]:
                    item = t.get(key)
                    self._read(table, item_size(item), req.get("ConsistentRead", False))
                    if item:
                        found.append(_project(item, req.get("ProjectionExpression"), names))
                responses[table] = found
        return {"Responses": responses, "UnprocessedKeys": {}}

    def batch_write_item(self, *, RequestItems, **_):
        self.calls["BatchWriteItem"] += 1
        with self._lock:
            for table, requests in RequestItems.items():
                t = self.table(table)
                for r in requests:
                    if "PutRequest" in r:
                        item = r["PutRequest"]["Item"]
                        self._write(table, item_size(t.get(item)), item_size(item))
                        t.put(_copy(item))
                    else:
                        key = r["DeleteRequest"]["Key"]
                        self._write(table, item_size(t.get(key)))
                        t.delete(key)
        return {"UnprocessedItems": {}}

    def transact_write_items(self, *, TransactItems, **_):
        self.calls["TransactWriteItems"] += 1
        with self._lock:
            reasons, plans = [], []
            for entry in TransactItems:
                ((kind, spec),) = entry.items()
                t = self.table(spec["TableName"])
                key = spec["Item"] if kind == "Put" else spec["Key"]
                old = t.get(key)
                names, values = spec.get("ExpressionAttributeNames") or {}, spec.get("ExpressionAttributeValues") or {}
                try:
                    self._check(spec.get("ConditionExpression"), old, names, values)
                    reasons.append({"Code": "None"})
                except _ConditionFailed:
                    reasons.append({"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"})
                if kind == "Put":
                    new = _copy(spec["Item"])
                elif kind == "Update":
                    new = _apply_update(old or _copy(key), spec["UpdateExpression"], names, values)
                elif kind == "Delete":
                    new = None
                else:  # ConditionCheck
                    new = old
                plans.append((t, key, old, new, kind))
                self._write(spec["TableName"], item_size(old), item_size(new), factor=2.0)
            if any(r["Code"] != "None" for r in reasons):
                raise _client_error(
                    "TransactionCanceledException",
                    "Transaction cancelled, please refer cancellation reasons for specific reasons",
                    "TransactWriteItems",
                    CancellationReasons=reasons,
                )
            for t, key, _old, new, kind in plans:
                if kind == "Delete":
                    t.delete(key)
                elif kind != "ConditionCheck":
                    t.put(new)
        return {}

    # queries -------------------------------------------------------------------------------

    def query(
        self,
        *,
        TableName,
        KeyConditionExpression,
        ExpressionAttributeValues,
        ExpressionAttributeNames=None,
        IndexName=None,
        FilterExpression=None,
        ProjectionExpression=None,
        Limit=None,
        ExclusiveStartKey=None,
        ScanIndexForward=True,
        Select=None,
        ConsistentRead=False,
        **_,
    ):
        self.calls["Query"] += 1
        names, values = ExpressionAttributeNames or {}, ExpressionAttributeValues
        key_test = compile_condition(KeyConditionExpression)
        filter_test = compile_condition(FilterExpression) if FilterExpression else None
        with self._lock:
            t = self.table(TableName)
            hash_key, range_key = t.indexes[IndexName] if IndexName else (t.hash_key, t.range_key)
            candidates = [i for i in t.items() if hash_key in i and key_test(i, names, values)]
            order = lambda i: (
                _plain(i.get(range_key)) if range_key else 0,
                _plain(i[t.hash_key]),
                _plain(i.get(t.range_key)) if t.range_key else 0,
            )  # noqa: E731
            candidates.sort(key=order, reverse=not ScanIndexForward)
            if ExclusiveStartKey:
                start = order(ExclusiveStartKey)
                candidates = [i for i in candidates if (order(i) > start if ScanIndexForward else order(i) < start)]
            page = candidates[:Limit] if Limit else candidates
            self._read(TableName, sum(item_size(i) for i in page), ConsistentRead)
            found = [i for i in page if not filter_test or filter_test(i, names, values)]
            resp = {"Count": len(found), "ScannedCount": len(page)}
            if Select != "COUNT":
                resp["Items"] = [_project(i, ProjectionExpression, names) for i in found]
            if Limit and len(candidates) > Limit:
                resp["LastEvaluatedKey"] = t.key_attrs(page[-1], IndexName)
        return resp

    # capacity report -----------------------------------------------------------------------

    def capacity(self) -> dict:
        return {
            "calls": dict(self.calls),
            "read_units": round(sum(self.read_units.values()), 3),
            "write_units": round(sum(self.write_units.values()), 3),
            "read_units_by_table": {k: round(v, 3) for k, v in self.read_units.items()},
            "write_units_by_table": {k: round(v, 3) for k, v in self.write_units.items()},
        }
