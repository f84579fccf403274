"""Each list's public archive: its past issues, newest first, as a page and an Atom feed (RFC 4287)
per language, under web/archive/ next to the web versions.

Both are rendered from one small index per list, `archive/<list id>.json`, which publishing
changes by read, modify, write: the write is S3's conditional put on the ETag read (If-None-Match
for the first one), so of two publishes at once the second's write fails, and it reads the index
again, with the first's issue in it, and redoes its change. No entry is lost and the bucket is
never listed. (The issue records could not serve instead: the issues table has no index by list,
and a Scan per publish would read every issue ever sent.) After writing the pages a publish checks
the index is still the one it rendered; if another publish changed it meanwhile, it renders again,
so the pages written last always show the latest index.

What is archived: an issue once its real send starts (status `sending`), unless its document says
`"archive": false`. Test sends never are. A cancelled issue is taken out with `remove`, which also
keeps its id in the index, so that a publish still finishing cannot bring it back.

A language's page and feed list every issue in that language, or, for an issue without it, in
the language its readers got instead (languages.choose). Entry ids are `urn:uuid:` names derived
from the list's index and the issue id: the same however often an issue is rendered, whatever
the base URL.
"""

from __future__ import annotations

import uuid

from . import clock, retry
from .store import bucket

VERSION = 1
FEED_ENTRIES = 50  # the newest, in a feed; the page lists them all
CONTENTS = 5  # titles kept per language for an entry's summary: the index stays small
TRIES = 10
CACHE_CONTROL = "public, max-age=300"  # as the web versions: a new issue shows within minutes
PAGE_TYPE = "text/html; charset=utf-8"
FEED_TYPE = "application/atom+xml; charset=utf-8"


class Contended(RuntimeError):
    """The index kept changing under this writer; the publish is retried."""


# --- the index, as plain data ------------------------------------------------------------------


def entry(issue, *, published: str) -> dict:
    """What the archive keeps of an issue: per language its subject, preheader and first titles."""
    variants = {}
    for language in issue.languages:
        text = issue.variant(language)
        titles = ([text.spotlight.title] if text.spotlight else []) + [n.title for n in text.news]
        variants[language] = {
            "subject": text.subject,
            "preheader": text.preheader,
            "contents_heading": text.toc_heading,
            "contents": titles[:CONTENTS],
        }
    return {"issue_id": issue.issue_id, "language": issue.language, "published": published, "variants": variants}


def empty(bucket_name: str, list_id: str) -> dict:
    return {
        "version": VERSION,
        "list_id": list_id,
        # Entry and feed ids are derived from this: fixed when the index is first written.
        "namespace": str(uuid.uuid5(uuid.NAMESPACE_URL, f"s3://{bucket_name}/{bucket.archive_index_key(list_id)}")),
        "list_name": list_id,
        "author": list_id,
        "base_url": "",
        "languages": [],
        "issues": [],
        "removed": [],
        "updated": clock.iso(),
    }


def _changed(old: dict, new: dict, now: str) -> dict:
    """`new`, stamped `updated` now if it differs from `old` in anything the pages show."""
    if {**new, "updated": None} == {**old, "updated": None}:
        return old
    return {**new, "updated": now}


def with_issue(
    index: dict, item: dict | None, languages: list[str], *, list_name: str, author: str, base_url: str, now: str
) -> dict:
    """The index with this issue's entry in it (None: not archived; its languages still get pages,
    since its web versions link to them). An id taken out before is never added again."""
    new = {**index, "list_name": list_name, "author": author, "base_url": base_url.rstrip("/")}
    new["languages"] = index["languages"] + [lang for lang in languages if lang not in index["languages"]]
    if item is not None and item["issue_id"] not in index["removed"]:
        issues = [i for i in index["issues"] if i["issue_id"] != item["issue_id"]]
        before = next((i for i in index["issues"] if i["issue_id"] == item["issue_id"]), None)
        if before is not None:
            # The same issue again (a retry, a duplicate event): its first publication date stays.
            item = {**item, "published": before["published"]}
            same = {**item, "updated": None} == {**before, "updated": None}
            item = {**item, "updated": before["updated"] if same else now}
        else:
            item = {**item, "updated": item["published"]}
        new["issues"] = sorted([*issues, item], key=lambda i: (i["published"], i["issue_id"]), reverse=True)
    return _changed(index, new, now)


def without_issue(index: dict, issue_id: str, *, now: str) -> dict:
    """The index with the issue taken out, for good."""
    new = {
        **index,
        "issues": [i for i in index["issues"] if i["issue_id"] != issue_id],
        "removed": index["removed"] + ([] if issue_id in index["removed"] else [issue_id]),
    }
    return _changed(index, new, now)


# --- what a language's page and feed show ------------------------------------------------------


def page_url(list_id: str, language: str) -> str:
    """The archive page, relative to a web version's address (both live under web/)."""
    return bucket.archive_page_name(list_id, language)


def feed_url(list_id: str, language: str) -> str:
    """The feed, relative to a web version's address."""
    return bucket.feed_name(list_id, language)


def _web_name(issue_id: str, language: str, default: str) -> str:
    return bucket.web_key(issue_id, None if language == default else language).removeprefix("web/")


def _urn(namespace: str, name: str) -> str:
    return uuid.uuid5(uuid.UUID(namespace), name).urn


def _xml_safe(value):
    """Strings without what XML 1.0 cannot carry (the feed must parse whatever a title holds)."""
    if isinstance(value, str):
        return "".join(
            c
            for c in value
            if c in "\t\n\r" or "\x20" <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd" or c >= "\U00010000"
        )
    if isinstance(value, list):
        return [_xml_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _xml_safe(v) for k, v in value.items()}
    return value


def view(index: dict, language: str) -> dict:
    """Everything the page and the feed of one language show (templates get no index)."""
    from .languages import choose

    base, list_id = index["base_url"], index["list_id"]
    entries = []
    for item in index["issues"]:
        shown = choose(language, list(item["variants"]), item["language"])
        name = _web_name(item["issue_id"], shown, item["language"])
        entries.append(
            {
                **item["variants"][shown],
                "id": _urn(index["namespace"], f"{item['issue_id']}/{shown}"),
                "issue_id": item["issue_id"],
                "language": shown,
                "published": item["published"],
                "updated": item["updated"],
                "path": f"../{name}",  # from web/archive/ up to the web versions
                "url": f"{base}/{name}",
            }
        )
    return _xml_safe(
        {
            "language": language,
            "list_id": list_id,
            "list_name": index["list_name"],
            "author": index["author"],
            "updated": max([index["updated"], *(e["updated"] for e in entries)]),
            "feed_id": _urn(index["namespace"], f"feed/{language}"),
            "feed_url": f"{base}/{feed_url(list_id, language)}",
            "page_url": f"{base}/{page_url(list_id, language)}",
            "feed_name": feed_url(list_id, language).rpartition("/")[2],  # beside the page
            "others": [
                {"language": lang, "page": page_url(list_id, lang).rpartition("/")[2]}
                for lang in index["languages"]
                if lang != language
            ],
            "entries": entries,
        }
    )


def pages(index: dict) -> dict[str, tuple[str, str]]:
    """Each language's page and feed: {key: (body, content type)}."""
    from .render import render_archive  # Jinja2 loads only here

    out = {}
    for language in index["languages"]:
        page, feed = render_archive(view(index, language), feed_entries=FEED_ENTRIES)
        out["web/" + page_url(index["list_id"], language)] = (page, PAGE_TYPE)
        out["web/" + feed_url(index["list_id"], language)] = (feed, FEED_TYPE)
    return out


# --- in the bucket -----------------------------------------------------------------------------


def update(s3, bucket_name: str, list_id: str, change) -> dict:
    """Apply `change` (index → index) to the list's index, however many publishes write at once,
    then write the pages from the latest index. Returns the index written."""
    key = bucket.archive_index_key(list_id)
    for _ in range(TRIES):
        index, tag = retry.call(bucket.get_json_tagged, s3, bucket_name, key)
        new = change(index or empty(bucket_name, list_id))
        if index is None or new != index:
            tag = retry.call(bucket.put_json_if, s3, bucket_name, key, new, tag)
            if tag is None:
                continue  # another publish wrote it first: read theirs, and change that
        _write_pages(s3, bucket_name, key, new, tag)
        return new
    raise Contended(f"the archive index of list {list_id!r} kept changing; tried {TRIES} times")


def _write_pages(s3, bucket_name: str, key: str, index: dict, tag: str) -> None:
    for _ in range(TRIES):
        for page_key, (body, content_type) in pages(index).items():
            retry.call(bucket.put_text, s3, bucket_name, page_key, body, content_type, CacheControl=CACHE_CONTROL)
        if retry.call(bucket.etag, s3, bucket_name, key) == tag:
            return
        # Changed while we wrote: our pages may have landed after the newer writer's. Again.
        index, tag = retry.call(bucket.get_json_tagged, s3, bucket_name, key)
        if index is None:
            return
    raise Contended(f"the archive index {key!r} kept changing while its pages were written")


def record(s3, bucket_name: str, issue, *, published: str, list_name: str, author: str, base_url: str) -> dict:
    """An issue whose real send started: into its list's archive (unless its document says
    `"archive": false`), and the archive's pages and feeds written again."""
    item = entry(issue, published=published) if issue.archive else None
    now = clock.iso()
    return update(
        s3,
        bucket_name,
        issue.list_id,
        lambda index: with_issue(
            index, item, issue.languages, list_name=list_name, author=author, base_url=base_url, now=now
        ),
    )


def remove(s3, bucket_name: str, list_id: str, issue_id: str) -> bool:
    """Take an issue out of its list's archive for good (a cancelled issue) and write the pages
    again. Whether it was listed. Safe to call for an issue never archived, and again."""
    found = {}

    def change(index: dict) -> dict:
        found["listed"] = any(i["issue_id"] == issue_id for i in index["issues"])
        return without_issue(index, issue_id, now=clock.iso())

    update(s3, bucket_name, list_id, change)
    return found["listed"]
