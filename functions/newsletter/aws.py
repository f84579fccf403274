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
def client(service: str):
    import boto3

    return boto3.session.Session().client(service, config=_SES if service == "sesv2" else _DEFAULT)


def reset() -> None:
    client.cache_clear()
    _ssm_provider.cache_clear()


@cache
def _ssm_provider():
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    return SSMProvider(boto3_client=client("ssm"))


def secret_parameter(name: str, max_age: int = 300) -> bytes:
    """A SecureString from SSM Parameter Store, decrypted, cached for max_age seconds."""
    if "/" in name and not name.startswith("/"):
        name = "/" + name  # hierarchical names are absolute; the template passes them without '/'
    value = _ssm_provider().get(name, decrypt=True, max_age=max_age)
    if not value:
        raise RuntimeError(f"SSM parameter {name} is empty")
    return value.encode("utf-8")
