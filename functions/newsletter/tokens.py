"""Signed unsubscribe tokens: HMAC-SHA256 over (list, address), checked in constant time.

A token names one list and one address; it cannot be edited to name another without the secret.
Format: `v1.<base64url(list "\\n" address)>.<base64url(mac)>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

VERSION = "v1"
_MAX_TOKEN = 1024


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


def _mac(secret: bytes, payload: bytes) -> bytes:
    # The version is part of what is signed, so a v1 mac can never validate another format.
    return hmac.new(secret, VERSION.encode() + b"." + payload, hashlib.sha256).digest()


def sign(secret: bytes, list_id: str, address: str) -> str:
    if not secret:
        raise ValueError("empty token secret")
    payload = f"{list_id}\n{address}".encode("utf-8")
    return f"{VERSION}.{_b64(payload)}.{_b64(_mac(secret, payload))}"


def verify(secret: bytes, token: str) -> tuple[str, str]:
    """Return (list_id, address) for a genuine token; raise InvalidToken otherwise."""
    if not secret:
        raise ValueError("empty token secret")
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN:
        raise InvalidToken("missing or oversized token")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise InvalidToken("unknown token format")
    try:
        payload, mac = _unb64(parts[1]), _unb64(parts[2])
    except (ValueError, TypeError) as exc:
        raise InvalidToken("token is not valid base64url") from exc
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        raise InvalidToken("token signature does not match")
    try:
        list_id, address = payload.decode("utf-8").split("\n")
    except ValueError as exc:
        raise InvalidToken("token payload is malformed") from exc
    return list_id, address
