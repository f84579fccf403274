"""Rate limits and single-use markers for the public pages, in LimitsTable (one item per key,
removed by DynamoDB TTL once its window is over).

A limit is a counter per window (`client#<hash>#<hour>`): one conditional ADD that fails once the
count reached the limit, so concurrent requests can never all slip under it. A marker (`once`)
is a conditional put: the first caller wins, every later one is told it was used.
"""

from __future__ import annotations

from . import written

EXPIRY_SLACK_S = 3600  # TTL deletes within days, not at once: the window, not the TTL, decides


def take(ddb, table: str, key: str, limit: int, window_s: int, now: float) -> bool:
    """Count one request against `key`'s limit in the current window; False when it is used up."""
    if limit <= 0:
        return False
    window = int(now // window_s)
    return written(
        ddb.update_item,
        TableName=table,
        Key={"key": {"S": f"{key}#{window}"}},
        UpdateExpression="ADD #n :one SET expires_at = if_not_exists(expires_at, :exp)",
        ConditionExpression="attribute_not_exists(#n) OR #n < :limit",
        ExpressionAttributeNames={"#n": "count"},
        ExpressionAttributeValues={
            ":one": {"N": "1"},
            ":limit": {"N": str(limit)},
            ":exp": {"N": str((window + 1) * window_s + EXPIRY_SLACK_S)},
        },
    )


def once(ddb, table: str, key: str, until: float) -> bool:
    """Mark `key` used (until `until`, epoch seconds); False if it already was."""
    return written(
        ddb.put_item,
        TableName=table,
        Item={"key": {"S": key}, "expires_at": {"N": str(int(until) + EXPIRY_SLACK_S)}},
        ConditionExpression="attribute_not_exists(#k)",
        ExpressionAttributeNames={"#k": "key"},
    )
