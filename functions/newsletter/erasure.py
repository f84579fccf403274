"""What is left of a person the operator erased (`newsletter subscribers forget`): a keyed hash of
their address in the suppression list, so that no import or signup brings them back, and nothing
anyone holding the tables can turn back into the address.

The key is derived from the FIRST version of the token secret: it must not change when the secret
is rotated (the marker would stop matching). `forget` labels that version (`erasure-key`), and SSM
never drops a labelled version, however often the secret is rotated.
"""

from __future__ import annotations

import hashlib
import hmac

from .privacy import normalise_address

PREFIX = "forgotten:"
LABEL = "erasure-key"
KEY_VERSION = 1
_DERIVE = b"newsletter erasure v1"


def erasure_key(first_secret: bytes) -> bytes:
    return hmac.new(first_secret, _DERIVE, hashlib.sha256).digest()


def forgotten_id(key: bytes, address: str) -> str:
    """The suppression list's key for an erased address."""
    return PREFIX + hmac.new(key, normalise_address(address).encode("utf-8"), hashlib.sha256).hexdigest()
