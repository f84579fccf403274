"""`make sam-local` without Docker: the template's LocalEndpoint, the env-vars file that
`newsletter local start` writes, where the local stack may listen, and the whole sam-local
pipeline (devstack/sam_local.py) with each `sam local invoke` replaced by the in-process handler,
so the events it builds from events/ are checked on every test run."""

from __future__ import annotations

import email
import email.policy
import json

import pytest
from conftest import ROOT
from test_cli import cli

from devstack import sam_local, server
from devstack import template as tpl

ENDPOINT = "http://172.17.0.1:4566"


def declared(function: str) -> set[str]:
    return set(tpl.function_specs(tpl.load())[function]["Environment"]["Variables"])


def test_the_endpoint_is_a_parameter_empty_by_default_and_absent_in_production():
    template = tpl.load()
    assert template["Parameters"]["LocalEndpoint"]["Default"] == ""
    value = template["Globals"]["Function"]["Environment"]["Variables"]["AWS_ENDPOINT_URL"]
    # As CloudFormation resolves it: no variable at all (AWS::NoValue) unless LocalEndpoint is set.
    assert tpl.Resolver(template, {}, {}).resolve(value) is None
    assert tpl.Resolver(template, {"LocalEndpoint": ENDPOINT}, {}).resolve(value) == ENDPOINT
    assert all("AWS_ENDPOINT_URL" in declared(f) for f in tpl.function_specs(template))


def test_the_in_process_stack_gives_no_function_an_endpoint_variable(stack):
    assert all("AWS_ENDPOINT_URL" not in f.environment for f in stack.functions.values())


def test_env_vars_name_the_local_resources_and_the_endpoint(stack):
    stack.endpoint_url = ENDPOINT
    found = sam_local.env_vars(stack)
    assert set(found) == set(stack.functions)
    for function, variables in found.items():
        # sam local sets only declared variables: nothing else may be in the file.
        assert set(variables) == declared(function)
        assert variables["AWS_ENDPOINT_URL"] == ENDPOINT
    assert found["PublishFunction"]["ISSUES_TABLE"] == stack.ref("IssuesTable") == "local-IssuesTable"
    assert found["PublishFunction"]["BUCKET_NAME"] == stack.bucket
    assert found["SendFunction"]["SEND_QUEUE_URL"] == stack.ref("SendQueue")
    assert found["FeedbackFunction"]["FEEDBACK_TOPIC_ARN"] == stack.ref("FeedbackTopic")
    assert found["UnsubscribeFunction"]["TOKEN_SECRET_PARAMETER"] == "/newsletter/unsubscribe-token-secret"


def test_local_start_writes_the_env_vars_file(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_LOCAL_DIR", str(tmp_path / "own"))
    target = tmp_path / "env.json"
    try:
        started = cli("local", "start", "--host", "127.0.0.1", "--env-vars", str(target))
        assert started.exit_code == 0, started.output
        state = server.running(tmp_path / "own")
        assert state["host"] == "127.0.0.1" and state["endpoint_url"].startswith("http://127.0.0.1:")
        written = json.loads(target.read_text())
        assert {v["AWS_ENDPOINT_URL"] for v in written.values()} == {state["endpoint_url"]}
        assert written["FanoutFunction"]["SUBSCRIBERS_TABLE"] == state["physical"]["SubscribersTable"]["Ref"]
        assert "no container reaches it" in started.output  # the hint to use --host
        # Started again without a file named: the default one, beside the state.
        again = cli("local", "start")
        assert again.exit_code == 0 and (tmp_path / "own" / sam_local.ENV_FILE).is_file()
        # A running stack is not moved to another address.
        moved = cli("local", "start", "--host", "192.0.2.1")
        assert moved.exit_code == 2 and "already runs" in moved.output
    finally:
        cli("local", "stop")


@pytest.mark.parametrize(
    "host, why",
    [
        ("0.0.0.0", "not every one"),
        ("localhost", "not an IPv4 address"),
        ("::1", "not an IPv4 address"),
        ("192.0.2.1", "not an address of this machine"),  # TEST-NET-1: nobody's
    ],
)
def test_local_start_listens_only_on_an_address_of_this_machine(tmp_path, monkeypatch, host, why):
    monkeypatch.setenv("NEWSLETTER_LOCAL_DIR", str(tmp_path))
    result = cli("local", "start", "--host", host)
    assert result.exit_code == 2 and why in result.output
    assert server.running(tmp_path) is None


class InProcess(sam_local.Run):
    """The sam-local pipeline with the handlers called in this process instead of by sam."""

    def __init__(self, stack):
        self.stack, self.count, self.invocations, self.phases = stack, 0, [], []
        self.events: list[tuple[str, dict]] = []

    def invoke(self, function, event, label):
        self.count += 1
        event = json.loads(json.dumps(event))  # what sam would read from the file
        self.events.append((function, event))
        answer = json.loads(json.dumps(self.stack.invoke(function, event)))
        self.invocations.append((function, label, 0.0))
        return answer

    def import_subscribers(self, path):
        from devstack.demo import create_list, load_subscribers

        create_list(self.stack, sam_local.LIST_ID, sam_local.LIST_NAME)
        load_subscribers(self.stack, sam_local.LIST_ID, path)

    def mail(self, issue_id, expected):
        from devstack.stack import sent_messages

        out = []
        for m in sent_messages():
            message = email.message_from_string(m.raw_data, policy=email.policy.default)
            out.append((message["To"].addresses[0].addr_spec, m.raw_data.encode("utf-8")))
        return out


def test_the_sam_local_pipeline_passes_with_the_handlers_in_process(aws_mock, tmp_path):
    from devstack.stack import LocalStack

    run = InProcess(LocalStack.create())
    run.dir = tmp_path
    run.pipeline()  # raises sam_local.Failed on any answer or state but the expected one
    functions = [f for f, _ in run.events]
    assert functions[0] == "PublishFunction" and functions.count("FanoutFunction") == 16 + 1  # segments, reconcile
    assert functions[-3:] == ["FeedbackFunction", "UnsubscribeFunction", "UnsubscribeFunction"]
    # Each event keeps its sample's shape: the same keys in every record.
    samples = {
        "PublishFunction": "s3-put-issue.json",
        "FanoutFunction": "sqs-fanout-segment.json",
        "SendFunction": "sqs-send-batch.json",
        "FeedbackFunction": "sqs-feedback-event-bounce-permanent.json",
    }
    for function, event in run.events:
        if function in samples:
            keys = set(json.loads((ROOT / "events" / samples[function]).read_text())["Records"][0])
            assert all(set(r) == keys for r in event["Records"])
    feedback = next(e for f, e in run.events if f == "FeedbackFunction")
    assert {json.loads(r["body"])["TopicArn"] for r in feedback["Records"]} == {run.stack.ref("FeedbackTopic")}


@pytest.mark.parametrize(
    "stdout, code, expected",
    [
        ('{"batchItemFailures": []}', 0, {"batchItemFailures": []}),
        # sam local invoke exits 0 when the handler raised: the error is its answer.
        ('{"errorType": "KeyError", "errorMessage": "\'ISSUES_TABLE\'", "stackTrace": []}', 0, "RAISED KeyError"),
        ("", 0, "gave no answer"),
        ("Error: Running AWS SAM projects locally requires a container runtime.", 1, "exited 1"),
    ],
)
def test_each_sam_answer_is_read_and_a_raised_handler_fails_the_run(tmp_path, stdout, code, expected):
    import argparse

    fake = tmp_path / "sam"
    fake.write_text(f"#!/bin/sh\necho 'START RequestId: x' >&2\nprintf '%s' '{stdout}'\nexit {code}\n")
    fake.chmod(0o755)
    (tmp_path / sam_local.ENV_FILE).write_text("{}")
    run = sam_local.Run(argparse.Namespace(dir=tmp_path, sam=str(fake), no_build=True, keep=False, image="local"))
    if isinstance(expected, dict):
        assert run.invoke("FanoutFunction", {"Records": []}, "a segment") == expected
    else:
        with pytest.raises(sam_local.Failed, match=expected):
            run.invoke("FanoutFunction", {"Records": []}, "a segment")
    assert (tmp_path / "invocations" / "01-FanoutFunction.event.json").is_file()


def test_sam_invoke_says_when_the_stack_wrote_no_env_vars_file(tmp_path):
    import argparse

    run = sam_local.Run(argparse.Namespace(dir=tmp_path, sam="/bin/false", no_build=True, keep=False, image="local"))
    with pytest.raises(sam_local.Failed, match="newsletter local start --host"):
        run.invoke("SendFunction", {"Records": []}, "a batch")


def test_upload_and_receive_write_events_for_a_hand_run_invoke(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_LOCAL_DIR", str(tmp_path / "stack"))
    monkeypatch.chdir(tmp_path)
    server.start(tmp_path / "stack")
    try:
        assert sam_local.main(["upload", str(ROOT / "examples" / "issues" / "2015-07.json")]) == 0
        event = json.loads((tmp_path / "out" / "events" / "s3-put-2015-07.json").read_text())
        stack = sam_local._running_stack()
        head = stack.client("s3").head_object(Bucket=stack.bucket, Key="issues/2015-07.json")
        record = event["Records"][0]["s3"]
        assert record["bucket"]["name"] == stack.bucket
        assert record["object"]["versionId"] == head["VersionId"] and record["object"]["key"] == "issues/2015-07.json"

        assert sam_local.main(["receive", "SendQueue"]) == 1  # empty: no event
        sqs = stack.client("sqs")
        sqs.send_message(QueueUrl=stack.ref("SendQueue"), MessageBody='{"issue_id": "x"}')
        assert sam_local.main(["receive", "SendQueue", "--out", "batch.json"]) == 0
        records = json.loads((tmp_path / "batch.json").read_text())["Records"]
        assert [r["body"] for r in records] == ['{"issue_id": "x"}']
        assert records[0]["eventSourceARN"] == stack.physical["SendQueue"]["Arn"]
        assert sam_local.main(["receive", "SendQueue"]) == 1  # taken off the queue
    finally:
        server.stop(tmp_path / "stack")
