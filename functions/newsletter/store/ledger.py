"""The send ledger: one item per (issue, recipient), written with conditions, so that each
recipient of an issue is mailed at most once however often a batch is delivered.

States: `sending` (claimed, SES call under way), `sent`, `rejected` (SES refused the address for
good), `skipped` (inactive or suppressed when its turn came), `uncertain` (the SES call's outcome
is unknown: never retried, reported).
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from . import condition_failed, to_item, written

# Long enough for late feedback (complaints can arrive weeks later) to find its issue.
TTL_DAYS = 90


def _key(issue_id: str, address: str) -> dict:
    return {"issue_id": {"S": issue_id}, "email": {"S": address}}


def claim(ddb, table: str, issue_id: str, address: str, *, status: str, now: int, **detail) -> bool:
    """Write the recipient's first state; False if the recipient already has one."""
    return written(
        ddb.put_item,
        TableName=table,
        Item=to_item(
            {
                "issue_id": issue_id,
                "email": address,
                "status": status,
                "at": now,
                "expires_at": now + TTL_DAYS * 86400,
                **detail,
            }
        ),
        ConditionExpression="attribute_not_exists(email)",
    )


def settle(ddb, table: str, issue_id: str, address: str, status: str, now: int, **detail) -> None:
    """Move a claimed recipient to its outcome."""
    values = {"status": status, "at": now, **detail}
    ddb.update_item(
        TableName=table,
        Key=_key(issue_id, address),
        UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in values),
        ConditionExpression="#status = :sending",
        ExpressionAttributeNames={f"#{k}": k for k in values},
        ExpressionAttributeValues=to_item({**{f":{k}": v for k, v in values.items()}, ":sending": "sending"}),
    )


def release(ddb, table: str, issue_id: str, address: str) -> None:
    """Drop a claim whose send certainly did not happen, so that a retry sends it."""
    try:
        ddb.delete_item(
            TableName=table,
            Key=_key(issue_id, address),
            ConditionExpression="#status = :sending",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":sending": {"S": "sending"}},
        )
    except ClientError as exc:
        if not condition_failed(exc):
            raise


def get(ddb, table: str, issue_id: str, address: str) -> dict | None:
    from . import from_item

    return from_item(ddb.get_item(TableName=table, Key=_key(issue_id, address), ConsistentRead=True).get("Item"))
