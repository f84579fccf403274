"""The messages between the functions: one owner, versioned, and what older code wrote still parses."""

import json

import pytest

from newsletter.queue_messages import (
    VERSION,
    Batch,
    Malformed,
    Recipient,
    Reconcile,
    Segment,
    parse_batch,
    parse_fanout,
    segments,
)

# Exactly what publish, fan-out and completion wrote before messages carried a version.
OLD_SEGMENT = '{"issue_id": "2015-07", "list_id": "infomail", "shard": 3, "page": 0}'
OLD_CONTINUATION = (
    '{"issue_id": "2015-07", "list_id": "infomail", "shard": 3, "page": 7, "cursor": {"pk": {"S": "infomail#03"}}}'
)
OLD_RECONCILE = '{"kind": "reconcile", "issue_id": "2015-07"}'
OLD_BATCH = (
    '{"issue_id":"2015-07","list_id":"infomail","batch_id":"03-000007-01",'
    '"recipients":[{"email":"Ana@Example.org","name":"Ana"},{"email":"bo@example.org","name":""}]}'
)


def test_messages_written_before_versions_still_parse():
    assert parse_fanout(OLD_SEGMENT) == Segment("2015-07", "infomail", 3, 0, None)
    assert parse_fanout(OLD_CONTINUATION) == Segment("2015-07", "infomail", 3, 7, {"pk": {"S": "infomail#03"}})
    assert parse_fanout(OLD_RECONCILE) == Reconcile("2015-07")
    batch = parse_batch(OLD_BATCH)
    assert batch.recipients == (Recipient("ana@example.org", "Ana"), Recipient("bo@example.org", ""))
    assert (batch.batch_id, batch.attempt) == ("03-000007-01", 0)


def test_every_message_names_its_version_and_kind_and_reads_back_as_written():
    batch = Batch("2015-07", "infomail", "b", (("a@example.org", "A", "claim-1"), ("b@example.org", "")), 2)
    for message, parse in [
        (Segment("2015-07", "infomail", 15, 4, {"k": 1}), parse_fanout),
        (Reconcile("2015-07"), parse_fanout),
        (batch, parse_batch),
    ]:
        body = message.to_message()
        assert json.loads(body)["v"] == VERSION and json.loads(body)["kind"]
        assert parse(body) == message
    assert [s.shard for s in segments("2015-07", "infomail")] == list(range(16))
    assert batch.rest(batch.recipients[1:]) == Batch("2015-07", "infomail", "b", (("b@example.org", ""),), 3)


@pytest.mark.parametrize(
    "body, parse, names",
    [
        ("{", parse_fanout, "not JSON"),
        ("[1]", parse_fanout, "not a JSON object"),
        ('{"issue_id": "x", "list_id": "y", "shard": 99}', parse_fanout, "shard"),
        ('{"list_id": "y", "shard": 1}', parse_fanout, "issue_id"),
        ('{"kind": "mystery", "issue_id": "x"}', parse_fanout, "kind"),
        ('{"v": 99, "issue_id": "x", "list_id": "y", "shard": 1}', parse_fanout, "v: version"),
        ('{"issue_id": "x", "list_id": "y", "shard": 1, "cursor": "abc"}', parse_fanout, "cursor"),
        ('{"issue_id": "x", "list_id": "y", "recipients": []}', parse_batch, "recipients"),
        ('{"issue_id": "x", "list_id": "y", "recipients": [{"email": "no-at"}]}', parse_batch, "'@'"),
        ('{"issue_id": 1, "list_id": "y", "recipients": [{"email": "a@b.org"}]}', parse_batch, "issue_id"),
        ('{"kind": "segment", "issue_id": "x", "list_id": "y", "shard": 1}', parse_batch, "kind"),
    ],
)
def test_a_message_no_function_writes_is_refused_naming_the_field(body, parse, names):
    with pytest.raises(Malformed) as caught:
        parse(body)
    assert names in str(caught.value)


def test_an_issue_changes_status_only_along_the_lifecycle(stack):
    import boto3

    from newsletter import lifecycle
    from newsletter.lifecycle import Status
    from newsletter.store import issues

    ddb, table = boto3.client("dynamodb", region_name="us-east-1"), stack.ref("IssuesTable")
    issues.create_issue(ddb, table, {"issue_id": "l-1", "list_id": "infomail", "status": "rendering"})
    with pytest.raises(ValueError):
        lifecycle.move(ddb, table, "l-1", Status.SENT, from_=Status.RENDERING)
    assert not lifecycle.move(ddb, table, "l-1", Status.PAUSED)  # only a sending issue pauses
    assert lifecycle.move(ddb, table, "l-1", Status.SENDING, from_=Status.RENDERING, expect={"list_id": "infomail"})
    assert lifecycle.pause_issue(ddb, table, "l-1") and not lifecycle.pause_issue(ddb, table, "l-1")
    assert lifecycle.cancel_issue(ddb, table, "l-1")
    assert not lifecycle.resume_issue(ddb, table, "l-1")  # cancelled is for good
    assert issues.get_issue(ddb, table, "l-1")["status"] == "cancelled"
