"""Signed unsubscribe tokens: HMAC-SHA256 over (list, address), checked in constant time.

A token names one list and one address; it cannot be edited to name another without the secret.
Formats:
- `v2.<key version>.<base64url(list "\\n" address)>.<base64url(mac)>`: what is signed now. The key
  version is the version of the secret's SSM parameter that signed it (keys.py), so the secret can
  be rotated while links in mail already sent keep working for a grace period;
- `v1.<base64url(list "\\n" address)>.<base64url(mac)>`: tokens signed before keys had versions,
  checked against every key still honoured.
The version and the key version are part of what is signed: neither can be edited.

Tokens for one purpose (`sign_for`: confirming a signup) are `p1.<key version>.<payload>.<mac>`:
the purpose, list, address, expiry and what they were issued for are signed, and they expire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

VERSION = "v1"
VERSION_2 = "v2"
_MAX_TOKEN = 1024
_KEY_VERSION = re.compile(r"[1-9][0-9]{0,9}")


class InvalidToken(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def _unb64(text: str) -> bytes:
    # urlsafe_b64decode skips foreign characters; a token has exactly one spelling.
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:  # unused low bits of the last character set: another spelling of the same bytes
        raise ValueError("not the canonical base64url spelling")
    return data


def _mac(secret: bytes, payload: bytes, prefix: str = VERSION) -> bytes:
    # The format (and key version) is part of what is signed, so a mac can never validate another.
    return hmac.new(secret, prefix.encode() + b"." + payload, hashlib.sha256).digest()


def sign(secret: bytes, list_id: str, address: str, *, key_version: int | None = None) -> str:
    """A token for (list, address); with key_version (the secret's version), in the v2 format."""
    if not secret:
        raise ValueError("empty token secret")
    payload = f"{list_id}\n{address}".encode()
    if key_version is None:
        return f"{VERSION}.{_b64(payload)}.{_b64(_mac(secret, payload))}"
    prefix = f"{VERSION_2}.{int(key_version)}"
    return f"{prefix}.{_b64(payload)}.{_b64(_mac(secret, payload, prefix))}"


class _OneKey:
    """A single secret of unknown version (tests, and callers that hold just one)."""

    def __init__(self, secret: bytes):
        if not secret:
            raise ValueError("empty token secret")
        self._secret = secret

    def honoured(self, version: int) -> bytes | None:
        return self._secret

    def unversioned(self) -> list[bytes]:
        return [self._secret]


def verify(keys, token: str) -> tuple[str, str]:
    """Return (list_id, address) for a genuine token; raise InvalidToken otherwise.

    `keys` is the secret itself, or a key ring (`keys.KeyRing`): `honoured(version)` gives the
    secret of a version still honoured (else None), `unversioned()` the secrets a v1 token may be
    signed with."""
    payload = _payload(keys, token, (VERSION, VERSION_2))
    try:
        list_id, address = payload.split("\n")
    except ValueError as exc:
        raise InvalidToken("token payload is malformed") from exc
    return list_id, address


def _payload(keys, token: str, formats: tuple[str, ...]) -> str:
    """The signed text of a genuine token in one of `formats` (v1: `v1.payload.mac`; the versioned
    ones: `<format>.<key version>.payload.mac`); InvalidToken otherwise."""
    ring = _OneKey(keys) if isinstance(keys, (bytes, bytearray)) else keys
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN:
        raise InvalidToken("missing or oversized token")
    parts = token.split(".")
    if len(parts) == 3 and parts[0] == VERSION and VERSION in formats:
        prefix, secrets, encoded = VERSION, ring.unversioned(), parts[1:]
    elif len(parts) == 4 and parts[0] in formats and parts[0] != VERSION and _KEY_VERSION.fullmatch(parts[1]):
        secret = ring.honoured(int(parts[1]))
        if secret is None:
            raise InvalidToken("the token's key is no longer honoured (or never was)")
        prefix, secrets, encoded = f"{parts[0]}.{parts[1]}", [secret], parts[2:]
    else:
        raise InvalidToken("unknown token format")
    try:
        payload, mac = _unb64(encoded[0]), _unb64(encoded[1])
    except (ValueError, TypeError) as exc:
        raise InvalidToken("token is not valid base64url") from exc
    # Every candidate is compared (in constant time), whichever matches.
    if not any([hmac.compare_digest(mac, _mac(secret, payload, prefix)) for secret in secrets]):
        raise InvalidToken("token signature does not match")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidToken("token payload is malformed") from exc


# --- Tokens for one purpose, with an expiry ---------------------------------------------------------

PURPOSE_VERSION = "p1"


class ExpiredToken(InvalidToken):
    """A genuine token past its expiry."""


@dataclass(frozen=True)
class Claims:
    purpose: str
    list_id: str
    address: str
    expires_at: int  # epoch seconds
    ref: str  # what the token was issued for (a signup's id): the caller checks it


def sign_for(
    secret: bytes, purpose: str, list_id: str, address: str, *, expires_at: int, ref: str, key_version: int
) -> str:
    """A token that grants `purpose` (confirm a signup, ...) for (list, address) until `expires_at`.
    Its prefix differs from the unsubscribe tokens', so neither can stand in for the other."""
    if not secret:
        raise ValueError("empty token secret")
    fields = [purpose, list_id, address, str(int(expires_at)), ref]
    if any("\n" in f for f in fields):
        raise ValueError("token fields must not contain line breaks")
    payload = "\n".join(fields).encode()
    prefix = f"{PURPOSE_VERSION}.{int(key_version)}"
    return f"{prefix}.{_b64(payload)}.{_b64(_mac(secret, payload, prefix))}"


def verify_for(keys, token: str, purpose: str, now: float) -> Claims:
    """The claims of a genuine, unexpired token for `purpose`; InvalidToken (ExpiredToken) otherwise."""
    payload = _payload(keys, token, (PURPOSE_VERSION,))
    try:
        kind, list_id, address, expires, ref = payload.split("\n")
        expires_at = int(expires)
    except ValueError as exc:
        raise InvalidToken("token payload is malformed") from exc
    if kind != purpose:
        raise InvalidToken(f"a token for {kind!r}, not {purpose!r}")
    if now > expires_at:
        raise ExpiredToken("the token has expired")
    return Claims(kind, list_id, address, expires_at, ref)
