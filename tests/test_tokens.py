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


# --- tokens for one purpose (the confirmation link): p1.<key version>.payload.mac ---------------------


class Ring:
    """Versions 2 and 3 honoured, as keys.KeyRing after a rotation with version 1 dropped."""

    secrets = {1: b"old-secret", 2: b"secret-two", 3: b"secret-three"}

    def honoured(self, version):
        return self.secrets[version] if version in (2, 3) else None

    def unversioned(self):
        return []


def _confirm(version=3, expires_at=2_000_000_000):
    secret = Ring.secrets[version]
    return tokens.sign_for(
        secret, "confirm", "infomail", "reader@example.com", expires_at=expires_at, ref="s-1", key_version=version
    )


def test_a_purpose_token_round_trips_with_its_claims():
    claims = tokens.verify_for(Ring(), _confirm(), "confirm", now=1_900_000_000)
    assert claims == tokens.Claims("confirm", "infomail", "reader@example.com", 2_000_000_000, "s-1")
    assert tokens.verify_for(Ring(), _confirm(version=2), "confirm", now=0).list_id == "infomail"


def test_a_purpose_token_grants_its_purpose_only_until_it_expires():
    with pytest.raises(InvalidToken, match="a token for 'confirm', not 'preferences'"):
        tokens.verify_for(Ring(), _confirm(), "preferences", now=0)
    with pytest.raises(tokens.ExpiredToken):
        tokens.verify_for(Ring(), _confirm(), "confirm", now=2_000_000_001)


def test_a_purpose_token_and_an_unsubscribe_token_never_stand_in_for_each_other():
    unsubscribe = sign(Ring.secrets[3], "infomail", "reader@example.com", key_version=3)
    with pytest.raises(InvalidToken, match="unknown token format"):
        tokens.verify_for(Ring(), unsubscribe, "confirm", now=0)
    with pytest.raises(InvalidToken, match="unknown token format"):
        verify(Ring(), _confirm())
    # Same key, same payload bytes: the MAC covers the prefix, so relabelling is caught too.
    relabelled = "v2." + _confirm().split(".", 1)[1]
    with pytest.raises(InvalidToken, match="signature"):
        verify(Ring(), relabelled)


@pytest.mark.parametrize(
    "mangle, reason",
    [
        (lambda t: t.replace("p1.3.", "p1.1.", 1), "no longer honoured"),  # a dropped key version
        (lambda t: t.replace("p1.3.", "p1.03.", 1), "unknown token format"),
        (lambda t: t.replace("p1.3.", "p1.", 1), "unknown token format"),
        (lambda t: t + ".x", "unknown token format"),
        (lambda t: ".".join([*t.split(".")[:2], _swap_first(t.split(".")[2]), t.split(".")[3]]), "signature"),
        (lambda t: ".".join([*t.split(".")[:3], _swap_first(t.split(".")[3])]), "signature"),
        (lambda t: t[:-1] + "!", "base64url"),
        (lambda t: "p1.3." + "A" * 1100, "oversized"),
    ],
)
def test_forged_and_mangled_purpose_tokens_are_refused(mangle, reason):
    with pytest.raises(InvalidToken, match=reason):
        tokens.verify_for(Ring(), mangle(_confirm()), "confirm", now=0)


def test_a_genuine_purpose_token_with_a_malformed_payload_is_refused():
    # Signed with the real key (as a bug in the signer would), but not five fields.
    payload = b"confirm\ninfomail\nreader@example.com"
    prefix = "p1.3"
    forged = f"{prefix}.{tokens._b64(payload)}.{tokens._b64(tokens._mac(Ring.secrets[3], payload, prefix))}"
    with pytest.raises(InvalidToken, match="malformed"):
        tokens.verify_for(Ring(), forged, "confirm", now=0)
    with pytest.raises(ValueError):
        tokens.sign_for(b"k", "confirm", "infomail", "a\nb@example.com", expires_at=1, ref="r", key_version=1)
