"""Clicks per link: one item per link of an issue, in the issues table, and the feedback table's
once-only marker of each reader's clicks on it.

- IssuesTable, `issue_id = <issue>`, `sk = "link#<key>"` (`clicks.Link.key`): `url` (as kept,
  `clicks.py`), `own` (unsubscribe, preferences, web_version; absent for content), `cut`,
  `redacted`, and the counters `clicks` (every click) and `clickers` (readers who clicked it).
  One Query of the issue's partition reads all its links.
- FeedbackTable, `pk = "seen#<SES message id>#link#<key>#<address>"`, `sk = "seen"`: the ids of
  the reader's clicks on that link already counted (`clicks`, a string set of at most
  MAX_CLICKS_PER_READER), `issue_id`, `expires_at` (TTL). Like the other `seen#` markers it ends
  with the address, so showing and forgetting a person finds it.

A click is counted in one transaction: the marker, put only if it is still as it was read (absent,
or holding as many clicks), and the link's counters ADDed. However often SNS or SQS deliver the
event, and wherever the function dies, each click counts once, and each reader once as a clicker.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from ..clicks import MAX_CLICKS_PER_READER, Link, own_links, rank
from . import every_item
from .feedback_log import SEEN
from .issues import get_issue

LINK = "link#"
RACES = 5  # another instance changed the marker between our read and write this often: give up

# What count_click did.
CLICKER = "clicker"  # the reader's first click on the link: a click and a clicker
CLICK = "click"  # another click of theirs: a click
DUPLICATE = "duplicate"  # this click was counted before
CAPPED = "capped"  # the reader already has MAX_CLICKS_PER_READER clicks counted on the link


def _marker_key(message_id: str, link_key: str, address: str) -> dict:
    return {"pk": {"S": f"seen#{message_id}#link#{link_key}#{address}"}, "sk": {"S": SEEN}}


def count_click(
    ddb,
    feedback_table: str,
    issues_table: str,
    *,
    issue_id: str,
    message_id: str,
    address: str,
    link: Link,
    click_id: str,
    expires_at: int,
    cap: int = MAX_CLICKS_PER_READER,
) -> str:
    """Count one click of `address` on `link` once: CLICKER, CLICK, DUPLICATE or CAPPED.

    Call it only for an issue that exists (the link item would be the only item of its issue).
    """
    key = _marker_key(message_id, link.key, address)
    for _ in range(RACES):
        # A strongly consistent read: a click counted a moment ago must be seen.
        old = ddb.get_item(TableName=feedback_table, Key=key, ConsistentRead=True).get("Item")
        seen = set(old["clicks"]["SS"]) if old and "clicks" in old else set()
        if click_id in seen:
            return DUPLICATE
        if len(seen) >= cap:
            return CAPPED
        first = old is None
        marker = {
            "TableName": feedback_table,
            "Item": {
                **key,
                "issue_id": {"S": issue_id},
                "clicks": {"SS": sorted(seen | {click_id})},
                "expires_at": {"N": str(expires_at)},
            },
        }
        if first:
            marker["ConditionExpression"] = "attribute_not_exists(pk)"
        else:  # the set only grows: as many clicks as we read means it is what we read
            marker["ConditionExpression"] = "size(clicks) = :n"
            marker["ExpressionAttributeValues"] = {":n": {"N": str(len(seen))}}
        try:
            ddb.transact_write_items(
                TransactItems=[{"Put": marker}, {"Update": _link_update(issues_table, issue_id, link, first)}]
            )
            return CLICKER if first else CLICK
        except ClientError as exc:
            if not _marker_changed(exc):
                raise  # a conflict with another transaction, throttling: retried (retry.call, then SQS)
    raise RuntimeError(f"the click marker changed {RACES} times while counting one click")


def _link_update(table: str, issue_id: str, link: Link, first: bool) -> dict:
    sets = ["#url = :url"] + [f"#{flag} = :yes" for flag in ("cut", "redacted") if getattr(link, flag)]
    names = {"#url": "url", "#clicks": "clicks"}
    names.update({f"#{flag}": flag for flag in ("cut", "redacted") if getattr(link, flag)})
    values = {":url": {"S": link.url}, ":one": {"N": "1"}}
    if any(getattr(link, flag) for flag in ("cut", "redacted")):
        values[":yes"] = {"BOOL": True}
    if link.own:
        sets.append("#own = :own")
        names["#own"] = "own"
        values[":own"] = {"S": link.own}
    adds = ["#clicks :one"]
    if first:
        adds.append("#clickers :one")
        names["#clickers"] = "clickers"
    return {
        "TableName": table,
        "Key": {"issue_id": {"S": issue_id}, "sk": {"S": LINK + link.key}},
        "UpdateExpression": "SET " + ", ".join(sets) + " ADD " + ", ".join(adds),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def _marker_changed(exc: ClientError) -> bool:
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
    return bool(reasons) and reasons[0] == "ConditionalCheckFailed"


def issue_links(ddb, table: str, issue_id: str) -> list[dict]:
    """Every link item of the issue (one Query of its partition, paged)."""
    return list(
        every_item(
            ddb.query,
            TableName=table,
            KeyConditionExpression="issue_id = :i AND begins_with(sk, :link)",
            ExpressionAttributeValues={":i": {"S": issue_id}, ":link": {"S": LINK}},
        )
    )


def delivered(record: dict | None) -> int | None:
    """The issue's delivered count, or None when it has none (no delivery events are published)."""
    n = int((record or {}).get("delivered") or 0)
    return n or None


def most_clicked(ddb, table: str, issue_id: str, n: int = 10, *, record: dict | None = None) -> list[dict]:
    """The issue's n most clicked content links, our own links left out (`clicks.rank`): url,
    clicks, clickers, share of clickers among delivered messages (None without deliveries), cut.
    Reads the issue record for `delivered` unless it is given."""
    if record is None:
        record = get_issue(ddb, table, issue_id, consistent=False)
    return rank(issue_links(ddb, table, issue_id), delivered=delivered(record), n=n)


def own_clicks(ddb, table: str, issue_id: str, *, record: dict | None = None) -> list[dict]:
    """Clicks on our own links (unsubscribe, preferences, web version), apart from content."""
    if record is None:
        record = get_issue(ddb, table, issue_id, consistent=False)
    return own_links(issue_links(ddb, table, issue_id), delivered=delivered(record))
