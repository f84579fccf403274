"""The token secret can be rotated without breaking the unsubscribe links in mail already sent."""

import unittest.mock

import boto3
import pytest
from conftest import SECRET, add_subscribers, deliver, issue_doc, people, publish

from newsletter import tokens
from newsletter.keys import DAY, Key, KeyRing


def ring(keys: dict[int, Key], grace_days: float = 30) -> KeyRing:
    return KeyRing(lambda v: keys[max(keys)] if v is None else keys.get(v), grace_days)


def test_a_replaced_version_is_honoured_for_the_grace_period_after_its_replacement(monkeypatch):
    from newsletter import clock

    keys = {1: Key(1, b"one", 0.0), 2: Key(2, b"two", 100 * DAY), 3: Key(3, b"three", 200 * DAY)}
    r = ring(keys, grace_days=30)
    monkeypatch.setattr(clock, "now", lambda: 125 * DAY)
    assert (r.honoured(1), r.honoured(2), r.honoured(3)) == (b"one", b"two", b"three")
    assert r.unversioned() == [b"three", b"two", b"one"]
    monkeypatch.setattr(clock, "now", lambda: 131 * DAY)  # a month after version 2 replaced version 1
    assert (r.honoured(1), r.honoured(2)) == (None, b"two")
    assert r.unversioned() == [b"three", b"two"]
    assert r.honoured(4) is None and r.honoured_until(3) is None


def test_a_v2_token_names_its_key_and_cannot_be_moved_to_another():
    import time

    keys = {1: Key(1, b"one", time.time()), 2: Key(2, b"two", time.time())}
    token = tokens.sign(b"one", "infomail", "a@example.com", key_version=1)
    assert token.startswith("v2.1.")
    assert tokens.verify(ring(keys, grace_days=3650), token) == ("infomail", "a@example.com")
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(ring(keys, grace_days=3650), token.replace("v2.1.", "v2.2.", 1))
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(ring(keys, grace_days=3650), token.replace("v2.1.", "v1.", 1))


def link_token(stack, address: str) -> str:
    """The unsubscribe token in the newest message to `address`."""
    import email
    import email.policy

    from devstack.stack import sent_messages

    for m in reversed(sent_messages()):
        msg = email.message_from_string(m.raw_data, policy=email.policy.default)
        if msg["To"].addresses[0].addr_spec == address:
            return msg["List-Unsubscribe"].split("token=", 1)[1].split("&", 1)[0]
    raise LookupError(address)


def unsubscribe(stack, token: str) -> int:
    event = stack.function_url_event("POST", {"token": token}, "List-Unsubscribe=One-Click")
    return stack.invoke("UnsubscribeFunction", event)["statusCode"]


def test_links_already_sent_keep_working_through_a_rotation_and_stop_after_the_grace_period(stack):
    readers = people(4)
    add_subscribers(stack, readers)
    publish(stack, issue_doc())
    deliver(stack)
    old = {r["email"]: link_token(stack, r["email"]) for r in readers}
    assert all(t.startswith("v2.1.") for t in old.values())
    legacy = tokens.sign(SECRET.encode(), "infomail", readers[3]["email"])  # from before versions
    name = "/" + stack.param("TokenSecretParameter")
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name=name, Value="a-new-secret", Type="SecureString", Overwrite=True
    )
    stack.clock.advance(301)  # five minutes: the functions read the new version
    publish(stack, issue_doc(issue_id="2015-08"))
    deliver(stack)
    assert link_token(stack, readers[0]["email"]).startswith("v2.2.")  # new mail: the new key

    assert unsubscribe(stack, old[readers[0]["email"]]) == 200  # mail sent before: still works
    assert unsubscribe(stack, legacy) == 200
    grace = float(stack.functions["UnsubscribeFunction"].environment["TOKEN_GRACE_DAYS"])
    stack.clock.advance((grace + 1) * DAY)
    assert unsubscribe(stack, old[readers[1]["email"]]) == 400  # the replaced key's time is up
    fresh = tokens.sign(b"a-new-secret", "infomail", readers[2]["email"], key_version=2)
    assert unsubscribe(stack, fresh) == 200


def test_newsletter_secret_rotate_and_show(stack):
    from typer.testing import CliRunner

    from newsletter_cli import app as module
    from newsletter_cli.stack import OUTPUTS, Target

    target = Target(
        "stack",
        "newsletter",
        {logical: stack.ref(logical) for logical in OUTPUTS},
        session=boto3.Session(region_name="us-east-1"),
        outputs={"TokenSecretParameterName": "/" + stack.param("TokenSecretParameter"), "TokenGraceDays": "90"},
    )
    with unittest.mock.patch.object(module.Options, "target", lambda self: target):
        rotated = CliRunner().invoke(module.app, ["secret", "rotate", "--yes"])
        shown = CliRunner().invoke(module.app, ["secret", "show"])
    assert rotated.exit_code == 0, rotated.output
    assert "version 2 signs from now on" in rotated.output and "version 1 keep working" in rotated.output
    assert "version 2 signs" in shown.output and "version 1: honoured until" in shown.output
    assert "90 days" in shown.output
    assert target.token_secret() != SECRET.encode()
