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
