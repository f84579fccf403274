"""The feedback table, and the send ledger's by_message_id index.

FeedbackTable (`pk`, `sk`, TTL on `expires_at`) holds two kinds of item:
- `pk = "seen#<feedback id>#<address>"`, `sk = "seen"`: one marker per (feedback, recipient),
  written in the same transaction as the issue's counter, so each is counted once however often
  SNS or SQS deliver it;
- `pk = "addr#<address>"`, `sk = "<UTC ISO time>#<feedback id>"`: an address's soft bounces
  (Transient or Undetermined), queried by time to apply the "N within D days" rule. The key
  holds the feedback id, so a redelivered bounce is written once.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from . import every_item, from_item, pages, to_item
from .issues import language_counter

SEEN = "seen"
MESSAGE_ID_INDEX = "by_message_id"


def _seen_key(feedback_id: str, address: str) -> dict:
    return {"pk": {"S": f"seen#{feedback_id}#{address}"}, "sk": {"S": SEEN}}


def _history_pk(address: str) -> str:
    return f"addr#{address}"


def count_once(
    ddb,
    feedback_table: str,
    issues_table: str,
    *,
    feedback_id: str,
    address: str,
    issue_id: str,
    counter: str,
    expires_at: int,
    language: str | None = None,
) -> bool | None:
    """ADD 1 to the issue's counter once per (feedback id, address).

    True: counted now. False: counted before (a duplicate). None: there is no such issue (nothing
    written: a counter must never create an issue item, which is the publish lock).
    """
    try:
        ddb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": feedback_table,
                        "Item": {
                            **_seen_key(feedback_id, address),
                            **to_item({"issue_id": issue_id, "counter": counter, "expires_at": expires_at}),
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Update": {
                        "TableName": issues_table,
                        "Key": {"issue_id": {"S": issue_id}, "sk": {"S": "issue"}},
                        # The same counter for the readers of the language, when the message was tagged with one.
                        "UpdateExpression": "ADD #c :one" + (", #l :one" if language else ""),
                        "ConditionExpression": "attribute_exists(issue_id)",
                        "ExpressionAttributeNames": {
                            "#c": counter,
                            **({"#l": language_counter(language, counter)} if language else {}),
                        },
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ]
        )
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "TransactionCanceledException":
            raise
        reasons = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
        if reasons and reasons[0] == "ConditionalCheckFailed":
            return False
        if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
            return None
        raise  # a conflict with another transaction, throttling: retried through SQS


def add_soft_bounce(ddb, table: str, address: str, *, at: str, feedback_id: str, expires_at: int, **detail) -> None:
    """Record a soft bounce in the address's history (the same bounce twice is one item)."""
    ddb.put_item(
        TableName=table,
        Item=to_item(
            {"pk": _history_pk(address), "sk": f"{at}#{feedback_id}", "at": at, "expires_at": expires_at, **detail}
        ),
    )


def soft_bounces_since(ddb, table: str, address: str, since: str) -> int:
    """How many soft bounces the address has had at or after `since` (UTC ISO time)."""
    return sum(
        page.get("Count", 0)
        for page in pages(
            ddb.query,
            TableName=table,
            KeyConditionExpression="pk = :pk AND sk >= :since",
            ExpressionAttributeValues={":pk": {"S": _history_pk(address)}, ":since": {"S": since}},
            Select="COUNT",
            ConsistentRead=True,
        )
    )


def history(ddb, table: str, address: str) -> list[dict]:
    """The address's soft-bounce history (its own partition: one item a soft bounce, kept for the
    soft-bounce window), oldest first."""
    return list(
        every_item(
            ddb.query,
            TableName=table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": _history_pk(address)}},
            ConsistentRead=True,
        )
    )


def sent_message(ddb, sends_table: str, message_id: str) -> dict | None:
    """The send-ledger item (issue_id, email) that SES's message id belongs to, or None.

    A query of the ledger's sparse by_message_id index (only sent items have a message id). The
    index is eventually consistent, which is fine: feedback comes seconds after the ledger write.
    """
    resp = ddb.query(
        TableName=sends_table,
        IndexName=MESSAGE_ID_INDEX,
        KeyConditionExpression="message_id = :m",
        ExpressionAttributeValues={":m": {"S": message_id}},
        Limit=1,
    )
    items = resp.get("Items") or []
    return from_item(items[0]) if items else None


def seen(ddb, table: str, feedback_id: str, address: str) -> bool:
    """Whether (feedback id, address) was counted (for tests and operators)."""
    return "Item" in ddb.get_item(TableName=table, Key=_seen_key(feedback_id, address), ConsistentRead=True)
