"""Clicks per link: SES Click events through the real feedback handler (moto), counted per link of
the issue once however often they come, our own links apart, hostile links bounded; the ranking
`newsletter status` shows; and the local stack's simulated readers clicking, end to end."""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from conftest import ROOT, SECRET, add_subscribers, client_error, deliver, issue_doc, issue_record, people, publish
from rich.console import Console

from devstack import ses_feedback
from devstack.faults import FaultPlan
from newsletter import aws, clicks, tokens
from newsletter.store import issues, links

ISSUE = "2015-07"
VACANCIES = "https://www.icmpd.org/about-us/vacancies"
SURVEY = "https://www.icmpd.org/publications/a-survey-on-migration-policies-in-west-africa"
T0 = datetime(2015, 7, 1, 10, 0, tzinfo=UTC)


def ddb():
    return boto3.client("dynamodb", region_name="us-east-1")


def an_issue(stack, issue_id: str = ISSUE, **counters) -> None:
    """The issue item the counters go on (as publishing leaves it), with these counters."""
    table = stack.ref("IssuesTable")
    issues.create_issue(ddb(), table, {"issue_id": issue_id, "list_id": "infomail", "status": "sending"})
    if counters:
        issues.add_counts(ddb(), table, issue_id, counters)


def click(reader: int, link: str, minute: int = 0, issue_id: str = ISSUE) -> dict:
    """Reader n's Click on `link` in their message of the issue, `minute` minutes after T0."""
    address = f"reader{reader:05d}@example.com"
    return ses_feedback.notification(
        "Click",
        f"0100-{issue_id}-{reader:05d}",
        [address],
        issue_id=issue_id,
        list_id="infomail",
        link=link,
        at=T0 + timedelta(minutes=minute),
    )


def feed(stack, *notes: dict | str) -> dict:
    """One invocation of FeedbackFunction, one SQS record per notification (fb-0, fb-1, …)."""
    bodies = [n if isinstance(n, str) else ses_feedback.sns_body(n) for n in notes]
    return stack.invoke("FeedbackFunction", ses_feedback.sqs_event(stack, bodies))


def by_url(stack, issue_id: str = ISSUE) -> dict[str, dict]:
    return {i["url"]: i for i in links.issue_links(ddb(), stack.ref("IssuesTable"), issue_id)}


def counted(item: dict) -> tuple[int, int]:
    return int(item["clicks"]), int(item["clickers"])


# --- what is kept of a link (pure) -----------------------------------------------------------------


def test_a_content_link_is_kept_as_it_is():
    link = clicks.link_of(VACANCIES + "?utm_source=news#top", issue_id=ISSUE)
    assert (link.url, link.own, link.cut, link.redacted) == (VACANCIES + "?utm_source=news#top", None, False, False)
    assert link.key == clicks.link_of(VACANCIES + "?utm_source=news#top", issue_id="2015-08").key
    assert link.key != clicks.link_of(VACANCIES, issue_id=ISSUE).key


def test_our_links_are_recognised_and_kept_without_the_readers_token():
    one, two = (tokens.sign(SECRET.encode(), "infomail", f"r{i}@example.org", key_version=1) for i in (1, 2))
    base = "https://news.example.org"
    unsubscribe = [
        clicks.link_of(f"{base}/unsubscribe?token={t}&issue={ISSUE}&lang=fr", issue_id=ISSUE) for t in (one, two)
    ]
    assert {(u.url, u.own) for u in unsubscribe} == {(f"{base}/unsubscribe", clicks.UNSUBSCRIBE)}
    assert unsubscribe[0].key == unsubscribe[1].key  # every reader's unsubscribe link: one link
    # The Function URL's own address (no path), and an old unversioned token.
    fn_url = clicks.link_of(f"https://abc.lambda-url.us-east-1.on.aws/?token={one}", issue_id=ISSUE)
    assert (fn_url.url, fn_url.own) == ("https://abc.lambda-url.us-east-1.on.aws/", clicks.UNSUBSCRIBE)
    old = tokens.sign(SECRET.encode(), "infomail", "r1@example.org")
    assert clicks.link_of(f"{base}/?token={old}", issue_id=ISSUE).own == clicks.UNSUBSCRIBE
    preferences = clicks.link_of(f"{base}/preferences?token={one}", issue_id=ISSUE)
    assert (preferences.url, preferences.own) == (f"{base}/preferences", clicks.PREFERENCES)
    for web in (f"{base}/web/{ISSUE}.html", f"{base}/web/{ISSUE}.pt-BR.html"):
        assert clicks.link_of(web, issue_id=ISSUE).own == clicks.WEB_VERSION
    # Another issue's web version, a page that merely has a token parameter: content.
    assert clicks.link_of(f"{base}/web/2015-06.html", issue_id=ISSUE).own is None
    assert clicks.link_of("https://shop.example/cart?token=abc123", issue_id=ISSUE).own is None


def test_a_link_with_the_readers_address_is_kept_without_it():
    reader = ("jose.alvarez@example.com",)
    query = clicks.link_of(f"{SURVEY}?email=Jose.Alvarez%40example.com&x=1#jose", issue_id=ISSUE, addresses=reader)
    assert (query.url, query.redacted, query.own) == (SURVEY, True, None)
    path = clicks.link_of("https://tracker.example/u/jose.alvarez@example.com/p", issue_id=ISSUE, addresses=reader)
    assert (path.url, path.redacted) == ("https://tracker.example/", True)
    assert not clicks.link_of(SURVEY, issue_id=ISSUE, addresses=reader).redacted


def test_a_long_or_unprintable_link_is_bounded():
    long = "https://www.icmpd.org/search?q=" + "a" * 5000
    cut = clicks.link_of(long, issue_id=ISSUE)
    assert (len(cut.url), cut.cut) == (clicks.MAX_URL, True)
    assert long.startswith(cut.url)
    # Two long links alike in their first 2,048 characters stay two links.
    assert clicks.link_of(long + "b", issue_id=ISSUE).key != cut.key
    hostile = clicks.link_of("https://evil.example/\x1b[2J\nline\u202etxt.exe\ud800 x", issue_id=ISSUE)
    assert hostile.url == "https://evil.example/%1B[2J%0Aline%E2%80%AEtxt.exe%EF%BF%BD%20x"
    assert hostile.url.isprintable() and hostile.url.encode("utf-8")
    # Not even a URL (Python's parser refuses the host): kept as text, the address still left out.
    assert clicks.link_of("http://[::1/x?y", issue_id=ISSUE).url == "http://[::1/x?y"
    odd = clicks.link_of("http://[zz]/a?to=r@example.org", issue_id=ISSUE, addresses=("r@example.org",))
    assert (odd.url, odd.redacted) == ("http://[zz]/a", True)


def test_a_click_is_known_again_by_its_fields():
    note = click(1, VACANCIES)
    one = clicks.click_of(note)
    assert one == clicks.click_of(json.loads(json.dumps(note)))
    assert one.link == VACANCIES
    assert one != clicks.click_of(click(1, VACANCIES, minute=1))
    assert clicks.click_of({**note, "click": {**note["click"], "link": ""}}) is None
    assert clicks.click_of({**note, "click": {**note["click"], "link": ["x"]}}) is None
    assert clicks.click_of({"mail": note["mail"]}) is None


def test_rank_orders_by_readers_then_clicks_then_url_and_leaves_our_links_out():
    found = [
        {"url": "https://b.example/", "clicks": 9, "clickers": 2},
        {"url": "https://a.example/", "clicks": 3, "clickers": 3},
        {"url": "https://c.example/", "clicks": 3, "clickers": 2},
        {"url": "https://d.example/", "clicks": 9, "clickers": 2},
        {"url": "https://news.example.org/unsubscribe", "clicks": 50, "clickers": 50, "own": "unsubscribe"},
    ]
    top = clicks.rank(found, delivered=200, n=3)
    assert [r["url"] for r in top] == ["https://a.example/", "https://b.example/", "https://d.example/"]
    assert top[0] == {"url": "https://a.example/", "clicks": 3, "clickers": 3, "share": 0.015, "cut": False}
    assert [r["share"] for r in clicks.rank(found, delivered=None)] == [None] * 4
    assert clicks.own_links(found, delivered=200) == [
        {"own": "unsubscribe", "clicks": 50, "clickers": 50, "share": 0.25}
    ]


# --- through the feedback function (moto) ----------------------------------------------------------


def test_clicks_and_clickers_per_link(stack):
    an_issue(stack)
    result = feed(
        stack,
        click(1, VACANCIES, 0),
        click(1, VACANCIES, 1),
        click(1, VACANCIES, 5),  # one reader, three clicks: 3 clicks, 1 clicker
        click(2, VACANCIES, 2),
        click(2, SURVEY, 3),
        click(3, SURVEY, 4),
        click(4, SURVEY, 4),
    )
    assert result == {"batchItemFailures": []}
    found = by_url(stack)
    assert {url: counted(item) for url, item in found.items()} == {VACANCIES: (4, 2), SURVEY: (3, 3)}
    assert all(item["sk"] == "link#" + clicks.link_of(url, issue_id=ISSUE).key for url, item in found.items())
    assert issue_record(stack, ISSUE)["clicked"] == 4  # unique clickers per message, as before
    table = stack.ref("IssuesTable")
    assert links.most_clicked(ddb(), table, ISSUE) == [
        {"url": SURVEY, "clicks": 3, "clickers": 3, "share": None, "cut": False},
        {"url": VACANCIES, "clicks": 4, "clickers": 2, "share": None, "cut": False},
    ]
    issues.add_counts(ddb(), table, ISSUE, {"delivered": 8})
    top = links.most_clicked(ddb(), table, ISSUE, n=1)
    assert [(r["url"], r["share"]) for r in top] == [(SURVEY, 3 / 8)]
    assert links.most_clicked(ddb(), table, "2015-08") == []


def test_a_redelivered_click_counts_once(stack):
    an_issue(stack)
    note = click(1, VACANCIES)
    body = ses_feedback.sns_body(note)
    # SQS delivering the same message twice in a batch, then again; SNS publishing it twice
    # (another envelope, another SNS message id, the same SES event).
    assert feed(stack, body, body, click(1, VACANCIES, 1)) == {"batchItemFailures": []}
    assert feed(stack, body, ses_feedback.sns_body(note)) == {"batchItemFailures": []}
    assert counted(by_url(stack)[VACANCIES]) == (2, 1)


class FailingLink:
    """The feedback function's DynamoDB client, whose writes to one link fail (throttled) while `on`."""

    def __init__(self, real, url: str):
        self.real, self.on, self.refused = real, True, 0
        self.sk = "link#" + clicks.link_of(url, issue_id=ISSUE).key

    def __getattr__(self, name):
        return getattr(self.real, name)

    def transact_write_items(self, **kwargs):
        keys = [item["Update"]["Key"]["sk"]["S"] for item in kwargs["TransactItems"] if "Update" in item]
        if self.on and self.sk in keys:
            self.refused += 1
            raise client_error("ProvisionedThroughputExceededException", 400, "TransactWriteItems")
        return self.real.transact_write_items(**kwargs)


def test_a_failed_record_of_a_batch_is_counted_once_after_its_retry(stack, monkeypatch):
    an_issue(stack)
    real, failing = aws.client, {}

    def client(service):
        c = real(service)
        if service != "dynamodb":
            return c
        return failing.setdefault("client", FailingLink(c, SURVEY))

    client.cache_clear = real.cache_clear
    monkeypatch.setattr(aws, "client", client)
    batch = [ses_feedback.sns_body(n) for n in (click(1, VACANCIES), click(2, SURVEY), click(3, VACANCIES))]

    assert feed(stack, *batch) == {"batchItemFailures": [{"itemIdentifier": "fb-1"}]}
    assert failing["client"].refused == 3  # tried three times in the invocation, then left to SQS
    assert {url: counted(item) for url, item in by_url(stack).items()} == {VACANCIES: (2, 2)}

    failing["client"].on = False
    assert feed(stack, batch[1]) == {"batchItemFailures": []}  # SQS delivers the failed record again
    assert feed(stack, *batch) == {"batchItemFailures": []}  # and, for good measure, all of them
    assert {url: counted(item) for url, item in by_url(stack).items()} == {VACANCIES: (2, 2), SURVEY: (1, 1)}


def test_an_instance_dying_at_any_call_counts_each_click_once(stack):
    """The feedback function dies at each of its AWS calls in turn, before or after the service
    acted; SQS delivers the batch again after its visibility timeout. Each run clicks links of its
    own, so what each counted is apart."""
    an_issue(stack)

    def notes(run: str) -> list[dict]:
        a, b = f"{VACANCIES}?run={run}", f"{SURVEY}?run={run}"
        return [click(1, a, 0), click(1, a, 1), click(2, a, 2), click(2, b, 3)]

    def run(name: str, plan: FaultPlan) -> dict:
        ses_feedback.publish(stack, notes(name))
        stack.faults = plan
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                stack.poll("FeedbackFunction")
        finally:
            stack.faults = None
        found = by_url(stack)
        return {url.split("?")[0]: counted(item) for url, item in found.items() if url.endswith(f"run={name}")}

    expected = {VACANCIES: (3, 2), SURVEY: (1, 1)}
    assert run("warm", FaultPlan()) == expected  # the container's secret is read once, here
    clean = FaultPlan()
    assert run("clean", clean) == expected
    assert clean.calls >= 8  # per click: its issue counter, then the link's marker read and write
    for at in range(1, clean.calls + 1):
        for after in (False, True):
            plan = FaultPlan(crash_at=at, crash_after=after)
            assert run(f"{at}-{after}", plan) == expected, (at, after)
            assert plan.crashed
    sqs = stack.client("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=stack.ref("FeedbackDLQ"), AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_our_own_links_are_counted_apart_and_no_token_or_address_is_kept(stack, capsys):
    an_issue(stack, delivered=10)
    base = "https://news.example.org"
    notes = []
    for n in (1, 2, 3):
        token = tokens.sign(SECRET.encode(), "infomail", f"reader{n:05d}@example.com", key_version=1)
        notes.append(click(n, f"{base}/unsubscribe?token={token}&issue={ISSUE}", n))
        notes.append(click(n, f"{base}/preferences?token={token}", 10 + n))
    notes += [click(4, f"{base}/web/{ISSUE}.html"), click(5, f"{base}/web/{ISSUE}.fr.html"), click(5, VACANCIES)]
    notes.append(click(6, f"{SURVEY}?for=reader00006%40example.com"))
    assert feed(stack, *notes) == {"batchItemFailures": []}

    table = stack.ref("IssuesTable")
    assert links.most_clicked(ddb(), table, ISSUE) == [
        {"url": VACANCIES, "clicks": 1, "clickers": 1, "share": 0.1, "cut": False},  # alike: by URL
        {"url": SURVEY, "clicks": 1, "clickers": 1, "share": 0.1, "cut": False},
    ]
    assert links.own_clicks(ddb(), table, ISSUE) == [
        {"own": "unsubscribe", "clicks": 3, "clickers": 3, "share": 0.3},
        {"own": "preferences", "clicks": 3, "clickers": 3, "share": 0.3},
        {"own": "web_version", "clicks": 2, "clickers": 2, "share": 0.2},
    ]
    assert by_url(stack)[SURVEY]["redacted"] is True
    # The issues table holds no token and no address; nor do the logs (nor a link of ours).
    stored = json.dumps(ddb().scan(TableName=table)["Items"])
    out = capsys.readouterr().out
    for text in (stored, out):
        assert "token=" not in text and "v2.1." not in text and "@example.com" not in text
        assert "reader00006%40" not in text
    assert "unsubscribe?" not in out and VACANCIES not in out


def test_a_hostile_link_is_bounded(stack, capsys):
    an_issue(stack)
    hostile = "https://evil.example/[bold]x[/bold]\x1b[31m?" + "q" * 10_000
    notes = [click(1, hostile, minute) for minute in range(clicks.MAX_CLICKS_PER_READER + 8)]
    notes += [click(2, hostile, 0), click(3, "http://[::1/not-a-host")]  # one Python cannot parse
    for start in range(0, len(notes), 10):
        assert feed(stack, *notes[start : start + 10]) == {"batchItemFailures": []}
    assert counted(by_url(stack).pop("http://[::1/not-a-host")) == (1, 1)
    (item,) = [i for url, i in by_url(stack).items() if url.startswith("https://evil")]
    assert len(item["url"]) == clicks.MAX_URL and item["cut"] is True
    assert "\x1b" not in item["url"] and item["url"].startswith("https://evil.example/[bold]x[/bold]%1B[31m?qqq")
    # One reader's clicks on one link count up to the bound: their marker stays small.
    assert counted(item) == (clicks.MAX_CLICKS_PER_READER + 1, 2)
    out = capsys.readouterr().out
    assert "evil.example" not in out and "qqqq" not in out
    assert '"counted":"capped"' in out.replace(" ", "")


def test_a_click_without_a_link_or_an_issue_counts_on_no_link(stack):
    an_issue(stack)
    note = click(1, VACANCIES)
    del note["click"]["link"]
    stranger = click(2, VACANCIES, issue_id="1999-01")  # an issue this stack never published
    assert feed(stack, note, stranger) == {"batchItemFailures": []}
    assert by_url(stack) == {} and by_url(stack, "1999-01") == {}
    assert issue_record(stack, ISSUE)["clicked"] == 1
    assert issue_record(stack, "1999-01") is None  # a link item never makes an issue


def test_forgetting_a_reader_removes_their_click_markers_and_keeps_the_counts(stack):
    from newsletter_cli import person
    from newsletter_cli.stack import OUTPUTS, Target

    an_issue(stack)
    feed(stack, click(1, VACANCIES, 0), click(1, VACANCIES, 1), click(1, SURVEY, 2), click(2, SURVEY, 3))
    target = Target("local", "test", {logical: stack.ref(logical) for logical in OUTPUTS}, local=stack)
    held = person.show(target, "reader00001@example.com")
    markers = sorted(f["pk"] for f in held["feedback"] if "#link#" in f["pk"])
    assert len(markers) == 2 and all(m.endswith("#reader00001@example.com") for m in markers)
    person.forget(target, "reader00001@example.com")
    left = [i["pk"]["S"] for i in ddb().scan(TableName=stack.ref("FeedbackTable"))["Items"]]
    assert left and not any("reader00001" in pk for pk in left)
    assert {url: counted(item) for url, item in by_url(stack).items()} == {VACANCIES: (2, 1), SURVEY: (2, 2)}


def test_the_click_sample_event_counts_its_link(stack):
    an_issue(stack)
    event = json.loads((ROOT / "events" / "sqs-feedback-event-click.json").read_text())
    for _ in range(2):  # and once only, however often it comes
        assert stack.invoke("FeedbackFunction", event) == {"batchItemFailures": []}
    assert {url: counted(item) for url, item in by_url(stack).items()} == {
        "https://www.icmpd.org/news-centre/news-detail/": (1, 1)
    }


def test_the_status_table_shows_links_as_text(stack):
    from newsletter_cli.links import links_table

    an_issue(stack, delivered=4)
    table = stack.ref("IssuesTable")
    assert links_table(ddb(), table, issue_record(stack, ISSUE)) is None  # nothing clicked: no table
    token = tokens.sign(SECRET.encode(), "infomail", "reader00001@example.com", key_version=1)
    feed(
        stack,
        click(1, "https://x.example/[red]not-markup[/red]"),
        click(2, VACANCIES),
        click(3, VACANCIES),
        click(1, f"https://news.example.org/unsubscribe?token={token}"),
        click(3, "https://x.example/" + "z" * 3000),
    )
    console = Console(record=True, width=400, color_system=None)
    console.print(links_table(ddb(), table, issue_record(stack, ISSUE)))
    text = console.export_text()
    assert text.startswith("Most clicked links")
    lines = [line for line in text.splitlines() if "https://" in line or "ours" in line]
    assert "vacancies" in lines[0] and "50.0%" in lines[0]  # 2 of 4 delivered
    assert "https://x.example/[red]not-markup[/red]" in text
    assert "…(cut)" in text
    assert "the unsubscribe link (ours, not content)" in lines[-1] and "25.0%" in lines[-1]


# --- the local stack's readers click (end to end) ----------------------------------------------------


@pytest.fixture
def tracked(aws_mock):
    from devstack import iam
    from devstack.demo import create_list
    from devstack.stack import LocalStack

    stack = LocalStack.create({"TrackEngagement": "true"}, token_secret=SECRET)
    create_list(stack, "infomail", "ICMPD Infomail")
    add_subscribers(stack, people(60))
    with contextlib.redirect_stdout(io.StringIO()):
        publish(stack, issue_doc(ISSUE))
        deliver(stack)
    stack.recorder = iam.Recorder()
    return stack


def expected_counts(notes: list[dict], web_url: str) -> tuple[dict, Counter, Counter]:
    """What the Click notifications should have counted: content links {url: (clicks, clickers)};
    clicks and clickers of our own links, by kind (the simulator's links, read plainly)."""
    content: dict[str, list] = {}
    own_clicks, own_readers = Counter(), {}
    for n in notes:
        if n["eventType"] != "Click":
            continue
        link, reader = n["click"]["link"], n["mail"]["destination"][0]
        if link == web_url:
            kind = "web_version"
        elif "token=" in link:
            kind = "preferences" if "/preferences?" in link else "unsubscribe"
        else:
            content.setdefault(link, [0, set()])
            content[link][0] += 1
            content[link][1].add(reader)
            continue
        own_clicks[kind] += 1
        own_readers.setdefault(kind, set()).add(reader)
    return (
        {url: (n, len(readers)) for url, (n, readers) in content.items()},
        own_clicks,
        Counter({k: len(v) for k, v in own_readers.items()}),
    )


def test_simulated_readers_click_and_each_link_counts_what_they_did(tracked):
    from devstack import iam

    stack = tracked
    notes = ses_feedback.simulator_outcomes(stack, "infomail")
    kinds = Counter(n["eventType"] for n in notes)
    assert kinds["Delivery"] == 60 and kinds["Open"] > 0 and kinds["Click"] > 0
    record = issue_record(stack, ISSUE)
    content, own_clicks, own_readers = expected_counts(notes, record["web_url"])
    assert len(content) >= 3 and own_clicks, "the simulated readers clicked too little to test anything"

    for _ in range(2):  # everything SES said, delivered twice
        assert ses_feedback.deliver(stack, notes)["failures"] == 0
    found = links.issue_links(ddb(), stack.ref("IssuesTable"), ISSUE)
    assert {i["url"]: counted(i) for i in found if not i.get("own")} == content
    own = links.own_clicks(ddb(), stack.ref("IssuesTable"), ISSUE)
    assert {r["own"]: r["clicks"] for r in own} == own_clicks
    assert {r["own"]: r["clickers"] for r in own} == own_readers
    top = links.most_clicked(ddb(), stack.ref("IssuesTable"), ISSUE, n=3)
    best = sorted(content.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))[:3]
    assert [(r["url"], r["clicks"], r["clickers"], r["share"]) for r in top] == [
        (url, n, readers, readers / 60) for url, (n, readers) in best
    ]
    # The feedback function's policy allows every call it made for them.
    grants = iam.statements(stack, "FeedbackFunction")
    calls = [c for c in stack.recorder.calls if c.function == "FeedbackFunction"]
    assert {c.operation for c in calls} >= {"get_item", "transact_write_items"}
    assert [n for c in calls for n in iam.needed(c) if not iam.allowed(grants, *n)] == []


def test_without_tracking_the_simulated_readers_neither_open_nor_click(stack):
    add_subscribers(stack, people(20))
    with contextlib.redirect_stdout(io.StringIO()):
        publish(stack, issue_doc(ISSUE))
        deliver(stack)
    kinds = Counter(n["eventType"] for n in ses_feedback.simulator_outcomes(stack, "infomail"))
    assert kinds == {"Delivery": 20}
    # Without the message moto accepted (a stack in another process) a reader may open, never click.
    assert {kind for n in range(20) for kind, _ in ses_feedback.engagement_of(f"reader{n:05d}@example.com", None)} == {
        "Open"
    }
