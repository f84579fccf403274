"""FakeDynamoDB: the low-level DynamoDB client calls the stores make, in memory and thread-safe,
for lists and send rates moto is too slow for (a million subscribers, thousands of conditional
writes a second from several threads), with an estimate of the capacity each call consumes.

What it models
- Calls, with the low-level client's request and response shapes (attribute values in the wire
  format, `{"S": ...}`, `{"N": ...}`): GetItem, PutItem, UpdateItem, DeleteItem, BatchGetItem,
  BatchWriteItem, TransactWriteItems and Query (on a table or a global secondary index). Tables
  and their key schemas come from template.yaml (`from_template`) or a dict (`FakeDynamoDB(...)`).
- Conditional writes: ConditionExpression on the item as it was; ConditionalCheckFailedException,
  with the old item when ReturnValuesOnConditionCheckFailure is ALL_OLD. A transaction is all or
  nothing and fails with TransactionCanceledException and one CancellationReasons entry per
  action, in order ("None" or "ConditionalCheckFailed").
- Errors AWS raises for requests it refuses: ValidationException for a key without its key
  attributes, more than 100 keys in BatchGetItem, more than 25 requests in BatchWriteItem, more
  than 100 actions in a transaction or two on one item, a Query whose key condition does not fix
  the partition key with `=` or that names an index the table does not have;
  ResourceNotFoundException for a table it does not hold.
- Expressions, parsed by a small grammar covering what the stores write: comparisons (= <> < <=
  > >=), IN, BETWEEN, AND/OR/NOT, parentheses, attribute_exists, attribute_not_exists,
  begins_with, contains, size, list_append; nested paths of plain names (`a.b`), read only; updates with SET
  (`+`, `-`, if_not_exists), ADD (numbers and sets), REMOVE and DELETE; #name and :value
  placeholders; ProjectionExpression of top-level attributes. Anything else raises
  NotImplementedError, so no test or benchmark passes on a call this fake silently misunderstood.
- Query: items in sort-key order (ScanIndexForward), Limit counting the items read before the
  FilterExpression is applied, Count and ScannedCount, Select=COUNT, and LastEvaluatedKey (the
  key attributes of the last item read, with the index's keys on an index) when more remain. On a
  global secondary index: only the attributes it projects (KEYS_ONLY, INCLUDE or ALL, from the
  template), only the items that have its keys (sparse), and no ConsistentRead
  (ValidationException).
- Capacity (read_units, write_units per table; `capacity()`): item size rounded up to 1 KB per
  write unit and 4 KB per read unit, eventually consistent reads cost half, transactional
  writes double, a failed conditional write still costs its write. `calls` counts requests by
  operation.

What it does not model
- No capacity limits: never throttles (ProvisionedThroughputExceededException), never returns
  UnprocessedKeys or UnprocessedItems, no 1 MB page limit on Query, no 400 KB item limit.
- No eventual consistency: every read, on a table or an index, sees every write at once. Local
  secondary indexes are not read from the template.
- No Scan, PartiQL, TTL expiry, streams, table creation or describe calls, ReturnValues other
  than ALL_NEW and ALL_OLD on UpdateItem, ReturnConsumedCapacity.
- Expressions: no nested paths (`a.b`, `l[0]`), no list_append, no attribute_type, size() of
  strings and sets only; comparing values of different types is false, not a ValidationException;
  reserved words used without a #name placeholder and unused placeholders are accepted (DynamoDB
  refuses both).
- Key attribute types are not checked against the table's definition.

Import rule: only the standard library at module level, so the cold-start child
(bench/_child.py) can build it before its timer starts without pre-loading anything a handler
imports (botocore is imported when an error is raised; `seed_subscribers` imports newsletter).
"""

from __future__ import annotations

import gc
import math
import re
import threading
from bisect import bisect_left, bisect_right
from collections import Counter
from functools import lru_cache

from .errors import client_error as _client_error

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


def _nested(item: dict, parts: tuple[str, ...]) -> dict | None:
    """The attribute value at a dotted path of plain names (maps only), or None."""
    value = item.get(parts[0])
    for part in parts[1:]:
        if not value or "M" not in value:
            return None
        value = value["M"].get(part)
    return value


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
            if "." in tok:  # a nested path, `a.b`: read through maps
                return lambda item, names, values, parts=tuple(tok.split(".")): _nested(item, parts)
            return lambda item, names, values, tok=tok: item.get(names[tok] if tok.startswith("#") else tok)
        raise NotImplementedError(f"fake DynamoDB: unexpected {tok!r} in {self.text!r}")

    def path(self) -> str:
        kind, tok = self.peek()
        if kind not in ("name", "word"):
            raise NotImplementedError(f"fake DynamoDB: expected an attribute in {self.text!r}")
        if "." in tok:  # writing below the top level is not modelled: say so rather than write `a.b`
            raise NotImplementedError(f"fake DynamoDB: nested path {tok!r} in {self.text!r}")
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
        if fn == "list_append":

            def list_append(item, n, v):
                first, second = args[0](item, n, v), args[1](item, n, v)
                if not (first and "L" in first and second and "L" in second):
                    message = "An operand in the update expression has an incorrect data type"
                    raise _client_error("ValidationException", message, "UpdateItem")
                return {"L": [*first["L"], *second["L"]]}

            return list_append
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
            if a is None or b is None:
                return False
            return a == b or _plain(a) == _plain(b)  # equal attribute values are equal values
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


@lru_cache(maxsize=256)
def _projection_parts(projection: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in projection.split(","))
    for part in parts:
        if not re.fullmatch(r"#?[A-Za-z0-9_]+", part):
            raise NotImplementedError(f"fake DynamoDB: projection of {part!r} (top-level attributes only)")
    return parts


def _project(item: dict, projection: str | None, names: dict) -> dict:
    if not projection:
        return _copy(item)
    out = {}
    for part in _projection_parts(projection):
        attr = names[part] if part[0] == "#" else part
        if attr in item:
            out[attr] = dict(item[attr])
    return out


def _partition_value(condition: str, names: dict, values: dict, hash_key: str) -> dict:
    """The value a key condition fixes the partition key to (`hash = :v`, alone or ANDed)."""
    toks = _tokens(condition)
    for i in range(len(toks) - 2):
        (k1, t1), (k2, t2), (k3, t3) = toks[i : i + 3]
        if k1 in ("name", "word") and (k2, t2) == ("op", "=") and k3 == "value":
            attr = names.get(t1, t1) if k1 == "name" else t1
            if attr == hash_key and (i == 0 or toks[i - 1] == ("kw", "AND")):
                return values[t3]
    raise _client_error("ValidationException", "Query condition missed key schema element: " + hash_key, "Query")


# --- errors ----------------------------------------------------------------------------------


class _ConditionFailed(Exception):
    def __init__(self, old: dict | None):
        self.old = old


# --- tables ----------------------------------------------------------------------------------


class _Table:
    """Items by partition (hash key value) and sort key value. A partition's items in sort-key
    order are kept once asked for (a query), until the partition is written again. Each stored
    item's size is worked out when it is stored (stored items are replaced, never changed in
    place), so reading it costs the capacity estimate nothing."""

    def __init__(
        self,
        name: str,
        hash_key: str,
        range_key: str | None,
        indexes: dict[str, tuple[str, str | None]],
        projections: dict[str, list[str] | None] | None = None,
    ):
        self.name, self.hash_key, self.range_key, self.indexes = name, hash_key, range_key, indexes
        # Index name -> the non-key attributes it projects (None: ALL).
        self.projections = {i: (projections or {}).get(i) for i in indexes}
        self.parts: dict[tuple, dict[tuple, dict]] = {}
        self._ordered: dict[tuple, tuple[list, list[dict]]] = {}
        self._sizes: dict[int, int] = {}  # id of a stored item -> its size

    def key_of(self, key: dict) -> tuple[tuple, tuple]:
        try:
            (h,) = key[self.hash_key].items()
            if self.range_key:
                (r,) = key[self.range_key].items()
            else:
                r = ("", "")
        except KeyError as exc:
            raise _client_error(
                "ValidationException", f"The provided key element does not match the schema: {exc}", "Key"
            ) from None
        return h, r

    def get(self, key: dict) -> dict | None:
        h, r = self.key_of(key)
        return self.parts.get(h, {}).get(r)

    def put(self, item: dict, size: int | None = None) -> None:
        """Store an item (the table's own object from now on: never changed in place)."""
        h, r = self.key_of(item)
        part = self.parts.setdefault(h, {})
        old = part.get(r)
        if old is not None:
            del self._sizes[id(old)]
        part[r] = item
        self._sizes[id(item)] = item_size(item) if size is None else size
        self._ordered.pop(h, None)

    def delete(self, key: dict) -> None:
        h, r = self.key_of(key)
        old = self.parts.get(h, {}).pop(r, None)
        if old is not None:
            del self._sizes[id(old)]
        self._ordered.pop(h, None)

    def size(self, item: dict | None) -> int:
        """The size of an item this table holds (0 for None)."""
        return 0 if item is None else self._sizes[id(item)]

    def ordered(self, partition: dict) -> tuple[list, list[dict]]:
        """A partition's (sort key values, items), in sort-key order."""
        (h,) = partition.items()
        got = self._ordered.get(h)
        if got is None:
            items = list(self.parts.get(h, {}).values())
            if self.range_key:
                keys = [_plain(i[self.range_key]) for i in items]
                order = sorted(range(len(items)), key=keys.__getitem__)
                got = ([keys[n] for n in order], [items[n] for n in order])
            else:
                got = ([0] * len(items), items)
            self._ordered[h] = got
        return got

    def warm(self) -> None:
        """Put every partition in sort-key order now (after seeding: not in the first query)."""
        for h in self.parts:
            if h not in self._ordered:
                self.ordered(dict([h]))

    def key_attrs(self, item: dict, index: str | None = None) -> dict:
        attrs = [self.hash_key] + ([self.range_key] if self.range_key else [])
        if index:
            attrs += [a for a in self.indexes[index] if a]
        return {a: dict(item[a]) for a in attrs if a in item}

    def items(self):
        for part in self.parts.values():
            yield from part.values()


class FakeDynamoDB:
    """The low-level DynamoDB client calls of the stores, in memory, thread-safe.

    `tables`: name → {"hash": attribute, "range": attribute or None, "indexes": {index name:
    (hash attribute, range attribute or None)}, "projections": {index name: the non-key
    attributes it projects, or None for ALL}}, as `table_specs()` returns them.
    """

    def __init__(self, tables: dict[str, dict]):
        self._tables = {
            name: _Table(name, spec["hash"], spec.get("range"), spec.get("indexes") or {}, spec.get("projections"))
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
            indexes, projections = {}, {}
            for gsi in props.get("GlobalSecondaryIndexes") or []:
                gk = {k["KeyType"]: k["AttributeName"] for k in gsi["KeySchema"]}
                indexes[gsi["IndexName"]] = (gk["HASH"], gk.get("RANGE"))
                projection = gsi.get("Projection") or {}
                kind = projection.get("ProjectionType", "ALL")
                projections[gsi["IndexName"]] = (
                    None if kind == "ALL" else list(projection.get("NonKeyAttributes") or [])
                )
            tables[physical.get(logical, logical)] = {
                "hash": keys["HASH"],
                "range": keys.get("RANGE"),
                "indexes": indexes,
                "projections": projections,
            }
        return cls(tables)

    def table_specs(self) -> dict[str, dict]:
        """The tables as the constructor takes them (to build the same fake in another process)."""
        return {
            t.name: {"hash": t.hash_key, "range": t.range_key, "indexes": t.indexes, "projections": t.projections}
            for t in self._tables.values()
        }

    def table(self, name: str) -> _Table:
        try:
            return self._tables[name]
        except KeyError:
            raise _client_error("ResourceNotFoundException", f"Requested resource not found: {name}", "Table") from None

    def seed(self, table: str, items) -> None:
        """Put items (wire format) without counting calls or capacity."""
        t = self.table(table)
        with self._lock:
            for item in items:
                t.put(_copy(item))
            t.warm()

    def seed_subscribers(
        self, table: str, list_id: str, addresses, *, inactive_every: int = 0, inactive: str = "unsubscribed"
    ) -> int:
        """Subscribers of a list as `newsletter.store.subscribers.put_subscribers` writes them (the
        partition of the address's shard, list_id, status), without counting calls or capacity:
        every `inactive_every`-th address (0, n, 2n, ...) gets status `inactive`, the others
        "active". Built directly in the wire format, sharing the repeated attribute values (never
        changed in place), so that a million take seconds and a few hundred MB. Returns how many
        are active."""
        from newsletter.store.subscribers import ACTIVE, SHARDS, partition, shard_of

        t = self.table(table)
        if (t.hash_key, t.range_key) != ("pk", "email"):
            raise ValueError(f"{table} is not keyed as the subscribers table (pk, email)")
        pks = [{"S": partition(list_id, s)} for s in range(SHARDS)]
        lid = {"S": list_id}
        statuses = {True: {"S": ACTIVE}, False: {"S": inactive}}
        # Sizes without walking each item: the names and the repeated values are known.
        fixed = item_size({"list_id": lid}) + len("email") + len("status")
        pk_sizes = [fixed + item_size({"pk": pk}) for pk in pks]
        status_sizes = {k: len(v["S"].encode("utf-8")) for k, v in statuses.items()}
        active = 0
        collecting = gc.isenabled()
        gc.disable()  # millions of new objects and no garbage: no collector passes over them meanwhile
        try:
            with self._lock:
                # What t.put does, without working each key out again.
                stored = [t.parts.setdefault(("S", pk["S"]), {}) for pk in pks]
                for n, address in enumerate(addresses):
                    is_active = not (inactive_every and n % inactive_every == 0)
                    active += is_active
                    shard = shard_of(address)
                    item = {"pk": pks[shard], "email": {"S": address}, "list_id": lid, "status": statuses[is_active]}
                    old = stored[shard].get(("S", address))
                    if old is not None:
                        del t._sizes[id(old)]
                    stored[shard][("S", address)] = item
                    t._sizes[id(item)] = pk_sizes[shard] + len(address.encode("utf-8")) + status_sizes[is_active]
                for pk in pks:
                    t._ordered.pop(("S", pk["S"]), None)
                t.warm()
        finally:
            if collecting:
                gc.enable()
        return active

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
            t = self.table(TableName)
            item = t.get(Key)
            self._read(TableName, t.size(item), ConsistentRead)
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
            size = item_size(Item)
            self._write(TableName, t.size(old), size)
            try:
                self._check(ConditionExpression, old, ExpressionAttributeNames or {}, ExpressionAttributeValues or {})
            except _ConditionFailed as exc:
                raise self._fail(exc, "PutItem", ReturnValuesOnConditionCheckFailure) from None
            t.put(_copy(Item), size)
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
                self._write(TableName, t.size(old))
                raise self._fail(exc, "UpdateItem", ReturnValuesOnConditionCheckFailure) from None
            new = _apply_update(old or _copy(Key), UpdateExpression, names, values)
            size = item_size(new)
            self._write(TableName, t.size(old), size)
            t.put(new, size)
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
            self._write(TableName, t.size(old))
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
                names, projection = req.get("ExpressionAttributeNames") or {}, req.get("ProjectionExpression")
                found, units = [], 0
                for key in req["Keys"]:
                    item = t.get(key)
                    units += max(1, math.ceil(t.size(item) / 4096))  # each key read costs at least a unit
                    if item:
                        found.append(_project(item, projection, names))
                self.read_units[table] += units * (1.0 if req.get("ConsistentRead", False) else 0.5)
                responses[table] = found
        return {"Responses": responses, "UnprocessedKeys": {}}

    def batch_write_item(self, *, RequestItems, **_):
        self.calls["BatchWriteItem"] += 1
        if sum(len(r) for r in RequestItems.values()) > 25:
            raise _client_error(
                "ValidationException",
                "Too many items requested for the BatchWriteItem call",
                "BatchWriteItem",
            )
        with self._lock:
            for table, requests in RequestItems.items():
                t = self.table(table)
                for r in requests:
                    if "PutRequest" in r:
                        item = r["PutRequest"]["Item"]
                        size = item_size(item)
                        self._write(table, t.size(t.get(item)), size)
                        t.put(_copy(item), size)
                    else:
                        key = r["DeleteRequest"]["Key"]
                        self._write(table, t.size(t.get(key)))
                        t.delete(key)
        return {"UnprocessedItems": {}}

    def transact_write_items(self, *, TransactItems, **_):
        self.calls["TransactWriteItems"] += 1
        if len(TransactItems) > 100:
            raise _client_error(
                "ValidationException", "Member must have length less than or equal to 100", "TransactWriteItems"
            )
        with self._lock:
            reasons, plans, touched = [], [], set()
            for entry in TransactItems:
                ((kind, spec),) = entry.items()
                t = self.table(spec["TableName"])
                key = spec["Item"] if kind == "Put" else spec["Key"]
                where = (t.name, *t.key_of(key))
                if where in touched:
                    raise _client_error(
                        "ValidationException",
                        "Transaction request cannot include multiple operations on one item",
                        "TransactWriteItems",
                    )
                touched.add(where)
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
                self._write(spec["TableName"], t.size(old), item_size(new), factor=2.0)
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
            if IndexName and IndexName not in t.indexes:
                raise _client_error(
                    "ValidationException", f"The table does not have the specified index: {IndexName}", "Query"
                )
            if IndexName and ConsistentRead:
                raise _client_error(
                    "ValidationException", "Consistent reads are not supported on global secondary indexes", "Query"
                )
            hash_key, range_key = t.indexes[IndexName] if IndexName else (t.hash_key, t.range_key)
            fixed = _partition_value(KeyConditionExpression, names, values, hash_key)
            if IndexName:
                page, more = self._query_index(
                    t, key_test, names, values, range_key, Limit, ExclusiveStartKey, ScanIndexForward
                )
                if t.projections[IndexName] is not None:  # what the index holds of each item
                    keep = {t.hash_key, t.range_key, *t.indexes[IndexName], *t.projections[IndexName]}
                    page = [{k: v for k, v in i.items() if k in keep} for i in page]
            else:
                only_partition = len(_tokens(KeyConditionExpression)) == 3  # `pk = :v`: every item of it matches
                page, more = self._query_table(
                    t,
                    fixed,
                    None if only_partition else key_test,
                    names,
                    values,
                    Limit,
                    ExclusiveStartKey,
                    ScanIndexForward,
                )
            sizes = map(item_size, page) if IndexName else map(t.size, page)
            self._read(TableName, sum(sizes), ConsistentRead)
            found = [i for i in page if not filter_test or filter_test(i, names, values)]
            resp = {"Count": len(found), "ScannedCount": len(page)}
            if Select != "COUNT":
                resp["Items"] = [_project(i, ProjectionExpression, names) for i in found]
            if more:
                resp["LastEvaluatedKey"] = t.key_attrs(page[-1], IndexName)
        return resp

    @staticmethod
    def _query_table(t: _Table, partition, key_test, names, values, limit, start_key, forward):
        """(items read, whether more remain): the partition in sort-key order, from after start_key."""
        keys, items = t.ordered(partition)
        n = len(items)
        if start_key and not t.range_key:
            return [], False  # the partition's one item was read
        if forward:
            i = bisect_right(keys, _plain(start_key[t.range_key])) if start_key else 0
            positions = range(i, n)
        else:
            i = bisect_left(keys, _plain(start_key[t.range_key])) if start_key else n
            positions = range(i - 1, -1, -1)
        if key_test is None and forward:  # the whole partition matches: a slice
            page = items[i : i + limit] if limit else items[i:]
            return page, bool(limit) and i + limit < n
        page, more = [], False
        for p in positions:
            item = items[p]
            if key_test is None or key_test(item, names, values):
                if limit and len(page) == limit:
                    more = True
                    break
                page.append(item)
        return page, more

    @staticmethod
    def _query_index(t: _Table, key_test, names, values, range_key, limit, start_key, forward):
        """(items read, whether more remain): every item under the index's keys, in its order."""
        candidates = [i for i in t.items() if key_test(i, names, values)]

        def order(i):
            return (
                _plain(i.get(range_key)) if range_key else 0,
                _plain(i[t.hash_key]),
                _plain(i.get(t.range_key)) if t.range_key else 0,
            )

        candidates.sort(key=order, reverse=not forward)
        if start_key:
            start = order(start_key)
            candidates = [i for i in candidates if (order(i) > start if forward else order(i) < start)]
        page = candidates[:limit] if limit else candidates
        return page, bool(limit and len(candidates) > limit)

    # capacity report -----------------------------------------------------------------------

    def capacity(self) -> dict:
        return {
            "calls": dict(self.calls),
            "read_units": round(sum(self.read_units.values()), 3),
            "write_units": round(sum(self.write_units.values()), 3),
            "read_units_by_table": {k: round(v, 3) for k, v in self.read_units.items()},
            "write_units_by_table": {k: round(v, 3) for k, v in self.write_units.items()},
        }
