"""Unsubscribe tokens: only a token we signed, for exactly its list and address, verifies."""

from __future__ import annotations

import pytest

from newsletter import tokens
from newsletter.tokens import InvalidToken, sign, verify

SECRET = b"test-token-secret"


def _swap_first(segment: str) -> str:
    # Change the first character: the last one of a base64 segment may only carry padding bits.
    return ("B" if segment[0] != "B" else "C") + segment[1:]


@pytest.mark.parametrize(
    "list_id, address",
    [
        ("infomail", "reader@example.com"),
        ("infomail-de_2", "zoë.müller@exämple.org"),
        ("a", "o'brien+news@example.co.uk"),
    ],
)
def test_round_trip(list_id, address):
    token = sign(SECRET, list_id, address)
    assert token.startswith("v1.")
    assert verify(SECRET, token) == (list_id, address)


def test_token_is_url_safe():
    token = sign(SECRET, "infomail", "zoë+?&=/@example.com")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_a_token_for_one_list_never_verifies_as_another():
    token = sign(SECRET, "infomail", "reader@example.com")
    other = sign(SECRET, "jobs", "reader@example.com")
    assert verify(SECRET, token)[0] == "infomail"
    assert token != other
    # Graft the other list's payload onto this token's mac.
    _, payload_other, _ = other.split(".")
    _, _, mac = token.split(".")
    with pytest.raises(InvalidToken):
        verify(SECRET, f"v1.{payload_other}.{mac}")


def _valid() -> str:
    return sign(SECRET, "infomail", "reader@example.com")


def _tampered_payload() -> str:
    v, payload, mac = _valid().split(".")
    # Re-encode a different (list, address) under the old mac.
    forged = tokens._b64(b"infomail\nattacker@example.com")
    assert forged != payload
    return f"{v}.{forged}.{mac}"


def _tampered_payload_char() -> str:
    v, payload, mac = _valid().split(".")
    return f"{v}.{_swap_first(payload)}.{mac}"


def _tampered_mac() -> str:
    v, payload, mac = _valid().split(".")
    return f"{v}.{payload}.{_swap_first(mac)}"


def _signed_payload(payload: bytes) -> str:
    # Correctly signed, but not a (list, address) pair: must still be refused, not crash.
    return f"v1.{tokens._b64(payload)}.{tokens._b64(tokens._mac(SECRET, payload))}"


BAD_TOKENS = {
    "tampered payload": _tampered_payload,
    "tampered payload character": _tampered_payload_char,
    "tampered mac": _tampered_mac,
    "truncated": lambda: _valid()[:-6],
    "mac missing": lambda: _valid().rsplit(".", 1)[0],
    "extra segment": lambda: _valid() + ".AAAA",
    "wrong version": lambda: "v2" + _valid()[2:],
    "no version": lambda: _valid()[3:],
    "empty": lambda: "",
    "non-ascii characters": lambda: _valid()[:-1] + "é",
    "huge": lambda: _valid() + "A" * 5000,
    "huge but well formed": lambda: sign(SECRET, "infomail", "a" * 2000 + "@example.com"),
    "genuine mac, payload without address": lambda: _signed_payload(b"infomail"),
    "genuine mac, payload with two line breaks": lambda: _signed_payload(b"infomail\na@example.com\nx"),
    "wrong secret": lambda: sign(b"another-secret", "infomail", "reader@example.com"),
}


@pytest.mark.parametrize("make", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_bad_tokens_are_refused(make):
    token = make()
    assert token != _valid()
    with pytest.raises(InvalidToken):
        verify(SECRET, token)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _valid().replace(".", ".!*$", 1),
        lambda: _valid() + "==",
        lambda: _valid().replace("-", "+").replace("_", "/"),
    ],
    ids=["junk characters", "padding", "standard base64 alphabet"],
)
def test_non_base64url_characters_are_refused(make):
    token = make()
    assert token != _valid()
    with pytest.raises(InvalidToken):
        verify(SECRET, token)


@pytest.mark.parametrize("token", [None, 42, b"v1.abc.def"])
def test_non_string_tokens_are_refused(token):
    with pytest.raises(InvalidToken):
        verify(SECRET, token)


def test_empty_secret_is_a_configuration_error():
    with pytest.raises(ValueError):
        sign(b"", "infomail", "reader@example.com")
    with pytest.raises(ValueError):
        verify(b"", _valid())


def test_verification_compares_in_constant_time(monkeypatch):
    real = tokens.hmac.compare_digest
    calls = []

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("newsletter.tokens.hmac.compare_digest", spy)
    assert verify(SECRET, _valid()) == ("infomail", "reader@example.com")
    assert len(calls) == 1
    with pytest.raises(InvalidToken):
        verify(SECRET, _tampered_mac())
    assert len(calls) == 2


def test_a_token_has_exactly_one_valid_spelling():
    """base64 leaves spare low bits in a last character that does not fill whole bytes: setting them
    spells the same bytes another way. Only the canonical spelling verifies."""
    secret = b"s3cret"
    token = tokens.sign(secret, "infomail", "reader@example.com")
    assert tokens.verify(secret, token)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    accepted = set()
    for part in (1, 2):  # the payload and the signature
        pieces = token.split(".")
        for c in alphabet:
            pieces[part] = pieces[part][:-1] + c
            try:
                tokens.verify(secret, ".".join(pieces))
                accepted.add(".".join(pieces))
            except tokens.InvalidToken:
                pass
    assert accepted == {token}
