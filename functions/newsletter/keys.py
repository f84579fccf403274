"""The unsubscribe tokens' keys: the versions of the token secret's SSM parameter.

Rotating the secret is writing a new value to the parameter (`newsletter secret rotate`); SSM keeps
every value as a numbered version. New tokens are signed with the newest version and name it
(tokens v2). A version stays honoured for `grace_days` after the one that replaced it was
written, so the unsubscribe links in mail already sent keep working (Gmail and Yahoo require it)
and then stop. Tokens from before versions (v1) are checked against every version still honoured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import clock

DAY = 86400.0
MAX_WALK = 20  # versions looked at, back from the newest, for a v1 token


@dataclass(frozen=True)
class Key:
    version: int
    secret: bytes
    written_at: float  # epoch seconds


class KeyRing:
    """The token keys as `tokens.verify` asks for them. `fetch(None)` gives the newest version,
    `fetch(n)` version n, or None if SSM no longer has it."""

    def __init__(self, fetch: Callable[[int | None], Key | None], grace_days: float):
        self._fetch = fetch
        self.grace_s = grace_days * DAY

    def current(self) -> Key:
        key = self._fetch(None)
        if key is None:
            raise LookupError("the token secret has no current version")
        return key

    def honoured_until(self, version: int) -> float | None:
        """When a version stops being honoured (None: it is the newest; never ends while it is)."""
        current = self.current()
        if version >= current.version:
            return None
        following = self._fetch(version + 1)
        replaced_at = following.written_at if following else current.written_at
        return replaced_at + self.grace_s

    def honoured(self, version: int) -> bytes | None:
        current = self.current()
        if version == current.version:
            return current.secret
        if version > current.version:
            return None
        until = self.honoured_until(version)
        key = self._fetch(version)
        return key.secret if key is not None and until is not None and clock.now() <= until else None

    def unversioned(self) -> list[bytes]:
        current = self.current()
        secrets = [current.secret]
        for version in range(current.version - 1, max(0, current.version - MAX_WALK), -1):
            secret = self.honoured(version)
            if secret is None:
                break  # older ones were replaced earlier still
            secrets.append(secret)
        return secrets
