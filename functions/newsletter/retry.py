"""Which failures are worth another try, and trying again.

AWS promises that some calls fail: a 5xx, throttling, a connection that drops. botocore retries
those a few times; what outlives its retries reaches our code. `transient` tells those apart from
failures no retry can fix (a malformed request, access denied, a bug in our code), which must stop
and say why instead of cycling through a queue for hours. `call` tries an idempotent operation
again in place, so that one unlucky call does not cost a batch its visibility timeout.

Sending is special: `reached` says whether a failed request may have reached the service. Only
a request that certainly did not (no connection was made) or that the service answered with an
error may be repeated; a timeout after the request left is an unknown outcome.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ProxyConnectionError,
)
from botocore.exceptions import (
    ConnectionError as TransportConnectionError,
)

from . import clock

T = TypeVar("T")

# Error codes AWS services answer for a condition that passes (their documentation says retry).
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",
        "BandwidthLimitExceeded",
        "TransactionInProgressException",
        "KMSThrottlingException",
    }
)
# Why DynamoDB cancels a transaction when trying it again may work.
TRANSIENT_CANCELLATIONS = frozenset(
    {
        "TransactionConflict",
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
        "InternalServerError",
    }
)

BACKOFF_S = 0.1  # before the 2nd try; doubled (with jitter) before each later one


def error_code(exc: BaseException) -> str:
    return exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""


def transient(exc: BaseException) -> bool:
    """A failure that trying again later may cure."""
    if isinstance(exc, (TransportConnectionError, HTTPClientError)):
        return True
    if not isinstance(exc, ClientError):
        return False
    code = error_code(exc)
    if code in TRANSIENT_CODES:
        return True
    if code == "TransactionCanceledException":
        reasons = {r.get("Code") for r in exc.response.get("CancellationReasons") or []}
        return bool(reasons & TRANSIENT_CANCELLATIONS) and "ConditionalCheckFailed" not in reasons
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return status >= 500 or status == 429


def permanent(exc: BaseException) -> bool:
    """A failure AWS or botocore says no retry will cure: an error answer that is not transient
    (access denied, a missing parameter, a validation error), or a request botocore refused to
    make. Anything else that is not transient is unknown, and left to the queue's retries."""
    from botocore.exceptions import ParamValidationError

    if isinstance(exc, ClientError):
        return not transient(exc)
    return isinstance(exc, ParamValidationError)


def reached(exc: BaseException) -> bool:
    """Whether the failed request may have been acted on: False only when no connection was
    made, or the service answered (an error response is its refusal to act)."""
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError)):
        return False
    return not isinstance(exc, ClientError)


def describe(exc: BaseException) -> str:
    """A failure in a few words, for a log line or an issue's pause reason (never an address)."""
    code = error_code(exc)
    return f"{type(exc).__name__} ({code})" if code else type(exc).__name__


def call(
    fn: Callable[..., T],
    *args,
    attempts: int = 3,
    time_left_s: Callable[[], float] | None = None,
    needs_s: float = 0.0,
    **kwargs,
) -> T:
    """fn(*args, **kwargs), tried up to `attempts` times while it fails transiently.

    Only for operations that are safe to repeat. With `time_left_s`, a try is only made again
    while at least `needs_s` seconds are left (the caller's budget for one more try).
    """
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt == attempts - 1 or not transient(exc):
                raise
            if time_left_s is not None and time_left_s() < needs_s:
                raise
            clock.sleep(BACKOFF_S * 2**attempt * random.uniform(0.5, 1.0))
    raise AssertionError("unreachable")
