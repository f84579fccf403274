"""Each list's public archive and Atom feed: written by the publish function (moto), read as a feed
reader reads it, kept free of test sends, `"archive": false` and cancelled issues, and never
losing an issue to two publishes at once."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from urllib.parse import urljoin

import boto3
import feedparser
import pytest
from conftest import deliver, issue_doc, issue_record, publish, s3_text, upload
from test_languages import translated

from devstack.clock import installed
from newsletter import archive
from newsletter.store import bucket

ATOM = "{http://www.w3.org/2005/Atom}"
BASE = "https://news.example.org/web"  # the local stack's WEB_BASE_URL
MINUTE = 60


def s3():
    return boto3.client("s3", region_name="us-east-1")


def feed(stack, language: str = "en"):
    """The list's feed: well-formed XML (stdlib), valid Atom as feedparser reads it."""
    text = s3_text(stack, f"web/archive/infomail.{language}.atom")
    assert text is not None, f"no feed for {language}"
    ET.fromstring(text.encode("utf-8"))  # raises on anything not well-formed
    parsed = feedparser.parse(text.encode("utf-8"))
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    return parsed


def links(parsed) -> list[str]:
    return [e.link for e in parsed.entries]


def page(stack, language: str = "en") -> str:
    text = s3_text(stack, f"web/archive/infomail.{language}.html")
    assert text is not None, f"no archive page for {language}"
    return text


def listed(html: str) -> list[str]:
    """The issues an archive page links, in its order."""
    return re.findall(r'<h2 class="item-title"><a href="\.\./([^"]+)\.html"', html)


def publish_at(stack, doc: dict) -> dict:
    """Publish with the stack's clock a minute on, so that each issue has its own time."""
    stack.clock.advance(MINUTE)
    result = publish(stack, doc)
    assert result["outcomes"][0]["status"] == "published", result
    return result


class Tags(HTMLParser):
    """The elements of an HTML text, and its text."""

    def __init__(self, html: str):
        super().__init__()
        self.tags, self.text = [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


# --- what is archived, and in which order ------------------------------------------------------


def test_issues_are_listed_newest_first_in_a_valid_feed_and_page(stack):
    publish_at(stack, issue_doc("2015-07"))
    publish_at(stack, issue_doc("2015-08", subject="August 2015 Monthly Update"))

    f = feed(stack)
    assert links(f) == [f"{BASE}/2015-08.html", f"{BASE}/2015-07.html"]
    assert [e.title for e in f.entries] == ["August 2015 Monthly Update", "July 2015 Monthly Update"]
    # RFC 4287: the feed's id, title, updated, author, self and alternate links; each entry's id,
    # title, updated (and published), alternate link and summary.
    assert f.feed.id.startswith("urn:uuid:") and f.feed.title == "ICMPD Infomail"
    assert f.feed.author == "ICMPD Infomail" and f.feed.updated_parsed
    rels = {link.rel: link.href for link in f.feed.links}
    assert rels == {"self": f"{BASE}/archive/infomail.en.atom", "alternate": f"{BASE}/archive/infomail.en.html"}
    for e in f.entries:
        assert e.id.startswith("urn:uuid:") and e.updated_parsed and e.published_parsed
        assert e.summary_detail.type == "text/html" and "Towards a new European Neighbourhood" in e.summary
    assert f.entries[0].published_parsed > f.entries[1].published_parsed
    assert len({e.id for e in f.entries}) == 2
    assert f.feed.updated >= f.entries[0].updated  # the feed changed when its newest entry came

    html = page(stack)
    assert listed(html) == ["2015-08", "2015-07"]
    assert '<html lang="en" dir="ltr">' in html and "<h1 " in html and "<main>" in html
    assert '<link rel="alternate" type="application/atom+xml" title="ICMPD Infomail" href="infomail.en.atom">' in html
    assert ".container" in html  # the web versions' stylesheet
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ">\w+ \d+, \d{4}</time>', html)


def test_pages_and_feeds_are_served_with_their_type_and_a_short_cache(stack):
    publish_at(stack, issue_doc("2015-07"))
    head = {
        kind: s3().head_object(Bucket=stack.bucket, Key=f"web/archive/infomail.en.{kind}") for kind in ("html", "atom")
    }
    assert head["html"]["ContentType"] == "text/html; charset=utf-8"
    assert head["atom"]["ContentType"] == "application/atom+xml; charset=utf-8"
    assert {h["CacheControl"] for h in head.values()} == {"public, max-age=300"}
    # The index the pages are made from is not under the public prefix.
    assert json.loads(s3_text(stack, "archive/infomail.json"))["issues"][0]["issue_id"] == "2015-07"


def test_an_issue_whose_archive_step_is_retried_late_still_takes_its_place_by_publication(stack, monkeypatch):
    """July starts sending first, but its archive step fails; August is published and archived;
    July's retry then archives it: behind August, by when each was sent, not by arrival."""
    real, calls = archive.record, {"n": 0}

    def failing_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("S3 unreachable")
        return real(*args, **kwargs)

    monkeypatch.setattr(archive, "record", failing_once)
    stack.clock.advance(MINUTE)
    july = upload(stack, issue_doc("2015-07"))
    with pytest.raises(ConnectionError):
        stack.invoke("PublishFunction", july)
    assert issue_record(stack, "2015-07")["status"] == "sending"
    publish_at(stack, issue_doc("2015-08"))
    assert links(feed(stack)) == [f"{BASE}/2015-08.html"]

    stack.clock.advance(MINUTE)
    assert stack.invoke("PublishFunction", july)["outcomes"][0]["status"] == "published"  # Lambda's retry
    f = feed(stack)
    assert links(f) == [f"{BASE}/2015-08.html", f"{BASE}/2015-07.html"]
    assert f.entries[1].published == issue_record(stack, "2015-07")["sending_at"]
    assert listed(page(stack)) == ["2015-08", "2015-07"]


def test_entry_ids_stay_the_same_when_an_issue_is_rendered_again_or_the_base_url_changes(stack, monkeypatch):
    from newsletter import config

    real, calls = archive.record, {"n": 0}

    def then_fail_once(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("lost the answer")  # the archive was written; the publish is retried
        return out

    monkeypatch.setattr(archive, "record", then_fail_once)
    stack.clock.advance(MINUTE)
    event = upload(stack, issue_doc("2015-07"))
    with pytest.raises(ConnectionError):
        stack.invoke("PublishFunction", event)
    first = feed(stack).entries[0]
    stack.clock.advance(MINUTE)
    assert stack.invoke("PublishFunction", event)["outcomes"][0]["status"] == "published"
    again = feed(stack)
    assert len(again.entries) == 1
    assert (again.entries[0].id, again.entries[0].published, again.entries[0].updated) == (
        first.id,
        first.published,
        first.updated,
    )

    # The stack moves behind a CloudFront distribution: new links, the same ids.
    stack.functions["PublishFunction"].environment["WEB_BASE_URL"] = "https://d111111abcdef8.cloudfront.net"
    config.clear_settings()
    publish_at(stack, issue_doc("2015-08"))
    moved = feed(stack)
    assert moved.entries[1].id == first.id and moved.feed.id == again.feed.id
    assert links(moved) == [
        "https://d111111abcdef8.cloudfront.net/2015-08.html",
        "https://d111111abcdef8.cloudfront.net/2015-07.html",
    ]


def test_links_are_relative_to_the_web_versions_so_any_base_serves_them(stack):
    publish_at(stack, issue_doc("2015-07"))
    web = s3_text(stack, "web/2015-07.html")
    feed_href = re.search(r'<link rel="alternate" type="application/atom\+xml" title="[^"]*" href="([^"]+)">', web)[1]
    archive_href = re.search(r'<a href="([^"]+)">Past issues of ICMPD Infomail</a>', web)[1]
    for base in (
        f"https://{stack.bucket}.s3.us-east-1.amazonaws.com/web/",  # the bucket's public prefix
        "https://d111111abcdef8.cloudfront.net/",  # a distribution whose origin path is /web
    ):
        issue_url = urljoin(base, "2015-07.html")
        assert urljoin(issue_url, feed_href) == urljoin(base, "archive/infomail.en.atom")
        assert urljoin(issue_url, archive_href) == urljoin(base, "archive/infomail.en.html")
        archive_url = urljoin(issue_url, archive_href)
        assert [urljoin(archive_url, f"../{i}.html") for i in listed(page(stack))] == [issue_url]
    for key in ("web/archive/infomail.en.atom", "web/archive/infomail.en.html"):
        assert s3_text(stack, key) is not None


def test_publishing_never_lists_the_bucket(stack):
    from devstack import iam

    stack.recorder = iam.Recorder()
    publish_at(stack, issue_doc("2015-07"))
    publish_at(stack, issue_doc("2015-08"))
    operations = {c.operation for c in stack.recorder.calls if c.function == "PublishFunction"}
    assert {"put_object", "get_object", "head_object"} <= operations
    assert not {op for op in operations if op.startswith("list_")}


# --- languages ---------------------------------------------------------------------------------


def test_each_language_has_its_feed_and_page_with_issues_in_the_language_its_readers_got(stack):
    july = issue_doc("2015-07")
    july["translations"] = [translated(july, "fr"), translated(july, "pt")]
    publish_at(stack, july)
    publish_at(stack, issue_doc("2015-08", subject="August 2015 Monthly Update"))  # English only

    en, fr, pt = feed(stack, "en"), feed(stack, "fr"), feed(stack, "pt")
    assert links(fr) == [f"{BASE}/2015-08.html", f"{BASE}/2015-07.fr.html"]
    assert links(pt) == [f"{BASE}/2015-08.html", f"{BASE}/2015-07.pt.html"]
    assert [e.title for e in fr.entries] == ["August 2015 Monthly Update", "[fr] July 2015 Monthly Update"]
    assert [e.links[0].hreflang for e in fr.entries] == ["en", "fr"]
    assert fr.feed.subtitle == "Numéros précédents de ICMPD Infomail"
    # An entry is the issue in one language: the same id wherever that language version appears.
    assert fr.entries[0].id == en.entries[0].id == pt.entries[0].id
    assert len({en.entries[1].id, fr.entries[1].id, pt.entries[1].id}) == 3

    html = page(stack, "fr")
    assert '<html lang="fr" dir="ltr">' in html and "Numéros précédents" in html
    assert listed(html) == ["2015-08", "2015-07.fr"]
    assert '<li lang="en">' in html  # August is shown in English on the French page
    assert '<link rel="alternate" hreflang="pt" href="infomail.pt.html">' in html
    assert '<a href="infomail.en.html" hreflang="en" lang="en">English</a>' in html
    assert '<a href="infomail.pt.html" hreflang="pt" lang="pt">português</a>' in html

    for language, key in (("en", "web/2015-07.html"), ("fr", "web/2015-07.fr.html"), ("pt", "web/2015-07.pt.html")):
        web = s3_text(stack, key)
        assert f'type="application/atom+xml" title="ICMPD Infomail" href="archive/infomail.{language}.atom">' in web
        assert f'<a href="archive/infomail.{language}.html">' in web
    assert "Numéros précédents de ICMPD Infomail</a>" in s3_text(stack, "web/2015-07.fr.html")


# --- what stays out ----------------------------------------------------------------------------


def test_an_issue_marked_archive_false_stays_out_but_its_links_lead_somewhere(stack):
    publish_at(stack, issue_doc("2015-07"))
    publish_at(stack, issue_doc("2015-08", archive=False))
    assert issue_record(stack, "2015-08")["status"] == "sending"  # sent as any other
    assert links(feed(stack)) == [f"{BASE}/2015-07.html"]
    assert listed(page(stack)) == ["2015-07"]
    assert 'href="archive/infomail.en.atom"' in s3_text(stack, "web/2015-08.html")


def test_a_list_whose_only_issue_is_not_archived_has_an_empty_archive(stack):
    publish_at(stack, issue_doc("2015-07", archive=False))
    assert feed(stack).entries == []
    assert "No issue has been published here yet." in page(stack)


def test_test_sends_stay_out(stack):
    from newsletter import publish as publishing
    from newsletter.config import PublishSettings
    from newsletter.issue import parse_document

    env = stack.functions["PublishFunction"].environment
    settings = PublishSettings(
        bucket_name=stack.bucket,
        lists_table=stack.ref("ListsTable"),
        issues_table=stack.ref("IssuesTable"),
        fanout_queue_url=env["FANOUT_QUEUE_URL"],
        web_base_url=env["WEB_BASE_URL"],
        sender_address=env["SENDER_ADDRESS"],
        sender_name=env["SENDER_NAME"],
    )
    raw = json.dumps(issue_doc("2015-07")).encode()
    issue = parse_document(raw, max_bytes=settings.max_issue_bytes)
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    mailing_list = {"name": "ICMPD Infomail"}
    sqs = boto3.client("sqs", region_name="us-east-1")
    test_id = publishing.send_test(
        issue,
        raw,
        ["editor@example.org"],
        mailing_list,
        settings=settings,
        s3=s3(),
        ddb=ddb,
        sqs=sqs,
        send_queue_url=stack.ref("SendQueue"),
    )
    deliver(stack)
    assert issue_record(stack, test_id)["status"] == "sent"
    assert s3_text(stack, "archive/infomail.json") is None  # a test send touches no archive
    publish_at(stack, issue_doc("2015-07"))
    assert links(feed(stack)) == [f"{BASE}/2015-07.html"]
    assert test_id not in page(stack)


def test_an_issue_cancelled_while_it_renders_is_never_archived(stack, monkeypatch):
    from newsletter import lifecycle
    from newsletter import publish as publishing

    real = publishing.render_variants

    def cancelled_meanwhile(issue, *args, **kwargs):
        out = real(issue, *args, **kwargs)
        if issue.issue_id == "2015-08":
            lifecycle.cancel_issue(
                boto3.client("dynamodb", region_name="us-east-1"), stack.ref("IssuesTable"), "2015-08"
            )
        return out

    monkeypatch.setattr(publishing, "render_variants", cancelled_meanwhile)
    publish_at(stack, issue_doc("2015-07"))
    stack.clock.advance(MINUTE)
    assert publish(stack, issue_doc("2015-08"))["outcomes"][0]["status"] == "cancelled"
    assert links(feed(stack)) == [f"{BASE}/2015-07.html"]


def test_remove_takes_a_cancelled_issue_out_for_good(stack):
    from newsletter import lifecycle

    publish_at(stack, issue_doc("2015-07"))
    publish_at(stack, issue_doc("2015-08", subject="August 2015 Monthly Update"))
    kept = feed(stack).entries[1].id
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    assert lifecycle.cancel_issue(ddb, stack.ref("IssuesTable"), "2015-08")

    stack.clock.advance(MINUTE)
    with installed(stack.clock, sqs=False):  # the time the issues were published in
        assert archive.remove(s3(), stack.bucket, "infomail", "2015-08") is True
    f = feed(stack)
    assert links(f) == [f"{BASE}/2015-07.html"] and f.entries[0].id == kept
    assert f.feed.updated > f.entries[0].updated  # the feed changed: a reader sees when
    assert listed(page(stack)) == ["2015-07"] and "August 2015" not in page(stack)
    assert archive.remove(s3(), stack.bucket, "infomail", "2015-08") is False  # again: nothing listed

    # A publish of it that was still finishing (past its status check) cannot bring it back.
    from newsletter.issue import Issue

    august = Issue.model_validate(issue_doc("2015-08"))
    archive.record(
        s3(),
        stack.bucket,
        august,
        published="2015-08-01T08:00:00Z",
        list_name="ICMPD Infomail",
        author="ICMPD",
        base_url=BASE,
    )
    assert links(feed(stack)) == [f"{BASE}/2015-07.html"]


def test_remove_for_a_list_without_an_archive_is_harmless(stack):
    assert archive.remove(s3(), stack.bucket, "infomail", "2015-07") is False
    publish_at(stack, issue_doc("2015-07"))  # removed before it was ever archived: stays out
    assert feed(stack).entries == []


# --- hostile content ---------------------------------------------------------------------------

HOSTILE = "</title><script>alert(\"x\")</script> & <b>Q&A</b> ]]> <![CDATA[ 'quoted'"


def test_hostile_titles_are_text_in_the_page_and_the_feed(stack):
    doc = issue_doc("2015-07", subject=HOSTILE, preheader=HOSTILE)
    doc["news"][0]["title"] = '<img src=x onerror="alert(1)">'
    publish_at(stack, doc)

    f = feed(stack)
    assert f.entries[0].title == HOSTILE and f.entries[0].title_detail.type == "text/plain"
    root = ET.fromstring(s3_text(stack, "web/archive/infomail.en.atom").encode())
    entry = root.find(f"{ATOM}entry")
    assert entry.findtext(f"{ATOM}title") == HOSTILE
    summary = Tags(entry.findtext(f"{ATOM}summary"))  # the HTML a reader renders
    assert set(summary.tags) <= {"p", "ul", "li"}
    assert HOSTILE in summary.text and '<img src=x onerror="alert(1)">' in summary.text

    html = page(stack)
    tags = Tags(html)
    assert "script" not in tags.tags and "b" not in tags.tags and "img" not in tags.tags
    assert tags.text.count(HOSTILE) == 2  # the subject (the link) and the preheader, as text


def test_characters_xml_cannot_carry_are_left_out_of_the_feed():
    issue_like = {
        "version": 1,
        "list_id": "infomail",
        "namespace": "6ba7b811-9dad-11d1-80b4-00c04fd430c8",
        "list_name": "List \ufffe\uffff",
        "author": "A",
        "base_url": BASE,
        "languages": ["en"],
        "issues": [
            {
                "issue_id": "x",
                "language": "en",
                "published": "2015-07-01T08:00:00Z",
                "updated": "2015-07-01T08:00:00Z",
                "variants": {"en": {"subject": "S\ufffe", "preheader": None, "contents_heading": None, "contents": []}},
            }
        ],
        "removed": [],
        "updated": "2015-07-01T08:00:00Z",
    }
    pages = archive.pages(issue_like)
    parsed = feedparser.parse(pages["web/archive/infomail.en.atom"][0].encode())
    ET.fromstring(pages["web/archive/infomail.en.atom"][0].encode())
    assert not parsed.bozo and parsed.entries[0].title == "S"


# --- two publishes at once ---------------------------------------------------------------------


def test_two_publishes_at_once_both_end_up_in_the_index_and_the_pages(stack, monkeypatch):
    """July's publish reads the index, then August's publish runs from start to end, then July
    writes: its conditional write fails, it reads August's index and adds July to it."""
    real, state = bucket.put_json_if, {"armed": True, "conflicts": 0}

    def august_first(s3_client, bucket_name, key, value, etag):
        if state["armed"] and key == "archive/infomail.json":
            state["armed"] = False
            stack.clock.advance(MINUTE)
            assert publish(stack, issue_doc("2015-08"))["outcomes"][0]["status"] == "published"
        written = real(s3_client, bucket_name, key, value, etag)
        state["conflicts"] += written is None
        return written

    monkeypatch.setattr(bucket, "put_json_if", august_first)
    stack.clock.advance(MINUTE)
    assert publish(stack, issue_doc("2015-07"))["outcomes"][0]["status"] == "published"
    assert state["conflicts"] == 1  # July's first write lost, and was redone
    index = json.loads(s3_text(stack, "archive/infomail.json"))
    assert [i["issue_id"] for i in index["issues"]] == ["2015-08", "2015-07"]
    assert links(feed(stack)) == [f"{BASE}/2015-08.html", f"{BASE}/2015-07.html"]
    assert listed(page(stack)) == ["2015-08", "2015-07"]


def test_pages_written_from_an_older_index_are_written_again(stack, monkeypatch):
    """July's publish writes the index, then, before its pages land, August's publish runs from
    start to end; July's older pages overwrite August's, so July sees the newer index and writes
    them again."""
    real, state = bucket.put_text, {"armed": False}

    def august_between(s3_client, bucket_name, key, *args, **kwargs):
        if state["armed"] and key.startswith("web/archive/"):
            state["armed"] = False
            stack.clock.advance(MINUTE)
            assert publish(stack, issue_doc("2015-08"))["outcomes"][0]["status"] == "published"
        return real(s3_client, bucket_name, key, *args, **kwargs)

    real_put_json_if = bucket.put_json_if

    def arm_after_july_index(s3_client, bucket_name, key, value, etag):
        written = real_put_json_if(s3_client, bucket_name, key, value, etag)
        if [i["issue_id"] for i in value["issues"]] == ["2015-07"]:
            state["armed"] = True
        return written

    monkeypatch.setattr(bucket, "put_text", august_between)
    monkeypatch.setattr(bucket, "put_json_if", arm_after_july_index)
    stack.clock.advance(MINUTE)
    assert publish(stack, issue_doc("2015-07"))["outcomes"][0]["status"] == "published"
    assert links(feed(stack)) == [f"{BASE}/2015-08.html", f"{BASE}/2015-07.html"]
    assert listed(page(stack)) == ["2015-08", "2015-07"]


# --- the index, as plain data ------------------------------------------------------------------


def test_an_unchanged_issue_leaves_the_index_as_it_was():
    from newsletter.issue import Issue

    july = Issue.model_validate(issue_doc("2015-07"))
    item = archive.entry(july, published="2015-07-01T08:00:00Z")
    first = archive.with_issue(
        archive.empty("b", "infomail"), item, july.languages, list_name="L", author="A", base_url=BASE + "/", now="t1"
    )
    assert first["base_url"] == BASE and first["updated"] == "t1"
    later = dict(item, published="2015-07-02T08:00:00Z")  # a retry that found a later time
    again = archive.with_issue(first, later, july.languages, list_name="L", author="A", base_url=BASE, now="t2")
    assert again is first  # nothing to write
    renamed = archive.with_issue(first, item, july.languages, list_name="L2", author="A", base_url=BASE, now="t3")
    assert renamed["updated"] == "t3" and renamed["issues"] == first["issues"]
