"""Clients: a stand-in for `newsletter.aws.client`, handing out one fake per service name.

What it models: `client(service)` as the functions call it, returning the same object for a
service every time; `asked` counts how often each service was asked for.

What it does not model: client configuration (retries, timeouts, regions), the SDK's own
retries and (de)serialisation, botocore's parameter validation; a service without a fake
raises RuntimeError (so a benchmark never talks to AWS by mistake).

Import rule: only the standard library (see fakes/__init__.py).
"""

from __future__ import annotations

from collections import Counter


class Clients:
    """A stand-in for `newsletter.aws.client`: one fake per service name."""

    def __init__(self, **by_service):
        self.by_service = by_service
        self.asked: Counter = Counter()

    def __call__(self, service: str):
        self.asked[service] += 1
        try:
            return self.by_service[service]
        except KeyError:
            raise RuntimeError(f"no fake for AWS service {service!r}") from None

    def cache_clear(self) -> None:
        """`newsletter.aws.client` is an lru_cache; resetting it must work on the stand-in too."""
