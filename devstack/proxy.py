"""A stand-in around a boto3 client that sees each operation call (the IAM recorder and the
fault injection both need one): attributes that are not operations pass through untouched."""

from __future__ import annotations

from collections.abc import Callable

NOT_OPERATIONS = ("can_paginate", "get_paginator", "get_waiter")


def intercept(client, on_call: Callable[[str, Callable, tuple, dict], object]):
    """`client`, with every operation call going through `on_call(name, method, args, kwargs)`."""

    class Intercepted:
        def __getattr__(self, name):
            attr = getattr(client, name)
            if name.startswith("_") or not callable(attr) or name in NOT_OPERATIONS:
                return attr

            def call(*args, **kwargs):
                return on_call(name, attr, args, kwargs)

            return call

    return Intercepted()
