"""The suppression list: addresses never to be mailed again, from any list."""

from . import to_item, written


def suppress(ddb, table: str, address: str, reason: str, at: str, **detail) -> None:
    ddb.put_item(TableName=table, Item=to_item({"email": address, "reason": reason, "suppressed_at": at, **detail}))


def suppress_once(ddb, table: str, address: str, reason: str, at: str, **detail) -> bool:
    """Suppress an address unless it already is (the first reason and time are kept).

    True if it was suppressed now.
    """
    return written(
        ddb.put_item,
        TableName=table,
        Item=to_item({"email": address, "reason": reason, "suppressed_at": at, **detail}),
        ConditionExpression="attribute_not_exists(email)",
    )


def is_suppressed(ddb, table: str, address: str) -> bool:
    """Whether the address bounced, complained or was suppressed by hand (a consistent read)."""
    found = ddb.get_item(
        TableName=table, Key={"email": {"S": address}}, ProjectionExpression="email", ConsistentRead=True
    )
    return "Item" in found
