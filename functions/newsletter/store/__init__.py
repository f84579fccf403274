"""Storage adapters: the only modules that talk to DynamoDB and S3 in DynamoDB/S3 terms."""

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

_ser, _de = TypeSerializer(), TypeDeserializer()


def to_item(values: dict) -> dict:
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict | None) -> dict | None:
    if item is None:
        return None
    return {k: _de.deserialize(v) for k, v in item.items()}


def pages(call, **request):
    """Every page a paginated Query or Scan answers (`call`: the client's query or scan), read
    as they are needed: a caller that stops early reads no further."""
    while True:
        page = call(**request)
        yield page
        start = page.get("LastEvaluatedKey")
        if not start:
            return
        request = {**request, "ExclusiveStartKey": start}


def every_item(call, **request):
    """Every item of a paginated Query or Scan, as plain values."""
    for page in pages(call, **request):
        yield from (from_item(i) for i in page.get("Items", []))


def condition_failed(exc: Exception) -> bool:
    return getattr(exc, "response", {}).get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def written(call, **request) -> bool:
    """Make a conditional write; False, not an error, when its condition did not hold."""
    try:
        call(**request)
        return True
    except ClientError as exc:
        if condition_failed(exc):
            return False
        raise
