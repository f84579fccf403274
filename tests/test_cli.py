"""The `newsletter` command, driven as a user would: against the local stack (a moto server on
127.0.0.1, started once for this module), and against a "deployed" stack found by its
CloudFormation outputs (moto in-process).
"""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLE_ISSUE, ROOT, issue_doc
from typer.testing import CliRunner

runner = CliRunner()


def cli(*args: str, input: str | None = None):
    from newsletter_cli import app as module

    # Wide enough that Rich never wraps a path or a figure (temporary paths are long).
    module.console.width = module.err.width = 250
    return runner.invoke(module.app, list(args), input=input, catch_exceptions=False)


@pytest.fixture(autouse=True)
def fresh_containers():
    """Each command is a new process in real use: no per-container cache carries over."""
    from devstack.stack import new_deployment

    new_deployment()
    yield


def write_csv(path: Path, rows: list[str], header: str = "email,name,language,status") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def write_issue(path: Path, **changes) -> Path:
    path.write_text(json.dumps(issue_doc(**changes)), encoding="utf-8")
    return path


def readers(n: int, prefix: str) -> list[str]:
    return [f"{prefix}{i:03d}@Example.com,Reader {i},en,active" for i in range(n)]


def eml_files(local: Path, issue_id: str) -> list[email.message.EmailMessage]:
    folder = local / "outbox" / issue_id
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in sorted(folder.glob("*.eml"))]


# --- preview (no stack) --------------------------------------------------------------------------


def test_preview_of_the_example_writes_the_parts_and_passes(tmp_path):
    result = cli("preview", str(EXAMPLE_ISSUE), "--out", str(tmp_path), "--no-screenshots")
    assert result.exit_code == 0, result.output
    assert "0 errors" in result.output
    html = (tmp_path / "2015-07.html").read_text(encoding="utf-8")
    assert "Sample Reader" in html or "reader@example.org" in html
    assert (tmp_path / "2015-07.eml").stat().st_size > 10_000


def test_preview_exits_non_zero_on_errors_and_zero_on_warnings(tmp_path):
    doc = issue_doc()
    doc["news"][0]["body"] = "A paragraph of news that goes on. " * 3500  # ~120 KB: Gmail clips the message
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc), encoding="utf-8")
    result = cli("preview", str(bad), "--out", str(tmp_path / "out"), "--no-screenshots")
    assert result.exit_code == 1 and "html-size" in result.output and "1 error" in result.output
    long_subject = write_issue(
        tmp_path / "warn.json", subject="A subject line that goes on well past what a phone shows in a list"
    )
    result = cli("preview", str(long_subject), "--out", str(tmp_path / "out2"), "--no-screenshots")
    assert result.exit_code == 0 and "0 errors" in result.output and "subject" in result.output


def test_a_broken_issue_gets_a_message_not_a_traceback(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"issue_id": "2015-09", "subject": }', encoding="utf-8")
    for command in (
        ["preview", str(broken), "--no-screenshots"],
        ["--local", "publish", str(broken)],
        ["--local", "send-test", str(broken), "--to", "a@example.org"],
    ):
        result = cli(*command)
        assert result.exit_code == 2, command
        assert "not valid" in result.output and "line 1" in result.output
        assert "Traceback" not in result.output
    missing = cli("preview", str(tmp_path / "nope.json"))
    assert missing.exit_code == 2 and "cannot read" in missing.output


# --- subscribers ----------------------------------------------------------------------------------


def test_import_count_export_and_reimport(local, tmp_path):
    rows = readers(12, "imp") + [
        "IMP000@example.com,Again,en,active",
        "not-an-address,X,en,active",
        "gone@example.com,Gone,en,unsubscribed",
    ]
    csv_file = write_csv(tmp_path / "list.csv", rows)
    result = cli("--local", "subscribers", "import", str(csv_file), "--list", "imports", "--list-name", "Imports")
    assert result.exit_code == 0, result.output
    assert "created list imports" in result.output
    assert "line 15" in result.output  # the bad address, by its line in the file
    assert "line 14" in result.output  # the duplicate (other case)
    count = cli("--local", "subscribers", "count", "--list", "imports")
    assert count.exit_code == 0
    assert [line.split() for line in count.output.splitlines() if "active" in line and "inactive" not in line][0][
        -2
    ] == "12"
    assert "unsubscribed" in count.output and " 13 " in count.output.replace("│", " ")  # total

    again = cli("--local", "subscribers", "import", str(csv_file), "--list", "imports")
    assert again.exit_code == 0
    assert "created list" not in again.output
    table = [line for line in again.output.splitlines() if line.count("│") >= 6][-1].replace("│", " ").split()
    assert table[:3] == ["15", "0", "13"]  # rows, imported, existing: nothing changed

    out = tmp_path / "export.csv"
    exported = cli("--local", "subscribers", "export", "--list", "imports", "--out", str(out))
    assert exported.exit_code == 0 and "13 subscriber(s)" in exported.output
    text = out.read_text(encoding="utf-8")
    assert "imp000@example.com" in text and "IMP000" not in text  # stored lowercased
    assert "gone@example.com" in text and "unsubscribed" in text


def test_import_never_reactivates_an_unsubscribed_reader(local, tmp_path):
    first = write_csv(tmp_path / "a.csv", ["left@example.com,Left,en,unsubscribed"])
    assert cli("--local", "subscribers", "import", str(first), "--list", "react").exit_code == 0
    second = write_csv(tmp_path / "b.csv", ["left@example.com,Left,en,active"])
    assert cli("--local", "subscribers", "import", str(second), "--list", "react").exit_code == 0
    out = tmp_path / "active.csv"
    cli("--local", "subscribers", "export", "--list", "react", "--status", "active", "--out", str(out))
    assert "left@example.com" not in out.read_text(encoding="utf-8")


def test_bad_csv_files_get_clear_messages(local, tmp_path):
    no_email = write_csv(tmp_path / "cols.csv", ["Ann,ann@example.com"], header="name,mail")
    result = cli("--local", "subscribers", "import", str(no_email), "--list", "bad")
    assert result.exit_code == 2 and "email" in result.output.lower() and "Traceback" not in result.output
    assert "nothing was imported" in result.output.replace("\n", " ")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("email,name\nj@example.com,Jos\xe9\n".encode("latin-1"))
    result = cli("--local", "subscribers", "import", str(latin1), "--list", "bad")
    assert result.exit_code == 2 and "UTF-8" in result.output
    assert cli("--local", "subscribers", "import", str(tmp_path / "none.csv"), "--list", "bad").exit_code == 2
    bad_list = cli("--local", "subscribers", "import", str(no_email), "--list", "no spaces")
    assert bad_list.exit_code == 2 and "list id" in bad_list.output
    all_invalid = write_csv(tmp_path / "invalid.csv", ["nope,A,en,active", "also nope,B,en,active"])
    result = cli("--local", "subscribers", "import", str(all_invalid), "--list", "bad2")
    assert result.exit_code == 2 and "line 2" in result.output and "line 3" in result.output
    # No list was made from files that imported nobody: publishing to it still says so.
    doc = write_issue(tmp_path / "i.json", issue_id="bad-1", list="bad2")
    assert "list 'bad2' does not exist" in cli("--local", "publish", str(doc)).output
    assert cli("--local", "subscribers", "export", "--list", "bad", "--status", "gone").exit_code == 2


# --- send-test, publish, status, pause/resume/cancel ------------------------------------------------


def test_send_test_mails_only_the_test_addresses_marked_as_a_test(local, tmp_path):
    csv_file = write_csv(tmp_path / "t.csv", readers(5, "sub"))
    assert cli("--local", "subscribers", "import", str(csv_file), "--list", "testing").exit_code == 0
    doc = write_issue(tmp_path / "i.json", issue_id="t-2015-07", list="testing")
    result = cli("--local", "send-test", str(doc), "--to", "Editor@Example.org", "--to", "proof@example.org")
    assert result.exit_code == 0, result.output
    test_id = next(w for w in result.output.split() if w.startswith("t-2015-07-test-")).rstrip(":")
    messages = eml_files(local, test_id)
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == ["editor@example.org", "proof@example.org"]
    assert all(m["Subject"].startswith("[TEST] ") for m in messages)
    assert all(m["List-Unsubscribe"] and m["List-Unsubscribe-Post"] for m in messages)
    # The real issue is untouched: it can still be published.
    status = cli("--local", "status", "t-2015-07")
    assert status.exit_code == 2 and "no issue" in status.output
    assert "t-2015-07-test" not in cli("--local", "status").output  # tests are listed only with --tests
    assert "t-2015-07-test" in cli("--local", "status", "--tests").output


def test_send_test_sends_the_language_asked_for(local, tmp_path):
    csv_file = write_csv(tmp_path / "t.csv", readers(2, "lang"))
    assert cli("--local", "subscribers", "import", str(csv_file), "--list", "testing").exit_code == 0
    doc = write_issue(tmp_path / "l.json", issue_id="t-2015-09", list="testing")
    fr = {k: v for k, v in json.loads(doc.read_text()).items() if k in ("subject", "title", "footer", "news")}
    fr.update(subject="Bulletin de juillet", spotlight=json.loads(doc.read_text()).get("spotlight"))
    fr["read_more"] = json.loads(doc.read_text()).get("read_more")
    fr["sections"] = json.loads(doc.read_text()).get("sections", [])
    (tmp_path / "l.fr.json").write_text(json.dumps(fr), encoding="utf-8")
    result = cli("--local", "send-test", str(doc), "--to", "proof@example.org", "--language", "FR")
    assert result.exit_code == 0, result.output
    test_id = next(w for w in result.output.split() if w.startswith("t-2015-09-test-")).rstrip(":")
    (message,) = eml_files(local, test_id)
    assert (message["Subject"], message["Content-Language"]) == ("[TEST] Bulletin de juillet", "fr")
    missing = cli("--local", "send-test", str(doc), "--to", "proof@example.org", "--language", "de")
    assert missing.exit_code == 2 and "the issue has en, fr, not de" in missing.output


def test_send_test_refuses_bad_addresses_and_unknown_lists(local, tmp_path):
    doc = write_issue(tmp_path / "i.json", issue_id="t-2015-08", list="nolist")
    bad = cli("--local", "send-test", str(doc), "--to", "not an address")
    assert bad.exit_code == 2 and "not an email address" in bad.output
    unknown = cli("--local", "send-test", str(doc), "--to", "a@example.org")
    assert unknown.exit_code == 2 and "list 'nolist' does not exist" in unknown.output


def test_publish_follows_to_the_end_and_never_sends_twice(local, tmp_path):
    rows = readers(30, "pub") + [
        "bounce@simulator.amazonses.com,,en,active",
        "complaint@simulator.amazonses.com,,en,active",
        "off@example.com,Off,en,unsubscribed",
    ]
    assert (
        cli("--local", "subscribers", "import", str(write_csv(tmp_path / "p.csv", rows)), "--list", "pubs").exit_code
        == 0
    )
    doc = write_issue(tmp_path / "p.json", issue_id="p-2015-07", list="pubs")
    result = cli("--local", "publish", str(doc))
    assert result.exit_code == 0, result.output
    assert "uploaded s3://" in result.output and "32 messages" in result.output
    to = [m["To"].addresses[0].addr_spec for m in eml_files(local, "p-2015-07")]
    assert len(to) == len(set(to)) == 32 and "off@example.com" not in to
    status = cli("--local", "status", "p-2015-07").output
    figures = {
        line.split("│")[1].strip(): line.split("│")[2].strip() for line in status.splitlines() if line.count("│") == 3
    }
    assert figures["status"] == "sent" and figures["queued"] == "32" and figures["sent"] == "32"
    assert figures["bounced hard"] == "1" and figures["complained"] == "1"  # the simulator's answers, fed back
    assert "counters checked against the send ledger at" in status

    again = cli("--local", "publish", str(doc))
    assert again.exit_code == 0 and "already published" in again.output
    assert len(eml_files(local, "p-2015-07")) == 32
    changed = write_issue(tmp_path / "p2.json", issue_id="p-2015-07", list="pubs", subject="Another subject")
    refused = cli("--local", "publish", str(changed))
    assert refused.exit_code == 2 and "already published" in refused.output and "new issue_id" in refused.output

    # The next issue skips the addresses that bounced and complained.
    nxt = cli("--local", "publish", str(write_issue(tmp_path / "n.json", issue_id="p-2015-08", list="pubs")))
    assert nxt.exit_code == 0 and "30 messages" in nxt.output


def test_a_local_rollout_is_held_by_its_bouncing_cohort_and_resume_sends_the_rest(local, tmp_path):
    """Locally the cohort's wait is skipped and the mailbox simulator answers as SES would: half of
    this list bounces (the simulator ignores a '+label'), so the cohort is held; resume overrides."""
    from newsletter import rollout

    rows = readers(30, "roll") + [f"bounce+r{i}@simulator.amazonses.com,,en,active" for i in range(30)]
    csv_file = write_csv(tmp_path / "r.csv", rows)
    assert cli("--local", "subscribers", "import", str(csv_file), "--list", "rolls").exit_code == 0
    plan = {"share_percent": 50, "wait_minutes": 45}
    doc = write_issue(tmp_path / "r.json", issue_id="r-2015-07", list="rolls", rollout=plan)
    result = cli("--local", "publish", str(doc))
    assert result.exit_code == 0, result.output
    everyone = {r.split(",")[0].lower() for r in rows}
    cohort = {a for a in everyone if rollout.in_cohort("r-2015-07", a, 50)}
    to = [m["To"].addresses[0].addr_spec.lower() for m in eml_files(local, "r-2015-07")]
    assert sorted(to) == sorted(cohort)  # only the cohort, once each
    assert "rollout: 50% of the list first, then 45 min for its feedback" in result.output
    assert "phase: held: the rest of the list waits" in result.output
    assert "verdict: held" in result.output and "hard bounce rate" in result.output
    assert "send the rest anyway with: newsletter resume r-2015-07" in result.output
    status = cli("--local", "status", "r-2015-07").output
    assert "phase: held" in status and f"cohort: {len(cohort)} sent of {len(cohort)} queued" in status
    assert "0 complaints (0%)" in status

    resumed = cli("--local", "resume", "r-2015-07")
    assert resumed.exit_code == 0, resumed.output
    assert "the rest of the list is queued" in resumed.output
    to = [m["To"].addresses[0].addr_spec.lower() for m in eml_files(local, "r-2015-07")]
    assert len(to) == len(set(to)) and set(to) == everyone
    status = cli("--local", "status", "r-2015-07").output
    assert "released by an operator" in status and "phase: the rest of the list is sent" in status
    assert "│ status" in status and "sent" in status.split("│ status")[1].splitlines()[0]


def test_a_local_rollout_with_a_clean_cohort_goes_on_by_itself(local, tmp_path):
    rows = readers(40, "clean")
    assert (
        cli("--local", "subscribers", "import", str(write_csv(tmp_path / "c.csv", rows)), "--list", "cleans").exit_code
        == 0
    )
    doc = write_issue(
        tmp_path / "c.json", issue_id="c-2015-07", list="cleans", rollout={"share_percent": 25, "wait_minutes": 30}
    )
    result = cli("--local", "publish", str(doc))
    assert result.exit_code == 0, result.output
    assert "40 messages" in result.output and "verdict: passed" in result.output
    assert len(eml_files(local, "c-2015-07")) == 40


def test_pause_resume_cancel(local, tmp_path):
    from newsletter.store import issues
    from newsletter_cli.stack import local_target

    target = local_target()
    ddb, table = target.client("dynamodb"), target.ref("IssuesTable")
    issues.create_issue(
        ddb, table, {"issue_id": "c-1", "list_id": "x", "status": "sending", "accepted_at": "2026-11-27T00:00:00Z"}
    )
    assert cli("--local", "pause", "c-1").exit_code == 0
    assert issues.get_issue(ddb, table, "c-1")["status"] == "paused"
    twice = cli("--local", "pause", "c-1")
    assert twice.exit_code == 2 and "it is paused, not sending" in twice.output
    assert cli("--local", "resume", "c-1").exit_code == 0
    assert issues.get_issue(ddb, table, "c-1")["status"] == "sending"
    assert cli("--local", "cancel", "c-1", input="n\n").exit_code == 1  # asked, declined
    assert issues.get_issue(ddb, table, "c-1")["status"] == "sending"
    assert cli("--local", "cancel", "c-1", "--yes").exit_code == 0
    assert issues.get_issue(ddb, table, "c-1")["status"] == "cancelled"
    assert cli("--local", "resume", "c-1").exit_code == 2
    unknown = cli("--local", "pause", "no-such-issue")
    assert unknown.exit_code == 2 and "no issue 'no-such-issue'" in unknown.output


def test_cancel_takes_the_issue_out_of_its_lists_archive(local):
    from newsletter import archive
    from newsletter.issue import parse_document
    from newsletter.store import issues
    from newsletter_cli.stack import local_target

    target = local_target()
    ddb, s3, bucket = target.client("dynamodb"), target.client("s3"), target.ref("NewsletterBucket")
    document = json.loads(EXAMPLE_ISSUE.read_text(encoding="utf-8")) | {"issue_id": "c-arch"}
    issue = parse_document(json.dumps(document).encode(), max_bytes=512 * 1024)
    base = "https://news.example.org/web"
    archive.record(s3, bucket, issue, published="2026-11-30T08:00:00Z", list_name="Infomail", author="N", base_url=base)
    page = f"web/archive/{issue.list_id}.en.html"
    assert "c-arch" in s3.get_object(Bucket=bucket, Key=page)["Body"].read().decode()
    issues.create_issue(
        ddb, target.ref("IssuesTable"), {"issue_id": "c-arch", "list_id": issue.list_id, "status": "sending"}
    )
    result = cli("--local", "cancel", "c-arch", "--yes")
    assert result.exit_code == 0 and "taken out of the" in result.output
    assert "c-arch" not in s3.get_object(Bucket=bucket, Key=page)["Body"].read().decode()


def test_publish_at_schedules_and_schedule_reschedule_cancel_manage_it(local, tmp_path):
    from datetime import UTC, datetime, timedelta

    from newsletter.store import issues
    from newsletter_cli.stack import local_target

    target = local_target()
    people = write_csv(tmp_path / "sched.csv", ["a@example.org,A,en,active"])
    assert cli("--local", "subscribers", "import", str(people), "--list", "sched", "--list-name", "S").exit_code == 0
    document = json.loads(EXAMPLE_ISSUE.read_text(encoding="utf-8")) | {"issue_id": "c-sched", "list": "sched"}
    path = tmp_path / "c-sched.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    now = datetime.fromtimestamp(target.local.clock.time(), UTC)
    at = (now + timedelta(days=2)).strftime("%Y-%m-%dT09:00")
    result = cli("--local", "publish", str(path), "--at", at, "--time-zone", "Europe/Vienna")
    assert result.exit_code == 0 and "c-sched is scheduled" in result.output, result.output
    assert issues.get_issue(target.client("dynamodb"), target.ref("IssuesTable"), "c-sched")["status"] == "scheduled"
    listed = cli("--local", "schedule")
    assert listed.exit_code == 0 and "c-sched" in listed.output
    later = (now + timedelta(days=3)).strftime("%Y-%m-%dT10:00+01:00")
    assert cli("--local", "reschedule", "c-sched", "--at", later).exit_code == 0
    assert cli("--local", "cancel", "c-sched", "--yes").exit_code == 0
    assert "c-sched" not in cli("--local", "schedule").output
    too_soon = cli("--local", "publish", str(path), "--at", now.strftime("%Y-%m-%dT%H:%M+00:00"))
    assert too_soon.exit_code == 2


# --- a deployed stack ------------------------------------------------------------------------------


def outputs_template(stack) -> str:
    from newsletter_cli.stack import OUTPUTS

    return json.dumps(
        {
            "Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": {out: {"Value": stack.ref(logical)} for logical, out in OUTPUTS.items()},
        }
    )


def test_a_missing_stack_is_a_clear_error(aws_mock):
    result = cli("--stack", "not-deployed", "--region", "us-east-1", "status")
    assert result.exit_code == 2
    assert "stack 'not-deployed' not found in us-east-1" in result.output and "sam deploy" in result.output


@pytest.mark.filterwarnings("ignore:Tried to parse AWS")
def test_commands_find_the_stack_by_its_outputs(stack, tmp_path):
    import boto3

    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName="newsletter", TemplateBody=outputs_template(stack)
    )
    csv_file = write_csv(tmp_path / "s.csv", readers(4, "dep"))
    result = cli(
        "--stack", "newsletter", "--region", "us-east-1", "subscribers", "import", str(csv_file), "--list", "infomail"
    )
    assert result.exit_code == 0, result.output
    assert (
        "4"
        in cli("--stack", "newsletter", "--region", "us-east-1", "subscribers", "count", "--list", "infomail").output
    )
    up = cli("--stack", "newsletter", "--region", "us-east-1", "publish", str(EXAMPLE_ISSUE), "--no-follow")
    assert up.exit_code == 0 and "issues/2015-07.json" in up.output, up.output
    body = (
        boto3.client("s3", region_name="us-east-1")
        .get_object(Bucket=stack.bucket, Key="issues/2015-07.json")["Body"]
        .read()
    )
    from newsletter_cli.publishing import read_issue

    assert body == read_issue(EXAMPLE_ISSUE)[1]  # the document and its translations: what S3 hands the publish function


def test_follow_reports_a_refused_document(stack):
    import boto3

    from newsletter_cli import publishing
    from newsletter_cli.stack import OUTPUTS, CliError, Target

    target = Target(
        "stack", "newsletter", {logical: stack.ref(logical) for logical in OUTPUTS}, session=boto3.Session()
    )
    boto3.client("s3").put_object(Bucket=stack.bucket, Key="issues/x.json.error.txt", Body=b"subject: missing")
    seen = []
    with pytest.raises(CliError, match="subject: missing"):
        publishing.follow(target, "x", "issues/x.json", seen.append, timeout_s=60, sleep=lambda s: None)
    assert seen == [None]


def test_follow_stops_when_the_issue_is_sent_or_paused(stack):
    import boto3

    from newsletter import lifecycle
    from newsletter.store import issues
    from newsletter_cli import publishing
    from newsletter_cli.stack import OUTPUTS, Target

    target = Target(
        "stack", "newsletter", {logical: stack.ref(logical) for logical in OUTPUTS}, session=boto3.Session()
    )
    ddb, table = boto3.client("dynamodb"), stack.ref("IssuesTable")
    issues.create_issue(ddb, table, {"issue_id": "f-1", "list_id": "infomail", "status": "sending"})
    polls = []

    def tick(seconds):  # the senders make progress between two looks
        polls.append(seconds)
        if len(polls) == 2:
            issues.add_counts(ddb, table, "f-1", {"queued": 10, "segments_done": 16, "sent": 10})
            lifecycle.complete_if_finished(ddb, table, issues.get_issue(ddb, table, "f-1"), "2026-11-27T00:00:00Z")

    seen = []
    record = publishing.follow(target, "f-1", None, seen.append, timeout_s=3600, sleep=tick)
    assert record["status"] == "sent" and len(seen) == 3 and publishing.counts(seen[-1])["sent"] == 10


# --- the installed command ---------------------------------------------------------------------------


def test_the_console_script_is_installed_and_never_prints_a_traceback(tmp_path):
    exe = Path(sys.executable).parent / "newsletter"
    assert exe.exists(), "pip install -e . installs the newsletter command"
    broken = tmp_path / "x.json"
    broken.write_bytes(b"\xff\xfe not json")
    run = subprocess.run(
        [str(exe), "preview", str(broken), "--no-screenshots"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr + run.stdout
    assert "UTF-8" in run.stderr


def test_a_huge_import_through_the_command(tmp_path, monkeypatch):
    """60,000 rows through `subscribers import`: every row accounted for, the problems in a file."""
    import types

    from test_cli_subscribers import SUBS, SUPP, FakeDynamo, write_huge

    from newsletter.store import subscribers as store
    from newsletter_cli import app as app_module
    from newsletter_cli.stack import OUTPUTS, Target

    class Dynamo(FakeDynamo):  # plus the list's own item
        lists: dict = {}

        def get_item(self, TableName, Key, **_):
            return {"Item": self.lists[Key["list_id"]["S"]]} if Key["list_id"]["S"] in self.lists else {}

        def put_item(self, TableName, Item, **_):
            self.lists[Item["list_id"]["S"]] = Item

    rows = 60_000
    existing, suppressed = {i for i in range(rows) if i % 2000 == 5}, {i for i in range(rows) if i % 3000 == 11}
    path = tmp_path / "huge.csv"
    expected = write_huge(path, rows, existing, suppressed)
    fake = Dynamo(rows, existing, suppressed)
    names = {logical: logical for logical in OUTPUTS}
    names["SubscribersTable"], names["SuppressionsTable"] = SUBS, SUPP
    target = Target("stack", "newsletter", names)
    target._clients["dynamodb"] = fake
    monkeypatch.setattr(app_module.Options, "target", lambda self: target)
    monkeypatch.setattr(store, "clock", types.SimpleNamespace(sleep=lambda s: None))
    result = cli("--stack", "newsletter", "subscribers", "import", str(path), "--list", "big")
    assert result.exit_code == 0, result.output
    figures = [line for line in result.output.splitlines() if line.count("│") >= 6][-1].replace("│", " ").split()
    assert figures == [
        str(rows),
        *(str(expected[k]) for k in ("imported", "existing", "duplicates", "suppressed", "invalid")),
    ]
    report = path.with_name(path.name + ".problems.csv")
    assert str(report) in result.output.replace("\n", "")
    assert (
        len(report.read_text(encoding="utf-8-sig").splitlines())
        == 1 + expected["invalid"] + expected["duplicates"] + expected["suppressed"]
    )


def test_send_test_on_a_deployed_stack_uses_the_publish_functions_settings(stack):
    """send-test reads the publish function's environment (Lambda) and queues one batch that the
    deployed send function then sends: here the send function is run by hand."""
    import boto3
    from botocore.stub import Stubber
    from conftest import add_subscribers, mailed, people

    from newsletter_cli import publishing
    from newsletter_cli.stack import OUTPUTS, Target

    add_subscribers(stack, people(3))
    target = Target(
        "stack", "newsletter", {logical: stack.ref(logical) for logical in OUTPUTS}, session=boto3.Session()
    )
    lam = boto3.client("lambda", region_name="us-east-1")
    env = stack.functions["PublishFunction"].environment
    with Stubber(lam) as stub:
        stub.add_response(
            "get_function_configuration",
            {"Environment": {"Variables": env}},
            {"FunctionName": stack.ref("PublishFunction")},
        )
        target._clients["lambda"] = lam
        issue, raw = publishing.read_issue(EXAMPLE_ISSUE)
        test_id = publishing.send_test(target, issue, raw, ["editor@example.org"])
        stub.assert_no_pending_responses()
    stack.poll("SendFunction")
    assert mailed() == ["editor@example.org"]  # not the three subscribers
    record = publishing.get_record(target, test_id)
    assert record["status"] == "sent" and record["test_of"] == "2015-07" and record["subject"].startswith("[TEST] ")
    assert publishing.get_record(target, "2015-07") is None
    assert (
        env["SENDER_ADDRESS"]
        in boto3.client("s3").get_object(Bucket=stack.bucket, Key=record["prepared_key"])["Body"].read().decode()
    )


def test_preview_with_a_stack_uses_its_sender_and_list_name(local, tmp_path):
    csv_file = write_csv(tmp_path / "v.csv", readers(1, "prev"))
    assert (
        cli(
            "--local", "subscribers", "import", str(csv_file), "--list", "previews", "--list-name", "Preview Readers"
        ).exit_code
        == 0
    )
    doc = write_issue(tmp_path / "v.json", issue_id="v-1", list="previews")
    result = cli("--local", "preview", str(doc), "--out", str(tmp_path / "out"), "--no-screenshots")
    assert result.exit_code == 0, result.output
    msg = email.message_from_bytes((tmp_path / "out" / "v-1.eml").read_bytes(), policy=email.policy.default)
    assert msg["From"].addresses[0].addr_spec == "news@news.example.org"  # the local stack's SenderAddress
    assert msg["List-Id"].startswith("Preview Readers <previews.")


def test_preview_with_a_stack_counts_who_falls_back_per_language(local, tmp_path):
    rows = [f"lang{i:02d}@example.com,R {i},{lang},active" for i, lang in enumerate(["fr", "de", "de", "pt-BR", "en"])]
    rows.append("gone@example.com,Gone,de,unsubscribed")  # only active readers count
    csv_file = write_csv(tmp_path / "l.csv", rows)
    assert cli("--local", "subscribers", "import", str(csv_file), "--list", "polyglots").exit_code == 0
    doc = write_issue(tmp_path / "l-1.json", issue_id="l-1", list="polyglots")
    fr = json.loads(EXAMPLE_ISSUE.with_name("2015-07.fr.json").read_text(encoding="utf-8"))
    (tmp_path / "l-1.fr.json").write_text(json.dumps(fr), encoding="utf-8")
    result = cli("--local", "preview", str(doc), "--out", str(tmp_path / "out"), "--no-screenshots")
    assert result.exit_code == 0, result.output
    assert "no de variant: 2 readers get en instead" in result.output
    assert "no pt variant: 1 reader gets en instead" in result.output  # pt-BR, with no Portuguese at all
    assert "5 active readers: en 4, fr 1" in result.output
    assert (tmp_path / "out" / "l-1.fr.eml").is_file()


def test_lists_put_show_and_form(local, tmp_path):
    doc = ROOT / "examples" / "lists" / "infomail.json"
    data = json.loads(doc.read_text(encoding="utf-8"))
    data["list"] = "signups"
    path = tmp_path / "signups.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    put = cli("--local", "lists", "put", str(path))
    assert put.exit_code == 0, put.output
    assert "list signups: ICMPD Infomail (en, fr, pt)" in put.output
    shown = json.loads(cli("--local", "lists", "show", "signups").output)
    assert [t["id"] for t in shown["topics"]] == ["news", "vacancies", "publications", "calls", "events"]
    assert len(shown["consent"]["hash"]["fr"]) == 64 and shown["signup"]["origins"] == ["https://www.icmpd.org"]

    data["consent"]["version"] = "not a version!"
    path.write_text(json.dumps(data), encoding="utf-8")
    bad = cli("--local", "lists", "put", str(path))
    assert bad.exit_code != 0 and "consent.version: String should match pattern" in bad.output
    data["consent"]["version"] = "2"
    data["topics"][1]["labels"] = {"fr": "Postes"}  # no label in the list's first language
    path.write_text(json.dumps(data), encoding="utf-8")
    bad = cli("--local", "lists", "put", str(path))
    assert bad.exit_code != 0 and "topics[1].labels: no label in en" in bad.output
    assert cli("--local", "lists", "form", "nosuchlist").exit_code != 0


def test_show_and_forget_a_person(local, tmp_path):
    csv_file = write_csv(tmp_path / "p.csv", ["forget.me@example.com,Forget Me,en,active"])
    assert cli("--local", "subscribers", "import", str(csv_file), "--list", "privacy").exit_code == 0
    shown = json.loads(cli("--local", "subscribers", "show", "Forget.Me@example.com").output)
    [sub] = shown["subscriptions"]
    assert sub["list_id"] == "privacy" and sub["consent"] == {**sub["consent"], "method": "import", "source": "p.csv"}
    gone = cli("--local", "subscribers", "forget", "forget.me@example.com", "--yes")
    assert gone.exit_code == 0 and "1 subscription(s)" in gone.output and "forget.me@example.com" not in gone.output
    assert json.loads(cli("--local", "subscribers", "show", "forget.me@example.com").output)["subscriptions"] == []
    again = cli("--local", "subscribers", "import", str(csv_file), "--list", "privacy")
    assert again.exit_code == 0 and "suppressed" in again.output.lower()


def test_local_start_status_stop(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_LOCAL_DIR", str(tmp_path / "own"))
    assert cli("local", "status").exit_code == 1
    started = cli("local", "start")
    assert started.exit_code == 0 and "http://127.0.0.1:" in started.output
    state = json.loads((tmp_path / "own" / "stack.json").read_text())
    status = cli("local", "status")
    assert status.exit_code == 0 and state["endpoint_url"] in status.output
    assert "local stack stopped" in cli("local", "stop").output
    assert not (tmp_path / "own" / "stack.json").exists()
    assert cli("local", "status").exit_code == 1
    assert "no local stack was running" in cli("local", "stop").output


def test_unsubscribe_by_hand_by_address_or_by_a_mailto_token(local, tmp_path):
    from newsletter import tokens
    from newsletter_cli.stack import local_target

    csv_file = write_csv(tmp_path / "u.csv", readers(3, "mail"))
    assert cli("--local", "subscribers", "import", str(csv_file), "--list", "mailtos").exit_code == 0
    done = cli("--local", "subscribers", "unsubscribe", "Mail000@example.com", "--list", "mailtos")
    assert done.exit_code == 0 and "unsubscribed from mailtos" in done.output
    again = cli("--local", "subscribers", "unsubscribe", "mail000@example.com", "--list", "mailtos")
    assert again.exit_code == 0 and "already unsubscribed" in again.output
    unknown = cli("--local", "subscribers", "unsubscribe", "nobody@example.com", "--list", "mailtos")
    assert unknown.exit_code == 2 and "not on list" in unknown.output

    # What a mailto request carries in its subject: "unsubscribe <token>".
    token = tokens.sign(local_target().token_secret(), "mailtos", "mail001@example.com")
    by_mail = cli("--local", "subscribers", "unsubscribe", "--token", f"unsubscribe {token}")
    assert by_mail.exit_code == 0 and "mail001@example.com" in by_mail.output
    forged = cli(
        "--local",
        "subscribers",
        "unsubscribe",
        "--token",
        tokens.sign(b"another secret", "mailtos", "mail002@example.com"),
    )
    assert forged.exit_code == 2 and "not one of ours" in forged.output
    out = tmp_path / "active.csv"
    cli("--local", "subscribers", "export", "--list", "mailtos", "--status", "active", "--out", str(out))
    assert [line.split(",")[0] for line in out.read_text(encoding="utf-8").splitlines()[1:]] == ["mail002@example.com"]
    assert cli("--local", "subscribers", "unsubscribe", "--list", "mailtos").exit_code == 2  # no address


def test_an_interrupted_local_publish_goes_on_where_it_stopped(local, tmp_path, monkeypatch):
    from devstack.stack import LocalStack

    assert (
        cli(
            "--local",
            "subscribers",
            "import",
            str(write_csv(tmp_path / "r.csv", readers(120, "int"))),
            "--list",
            "interrupts",
        ).exit_code
        == 0
    )
    doc = write_issue(tmp_path / "r.json", issue_id="r-1", list="interrupts")
    real_poll = LocalStack.poll
    sends = {"n": 0}

    def poll(self, logical_id, **kwargs):
        if logical_id == "SendFunction":
            sends["n"] += 1
            if sends["n"] == 2:  # Ctrl-C after the first send invocation
                raise KeyboardInterrupt
        return real_poll(self, logical_id, **kwargs)

    monkeypatch.setattr(LocalStack, "poll", poll)
    stopped = cli("--local", "publish", str(doc))
    assert stopped.exit_code == 130 and "run the same publish command to go on" in stopped.output
    monkeypatch.setattr(LocalStack, "poll", real_poll)
    from newsletter_cli import publishing
    from newsletter_cli.stack import local_target

    first = publishing.get_record(local_target(), "r-1")["sent"]
    assert 0 < first < 120  # some sent, the rest still queued
    again = cli("--local", "publish", str(doc))
    assert again.exit_code == 0 and "already published" in again.output
    to = [m["To"].addresses[0].addr_spec for m in eml_files(local, "r-1")]
    assert len(to) == len(set(to)) == 120


# --- dead letters -----------------------------------------------------------------------------------


def test_dlq_lists_dead_letters_without_addresses_and_redrives_them(local, tmp_path):
    from devstack import ses_feedback
    from newsletter.sending import Batch
    from newsletter_cli.stack import local_target

    assert (
        cli(
            "--local", "subscribers", "import", str(write_csv(tmp_path / "d.csv", readers(2, "dlq"))), "--list", "dlqs"
        ).exit_code
        == 0
    )
    assert (
        cli("--local", "publish", str(write_issue(tmp_path / "d.json", issue_id="dlq-1", list="dlqs"))).exit_code == 0
    )
    late = readers(2, "dlqlate")
    assert (
        cli("--local", "subscribers", "import", str(write_csv(tmp_path / "l.csv", late)), "--list", "dlqs").exit_code
        == 0
    )
    target = local_target()
    sqs = target.client("sqs")
    # As if they had failed their last receive: a batch for the two late readers, a notification.
    batch = Batch("dlq-1", "dlqs", "07-000000-00", tuple((f"dlqlate{i:03d}@example.com", "") for i in range(2)))
    sqs.send_message(QueueUrl=target.ref("SendDLQ"), MessageBody=batch.to_message())
    note = ses_feedback.notification("Delivery", "0100-dlq", ["dlq000@example.com"], issue_id="dlq-1", list_id="dlqs")
    sqs.send_message(QueueUrl=target.ref("FeedbackDLQ"), MessageBody=ses_feedback.sns_body(note))

    listed = cli("--local", "dlq")
    assert listed.exit_code == 0, listed.output
    rows = {
        line.split("│")[1].strip(): line.split("│")[3].strip()
        for line in listed.output.splitlines()
        if line.count("│") == 5
    }
    assert rows == {"PublishDLQ": "0", "FanoutDLQ": "0", "SendDLQ": "1", "FeedbackDLQ": "1"}
    assert "issue dlq-1, batch 07-000000-00: 2 recipient(s)" in listed.output
    assert "delivery for issue dlq-1, SES message 0100-dlq, 1 recipient(s)" in listed.output
    assert "@" not in listed.output.replace("newsletter dlq", "")  # no address, of anyone
    assert "newsletter dlq redrive SendDLQ" in listed.output

    moved = cli("--local", "dlq", "redrive", "send")
    assert moved.exit_code == 0 and "SendDLQ: 1 message(s) back to SendQueue" in moved.output
    from newsletter_cli import publishing

    publishing.local_outbox("dlq-1", 4)  # the local stack writes what SES accepted as it goes
    to = sorted(m["To"].addresses[0].addr_spec for m in eml_files(local, "dlq-1"))
    assert to == ["dlq000@example.com", "dlq001@example.com", "dlqlate000@example.com", "dlqlate001@example.com"]
    assert cli("--local", "dlq", "redrive", "FeedbackDLQ").exit_code == 0
    assert "no dead letters" in cli("--local", "dlq").output
    assert cli("--local", "dlq", "redrive", "nope").exit_code == 2


def test_dlq_redrive_on_aws_starts_the_move_task_or_invokes_publish_again(aws_mock):
    import boto3
    from botocore.stub import Stubber

    from newsletter_cli import dlq
    from newsletter_cli.stack import Target

    sqs, lam = boto3.client("sqs", region_name="us-east-1"), boto3.client("lambda", region_name="us-east-1")
    names = {
        "SendDLQ": "https://sqs/q/send-dlq",
        "PublishDLQ": "https://sqs/q/publish-dlq",
        "PublishFunction": "publish-fn",
    }
    target = Target("stack", "newsletter", names, _clients={"sqs": sqs, "lambda": lam})
    with Stubber(sqs) as s:
        s.add_response("get_queue_attributes", {"Attributes": {"QueueArn": "arn:aws:sqs:us-east-1:1:send-dlq"}})
        s.add_response("get_queue_attributes", {"Attributes": {"ApproximateNumberOfMessages": "3"}})
        s.add_response(
            "start_message_move_task", {"TaskHandle": "task-1"}, {"SourceArn": "arn:aws:sqs:us-east-1:1:send-dlq"}
        )
        assert dlq.redrive(target, dlq.queue_named("SendDLQ")) == dlq.Redrive(3, "task-1")
    event = {"Records": [{"s3": {"object": {"key": "issues/2015-07.json"}}}]}
    with Stubber(sqs) as s, Stubber(lam) as l:
        _one_dead_letter_invoked(s, l, json.dumps({"requestPayload": event}), event)
        assert dlq.redrive(target, dlq.queue_named("publish")).moved == 1


def test_a_scheduled_start_in_publish_dlq_is_described_and_invoked_again_as_it_was(aws_mock):
    # EventBridge Scheduler's dead letter is the start input itself, with no requestPayload around it.
    import boto3
    from botocore.stub import Stubber

    from newsletter import schedule
    from newsletter_cli import dlq
    from newsletter_cli.stack import Target

    start = schedule.start_payload("2015-07", 2)
    queue = dlq.queue_named("PublishDLQ")
    assert dlq.describe(queue, json.dumps(start)) == "scheduled start of issue 2015-07 (generation 2)"
    sqs, lam = boto3.client("sqs", region_name="us-east-1"), boto3.client("lambda", region_name="us-east-1")
    names = {"PublishDLQ": "https://sqs/q/publish-dlq", "PublishFunction": "publish-fn"}
    target = Target("stack", "newsletter", names, _clients={"sqs": sqs, "lambda": lam})
    with Stubber(sqs) as s, Stubber(lam) as l:
        _one_dead_letter_invoked(s, l, json.dumps(start), start)
        assert dlq.redrive(target, queue).moved == 1


def _one_dead_letter_invoked(sqs_stub, lambda_stub, body: str, payload: dict) -> None:
    """PublishDLQ as a redrive on AWS meets it: one message (`body`), the publish function invoked
    asynchronously with `payload`, the message deleted, then an empty queue."""
    sqs_stub.add_response("receive_message", {"Messages": [{"ReceiptHandle": "r", "Body": body}]})
    lambda_stub.add_response(
        "invoke",
        {"StatusCode": 202},
        {"FunctionName": "publish-fn", "InvocationType": "Event", "Payload": json.dumps(payload).encode()},
    )
    sqs_stub.add_response("delete_message", {}, {"QueueUrl": "https://sqs/q/publish-dlq", "ReceiptHandle": "r"})
    sqs_stub.add_response("receive_message", {})
