"""FakeS3: the S3 object calls the functions make, in memory and thread-safe.

What it models
- Calls: GetObject (with `Range: bytes=first-last` or `bytes=first-`, and IfMatch), PutObject
  (Body as bytes, str or a file-like object), HeadObject (with IfMatch), DeleteObject; `calls`
  counts requests by operation. Objects are kept by (bucket, key); `objects` holds their bytes.
- Responses: Body (a stream with `read(amt)`), ContentLength, ContentType, ContentRange for a
  range, ETag (the MD5 of the bytes in quotes, as S3 gives for a single-part upload).
- Errors as botocore reports them: NoSuchKey (404) from GetObject; "404" (404) from HeadObject
  (a HEAD response has no body to name the error); InvalidRange (416) for a range starting at or
  after the end (an empty object has no byte 0); PreconditionFailed (412; "412" from
  HeadObject) when IfMatch names another ETag. DeleteObject of a missing key succeeds, as on S3.

What it does not model
- Buckets: any bucket name holds objects; no NoSuchBucket, no policies, no encryption.
- Versions: VersionId is accepted and ignored (the current object is returned), no delete
  markers; no LastModified, AcceptRanges or user metadata in responses; no IfNoneMatch, IfModifiedSince, conditional
  writes, suffix ranges (`bytes=-n`) or multipart uploads; no ListObjects.
- No eventual consistency, no request rate limits (503 SlowDown), no size limits.

Import rule: only the standard library at module level (see fakes/__init__.py); botocore is
imported when an error is raised.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import Counter

from .errors import client_error


class _Body:
    """The streaming body of a GetObject response (botocore's StreamingBody reads the same way)."""

    def __init__(self, data: bytes):
        self._stream = io.BytesIO(data)

    def read(self, amt: int | None = None) -> bytes:
        return self._stream.read(amt)

    def close(self) -> None:
        self._stream.close()


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


class FakeS3:
    """Objects by (bucket, key): get (with Range and IfMatch), put, head, delete."""

    def __init__(self, objects: dict[tuple[str, str], bytes] | None = None):
        self.objects: dict[tuple[str, str], bytes] = dict(objects or {})
        self.content_types: dict[tuple[str, str], str] = {}
        self.calls: Counter = Counter()
        self._lock = threading.Lock()

    def _current(self, bucket: str, key: str, if_match: str | None, operation: str) -> bytes:
        head = operation == "HeadObject"  # a HEAD response has no body: botocore names the error by its status
        with self._lock:
            data = self.objects.get((bucket, key))
        if data is None:
            if head:
                raise client_error("404", "Not Found", operation, 404)
            raise client_error("NoSuchKey", "The specified key does not exist.", operation, 404)
        if if_match is not None and if_match.strip() not in ("*", _etag(data)):
            if head:
                raise client_error("412", "Precondition Failed", operation, 412)
            raise client_error(
                "PreconditionFailed", "At least one of the pre-conditions you specified did not hold", operation, 412
            )
        return data

    def get_object(self, *, Bucket, Key, Range=None, IfMatch=None, **_):
        self.calls["GetObject"] += 1
        data = self._current(Bucket, Key, IfMatch, "GetObject")
        response = {"ETag": _etag(data), "ContentType": self.content_types.get((Bucket, Key), "binary/octet-stream")}
        if Range:
            first_text, _, last_text = Range.removeprefix("bytes=").partition("-")
            first = int(first_text)
            if first >= len(data):
                raise client_error("InvalidRange", "The requested range is not satisfiable", "GetObject", 416)
            last = min(int(last_text), len(data) - 1) if last_text else len(data) - 1
            response["ContentRange"] = f"bytes {first}-{last}/{len(data)}"
            data = data[first : last + 1]
        return {**response, "Body": _Body(data), "ContentLength": len(data)}

    def put_object(self, *, Bucket, Key, Body=b"", ContentType=None, **_):
        self.calls["PutObject"] += 1
        if hasattr(Body, "read"):
            Body = Body.read()
        data = Body.encode("utf-8") if isinstance(Body, str) else bytes(Body)
        with self._lock:
            self.objects[(Bucket, Key)] = data
            if ContentType:
                self.content_types[(Bucket, Key)] = ContentType
            else:
                self.content_types.pop((Bucket, Key), None)
        return {"ETag": _etag(data)}

    def head_object(self, *, Bucket, Key, IfMatch=None, **_):
        self.calls["HeadObject"] += 1
        data = self._current(Bucket, Key, IfMatch, "HeadObject")
        return {
            "ContentLength": len(data),
            "ETag": _etag(data),
            "ContentType": self.content_types.get((Bucket, Key), "binary/octet-stream"),
        }

    def delete_object(self, *, Bucket, Key, **_):
        self.calls["DeleteObject"] += 1
        with self._lock:
            self.objects.pop((Bucket, Key), None)
            self.content_types.pop((Bucket, Key), None)
        return {}
