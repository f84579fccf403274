"""`make demo`: the whole pipeline, locally, with moto standing in for AWS.

Creates the stack's resources from template.yaml, loads the example subscribers, uploads the
example issue, drives each function with the event AWS would send it, and writes what SES
accepted to out/outbox/*.eml and the web version to out/web/.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import os
import shutil
import sys
from pathlib import Path

from .stack import ROOT, LocalStack, sent_messages

EXAMPLES = ROOT / "examples"


def load_subscribers(stack: LocalStack, list_id: str, path: Path) -> int:
    import boto3

    from newsletter.privacy import normalise_address
    from newsletter.store.subscribers import put_subscribers

    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            extra = {k: v for k, v in row.items() if k not in ("email", "name", "language", "status") and v}
            rows.append(
                {
                    "email": normalise_address(row["email"]),
                    "name": row.get("name") or "",
                    "language": row.get("language") or "en",
                    "status": row.get("status") or "active",
                    "attributes": extra or None,
                }
            )
    put_subscribers(boto3.client("dynamodb", region_name="us-east-1"), stack.ref("SubscribersTable"), list_id, rows)
    return len(rows)


def create_list(stack: LocalStack, list_id: str, name: str) -> None:
    import boto3

    from newsletter.store.lists import put_list

    put_list(boto3.client("dynamodb", region_name="us-east-1"), stack.ref("ListsTable"), list_id, name)


def publish_and_deliver(stack: LocalStack, key: str, body: bytes) -> dict:
    """Upload an issue and run every function until the queues are empty."""
    result = stack.invoke("PublishFunction", stack.upload_issue(key, body))
    fanout = stack.poll("FanoutFunction")
    send = stack.poll("SendFunction")
    return {"publish": result, "fanout": fanout, "send": send}


def write_outbox(out: Path) -> int:
    outbox = out / "outbox"
    shutil.rmtree(outbox, ignore_errors=True)
    outbox.mkdir(parents=True)
    messages = sent_messages()
    for n, m in enumerate(messages, 1):
        to = m.destinations[0] if m.destinations else ""
        digest = hashlib.sha256(to.encode()).hexdigest()[:10]
        (outbox / f"{n:05d}-{digest}.eml").write_bytes(m.raw_data.encode("utf-8").replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return len(messages)


def run(out: Path, issue_path: Path, subscribers_path: Path, quiet: bool = True, token_secret: str | None = None) -> dict:
    from moto import mock_aws

    import boto3

    from newsletter.store.issues import get_issue

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "lambda-logs.jsonl"
    with mock_aws():
        stack = LocalStack.create(token_secret=token_secret)
        issue = __import__("json").loads(issue_path.read_text(encoding="utf-8"))
        list_id = issue["list"]
        create_list(stack, list_id, "ICMPD Infomail")
        recipients = load_subscribers(stack, list_id, subscribers_path)
        with log_path.open("w", encoding="utf-8") as log, contextlib.redirect_stdout(log if quiet else sys.stdout):
            runs = publish_and_deliver(stack, f"issues/{issue_path.name}", issue_path.read_bytes())
        sent = write_outbox(out)
        s3 = boto3.client("s3", region_name="us-east-1")
        web = out / "web"
        web.mkdir(exist_ok=True)
        issue_id = issue["issue_id"]
        body = s3.get_object(Bucket=stack.bucket, Key=f"web/{issue_id}.html")["Body"].read()
        (web / f"{issue_id}.html").write_bytes(body)
        record = get_issue(boto3.client("dynamodb", region_name="us-east-1"), stack.ref("IssuesTable"), issue_id)
    counts = {k: int(record.get(k, 0)) for k in ("queued", "sent", "skipped", "rejected", "uncertain")}
    failed = counts["rejected"] + counts["uncertain"] + max(0, counts["queued"] - counts["sent"] - counts["skipped"] - counts["rejected"] - counts["uncertain"])
    return {"recipients": recipients, "outbox": sent, "failed": failed, "runs": runs, **counts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issue", type=Path, default=EXAMPLES / "issues" / "2015-07.json")
    parser.add_argument("--subscribers", type=Path, default=EXAMPLES / "subscribers.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--verbose", action="store_true", help="print the functions' logs instead of writing them to out/")
    args = parser.parse_args(argv)
    r = run(args.out, args.issue, args.subscribers, quiet=not args.verbose)
    print(f"outbox: {args.out / 'outbox'} ({r['outbox']} messages)   web: {args.out / 'web'}   logs: {args.out / 'lambda-logs.jsonl'}")
    print(
        f"recipients {r['recipients']}, queued {r['queued']}, sent {r['sent']}, "
        f"skipped {r['skipped'] + (r['recipients'] - r['queued'])}, failed {r['failed']}"
    )
    return 0 if r["failed"] == 0 and r["sent"] == r["outbox"] else 1


if __name__ == "__main__":
    sys.exit(main())
