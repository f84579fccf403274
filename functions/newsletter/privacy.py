"""What may be logged about a subscriber: a short, stable hash of the address, never the address."""

import hashlib


def address_hash(address: str) -> str:
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()[:16]


def normalise_address(address: str) -> str:
    # Domains are case-insensitive; local parts are in practice, and one spelling per person keeps
    # the ledger and the suppression list exact.
    return address.strip().lower()
