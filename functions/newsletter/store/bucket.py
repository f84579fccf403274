"""The newsletter bucket: uploaded issues, error reports, rendered issues, web versions."""

from __future__ import annotations

import json

from botocore.exceptions import ClientError


def read_capped(s3, bucket: str, key: str, max_bytes: int) -> bytes | None:
    """Read an object, but never more than max_bytes + 1 (enough to tell it is too big).

    None if there is no such object (deleted since its upload event).
    """
    try:
        return s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{max_bytes}")["Body"].read()
    except ClientError as exc:
        # An empty object has no byte 0: S3 answers 416 to any range.
        code = exc.response["Error"]["Code"]
        if code == "InvalidRange":
            return b""
        if code in ("NoSuchKey", "404"):
            return None
        raise


def put_text(s3, bucket: str, key: str, text: str, content_type: str, **extra) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"), ContentType=content_type, **extra)


def put_json(s3, bucket: str, key: str, value) -> None:
    put_text(s3, bucket, key, json.dumps(value, ensure_ascii=False), "application/json")


def get_json(s3, bucket: str, key: str):
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def delete_if_exists(s3, bucket: str, key: str) -> None:
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("NoSuchKey", "404"):
            raise
