"""No address in any log line, in clear or as a hash anybody with the list could compute."""

import hashlib
import re

import boto3
from conftest import SECRET, add_subscribers, deliver, issue_doc, people, publish

from devstack import ses_feedback

ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def test_a_whole_run_logs_no_address_and_only_keyed_hashes(stack, ses_faults, capsys):
    """Publish, send (SES naming a recipient in its refusal), feedback, unsubscribe: every line
    the functions write, read for addresses and for the unkeyed hash of any reader."""
    from newsletter.privacy import address_hash

    readers = people(12)
    add_subscribers(stack, readers)
    refused, unlucky = readers[3]["email"], readers[5]["email"]
    text = f"Email address is not verified. The following identities failed the check in region US-EAST-1: {refused}"
    from botocore.exceptions import ClientError

    failed = []

    def rule(n, address):
        if address == refused:
            return ClientError({"Error": {"Code": "MessageRejected", "Message": text}}, "SendEmail")
        if address == unlucky and not failed:
            failed.append(address)  # an error whose text names the recipient, logged with its traceback
            return RuntimeError(f"something broke while sending to {address}")
        return None

    ses_faults.rule = rule
    publish(stack, issue_doc())
    deliver(stack)
    ses_feedback.deliver(stack, ses_feedback.simulator_outcomes(stack, "infomail"))
    stack.invoke(
        "UnsubscribeFunction",
        stack.function_url_event(
            "POST",
            {"token": __import__("newsletter.tokens", fromlist=["sign"]).sign(SECRET.encode(), "infomail", unlucky)},
            "List-Unsubscribe=One-Click",
        ),
    )
    out = capsys.readouterr().out
    assert failed and "something broke while sending to <address " in out  # scrubbed, not dropped
    assert ADDRESS.findall(out) == [], ADDRESS.findall(out)[:3]
    unkeyed = {hashlib.sha256(r["email"].encode()).hexdigest()[:16] for r in readers}
    assert not any(h in out for h in unkeyed)
    assert address_hash(refused, secret=SECRET.encode()) in out  # the operator can find the reader's lines


def test_the_cli_prints_the_hash_the_logs_carry(stack, capsys):
    from typer.testing import CliRunner

    from newsletter.privacy import address_hash
    from newsletter_cli import app as module
    from newsletter_cli.stack import OUTPUTS, Target

    target = Target(
        "stack",
        "newsletter",
        {logical: stack.ref(logical) for logical in OUTPUTS},
        session=boto3.Session(region_name="us-east-1"),
        outputs={"TokenSecretParameterName": "/" + stack.param("TokenSecretParameter")},
    )
    import unittest.mock

    with unittest.mock.patch.object(module.Options, "target", lambda self: target):
        result = CliRunner().invoke(module.app, ["subscribers", "hash", "Reader@Example.com"])
    assert result.exit_code == 0, result.output
    assert result.output.split()[0] == address_hash("reader@example.com", secret=SECRET.encode())
