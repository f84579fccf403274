"""The errors the fakes raise: botocore's ClientError, shaped as the service's error response.

Standard library only at module level (see fakes/__init__.py): botocore is imported when an
error is raised, by which time the code under test has loaded it.
"""

from __future__ import annotations


def client_error(code: str, message: str, operation: str, status: int = 400, **extra):
    """A ClientError as botocore builds it from an AWS error response (`extra`: more top-level
    fields of the response, such as DynamoDB's CancellationReasons or Item)."""
    from botocore.exceptions import ClientError

    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
        **extra,
    }
    return ClientError(response, operation)
