"""Issue records: one item per issue (sk "issue") plus one marker per fanned-out page.

The issue item is the publish lock (created once, conditionally) and holds the issue's counters.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from . import condition_failed, every_item, from_item, pages, to_item, written

ISSUE = "issue"


def _key(issue_id: str, sk: str = ISSUE) -> dict:
    return {"issue_id": {"S": issue_id}, "sk": {"S": sk}}


def get_issue(ddb, table: str, issue_id: str, *, consistent: bool = True) -> dict | None:
    resp = ddb.get_item(TableName=table, Key=_key(issue_id), ConsistentRead=consistent)
    return from_item(resp.get("Item"))


def create_issue(ddb, table: str, record: dict) -> dict | None:
    """Create the issue item; return None if created, else the item that already exists."""
    try:
        ddb.put_item(
            TableName=table,
            Item=to_item({**record, "sk": ISSUE}),
            ConditionExpression="attribute_not_exists(issue_id)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        return None
    except ClientError as exc:
        if not condition_failed(exc):
            raise
        old = exc.response.get("Item")
        return from_item(old) if old else get_issue(ddb, table, record["issue_id"])


def update_issue(
    ddb,
    table: str,
    issue_id: str,
    *,
    expect_status: str | tuple[str, ...] | None = None,
    expect: dict | None = None,
    **values,
) -> bool:
    """Set attributes; with expect_status (one status or several), only if the status is still
    one of them, and with expect, only if those attributes still have those values (else False)."""
    names = {f"#{k}": k for k in values}
    vals = {f":{k}": v for k, v in values.items()}
    conditions = []
    if expect_status is not None:
        expected = (expect_status,) if isinstance(expect_status, str) else tuple(expect_status)
        names["#status"] = "status"
        vals.update({f":expected{i}": e for i, e in enumerate(expected)})
        conditions.append("#status IN (" + ", ".join(f":expected{i}" for i in range(len(expected))) + ")")
    for i, (name, value) in enumerate((expect or {}).items()):
        names[f"#x{i}"] = name
        vals[f":x{i}"] = value
        conditions.append(f"#x{i} = :x{i}")
    return written(
        ddb.update_item,
        TableName=table,
        Key=_key(issue_id),
        UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in values),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=to_item(vals),
        **({"ConditionExpression": " AND ".join(conditions)} if conditions else {}),
    )


def add_counts(ddb, table: str, issue_id: str, counts: dict[str, int]) -> dict | None:
    """ADD to the issue's counters; the record as it is after (None if nothing was added)."""
    counts = {k: v for k, v in counts.items() if v}
    if not counts:
        return None
    resp = ddb.update_item(
        TableName=table,
        Key=_key(issue_id),
        UpdateExpression="ADD " + ", ".join(f"#{k} :{k}" for k in counts),
        ExpressionAttributeNames={f"#{k}": k for k in counts},
        ExpressionAttributeValues=to_item({f":{k}": v for k, v in counts.items()}),
        ReturnValues="ALL_NEW",  # free: the completion check needs no extra read
    )
    return from_item(resp.get("Attributes"))


def count_key(address: str) -> str:
    """How a batch marker names a recipient it counted (not the address: the issues table holds none)."""
    import hashlib

    return hashlib.sha256(b"counted\0" + address.encode("utf-8")).hexdigest()[:16]


def count_batch(
    ddb,
    table: str,
    issue_id: str,
    batch_id: str,
    outcomes: dict[str, str],
    *,
    language: str | None = None,
    tries: int = 20,
) -> dict | None:
    """ADD each recipient's final state (sent, skipped, rejected, uncertain) to the issue's
    counters, once per recipient of a batch however often the batch (or a part of it, requeued)
    is delivered, and whoever counts first.

    A marker item per batch (`batch#<id>`) holds the recipients counted so far and a version. The
    marker's update (only if its version is unchanged) and the counters' ADD are one transaction:
    a delivery that lost the race, or an SDK retry of a transaction that went through, reads the
    marker again and finds nothing new. Returns the issue record after, whether or not this call
    added anything: the call that added the last count may have lost its answer, and whoever comes
    next must still see that the issue is finished.
    """
    from collections import Counter

    keyed = {count_key(a): status for a, status in outcomes.items()}
    marker = _key(issue_id, f"batch#{batch_id}")
    for _ in range(tries):
        found = from_item(ddb.get_item(TableName=table, Key=marker, ConsistentRead=True).get("Item")) or {}
        counted, version = set(found.get("counted") or ()), int(found.get("v") or 0)
        new = {k: s for k, s in keyed.items() if k not in counted}
        if not new:
            return get_issue(ddb, table, issue_id)
        adds = Counter(new.values())
        if language:  # and the same counts for the readers of that language (statistics_by_language)
            adds.update({language_counter(language, status): n for status, n in list(adds.items())})
        try:
            ddb.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": table,
                            "Key": marker,
                            "UpdateExpression": "SET #v = :next ADD #counted :keys",
                            "ConditionExpression": "attribute_not_exists(#v) OR #v = :version",
                            "ExpressionAttributeNames": {"#v": "v", "#counted": "counted"},
                            "ExpressionAttributeValues": {
                                ":next": {"N": str(version + 1)},
                                ":version": {"N": str(version)},
                                ":keys": {"SS": sorted(new)},
                            },
                        }
                    },
                    {
                        "Update": {
                            "TableName": table,
                            "Key": _key(issue_id),
                            "UpdateExpression": "ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(adds))),
                            "ConditionExpression": "attribute_exists(issue_id)",
                            "ExpressionAttributeNames": {f"#c{i}": k for i, k in enumerate(adds)},
                            "ExpressionAttributeValues": to_item({f":c{i}": n for i, n in enumerate(adds.values())}),
                        }
                    },
                ]
            )
        except ClientError as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                raise LookupError(f"issue {issue_id!r} has no record; its batch cannot be counted") from None
            if reasons and reasons[0] == "ConditionalCheckFailed":
                continue  # another delivery counted some of them first: read the marker again
            raise
        return get_issue(ddb, table, issue_id)
    raise RuntimeError(f"batch {batch_id!r} of issue {issue_id!r}: its marker kept changing; counting given up")


def ledger_counts(ddb, sends_table: str, issue_id: str) -> dict[str, int]:
    """The issue's send counters as the ledger has them (final states only)."""
    from collections import Counter

    from . import ledger

    found = Counter(item.get("status") for item in ledger.items(ddb, sends_table, issue_id))
    return {k: found.get(k, 0) for k in HANDLED} | {"open": found.get(ledger.SENDING, 0)}


HANDLED = ("sent", "skipped", "rejected", "uncertain")
# Every counter an issue item carries (fan-out, sending, then SES feedback).
COUNTERS = (
    "queued",
    *HANDLED,
    "delivered",
    "bounced_hard",
    "bounced_soft",
    "complained",
    "unsubscribed",
    "opened",
    "clicked",
)


def statistics(record: dict | None) -> dict[str, int]:
    """An issue's figures, as every report gives them: its counters, plus `bounced` (hard and
    soft), `failed` (rejected or uncertain: not delivered to SES, or not known to be), `handled`
    (sent, skipped or failed) and `pending` (queued, not yet handled: in flight, or waiting)."""
    record = record or {}
    c = {k: int(record.get(k) or 0) for k in COUNTERS}
    c["bounced"] = c["bounced_hard"] + c["bounced_soft"]
    c["failed"] = c["rejected"] + c["uncertain"]
    c["handled"] = c["sent"] + c["skipped"] + c["failed"]
    c["pending"] = max(0, c["queued"] - c["handled"])
    return c


LANGUAGE_PREFIX = "lang#"


def language_counter(language: str, counter: str) -> str:
    """The attribute that counts `counter` for the readers of one language: `lang#fr#sent`."""
    return f"{LANGUAGE_PREFIX}{language}#{counter}"


def statistics_by_language(record: dict | None) -> dict[str, dict[str, int]]:
    """The figures of each language an issue was sent in (only an issue in several languages
    has them): {language: statistics}."""
    found: dict[str, dict] = {}
    for name, value in (record or {}).items():
        if name.startswith(LANGUAGE_PREFIX):
            language, _, counter = name[len(LANGUAGE_PREFIX) :].partition("#")
            found.setdefault(language, {})[counter] = value
    return {language: statistics(counters) for language, counters in sorted(found.items())}


def all_issues(ddb, table: str) -> list[dict]:
    """Every issue's record, newest first (a Scan: for the operator's tools, never the functions)."""
    found = every_item(
        ddb.scan, TableName=table, FilterExpression="sk = :issue", ExpressionAttributeValues={":issue": {"S": ISSUE}}
    )
    return sorted(found, key=lambda r: r.get("accepted_at", ""), reverse=True)


def scheduled_issues(ddb, table: str) -> list[dict]:
    """The issues waiting for their send time, soonest first (a Scan: for the operator's tools)."""
    found = every_item(
        ddb.scan,
        TableName=table,
        FilterExpression="sk = :issue AND #status = :scheduled",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":issue": {"S": ISSUE}, ":scheduled": {"S": "scheduled"}},
    )
    return sorted(found, key=lambda r: (r.get("send_at", ""), r["issue_id"]))


def finished(record: dict, segments: str = "segments_done") -> bool:
    """Every segment has fanned out and every recipient it queued has been handled (`segments`:
    the counter of finished segments; a rollout's cohort counts its own)."""
    from .subscribers import SHARDS

    handled = sum(int(record.get(k) or 0) for k in HANDLED)
    return int(record.get(segments) or 0) >= SHARDS and handled >= int(record.get("queued") or 0)


def record_page(
    ddb,
    table: str,
    issue_id: str,
    shard: int,
    page: int,
    queued: int,
    last: bool,
    readers: bytes | None = None,
    part: str = "",
) -> bool:
    """Count a fanned-out page once, however often its fan-out message is delivered; its marker
    keeps `readers` (ledger.queued_keys: who the page queued, as hashes). A rollout's cohort
    counts its finished segments apart (`cohort_segments_done`): the issue is finished only once
    the rest of the list is fanned out too.

    Returns False if this page was already counted.
    """
    done = "cohort_segments_done" if part == "cohort" else "segments_done"
    adds = {"queued": queued, **({done: 1} if last else {})}
    try:
        ddb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": table,
                        "Item": to_item(
                            {
                                "issue_id": issue_id,
                                "sk": f"page#{shard:03d}#{part[:1]}{page:07d}",
                                "queued": queued,
                                "last": last,
                                **({"readers": readers} if readers else {}),
                            }
                        ),
                        "ConditionExpression": "attribute_not_exists(issue_id)",
                    }
                },
                {
                    "Update": {
                        "TableName": table,
                        "Key": _key(issue_id),
                        "UpdateExpression": "ADD " + ", ".join(f"#{k} :{k}" for k in adds),
                        "ExpressionAttributeNames": {f"#{k}": k for k in adds},
                        "ExpressionAttributeValues": to_item({f":{k}": v for k, v in adds.items()}),
                    }
                },
            ]
        )
        return True
    except ClientError as exc:
        reasons = exc.response.get("CancellationReasons") or []
        if exc.response["Error"]["Code"] == "TransactionCanceledException" and any(
            r.get("Code") == "ConditionalCheckFailed" for r in reasons
        ):
            return False
        raise


def count_for_list(ddb, table: str, issue_id: str, list_id: str, counter: str, n: int = 1) -> bool:
    """ADD n to one of an issue's counters, only if the issue exists and went to list_id.

    False (nothing written) otherwise: for counts whose issue id comes from an unsigned source.
    """
    return written(
        ddb.update_item,
        TableName=table,
        Key=_key(issue_id),
        UpdateExpression="ADD #counter :n",
        ConditionExpression="list_id = :list",
        ExpressionAttributeNames={"#counter": counter},
        ExpressionAttributeValues={":n": {"N": str(n)}, ":list": {"S": list_id}},
    )


def pages_without_readers(ddb, table: str, issue_id: str) -> bool:
    """Whether a fan-out page of the issue queued readers without naming them (a fan-out from
    before page markers kept `readers`)."""
    return any(
        page.get("Count")
        for page in pages(
            ddb.query,
            TableName=table,
            KeyConditionExpression="issue_id = :i AND begins_with(sk, :page)",
            FilterExpression="queued > :none AND attribute_not_exists(readers)",
            ExpressionAttributeValues={":i": {"S": issue_id}, ":page": {"S": "page#"}, ":none": {"N": "0"}},
            Select="COUNT",
        )
    )


def page_readers(ddb, table: str, issue_id: str, shard: int, *, read: int):
    """The `readers` (packed keys, ledger.queued_keys) of each of the shard's fan-out pages, in page
    order; `read` page markers a request."""
    for item in every_item(
        ddb.query,
        TableName=table,
        KeyConditionExpression="issue_id = :i AND begins_with(sk, :page)",
        ProjectionExpression="readers",
        ExpressionAttributeValues={":i": {"S": issue_id}, ":page": {"S": f"page#{shard:03d}#"}},
        ConsistentRead=True,
        Limit=read,
    ):
        yield item.get("readers")
