"""FakeSSM: SSM Parameter Store's GetParameter, for the token secret, in memory.

What it models
- GetParameter with the response SSM gives: Parameter.Name, Type (SecureString), Value (the
  decrypted value: WithDecryption is taken as true), Version, LastModifiedDate (a timezone-aware
  datetime, as boto3 parses it), ARN and DataType; a `name:version` selector returns that
  version (with Selector and the plain Name) or ParameterVersionNotFound (400). `calls` counts
  requests by operation.
- Versions: `values` maps a name to its value (version 1) or to a list of values (versions 1..n,
  the last the newest); `put(name, value)` adds a version, as PutParameter with Overwrite does.
- A name it holds no value for answers `default` (version 1), so a benchmark needs no setup
  for the secret; with `default=None` it raises ParameterNotFound (400) as SSM does.

What it does not model
- KMS: values are never encrypted, WithDecryption=False still returns the plain value.
- No labels (`name:label` selectors), GetParameters/GetParametersByPath, parameter policies,
  tiers, the 100-version history limit, or throttling (ThrottlingException).

Import rule: only the standard library at module level (see fakes/__init__.py); botocore is
imported when an error is raised.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime

from .errors import client_error

REGION, ACCOUNT = "us-east-1", "123456789012"
# When every version of the fake's parameters was written: a fixed moment, so runs repeat.
WRITTEN_AT = datetime(2015, 7, 1, 8, 0, tzinfo=UTC)


class FakeSSM:
    """get_parameter for any name (the token secret), with versions."""

    def __init__(
        self,
        values: dict[str, str | list[str]] | None = None,
        default: str | None = "bench-token-secret-0123456789abcdef",
    ):
        self.versions: dict[str, list[tuple[str, datetime]]] = {
            name: [(v, WRITTEN_AT) for v in ([value] if isinstance(value, str) else value)]
            for name, value in (values or {}).items()
        }
        self.default = default
        self.calls: Counter = Counter()
        self._lock = threading.Lock()

    def put(self, name: str, value: str, at: datetime | None = None) -> int:
        """A new version of a parameter (PutParameter with Overwrite); its version number."""
        with self._lock:
            history = self.versions.setdefault(name, [])
            history.append((value, at or datetime.now(UTC)))
            return len(history)

    def get_parameter(self, *, Name, WithDecryption=False, **_):
        self.calls["GetParameter"] += 1
        name, _, selector = Name.partition(":") if not Name.startswith("arn:") else (Name, "", "")
        with self._lock:
            history = list(self.versions.get(name) or [])
        if not history:
            if self.default is None:
                raise client_error("ParameterNotFound", f"Parameter {name} not found.", "GetParameter")
            history = [(self.default, WRITTEN_AT)]
        if selector:
            if not selector.isdigit() or not 1 <= int(selector) <= len(history):
                raise client_error(
                    "ParameterVersionNotFound",
                    f"Systems Manager could not find version {selector} of {name}.",
                    "GetParameter",
                )
            version = int(selector)
        else:
            version = len(history)
        value, at = history[version - 1]
        parameter = {
            "Name": name,
            "Type": "SecureString",
            "Value": value,
            "Version": version,
            "LastModifiedDate": at,
            "ARN": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{name.lstrip('/')}",
            "DataType": "text",
        }
        if selector:
            parameter["Selector"] = f":{selector}"
        return {"Parameter": parameter}
