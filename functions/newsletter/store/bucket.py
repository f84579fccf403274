"""The newsletter bucket: uploaded issues, error reports, rendered issues, web versions.

Its keys, in one place:
    issues/<name>.json                     an uploaded issue document (the editor's)
    issues/<name>.json.error.txt           why that document was not published
    rendered/<issue id>/<digest>/message.json   what the senders splice per recipient, per document version
    rendered/<issue id>/<digest>/message.<language>.json   the same, for a translation
    web/<issue id>.html                    the public "view in browser" page (web/<id>.<language>.html)
    web/archive/<list id>.<language>.html  a list's public archive page, one per language
    web/archive/<list id>.<language>.atom  the same issues as an Atom feed
    archive/<list id>.json                 the index both are rendered from (private: it also names
                                           cancelled issues, so that they never come back)
"""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

ISSUES_PREFIX = "issues/"
REPORT_SUFFIX = ".error.txt"


def issue_key(name: str) -> str:
    """Where an editor uploads a document (`name`: the issue id, by convention)."""
    return f"{ISSUES_PREFIX}{name}.json"


def report_key(key: str) -> str:
    return key + REPORT_SUFFIX


def web_key(issue_id: str, language: str | None = None) -> str:
    """The web version (`language`: a translation's; None: the default language's)."""
    return f"web/{issue_id}.{language}.html" if language else f"web/{issue_id}.html"


ARCHIVE_FOLDER = "archive"  # under web/ (public) for the pages, at the top (private) for the index


def archive_index_key(list_id: str) -> str:
    return f"{ARCHIVE_FOLDER}/{list_id}.json"


def archive_page_name(list_id: str, language: str) -> str:
    """The archive page's path under web/ (so, relative to a web version's own address)."""
    return f"{ARCHIVE_FOLDER}/{list_id}.{language}.html"


def feed_name(list_id: str, language: str) -> str:
    """The Atom feed's path under web/."""
    return f"{ARCHIVE_FOLDER}/{list_id}.{language}.atom"


def prepared_key(issue_id: str, digest: str | None = None, language: str | None = None) -> str:
    """The prepared message of one version of an issue's document (by its SHA-256), in one
    language (None: the default): two uploads racing for one issue id can never overwrite what
    the other's senders read."""
    name = f"message.{language}.json" if language else "message.json"
    return f"rendered/{issue_id}/{digest[:16]}/{name}" if digest else f"rendered/{issue_id}/{name}"


class Replaced(Exception):
    """The object changed since the event that named it (its ETag no longer matches)."""


def read_capped(
    s3, bucket: str, key: str, max_bytes: int, *, version_id: str | None = None, etag: str | None = None
) -> bytes | None:
    """Read an object (the version named, or only while its ETag is the one named), but never
    more than max_bytes + 1 (enough to tell it is too big).

    None if there is no such object or version (deleted since its upload event); Replaced if an
    ETag was named and the object has another now.
    """
    request = {"Bucket": bucket, "Key": key, "Range": f"bytes=0-{max_bytes}"}
    if version_id:
        request["VersionId"] = version_id
    elif etag:
        request["IfMatch"] = f'"{etag.strip(chr(34))}"'
    try:
        return s3.get_object(**request)["Body"].read()
    except ClientError as exc:
        # An empty object has no byte 0: S3 answers 416 to any range.
        code = exc.response["Error"]["Code"]
        if code == "InvalidRange":
            return b""
        if code in ("NoSuchKey", "NoSuchVersion", "404"):
            return None
        if code in ("PreconditionFailed", "412"):
            raise Replaced(key) from None
        raise


def exists(s3, bucket: str, key: str) -> bool:
    """Whether the key has a current object (False: never uploaded, or deleted since: in a
    versioned bucket, its latest version is a delete marker)."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
            return False
        raise


def put_text(s3, bucket: str, key: str, text: str, content_type: str, **extra) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"), ContentType=content_type, **extra)


def put_json(s3, bucket: str, key: str, value) -> None:
    put_text(s3, bucket, key, json.dumps(value, ensure_ascii=False), "application/json")


def get_json(s3, bucket: str, key: str):
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def get_json_tagged(s3, bucket: str, key: str) -> tuple[object, str | None]:
    """An object's JSON and its ETag, read together; (None, None) if there is no such object."""
    try:
        resp = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None, None
        raise
    return json.loads(resp["Body"].read()), resp["ETag"]


def etag(s3, bucket: str, key: str) -> str | None:
    """The object's ETag now (None: there is none)."""
    try:
        return s3.head_object(Bucket=bucket, Key=key)["ETag"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
            return None
        raise


def put_json_if(s3, bucket: str, key: str, value, etag: str | None) -> str | None:
    """Write JSON only if the object is still the one read (its ETag; None: only if there is
    none yet): S3's conditional write, a compare-and-swap. The new ETag, or None if another
    writer came first (then read again and redo the change)."""
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    try:
        resp = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **condition)
    except ClientError as exc:
        # 412: it changed (or now exists); 409: another conditional write to it is in flight;
        # NoSuchKey: it was deleted since it was read.
        if exc.response["Error"]["Code"] in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
            return None
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    return resp["ETag"]


def delete_if_exists(s3, bucket: str, key: str) -> None:
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("NoSuchKey", "404"):
            raise
