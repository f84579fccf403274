"""Mailing lists: id, display name and, optionally, their own sender."""

from . import from_item, to_item


def get_list(ddb, table: str, list_id: str) -> dict | None:
    return from_item(ddb.get_item(TableName=table, Key={"list_id": {"S": list_id}}).get("Item"))


def put_list(ddb, table: str, list_id: str, name: str, **extra) -> None:
    ddb.put_item(TableName=table, Item=to_item({"list_id": list_id, "name": name, **extra}))
