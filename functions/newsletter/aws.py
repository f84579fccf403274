"""boto3 clients, created on first use and cached for the life of the container.

Created lazily (not at import) so that cold starts pay only for the clients a path uses, and so
that tests can put moto in place before the first client exists. `reset()` drops the cache.

Each service's timeouts and retries bound how long one call can take (`worst_case_s`); the
sender's time budget is derived from them (`sending.SAFETY_MS`):
- SES: no SDK retry at all. botocore's standard mode would repeat SendEmail after a read timeout
  or a dropped connection, when SES may already have accepted the message: that is how one reader
  gets two copies. `sending.py` decides what is tried again, and never an uncertain send.
- DynamoDB: short timeouts (its answers take milliseconds) and three attempts, so that a ledger
  write cannot outlast the margin a batch keeps for it.
- S3, SQS, SSM: the SDK's standard retries, with timeouts long enough for a rendered issue.
"""

from __future__ import annotations

from functools import cache

from botocore.config import Config

CONFIGS = {
    "sesv2": Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=6),
    "dynamodb": Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=1, read_timeout=3),
}
DEFAULT = Config(retries={"mode": "standard", "total_max_attempts": 5}, connect_timeout=5, read_timeout=20)
# botocore's standard mode waits at most 2^i seconds (throttling's base of 1 s), capped at 20 s,
# before its (i+1)th retry.
_MAX_BACKOFF_S = 20.0


def config_for(service: str) -> Config:
    return CONFIGS.get(service, DEFAULT)


def worst_case_s(service: str) -> float:
    """The longest one call can take before botocore gives up: every attempt connecting and
    waiting for its answer to its timeouts, plus the longest backoffs between attempts."""
    config = config_for(service)
    attempts = config.retries["total_max_attempts"]
    backoff = sum(min(2.0**i, _MAX_BACKOFF_S) for i in range(attempts - 1))
    return attempts * (config.connect_timeout + config.read_timeout) + backoff


@cache
def _session():
    import boto3

    # One session for every client: each new session loads its own copy of the service models.
    return boto3.session.Session()


# The container's clients by service. A plain dict (not functools.cache) so that the local stack,
# which plays several functions in one process, can give each function its own, as Lambda does.
_clients: dict[str, object] = {}


def client(service: str):
    found = _clients.get(service)
    if found is None:
        found = _clients[service] = _session().client(service, config=config_for(service))
    return found


client.cache_clear = lambda: _clients.clear()

_secrets: dict[str, tuple[float, object]] = {}


def reset() -> None:
    _clients.clear()
    _session.cache_clear()
    _secrets.clear()


def _absolute(name: str) -> str:
    # Hierarchical names are absolute; the template passes them without '/'.
    return "/" + name if "/" in name and not name.startswith("/") else name


def token_key(name: str, version: int | None = None, max_age: int = 300):
    """One version of the token secret (keys.Key), or the newest when version is None; None if SSM
    no longer has that version. A version never changes: it is cached for the container's life;
    the newest is asked for again after max_age seconds."""
    from botocore.exceptions import ClientError

    from . import clock
    from .keys import Key

    name = _absolute(name)
    cache_key = f"{name}:{version}" if version else name
    cached = _secrets.get(cache_key)
    if cached and (version or cached[0] > clock.now()):
        return cached[1]
    try:
        p = client("ssm").get_parameter(Name=cache_key, WithDecryption=True)["Parameter"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ParameterVersionNotFound", "ParameterNotFound") and version:
            return None
        raise
    if not p.get("Value"):
        raise RuntimeError(f"SSM parameter {name} is empty")
    key = Key(int(p.get("Version") or 1), p["Value"].encode("utf-8"), p["LastModifiedDate"].timestamp())
    _secrets[cache_key] = (clock.now() + max_age, key)
    _secrets[f"{name}:{key.version}"] = (float("inf"), key)
    return key


def token_keys(name: str, grace_days: float):
    """The token secret's versions, as tokens.verify asks for them (keys.KeyRing)."""
    from .keys import KeyRing

    return KeyRing(lambda version: token_key(name, version), grace_days)


def erasure_key(name: str) -> bytes:
    """The key of erased addresses' markers (erasure.py): from the token secret's first version."""
    from .erasure import KEY_VERSION
    from .erasure import erasure_key as derive

    key = token_key(name, KEY_VERSION)
    if key is None:
        raise RuntimeError(f"SSM parameter {name} has no version {KEY_VERSION}: erased addresses cannot be checked")
    return derive(key.secret)


def secret_parameter(name: str, max_age: int = 300) -> bytes:
    """The token secret's newest value, decrypted, cached for max_age seconds.

    A plain GetParameter rather than Powertools Parameters: the same cache in a few lines, and
    about 15 ms less on the cold start of the functions that users and throughput feel.
    """
    return token_key(name, max_age=max_age).secret
