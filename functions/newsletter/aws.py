"""boto3 clients, created on first use and cached for the life of the container.

Created lazily (not at import) so that cold starts pay only for the clients a path uses, and so
that tests can put moto in place before the first client exists. `reset()` drops the cache.
"""

from __future__ import annotations

from functools import cache

from botocore.config import Config

# Standard retry mode backs off on throttling; SES gets fewer in-client retries because
# throttled sends are retried through SQS, where a retry costs no Lambda time.
_DEFAULT = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20)
_SES = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=15)


@cache
def _session():
    import boto3

    # One session for every client: each new session loads its own copy of the service models.
    return boto3.session.Session()


@cache
def client(service: str):
    return _session().client(service, config=_SES if service == "sesv2" else _DEFAULT)


_secrets: dict[str, tuple[float, bytes]] = {}


def reset() -> None:
    client.cache_clear()
    _session.cache_clear()
    _secrets.clear()


def secret_parameter(name: str, max_age: int = 300) -> bytes:
    """A SecureString from SSM Parameter Store, decrypted, cached for max_age seconds.

    A plain GetParameter rather than Powertools Parameters: the same cache in a few lines, and
    about 15 ms less on the cold start of the functions that users and throughput feel.
    """
    import time

    if "/" in name and not name.startswith("/"):
        name = "/" + name  # hierarchical names are absolute; the template passes them without '/'
    cached = _secrets.get(name)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    value = client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    if not value:
        raise RuntimeError(f"SSM parameter {name} is empty")
    _secrets[name] = (time.monotonic() + max_age, value.encode("utf-8"))
    return _secrets[name][1]
