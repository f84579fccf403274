"""The suppression list: addresses never to be mailed again, from any list."""

from . import to_item


def suppress(ddb, table: str, address: str, reason: str, at: str, **detail) -> None:
    ddb.put_item(TableName=table, Item=to_item({"email": address, "reason": reason, "suppressed_at": at, **detail}))
