"""Access and erasure requests: `newsletter subscribers show` prints everything held about a
person; `forget` erases it everywhere and keeps them out with a keyed hash."""

from __future__ import annotations

import json

import pytest
from conftest import add_subscribers, deliver, issue_doc, publish

from devstack import ses_feedback
from newsletter.erasure import LABEL, PREFIX
from newsletter.store import from_item
from newsletter_cli import person
from newsletter_cli.stack import OUTPUTS, Target

PERSON = "ana.silva@example.org"


@pytest.fixture
def target(stack):
    return Target("local", "test", {logical: stack.ref(logical) for logical in OUTPUTS}, local=stack)


@pytest.fixture
def held(stack, target):
    """Ana on two lists, sent an issue, with a soft bounce on record; Bea, suppressed, beside her."""
    from newsletter.store.lists import put_list
    from newsletter.store.suppressions import suppress

    put_list(stack.client("dynamodb"), stack.ref("ListsTable"), "jobs", "Vacancies")
    consent = {"method": "import", "source": "readers.csv", "at": "2026-01-01T00:00:00Z"}
    add_subscribers(stack, [{"email": PERSON, "name": "Ana", "status": "active", "language": "pt", "consent": consent}])
    add_subscribers(stack, [{"email": PERSON, "name": "Ana", "status": "active", "language": "pt"}], list_id="jobs")
    add_subscribers(stack, [{"email": "bea@example.org", "name": "Bea", "status": "active", "language": "en"}])
    suppress(stack.client("dynamodb"), stack.ref("SuppressionsTable"), "bea@example.org", "complaint", "2026-01-01")
    publish(stack, issue_doc())
    deliver(stack)
    [sent] = [i for i in ses_feedback.sent_ledger(stack, "2015-07") if i["email"] == PERSON]
    bounce = ses_feedback.notification(
        "Bounce",
        sent["message_id"],
        [PERSON],
        issue_id="2015-07",
        list_id="infomail",
        bounce_type="Transient",
        bounce_subtype="MailboxFull",
    )
    ses_feedback.deliver(stack, [bounce])
    return person.show(target, "Ana.Silva@Example.org")


def test_show_prints_everything_held_about_a_person(held):
    assert held["address"] == PERSON
    assert sorted(s["list_id"] for s in held["subscriptions"]) == ["infomail", "jobs"]
    infomail = next(s for s in held["subscriptions"] if s["list_id"] == "infomail")
    assert infomail["consent"]["source"] == "readers.csv"
    assert [s["issue_id"] for s in held["sends"]] == ["2015-07"] and held["sends"][0]["status"] == "sent"
    kinds = sorted(f["pk"].split("#")[0] for f in held["feedback"])
    assert "addr" in kinds and "seen" in kinds  # the soft-bounce history and the once-only marker
    assert held["suppression"] is None
    json.dumps(held, default=str)  # what the command prints


def test_forget_erases_everywhere_and_keeps_a_keyed_hash(stack, target, held):
    deleted = person.forget(target, PERSON)
    assert deleted == {"subscriptions": 2, "sends": 1, "feedback": len(held["feedback"]), "suppression": 0}
    after = person.show(target, PERSON)
    assert after == {"address": PERSON, "subscriptions": [], "suppression": None, "sends": [], "feedback": []}
    ddb = stack.client("dynamodb")
    items = [from_item(i) for i in ddb.scan(TableName=stack.ref("SuppressionsTable"))["Items"]]
    markers = [i for i in items if i["email"].startswith(PREFIX)]
    assert len(markers) == 1 and markers[0]["reason"] == "forgotten"
    dump = json.dumps(
        [
            from_item(i)
            for t in ("SubscribersTable", "SendsTable", "FeedbackTable", "SuppressionsTable")
            for i in ddb.scan(TableName=stack.ref(t))["Items"]
        ],
        default=str,
    )
    assert PERSON not in dump and "bea@example.org" in dump  # nobody else touched
    ssm = stack.client("ssm")
    versions = ssm.get_parameter_history(Name=target.token_secret_name())["Parameters"]
    assert LABEL in next(v for v in versions if v["Version"] == 1).get("Labels", [])
    assert person.forget(target, PERSON) == {"subscriptions": 0, "sends": 0, "feedback": 0, "suppression": 0}


def test_an_erased_person_cannot_be_imported_back(stack, target, held, tmp_path):
    from newsletter_cli.app import _forgotten_id
    from newsletter_cli.subscribers import import_csv

    person.forget(target, PERSON)
    csv_file = tmp_path / "again.csv"
    csv_file.write_text(f"email,name\n{PERSON.upper()},Ana\nnew@example.org,New\n", encoding="utf-8")
    report = import_csv(
        stack.client("dynamodb"),
        subscribers_table=stack.ref("SubscribersTable"),
        suppressions_table=stack.ref("SuppressionsTable"),
        list_id="infomail",
        path=csv_file,
        forgotten_id=_forgotten_id(target),
    )
    assert (report.imported, report.suppressed) == (1, 1)
    assert report.problems[0].reason == "suppressed (forgotten): not imported"
    assert person.show(target, PERSON)["subscriptions"] == []


def test_before_anyone_is_forgotten_an_import_needs_no_erasure_key(stack, target):
    from newsletter_cli.app import _forgotten_id

    check = _forgotten_id(target)
    assert check is not None and check(PERSON).startswith(PREFIX)  # the local stack has a secret: version 1


def test_suppressed_person_shows_the_suppression_and_forget_removes_it(stack, target, held):
    shown = person.show(target, "bea@example.org")
    assert shown["suppression"]["reason"] == "complaint"
    assert person.forget(target, "bea@example.org")["suppression"] == 1
