"""template.yaml and the code agree: each function gets exactly the environment it reads, queues
have DLQs and long enough visibility, and policies name their resources."""

import pytest

from devstack import template as tpl
from newsletter import config
from newsletter.schedule import SchedulingSettings

TEMPLATE = tpl.load()
FUNCTIONS = tpl.function_specs(TEMPLATE)
# Each handler's settings classes (the publish function reads its scheduling settings apart).
SETTINGS = {
    "newsletter.handlers.publish.handler": (config.PublishSettings, SchedulingSettings),
    "newsletter.handlers.fanout.handler": (config.FanoutSettings,),
    "newsletter.handlers.send.handler": (config.SendSettings,),
    "newsletter.handlers.feedback.handler": (config.FeedbackSettings,),
    "newsletter.handlers.public.handler": (config.PublicSettings,),
}


def env_names(handler: str) -> set[str]:
    return set().union(*(config.env_names(cls) for cls in SETTINGS[handler]))


POWERTOOLS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
# Read by boto3, not by the settings; set only under `sam local` (the LocalEndpoint parameter).
RUNTIME = POWERTOOLS | {"AWS_ENDPOINT_URL"}


def test_every_function_has_a_settings_class():
    assert {f["Handler"] for f in FUNCTIONS.values()} == set(SETTINGS)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_environment_is_exactly_what_its_settings_read(name):
    spec = FUNCTIONS[name]
    env = set(spec["Environment"]["Variables"])
    assert env - RUNTIME == env_names(spec["Handler"])


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_settings_fail_clearly_when_a_variable_is_missing(name, monkeypatch):
    for cls in SETTINGS[FUNCTIONS[name]["Handler"]]:
        for var in config.env_names(cls):
            monkeypatch.delenv(var, raising=False)
        with pytest.raises(config.ConfigError, match="missing environment variable"):
            config._read(cls)


def test_sqs_triggered_functions_have_dlqs_and_six_times_visibility():
    queues = tpl.resources(TEMPLATE, "AWS::SQS::Queue")
    for name, spec in FUNCTIONS.items():
        for event in (spec.get("Events") or {}).values():
            if event["Type"] != "SQS":
                continue
            queue = queues[event["Properties"]["Queue"]["Fn::GetAtt"][0]]["Properties"]
            assert queue["VisibilityTimeout"] >= 6 * spec["Timeout"], name
            assert queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0] in queues
            assert "DeadLetterQueue" not in spec  # applies to async invokes only


def test_send_function_reports_partial_batch_failures():
    (event,) = FUNCTIONS["SendFunction"]["Events"].values()
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


# Actions IAM authorises only on "*": they name no resource.
WITHOUT_RESOURCE_TYPE = {"ses:GetAccount"}


def test_no_wildcard_resources_in_policies():
    def statements(policies):
        for p in policies or []:
            if isinstance(p, dict) and "Statement" in p:
                yield from p["Statement"]

    for name, spec in FUNCTIONS.items():
        for st in statements(spec.get("Policies")):
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            actions = set(st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
            if actions <= WITHOUT_RESOURCE_TYPE:
                continue
            assert "*" not in resources, f"{name}: {st.get('Sid')}"


def test_every_alarm_notifies_the_alarm_email_when_one_is_given():
    alarms = tpl.resources(TEMPLATE, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 7
    for name, alarm in alarms.items():
        assert alarm["Properties"].get("AlarmActions") == {
            "Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]
        }, name
    topic = TEMPLATE["Resources"]["AlarmTopic"]
    assert topic["Condition"] == "HasAlarmEmail"
    assert topic["Properties"]["Subscription"] == [{"Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}]
    assert TEMPLATE["Conditions"]["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
