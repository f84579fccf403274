"""The suppression list: addresses never to be mailed again, from any list."""

from . import to_item


def suppress(ddb, table: str, address: str, reason: str, at: str, **detail) -> None:
    ddb.put_item(TableName=table, Item=to_item({"email": address, "reason": reason, "suppressed_at": at, **detail}))


def suppress_once(ddb, table: str, address: str, reason: str, at: str, **detail) -> bool:
    """Suppress an address unless it already is (the first reason and time are kept).

    True if it was suppressed now.
    """
    from botocore.exceptions import ClientError

    from . import condition_failed

    try:
        ddb.put_item(
            TableName=table,
            Item=to_item({"email": address, "reason": reason, "suppressed_at": at, **detail}),
            ConditionExpression="attribute_not_exists(email)",
        )
        return True
    except ClientError as exc:
        if condition_failed(exc):
            return False
        raise
