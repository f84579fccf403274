"""The test doubles in fakes/ answer as AWS does where the tests and benchmarks lean on them
(checked against moto, which the local stack uses), and every way of building a Lambda event
(fakes.events for tests and benchmarks, devstack's for the local stack) builds exactly the shape
of the samples in events/."""

import hashlib
import json
from datetime import datetime

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import ROOT

from devstack import template as tpl
from fakes import events
from fakes.dynamodb import FakeDynamoDB, item_size
from fakes.s3 import FakeS3
from fakes.ses import SimulatedSES
from fakes.sqs import FakeSQS, WorkQueue
from fakes.ssm import FakeSSM

EVENTS = ROOT / "events"
TABLES = ("ListsTable", "IssuesTable", "SubscribersTable", "SuppressionsTable", "SendsTable", "FeedbackTable")


def sample(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def shape(value):
    """Keys, nesting and value types, not the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


def error(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as exc:
        call()
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


# --- events ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in EVENTS.glob("sqs-*.json")))
def test_sqs_events_for_tests_and_benchmarks_have_the_samples_shape(name):
    record = sample(name)["Records"][0]
    queue = WorkQueue()
    queue.put(record["body"])
    (message,) = queue.receive(1)
    event = events.sqs_event([message], queue_arn=record["eventSourceARN"], template=name)
    assert shape(event) == shape(sample(name))
    built = event["Records"][0]
    assert built["body"] == record["body"] and built["messageId"] == message["MessageId"]
    assert built["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
    assert built["attributes"]["ApproximateReceiveCount"] == "1"
    assert shape(events.sqs_event(["a body"])) == shape(sample("sqs-send-batch.json"))  # bodies alone


@pytest.mark.parametrize("name", sorted(p.name for p in EVENTS.glob("sqs-feedback-*.json")))
def test_feedback_events_wrap_notifications_as_the_samples_do(name):
    body = json.loads(sample(name)["Records"][0]["body"])
    notification = json.loads(body["Message"])
    event = events.feedback_event([notification])
    assert shape(event) == shape(sample(name))
    envelope = json.loads(event["Records"][0]["body"])
    assert shape(envelope) == shape(body)
    assert json.loads(envelope["Message"]) == notification and envelope["TopicArn"] == body["TopicArn"]


def test_s3_events_for_tests_and_benchmarks_have_the_samples_shape():
    event = events.s3_put_event(
        "issues/2015 07.json", bucket="b-1", size=12, etag='"abc"', version_id="v1", sequencer="0A"
    )
    assert shape(event) == shape(sample("s3-put-issue.json"))
    s3 = event["Records"][0]["s3"]
    assert s3["object"] == {
        "key": "issues/2015+07.json",
        "size": 12,
        "eTag": "abc",
        "versionId": "v1",
        "sequencer": "0A",
    }
    assert s3["bucket"]["name"] == "b-1" and s3["bucket"]["arn"] == "arn:aws:s3:::b-1"


def test_the_local_stacks_events_have_the_samples_shape(stack):
    from devstack import ses_feedback

    sqs = boto3.client("sqs", region_name="us-east-1")
    sqs.send_message(QueueUrl=stack.ref("FanoutQueue"), MessageBody="{}")
    received = sqs.receive_message(QueueUrl=stack.ref("FanoutQueue"), AttributeNames=["All"])["Messages"]
    assert shape(stack.sqs_event("FanoutQueue", received)) == shape(sample("sqs-fanout-segment.json"))
    by_hand = [{"MessageId": "m", "ReceiptHandle": "r", "Body": "{}"}]  # as tests invoke a function directly
    assert shape(stack.sqs_event("SendQueue", by_hand)) == shape(sample("sqs-send-batch.json"))

    feedback = ses_feedback.sqs_event(stack, [ses_feedback.sns_body({"eventType": "Send"})])
    assert shape(feedback) == shape(sample("sqs-feedback-event-send.json"))
    body = json.loads(sample("sqs-feedback-event-send.json")["Records"][0]["body"])
    assert shape(json.loads(feedback["Records"][0]["body"])) == shape(body)

    assert shape(stack.upload_issue("issues/x.json", b"{}")) == shape(sample("s3-put-issue.json"))


# --- DynamoDB --------------------------------------------------------------------------------


@pytest.fixture
def both(stack):
    """moto's DynamoDB with the template's tables (the local stack's), and a FakeDynamoDB of the
    same tables, by the same names."""
    names = {logical: stack.ref(logical) for logical in TABLES}
    return boto3.client("dynamodb", region_name="us-east-1"), FakeDynamoDB.from_template(tpl.load(), names), names


def answers(ddb, names: dict) -> list:
    """What the stores' kinds of calls answer, in order, with AWS's bookkeeping left out."""
    subs, issues, sends = names["SubscribersTable"], names["IssuesTable"], names["SendsTable"]
    out = []

    def record(call, *keep, **request):
        try:
            response = call(**request)
            out.append({k: response[k] for k in keep if k in response})
        except ClientError as exc:
            out.append(
                (exc.response["Error"]["Code"], exc.response.get("CancellationReasons"), exc.response.get("Item"))
            )

    s = lambda v: {"S": v}  # noqa: E731
    people = [
        {"pk": s("l#00"), "email": s(f"p{n:02d}@x.org"), "status": s("active" if n % 3 else "gone")} for n in range(23)
    ]
    for i in range(0, len(people), 10):
        record(
            ddb.batch_write_item,
            "UnprocessedItems",
            RequestItems={subs: [{"PutRequest": {"Item": p}} for p in people[i : i + 10]]},
        )
    # A page at a time, filtered after the Limit, as fan-out reads a shard.
    cursor = None
    while True:
        request = dict(
            TableName=subs,
            KeyConditionExpression="pk = :pk",
            FilterExpression="#st = :a",
            ProjectionExpression="email, #st",
            ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues={":pk": s("l#00"), ":a": s("active")},
            Limit=7,
            **({"ExclusiveStartKey": cursor} if cursor else {}),
        )
        page = ddb.query(**request)
        out.append({k: page.get(k) for k in ("Items", "Count", "ScannedCount", "LastEvaluatedKey")})
        cursor = page.get("LastEvaluatedKey")
        if not cursor:
            break
    record(
        ddb.query,
        "Items",
        TableName=subs,
        KeyConditionExpression="pk = :pk AND email BETWEEN :a AND :b",
        ExpressionAttributeValues={":pk": s("l#00"), ":a": s("p05"), ":b": s("p09")},
        ScanIndexForward=False,
    )
    record(
        ddb.query,
        "Count",
        TableName=subs,
        KeyConditionExpression="pk = :pk AND begins_with(email, :p)",
        ExpressionAttributeValues={":pk": s("l#00"), ":p": s("p1")},
        Select="COUNT",
    )
    keys = [{"pk": s("l#00"), "email": s(f"p{n:02d}@x.org")} for n in (1, 2, 40)]
    got = ddb.batch_get_item(RequestItems={subs: {"Keys": keys, "ProjectionExpression": "email"}})
    out.append(sorted(i["email"]["S"] for i in got["Responses"][subs]))
    # Conditional writes: a claim that holds once, with the old item on failure.
    claim = dict(
        TableName=sends,
        Item={"issue_id": s("i"), "email": s("a@x.org"), "status": s("sending"), "message_id": s("m-1")},
        ConditionExpression="attribute_not_exists(email) OR (#st = :failed AND attempts < :max)",
        ExpressionAttributeNames={"#st": "status"},
        ExpressionAttributeValues={":failed": s("failed"), ":max": {"N": "3"}},
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )
    record(ddb.put_item, "Attributes", **claim)
    record(ddb.put_item, "Attributes", **claim)
    record(
        ddb.update_item,
        "Attributes",
        TableName=sends,
        Key={"issue_id": s("i"), "email": s("a@x.org")},
        UpdateExpression="SET #st = :sent, tries = if_not_exists(tries, :zero) + :one ADD tags :t REMOVE nothing",
        ConditionExpression="#st IN (:sending, :failed)",
        ExpressionAttributeNames={"#st": "status"},
        ExpressionAttributeValues={
            ":sent": s("sent"),
            ":zero": {"N": "0"},
            ":one": {"N": "1"},
            ":t": {"SS": ["x"]},
            ":sending": s("sending"),
            ":failed": s("failed"),
        },
        ReturnValues="ALL_NEW",
    )
    record(
        ddb.query,
        "Items",
        TableName=sends,
        IndexName="by_message_id",
        KeyConditionExpression="message_id = :m",
        ExpressionAttributeValues={":m": s("m-1")},
        Limit=1,
    )
    # A transaction: a page marker counted once, the issue's counters with it.
    marker = {
        "Put": {
            "TableName": issues,
            "Item": {"issue_id": s("i"), "sk": s("page#000#0000000")},
            "ConditionExpression": "attribute_not_exists(issue_id)",
        }
    }
    counters = {
        "Update": {
            "TableName": issues,
            "Key": {"issue_id": s("i"), "sk": s("issue")},
            "UpdateExpression": "ADD queued :n",
            "ExpressionAttributeValues": {":n": {"N": "50"}},
        }
    }
    record(ddb.transact_write_items, "x", TransactItems=[marker, counters])
    record(ddb.transact_write_items, "x", TransactItems=[marker, counters])
    record(ddb.get_item, "Item", TableName=issues, Key={"issue_id": s("i"), "sk": s("issue")}, ConsistentRead=True)
    record(
        ddb.delete_item,
        "x",
        TableName=sends,
        Key={"issue_id": s("i"), "email": s("a@x.org")},
        ConditionExpression="#st = :failed",
        ExpressionAttributeNames={"#st": "status"},
        ExpressionAttributeValues={":failed": s("failed")},
    )
    # A signup confirmed as store/signups.confirm does it: a nested path in the condition, list_append.
    record(
        ddb.put_item,
        "x",
        TableName=subs,
        Item={"pk": s("l#01"), "email": s("new@x.org"), "signup": {"M": {"id": s("s-1")}}},
    )
    for signup_id in ("s-2", "s-1", "s-1"):  # another signup's link, this one's, this one's again
        record(
            ddb.update_item,
            "Attributes",
            TableName=subs,
            Key={"pk": s("l#01"), "email": s("new@x.org")},
            UpdateExpression="SET consent_log = list_append(if_not_exists(consent_log, :empty), :event) REMOVE signup",
            ConditionExpression="signup.id = :id",
            ExpressionAttributeValues={":id": s(signup_id), ":empty": {"L": []}, ":event": {"L": [s(signup_id)]}},
            ReturnValues="ALL_NEW",
        )
    return out


def test_fake_dynamodb_answers_the_stores_calls_as_dynamodb_does(both):
    moto, fake, names = both
    assert answers(fake, names) == answers(moto, names)


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(
            (
                "batch_get_item",
                {"RequestItems": {"Subs": {"Keys": [{"pk": {"S": "a"}, "email": {"S": f"{n}"}} for n in range(101)]}}},
            ),
            id="101-keys",
        ),
        pytest.param(
            (
                "transact_write_items",
                {
                    "TransactItems": [{"Put": {"TableName": "Subs", "Item": {"pk": {"S": "a"}, "email": {"S": "b"}}}}]
                    * 2
                },
            ),
            id="one-item-twice",
        ),
        pytest.param(
            (
                "transact_write_items",
                {
                    "TransactItems": [
                        {"Put": {"TableName": "Subs", "Item": {"pk": {"S": "a"}, "email": {"S": f"{n}"}}}}
                        for n in range(101)
                    ]
                },
            ),
            id="101-actions",
        ),
        pytest.param(
            (
                "query",
                {
                    "TableName": "Subs",
                    "KeyConditionExpression": "email = :e",
                    "ExpressionAttributeValues": {":e": {"S": "b"}},
                },
            ),
            id="no-partition-key",
        ),
        pytest.param(("get_item", {"TableName": "Subs", "Key": {"pk": {"S": "a"}}}), id="half-a-key"),
        pytest.param(
            ("get_item", {"TableName": "Nope", "Key": {"pk": {"S": "a"}, "email": {"S": "b"}}}), id="no-table"
        ),
    ],
)
def test_fake_dynamodb_refuses_what_dynamodb_refuses(both, request_):
    moto, fake, names = both
    operation, request = request_
    request = json.loads(json.dumps(request).replace('"Subs"', json.dumps(names["SubscribersTable"])))
    assert error(lambda: getattr(fake, operation)(**request)) == error(lambda: getattr(moto, operation)(**request))


def test_fake_dynamodb_refuses_what_moto_lets_through():
    """DynamoDB's own limits, which moto does not check."""
    fake = FakeDynamoDB({"t": {"hash": "pk", "range": "sk", "indexes": {"i": ("x", None)}}})
    puts = [{"PutRequest": {"Item": {"pk": {"S": "a"}, "sk": {"S": f"{n}"}}}} for n in range(26)]
    assert error(lambda: fake.batch_write_item(RequestItems={"t": puts})) == ("ValidationException", 400)
    query = {"TableName": "t", "KeyConditionExpression": "x = :x", "ExpressionAttributeValues": {":x": {"S": "1"}}}
    assert error(lambda: fake.query(IndexName="nope", **query)) == ("ValidationException", 400)
    assert error(lambda: fake.query(IndexName="i", ConsistentRead=True, **query)) == ("ValidationException", 400)


def test_fake_dynamodb_seeds_a_list_as_put_subscribers_writes_it(both):
    from newsletter.store.subscribers import put_subscribers

    moto, fake, names = both
    table = names["SubscribersTable"]
    rows = [{"email": f"r{n}@example.com", "status": "active" if n % 4 else "unsubscribed"} for n in range(40)]
    put_subscribers(moto, table, "big", rows)
    assert fake.seed_subscribers(table, "big", [r["email"] for r in rows], inactive_every=4) == 30
    stored = moto.scan(TableName=table)["Items"]
    key = lambda i: (i["pk"]["S"], i["email"]["S"])  # noqa: E731
    assert sorted(fake.all_items(table), key=key) == sorted(stored, key=key)
    assert all(fake.table(table).size(i) == item_size(i) for i in fake.table(table).items())


def slow_answers(ddb, names: dict) -> list:
    """What `subscribers import` asks DynamoDB, through the store's own functions, and the refusals
    of the two calls it makes, with AWS's bookkeeping left out."""
    from newsletter.store import subscribers as store
    from newsletter.store import to_item

    subs, sups = names["SubscribersTable"], names["SuppressionsTable"]
    out = []
    s = lambda v: {"S": v}  # noqa: E731
    for n in range(3):
        old = {"email": f"old{n}@x.org", "name": "Old", "status": "unsubscribed", "list_id": "l"}
        ddb.put_item(TableName=subs, Item=to_item({**old, "pk": store.partition("l", store.shard_of(old["email"]))}))

    ddb.put_item(TableName=sups, Item={"email": s("gone@x.org"), "reason": s("bounce"), "suppressed_at": s("2015")})
    ddb.put_item(TableName=sups, Item={"email": s("quiet@x.org")})
    addresses = ["old1@x.org", "gone@x.org", "new@x.org", "quiet@x.org", *(f"n{n}@x.org" for n in range(46))]
    on_list, suppressed = store.lookup(ddb, subs, sups, "l", addresses)
    out.append((sorted(on_list), suppressed))
    consent = {"method": "import", "source": "a.csv", "at": "2015-07-01T08:00:00Z"}
    reader = {"email": "new@x.org", "name": "Né", "status": "active", "attributes": {"o": "X"}, "consent": consent}
    out.append(store.put_new_subscriber(ddb, subs, "l", reader))
    out.append(store.put_new_subscriber(ddb, subs, "l", {**reader, "name": "Other"}))
    out.append(store.put_new_subscriber(ddb, subs, "l", {"email": "old2@x.org", "status": "active"}))
    out.append(store.lookup(ddb, subs, sups, "l", ["new@x.org", "old2@x.org"])[0] == {"new@x.org", "old2@x.org"})
    key = {"pk": s(store.partition("l", store.shard_of("new@x.org"))), "email": s("new@x.org")}
    item = ddb.batch_get_item(RequestItems={subs: {"Keys": [key], "ConsistentRead": True}})["Responses"][subs]
    out.append(item)
    try:  # the old item comes back with a failed condition when asked for
        ddb.put_item(
            TableName=subs,
            Item={**key, "name": s("x")},
            ConditionExpression="attribute_not_exists(#e)",
            ExpressionAttributeNames={"#e": "email"},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as exc:
        out.append((exc.response["Error"]["Code"], exc.response.get("Item")))
    for request in (
        {subs: {"Keys": [{"pk": s("l#00"), "email": s(f"{n}")} for n in range(101)]}},
        {subs: {"Keys": [key, key]}},
        {"Nope": {"Keys": [key]}},
    ):
        out.append(error(lambda r=request: ddb.batch_get_item(RequestItems=r)))
    out.append(error(lambda: ddb.put_item(TableName="Nope", Item=key)))
    return out


def test_slow_dynamodb_answers_the_import_as_dynamodb_does(both):
    from fakes.slow_dynamodb import SlowDynamoDB

    moto, _, names = both
    slow = SlowDynamoDB(
        {names["SubscribersTable"]: ("pk", "email"), names["SuppressionsTable"]: ("email", None)}, latency=0.001
    )
    assert slow_answers(slow, names) == slow_answers(moto, names)
    assert slow.calls["PutItem"] == 10


def slow_transactions(ddb, names: dict) -> list:
    """TransactWriteItems as `subscribers import` sends it (store.put_new_subscribers), and raw:
    made, cancelled with a reason per Put (the old item when asked for), refused."""
    from newsletter.store import subscribers as store
    from newsletter.store import to_item

    subs = names["SubscribersTable"]
    out = []
    old = {"email": "old@x.org", "name": "Old", "status": "unsubscribed", "list_id": "l"}
    old_item = to_item({**old, "pk": store.partition("l", store.shard_of(old["email"]))})
    ddb.put_item(TableName=subs, Item=old_item)
    consent = {"method": "import", "source": "a.csv", "at": "2015-07-01T08:00:00Z"}
    people = [{"email": f"t{n}@x.org", "name": "Né", "status": "active", "consent": consent} for n in range(3)]
    out.append(store.put_new_subscribers(ddb, subs, "l", [*people, {"email": "old@x.org", "status": "active"}]))
    out.append(store.put_new_subscribers(ddb, subs, "l", people))
    keys = [{"pk": i["pk"], "email": i["email"]} for i in (store.new_item("l", p) for p in [*people, old])]
    stored = ddb.batch_get_item(RequestItems={subs: {"Keys": keys, "ConsistentRead": True}})["Responses"][subs]
    out.append(sorted(stored, key=lambda i: i["email"]["S"]))

    def put(item: dict, **extra) -> dict:
        return {"Put": {"TableName": subs, "Item": item, "ConditionExpression": "attribute_not_exists(email)", **extra}}

    new = store.new_item("l", {"email": "late@x.org", "status": "active"})
    try:  # nothing is written, and each Put has its reason, in order
        ddb.transact_write_items(
            TransactItems=[put(new), put(old_item, ReturnValuesOnConditionCheckFailure="ALL_OLD")],
            ClientRequestToken="a" * 32,
        )
    except ClientError as exc:
        reasons = [{k: v for k, v in r.items() if k != "Message"} for r in exc.response["CancellationReasons"]]
        out.append((exc.response["Error"]["Code"], reasons))
    late = {"pk": new["pk"], "email": new["email"]}
    out.append(ddb.batch_get_item(RequestItems={subs: {"Keys": [late], "ConsistentRead": True}})["Responses"][subs])
    out.append(error(lambda: ddb.transact_write_items(TransactItems=[put(new), put(new)])))
    out.append(
        error(
            lambda: ddb.transact_write_items(
                TransactItems=[put({**new, "pk": {"S": "x"}, "email": {"S": f"{n}"}}) for n in range(101)]
            )
        )
    )
    return out


def test_slow_dynamodb_answers_transactions_as_dynamodb_does(both):
    from fakes.slow_dynamodb import SlowDynamoDB

    moto, _, names = both
    slow = SlowDynamoDB(
        {names["SubscribersTable"]: ("pk", "email"), names["SuppressionsTable"]: ("email", None)}, latency=0.001
    )
    got = slow_transactions(slow, names)
    assert got == slow_transactions(moto, names)
    assert got[:2] == [[True, True, True, False], [False, False, False]] and got[3][1][0] == {"Code": "None"}
    assert slow.calls["TransactWriteItems"] == 6  # the first import sends its transaction twice


def test_slow_dynamodb_lets_requests_overlap():
    import threading
    import time

    from fakes.slow_dynamodb import SlowDynamoDB

    slow = SlowDynamoDB({"t": ("k", None)}, latency=0.05)
    threads = [
        threading.Thread(target=slow.put_item, kwargs={"TableName": "t", "Item": {"k": {"S": str(n)}}})
        for n in range(20)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - start < 0.5 and len(slow.items) == 20  # 20 x 50 ms, at once


# --- S3, SQS, SSM, SES ------------------------------------------------------------------------


def test_fake_s3_answers_as_s3_does(aws_mock):
    moto = boto3.client("s3", region_name="us-east-1")
    moto.create_bucket(Bucket="fakes-bucket")
    fake = FakeS3()

    def calls(s3):
        out = [s3.put_object(Bucket="fakes-bucket", Key="k", Body=b"hello world", ContentType="text/plain")["ETag"]]
        s3.put_object(Bucket="fakes-bucket", Key="empty", Body=b"")
        for rng in ("bytes=0-4", "bytes=6-100", "bytes=6-"):
            got = s3.get_object(Bucket="fakes-bucket", Key="k", Range=rng)
            out.append((got["Body"].read(), got["ContentLength"], got["ContentRange"], got["ETag"], got["ContentType"]))
        head = s3.head_object(Bucket="fakes-bucket", Key="k")
        out.append((head["ContentLength"], head["ETag"]))
        out.append(s3.get_object(Bucket="fakes-bucket", Key="k", IfMatch=head["ETag"])["Body"].read())
        out.append(error(lambda: s3.get_object(Bucket="fakes-bucket", Key="empty", Range="bytes=0-10")))
        out.append(error(lambda: s3.get_object(Bucket="fakes-bucket", Key="k", Range="bytes=11-20")))
        out.append(error(lambda: s3.get_object(Bucket="fakes-bucket", Key="nope")))
        out.append(error(lambda: s3.head_object(Bucket="fakes-bucket", Key="nope")))
        out.append(error(lambda: s3.get_object(Bucket="fakes-bucket", Key="k", IfMatch='"other"')))
        out.append(error(lambda: s3.head_object(Bucket="fakes-bucket", Key="k", IfMatch='"other"')))
        s3.delete_object(Bucket="fakes-bucket", Key="k")
        s3.delete_object(Bucket="fakes-bucket", Key="k")  # gone already: still fine
        out.append(error(lambda: s3.get_object(Bucket="fakes-bucket", Key="k")))
        return out

    assert calls(fake) == calls(moto)


def test_fake_sqs_answers_and_refuses_as_sqs_does(aws_mock):
    moto = boto3.client("sqs", region_name="us-east-1")
    url = moto.create_queue(QueueName="fakes-queue")["QueueUrl"]
    fake = FakeSQS()

    def calls(sqs):
        ok = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": f"b{n}"} for n in range(10)])
        return [
            (
                [e["Id"] for e in ok["Successful"]],
                ok["Failed"],
                "MessageId" in sqs.send_message(QueueUrl=url, MessageBody="x"),
            ),
            error(
                lambda: sqs.send_message_batch(
                    QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": "b"} for n in range(11)]
                )
            ),
            error(lambda: sqs.send_message_batch(QueueUrl=url, Entries=[])),
            error(lambda: sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "b"}] * 2)),
        ]

    assert calls(fake) == calls(moto)
    assert fake.bodies(url) == [f"b{n}" for n in range(10)] + ["x"]
    assert fake.calls == {"SendMessageBatch": 1, "SendMessage": 1}


def test_fake_ssm_answers_and_refuses_as_ssm_does(aws_mock):
    moto = boto3.client("ssm", region_name="us-east-1")
    for value in ("first", "second"):
        moto.put_parameter(Name="/fakes/secret", Value=value, Type="SecureString", Overwrite=True)
    fake = FakeSSM({"/fakes/secret": ["first", "second"]}, default=None)

    def calls(ssm):
        out = []
        for name in ("/fakes/secret", "/fakes/secret:1"):
            p = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
            assert isinstance(p["LastModifiedDate"], datetime) and p["LastModifiedDate"].tzinfo
            out.append({k: v for k, v in p.items() if k not in ("LastModifiedDate", "Selector")})
        out.append(error(lambda: ssm.get_parameter(Name="/fakes/secret:9", WithDecryption=True)))
        out.append(error(lambda: ssm.get_parameter(Name="/fakes/other", WithDecryption=True)))
        return out

    assert calls(fake) == calls(moto)


def test_a_token_key_can_be_read_from_the_fake_ssm():
    """What the functions ask SSM for (the benchmarks' send runs depend on it)."""
    from newsletter import aws

    real = aws.client
    aws.reset()
    aws.client = lambda service: FakeSSM()
    try:
        key = aws.token_key("/newsletter/token-secret")
    finally:
        aws.client = real
        aws.reset()
    assert key.version == 1 and key.secret


def test_simulated_ses_throttles_above_the_account_rate():
    ses = SimulatedSES(rate=2, latency=None)
    send = lambda: ses.send_email(Destination={"ToAddresses": ["a@x.org"]}, Content={"Raw": {"Data": b"m"}})  # noqa: E731
    assert send()["MessageId"] and send()["MessageId"]
    assert error(send) == ("TooManyRequestsException", 429)
    assert ses.accepted == {"a@x.org": 2} and ses.throttled == 1
    assert error(lambda: ses.send_email(Destination={"ToAddresses": ["a@x.org"]}, Content={"Raw": {"Data": b""}})) == (
        "BadRequestException",
        400,
    )
    assert ses.get_account()["SendQuota"]["MaxSendRate"] == 2


def test_the_fakes_import_only_the_standard_library():
    """The cold-start benchmark builds the fakes before its timer: they must not load what a
    handler imports (boto3, botocore, newsletter) or anything else outside the standard library."""
    import subprocess
    import sys

    modules = ["fakes." + m for m in ("clients", "dynamodb", "errors", "events", "s3", "ses", "sqs", "ssm")]
    code = (
        "import sys; before = set(sys.modules); "
        + "; ".join(f"import {m}" for m in modules)
        + "; print(sorted({n.split('.')[0] for n in set(sys.modules) - before}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out.replace("'", '"')))
    assert loaded - {"fakes"} <= set(sys.stdlib_module_names)


def test_the_slow_dynamodb_imports_only_the_standard_library():
    import subprocess
    import sys

    code = "import sys; before = set(sys.modules); import fakes.slow_dynamodb; print(sorted(set(sys.modules) - before))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    loaded = {n.split(".")[0] for n in json.loads(out.replace("'", '"'))}
    assert loaded - {"fakes"} <= set(sys.stdlib_module_names)
