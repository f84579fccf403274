"""What may be logged about a subscriber: a short hash of the address, keyed, never the address.

The hash is an HMAC keyed with a key derived from the stack's token secret, so somebody holding
the subscriber list (or a guess) cannot hash addresses and match them against the logs, while the
operator, who holds the secret, can find one reader's lines (`newsletter subscribers hash ADDRESS`).
Rotating the secret changes the hashes from then on.

`scrub` removes whatever still looks like an address from a log line (an AWS error message that
names a recipient, an exception's text): every function's logger passes each line through it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable

_LABEL = b"newsletter log hash v1"
# Until a function says where its secret is, a key of this process alone: nothing can be matched
# against it, not even by the operator (no address is ever logged in clear either way).
_PROCESS_KEY = os.urandom(32)
_secret: Callable[[], bytes] | None = None
_derived: tuple[bytes, bytes] | None = None  # (secret, key)

ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+")


def use_secret(secret: Callable[[], bytes] | None) -> None:
    """Where the stack's token secret comes from (called with no argument, when a hash is needed)."""
    global _secret
    _secret = secret


def log_key(secret: bytes) -> bytes:
    return hmac.new(secret, _LABEL, hashlib.sha256).digest()


def _key() -> bytes:
    global _derived
    if _secret is None:
        return _PROCESS_KEY
    try:
        secret = _secret()
    except Exception:  # noqa: BLE001 - a log line must never fail, nor block feedback on SSM
        return _PROCESS_KEY
    if _derived is None or _derived[0] != secret:
        _derived = (secret, log_key(secret))
    return _derived[1]


def address_hash(address: str, *, secret: bytes | None = None) -> str:
    """The address's keyed hash, as logs carry it (16 hex digits)."""
    key = log_key(secret) if secret is not None else _key()
    return hmac.new(key, normalise_address(address).encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def scrub(text: str) -> str:
    """`text` with every address-like substring replaced by `<address KEYEDHASH>`."""
    if "@" not in text:
        return text

    def replace(match: re.Match) -> str:
        return f"<address {address_hash(match.group())}>"

    return ADDRESS.sub(replace, text)


def normalise_address(address: str) -> str:
    # Domains are case-insensitive; local parts are in practice, and one spelling per person keeps
    # the ledger and the suppression list exact.
    return address.strip().lower()
