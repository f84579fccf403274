"""Staged sending: the cohort first (a reproducible sample), a wait for its feedback, then the rest
of the list or the issue held and paused; an operator's resume sends the rest anyway. Whatever
happens, every reader gets the issue at most once and nobody outside the cohort before the verdict."""

from __future__ import annotations

import collections
import json

import pytest
from conftest import add_subscribers, deliver, issue_doc, issue_record, mailed, people, publish

from devstack import ses_feedback
from newsletter import lifecycle, rollout
from newsletter.issue import InvalidIssue, Rollout, parse_document
from newsletter.queue_messages import Judge, Recipient

ISSUE = "2015-07"
PLAN = {"share_percent": 20, "wait_minutes": 30}
READERS = 200
WAIT_S = 1800


def addresses(n: int = READERS) -> list[str]:
    return [p["email"] for p in people(n)]


def cohort_of(all_addresses: list[str], share=20, issue_id: str = ISSUE) -> set[str]:
    return {a for a in all_addresses if rollout.in_cohort(issue_id, a, share)}


def send_cohort(stack, plan: dict | None = None, **doc) -> set[str]:
    """Publish a rolled-out issue to READERS readers and run the functions until only the wait
    is left (nothing visible within a few minutes); the cohort, as the hash defines it."""
    add_subscribers(stack, people(READERS))
    result = publish(stack, issue_doc(ISSUE, rollout=plan or PLAN, **doc))
    assert result["outcomes"][0]["status"] == "published"
    stack.run("FanoutFunction", "SendFunction", horizon_s=300)
    return cohort_of(addresses(), (plan or PLAN)["share_percent"])


def feedback(stack, kind: str, readers: set[str], **extra) -> None:
    """SES's notifications of `kind` for these readers' messages of the issue."""
    sent = {i["email"]: i["message_id"] for i in ses_feedback.sent_ledger(stack, ISSUE)}
    ses_feedback.deliver(
        stack,
        [
            ses_feedback.notification(kind, sent[a], [a], issue_id=ISSUE, list_id="infomail", **extra)
            for a in sorted(readers)
        ],
    )


def judge_message(stack) -> None:
    stack.client("sqs").send_message(QueueUrl=stack.ref("FanoutQueue"), MessageBody=Judge(ISSUE).to_message())


def once_each(expected: set[str]) -> None:
    got = collections.Counter(mailed())
    assert set(got) == expected and max(got.values()) == 1


# --- the sample -------------------------------------------------------------------------------


def test_the_cohort_is_a_reproducible_sample_of_the_share_and_the_parts_split_the_list():
    everyone = [f"reader{i}@example.org" for i in range(20_000)]
    cohort = cohort_of(everyone, 5)
    assert abs(len(cohort) - 1000) < 4 * (20_000 * 0.05 * 0.95) ** 0.5  # a fair 5% sample
    assert cohort == cohort_of(everyone, 5)  # the same every time: a re-fanned page queues the same readers
    other = cohort_of(everyone, 5, issue_id="2015-08")
    assert len(cohort & other) < 200  # another issue, another sample (5% of 1,000 expected in both)
    page = [(Recipient(a), None) for a in everyone[:2000]]
    first = rollout.select(page, ISSUE, rollout.COHORT, {"share_percent": 5})
    rest = rollout.select(page, ISSUE, rollout.REST, {"share_percent": 5})
    assert len(first) + len(rest) == len(page) and not {r for r, _ in first} & {r for r, _ in rest}
    assert rollout.select(page, ISSUE, "", None) == page
    with pytest.raises(LookupError, match="has no rollout"):
        rollout.select(page, ISSUE, rollout.REST, None)


@pytest.mark.parametrize(
    "plan, where",
    [
        ({"share_percent": 0}, "rollout.Rollout.share_percent"),
        ({"share_percent": 80}, "rollout.Rollout.share_percent"),
        ({"share_percent": 5, "wait_minutes": -1}, "rollout.Rollout.wait_minutes"),
        ({"share_percent": 5, "max_bounce_rate_percent": 0}, "rollout.Rollout.max_bounce_rate_percent"),
        ({"wait_minutes": 30}, "rollout.Rollout.share_percent"),
        ({"share_percent": 5, "wait": 30}, "rollout.Rollout.wait"),
        (True, "rollout"),
    ],
)
def test_a_wrong_rollout_is_refused_saying_where(plan, where):
    with pytest.raises(InvalidIssue) as caught:
        parse_document(json.dumps(issue_doc(rollout=plan)).encode(), max_bytes=1 << 20)
    assert any(p.startswith(where) for p in caught.value.problems), caught.value.problems


def test_an_issue_takes_its_own_rollout_else_its_lists_and_false_sends_at_once():
    mine = Rollout(share_percent=2.5)
    listed = {"share_percent": 5, "wait_minutes": 60}
    assert rollout.plan_for(mine, listed)["share_percent"] == mine.plan()["share_percent"]
    assert str(mine.plan()["share_percent"]) == "2.5"  # kept as a decimal: DynamoDB has no floats
    assert rollout.plan_for(None, listed) == listed
    assert rollout.plan_for(False, listed) is None
    assert rollout.plan_for(None, None) is None


# --- the journeys -----------------------------------------------------------------------------


def test_the_cohort_goes_first_and_the_rest_only_after_the_wait_and_a_good_verdict(stack):
    cohort = send_cohort(stack)
    assert 20 < len(cohort) < 70
    once_each(cohort)  # nobody outside the cohort yet
    record = issue_record(stack, ISSUE)
    assert record["status"] == "sending" and record["rollout_phase"] == rollout.WAITING
    assert int(record["rollout_judge_at"]) - stack.clock.time() > WAIT_S - 300
    feedback(stack, "Delivery", cohort)
    deliver(stack)  # the wait passes (the stack's clock), the verdict, the rest
    once_each(set(addresses()))
    record = issue_record(stack, ISSUE)
    assert record["status"] == "sent" and record["rollout_phase"] == rollout.REST
    assert record["rollout_verdict"] == "passed"
    assert record["rollout_cohort"]["sent"] == len(cohort) == record["rollout_cohort"]["delivered"]
    assert int(record["sent"]) == READERS
    shown = rollout.describe(record)
    assert shown["phase"] == "rest" and shown["cohort"]["bounce_rate_percent"] == 0


def test_a_bad_cohort_holds_the_issue_and_a_resume_sends_the_rest_once(stack, capsys):
    cohort = send_cohort(stack)
    bouncing = set(sorted(cohort)[: len(cohort) // 5])  # 20% of the cohort: dead addresses
    feedback(stack, "Bounce", bouncing)
    feedback(stack, "Delivery", cohort - bouncing)
    capsys.readouterr()
    deliver(stack)
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    paused = [m for m in metrics if "IssuePaused" in m and "issue" not in m]  # the series the alarm watches
    assert [m["IssuePaused"] for m in paused] == [[1.0]]
    assert any(m.get("RolloutHeld") == [1.0] and m.get("issue") == ISSUE for m in metrics)
    once_each(cohort)  # the rest never went
    record = issue_record(stack, ISSUE)
    assert record["status"] == "paused" and record["rollout_phase"] == rollout.HELD
    assert record["rollout_reason"].startswith("the cohort's hard bounce rate")
    assert f"({len(bouncing)} of {len(cohort)} sent) passed 5" in record["rollout_reason"]
    assert record["rollout_cohort"]["bounced_hard"] == len(bouncing)
    # The operator's override: resume (as `newsletter resume` does).
    ddb, table = stack.client("dynamodb"), stack.ref("IssuesTable")
    assert lifecycle.resume_issue(ddb, table, ISSUE)
    did = rollout.after_resume(ddb, stack.client("sqs"), table, stack.ref("FanoutQueue"), ISSUE, _Log())
    assert did == "the rest of the list is queued"
    deliver(stack)
    once_each(set(addresses()))  # the bounced cohort readers are suppressed; nobody gets it twice
    record = issue_record(stack, ISSUE)
    assert record["status"] == "sent" and record["rollout_released_at"]


def test_complaints_hold_it_too(stack):
    cohort = send_cohort(stack, {**PLAN, "max_complaint_rate_percent": 1})
    feedback(stack, "Delivery", cohort)
    feedback(stack, "Complaint", set(sorted(cohort)[:2]))  # 2 of 20-70: over 1%
    deliver(stack)
    record = issue_record(stack, ISSUE)
    assert record["rollout_phase"] == rollout.HELD and "complaint rate" in record["rollout_reason"]
    once_each(cohort)


def test_an_early_or_repeated_judge_decides_nothing_twice(stack):
    cohort = send_cohort(stack)
    judge_message(stack)  # before its time: waits on
    judge_message(stack)
    stack.run("FanoutFunction", horizon_s=60)
    assert issue_record(stack, ISSUE)["rollout_phase"] == rollout.WAITING
    once_each(cohort)
    deliver(stack)
    for _ in range(3):  # after the verdict: every one finds the rest queued already
        judge_message(stack)
    deliver(stack)
    once_each(set(addresses()))
    assert issue_record(stack, ISSUE)["status"] == "sent"


def test_a_rest_queued_twice_mails_nobody_twice(stack):
    """The verdict queued the rest, then failed before marking it queued: the Judge is delivered
    again and queues it again; the ledger and the page markers keep every reader at once."""
    send_cohort(stack)
    ddb, table = stack.client("dynamodb"), stack.ref("IssuesTable")
    deliver(stack)
    ddb.update_item(
        TableName=table,
        Key={"issue_id": {"S": ISSUE}, "sk": {"S": "issue"}},
        UpdateExpression="REMOVE rollout_rest_queued_at SET #s = :sending",  # as if the mark never landed
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":sending": {"S": "sending"}},
    )
    judge_message(stack)
    deliver(stack)
    once_each(set(addresses()))
    assert int(issue_record(stack, ISSUE)["queued"]) == READERS


def test_a_cancel_during_the_wait_stops_the_rest(stack):
    cohort = send_cohort(stack)
    assert lifecycle.cancel_issue(stack.client("dynamodb"), stack.ref("IssuesTable"), ISSUE)
    deliver(stack)
    once_each(cohort)
    record = issue_record(stack, ISSUE)
    assert record["status"] == "cancelled" and record["rollout_phase"] == rollout.WAITING


def test_an_operators_pause_during_the_wait_is_kept_whatever_the_verdict(stack):
    cohort = send_cohort(stack)
    ddb, table = stack.client("dynamodb"), stack.ref("IssuesTable")
    assert lifecycle.pause_issue(ddb, table, ISSUE, reason="checking a link")
    feedback(stack, "Delivery", cohort)
    stack.run("FanoutFunction")  # the verdict: passed, the rest queued, its batches wait on the queue
    record = issue_record(stack, ISSUE)
    assert record["status"] == "paused" and record["paused_reason"] == "checking a link"
    assert record["rollout_phase"] == rollout.REST
    stack.run("FanoutFunction", "SendFunction", horizon_s=900)
    once_each(cohort)  # paused: nothing more went
    assert lifecycle.resume_issue(ddb, table, ISSUE)
    deliver(stack)
    once_each(set(addresses()))


def test_a_cohort_of_nobody_goes_straight_to_the_rest(stack):
    """A tiny list can have nobody in a small share: there is nothing to wait for."""
    readers = [a for a in addresses(40) if not rollout.in_cohort(ISSUE, a, 0.5)]
    add_subscribers(stack, [p for p in people(40) if p["email"] in readers])
    publish(stack, issue_doc(ISSUE, rollout={"share_percent": 0.5, "wait_minutes": 60}))
    start = stack.clock.time()
    deliver(stack)
    once_each(set(readers))
    record = issue_record(stack, ISSUE)
    assert record["status"] == "sent" and record["rollout_cohort"]["sent"] == 0
    assert stack.clock.time() - start < 600  # no hour's wait for an empty cohort


def test_the_lists_rollout_applies_unless_the_issue_says_false(stack):
    from newsletter.store import lists

    ddb = stack.client("dynamodb")
    record = lists.get_list(ddb, stack.ref("ListsTable"), "infomail")
    lists.put_list(ddb, stack.ref("ListsTable"), **{**record, "rollout": Rollout(share_percent=20).plan()})
    add_subscribers(stack, people(50))
    publish(stack, issue_doc("2015-07"))
    publish(stack, issue_doc("2015-08", rollout=False))
    assert issue_record(stack, "2015-07")["rollout"]["share_percent"] == 20
    assert issue_record(stack, "2015-07")["rollout_phase"] == rollout.COHORT
    assert "rollout" not in issue_record(stack, "2015-08")


class _Log:
    def info(self, *args, **kwargs):
        pass

    warning = info


def test_a_cancelled_cohort_resent_finishes_the_cohort_only_and_waits_for_a_resume(stack):
    """`resend --not-sent` after a cancel during the cohort sends the cohort's unsent readers; the
    rest of the list is held for an operator, never sent by the resend."""
    from newsletter.sender import ISSUE_TTL
    from newsletter_cli.recipients import Tables, resend_not_sent

    add_subscribers(stack, people(READERS))
    publish(stack, issue_doc(ISSUE, rollout=PLAN))
    stack.run("FanoutFunction")  # the cohort's batches are queued, none sent
    ddb, table = stack.client("dynamodb"), stack.ref("IssuesTable")
    assert lifecycle.cancel_issue(ddb, table, ISSUE)
    stack.run("SendFunction")  # dropped
    assert mailed() == []
    tables = Tables(
        issues=table,
        sends=stack.ref("SendsTable"),
        subscribers=stack.ref("SubscribersTable"),
        suppressions=stack.ref("SuppressionsTable"),
        feedback=stack.ref("FeedbackTable"),
    )
    cohort = cohort_of(addresses())
    done = resend_not_sent(
        ddb, stack.client("sqs"), tables, issue_record(stack, ISSUE), stack.ref("SendQueue"), delay_s=int(ISSUE_TTL) + 5
    )  # as on AWS: longer than a send function trusts the "cancelled" it read
    assert done.reopened and done.queued == len(cohort)
    deliver(stack)
    once_each(cohort)
    record = issue_record(stack, ISSUE)
    assert (record["status"], record["rollout_phase"]) == ("sending", rollout.HELD)
    assert "resent to the cohort only" in record["rollout_reason"]
    # The operator's resume (the issue is sending: `newsletter resume` releases the held rest).
    assert rollout.after_resume(ddb, stack.client("sqs"), table, stack.ref("FanoutQueue"), ISSUE, _Log())
    deliver(stack)
    once_each(set(addresses()))
    assert issue_record(stack, ISSUE)["status"] == "sent"


def test_the_verdict_is_counted_once_however_often_its_judge_comes(stack, capsys):
    cohort = send_cohort(stack)
    feedback(stack, "Delivery", cohort)
    capsys.readouterr()
    deliver(stack)
    for _ in range(2):
        judge_message(stack)
    deliver(stack)
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert [m["RolloutContinued"] for m in metrics if "RolloutContinued" in m] == [[1.0]]
    once_each(set(addresses()))
