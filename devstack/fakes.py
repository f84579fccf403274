"""In-memory stand-ins for the DynamoDB and SQS calls that fan-out makes, for lists far larger
than moto handles quickly (a million subscribers). They answer the same request shapes, count
every call, and keep what was queued, so tests and benchmarks can check the result exactly.
"""

from __future__ import annotations

import json
from collections import Counter

from newsletter.store.subscribers import SHARDS, partition, shard_of


class FakeDynamoDB:
    """Subscribers table (query by shard partition), suppressions (batch get), issues (get, transact)."""

    def __init__(self, list_id: str, addresses, *, inactive_every: int = 0, suppressed: set[str] | None = None):
        self.calls: Counter = Counter()
        self.list_id = list_id
        self.shards: dict[str, list[dict]] = {partition(list_id, s): [] for s in range(SHARDS)}
        for n, address in enumerate(addresses):
            status = "unsubscribed" if inactive_every and n % inactive_every == 0 else "active"
            self.shards[partition(list_id, shard_of(address))].append({"email": address, "status": status})
        for items in self.shards.values():
            items.sort(key=lambda i: i["email"])  # DynamoDB returns a partition in sort-key order
        self.suppressed = suppressed or set()
        self.issues: dict[str, dict] = {}
        self.markers: set[tuple[str, str]] = set()

    def query(self, *, ExpressionAttributeValues, Limit, ExclusiveStartKey=None, **_):
        self.calls["Query"] += 1
        items = self.shards[ExpressionAttributeValues[":pk"]["S"]]
        start = 0
        if ExclusiveStartKey:
            start = int(ExclusiveStartKey["_pos"]["N"]) + 1
        page = items[start : start + Limit]
        found = [{"email": {"S": i["email"]}, "name": {"S": ""}} for i in page if i["status"] == "active"]
        resp = {"Items": found, "Count": len(found), "ScannedCount": len(page)}
        if start + Limit < len(items):
            resp["LastEvaluatedKey"] = {
                "pk": {"S": ExpressionAttributeValues[":pk"]["S"]},
                "_pos": {"N": str(start + Limit - 1)},
            }
        return resp

    def batch_get_item(self, *, RequestItems):
        self.calls["BatchGetItem"] += 1
        responses = {}
        for table, req in RequestItems.items():
            responses[table] = [k for k in req["Keys"] if k["email"]["S"] in self.suppressed]
        return {"Responses": responses, "UnprocessedKeys": {}}

    def get_item(self, *, Key, **_):
        self.calls["GetItem"] += 1
        item = self.issues.get(Key["issue_id"]["S"])
        return {"Item": item} if item else {}

    def transact_write_items(self, *, TransactItems):
        self.calls["TransactWriteItems"] += 1
        put = TransactItems[0]["Put"]["Item"]
        marker = (put["issue_id"]["S"], put["sk"]["S"])
        if marker in self.markers:
            from botocore.exceptions import ClientError

            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException"},
                    "CancellationReasons": [{"Code": "ConditionalCheckFailed"}],
                },
                "TransactWriteItems",
            )
        self.markers.add(marker)
        return {}


class FakeSQS:
    """Send queue and fan-out queue: keeps bodies, counts requests."""

    def __init__(self):
        self.calls: Counter = Counter()
        self.sent: dict[str, list[str]] = {}

    def send_message_batch(self, *, QueueUrl, Entries):
        assert len(Entries) <= 10, "SendMessageBatch takes at most 10 entries"
        self.calls["SendMessageBatch"] += 1
        self.sent.setdefault(QueueUrl, []).extend(e["MessageBody"] for e in Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def send_message(self, *, QueueUrl, MessageBody, **_):
        self.calls["SendMessage"] += 1
        self.sent.setdefault(QueueUrl, []).append(MessageBody)
        return {"MessageId": str(self.calls["SendMessage"])}

    def take(self, queue_url: str) -> list[str]:
        return self.sent.pop(queue_url, [])

    def recipients(self, queue_url: str) -> list[str]:
        return [r["email"] for body in self.sent.get(queue_url, []) for r in json.loads(body)["recipients"]]
