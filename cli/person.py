"""`newsletter subscribers show` and `forget`: everything the stack holds about one person, for an
access request, and erasing it everywhere, for an erasure request.

Found by address in: every list's subscriber item (subscriptions, consent, its log), the
suppression list, the send ledger of every issue (what was sent, when, SES's message id) and the
feedback table (soft-bounce history and the markers that count each notification once). Erasing
deletes all of it and leaves one keyed hash in the suppression list (erasure.py), so that no
import or signup brings the person back. These are operator tools: they scan the lists, issues
and feedback tables, which the functions never do.
"""

from __future__ import annotations

from newsletter import clock
from newsletter.erasure import KEY_VERSION, LABEL, erasure_key, forgotten_id
from newsletter.privacy import normalise_address
from newsletter.store import every_item, feedback_log, from_item, to_item
from newsletter.store.issues import all_issues
from newsletter.store.subscribers import key as subscriber_key


def _lists(ddb, table: str) -> list[str]:
    return sorted(i["list_id"] for i in every_item(ddb.scan, TableName=table, ProjectionExpression="list_id"))


def _sends(ddb, table: str, issue_ids: list[str], address: str) -> list[dict]:
    keys = [{"issue_id": {"S": i}, "email": {"S": address}} for i in issue_ids]
    found = []
    for n in range(0, len(keys), 100):
        pending = {table: {"Keys": keys[n : n + 100], "ConsistentRead": True}}
        while pending:
            resp = ddb.batch_get_item(RequestItems=pending)
            found += [from_item(i) for i in resp.get("Responses", {}).get(table, [])]
            pending = resp.get("UnprocessedKeys") or {}
    return sorted(found, key=lambda i: str(i.get("issue_id")))


def _feedback(ddb, table: str, address: str) -> list[dict]:
    """The address's soft-bounce history (its own partition) and the once-only markers, whose key
    ends with the address (a scan: markers expire within days; an erasure request is rare)."""
    markers = every_item(
        ddb.scan,
        TableName=table,
        FilterExpression="begins_with(pk, :seen) AND contains(pk, :suffix)",
        ExpressionAttributeValues={":seen": {"S": "seen#"}, ":suffix": {"S": f"#{address}"}},
    )
    return feedback_log.history(ddb, table, address) + [i for i in markers if i["pk"].endswith(f"#{address}")]


def show(target, address: str) -> dict:
    """Everything held about `address`, as plain JSON-able data."""
    address = normalise_address(address)
    ddb = target.client("dynamodb")
    subscriptions = []
    for list_id in _lists(ddb, target.ref("ListsTable")):
        item = ddb.get_item(
            TableName=target.ref("SubscribersTable"), Key=subscriber_key(list_id, address), ConsistentRead=True
        ).get("Item")
        if item:
            subscriptions.append(from_item(item))
    suppression = from_item(
        ddb.get_item(TableName=target.ref("SuppressionsTable"), Key={"email": {"S": address}}).get("Item")
    )
    issues = [r["issue_id"] for r in all_issues(ddb, target.ref("IssuesTable"))]
    return {
        "address": address,
        "subscriptions": subscriptions,
        "suppression": suppression,
        "sends": _sends(ddb, target.ref("SendsTable"), issues, address),
        "feedback": _feedback(ddb, target.ref("FeedbackTable"), address),
    }


def keep_erasure_key(target) -> bytes:
    """The erasure key, its SSM version labelled so that rotations never drop it."""
    ssm, name = target.client("ssm"), target.token_secret_name()
    key = target.token_key(KEY_VERSION)
    if key is None:
        raise RuntimeError(f"the token secret {name} has no version {KEY_VERSION}")
    ssm.label_parameter_version(Name=name, ParameterVersion=KEY_VERSION, Labels=[LABEL])
    return erasure_key(key.secret)


def forget(target, address: str) -> dict[str, int]:
    """Erase `address` everywhere; what was deleted, by kind. Repeating it finds nothing more."""
    held = show(target, address)
    address = held["address"]
    ddb = target.client("dynamodb")
    marker = forgotten_id(keep_erasure_key(target), address)
    # The marker first: should anything below fail, the person is already kept out.
    ddb.put_item(
        TableName=target.ref("SuppressionsTable"),
        Item=to_item({"email": marker, "reason": "forgotten", "suppressed_at": clock.iso()}),
    )
    for item in held["subscriptions"]:
        ddb.delete_item(TableName=target.ref("SubscribersTable"), Key=subscriber_key(item["list_id"], address))
    for item in held["sends"]:
        ddb.delete_item(
            TableName=target.ref("SendsTable"), Key={"issue_id": {"S": item["issue_id"]}, "email": {"S": address}}
        )
    for item in held["feedback"]:
        ddb.delete_item(TableName=target.ref("FeedbackTable"), Key={"pk": {"S": item["pk"]}, "sk": {"S": item["sk"]}})
    if held["suppression"]:
        ddb.delete_item(TableName=target.ref("SuppressionsTable"), Key={"email": {"S": address}})
    return {
        "subscriptions": len(held["subscriptions"]),
        "sends": len(held["sends"]),
        "feedback": len(held["feedback"]),
        "suppression": int(bool(held["suppression"])),
    }
