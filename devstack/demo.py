"""`make demo`: the whole pipeline, locally, with moto standing in for AWS.

Creates the stack's resources from template.yaml, loads the example subscribers, uploads the
example issue with its translations (`2015-07.fr.json` and `2015-07.pt.json` beside it, merged as
`newsletter publish` merges them), drives each function with the event AWS would send it, and
writes what SES accepted to out/outbox/*.eml (each reader's in their language, else the issue's
default) and each language's web version to out/web/. Then feeds the SES mailbox simulator's
outcomes back through the feedback function, unsubscribes one reader with a one-click POST,
prints the issue's statistics and the messages sent per language, and publishes a second issue
that skips them all.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import email
import email.policy
import hashlib
import os
import shutil
import sys
from pathlib import Path

from newsletter.store import bucket
from newsletter.store.issues import COUNTERS as STATS

from .stack import ROOT, LocalStack, sent_messages

EXAMPLES = ROOT / "examples"


def load_subscribers(stack: LocalStack, list_id: str, path: Path) -> int:
    """The CSV, through the operator's import (`newsletter subscribers import`): the same checks."""
    from newsletter_cli.subscribers import import_csv

    report = import_csv(
        stack.client("dynamodb"),
        subscribers_table=stack.ref("SubscribersTable"),
        suppressions_table=stack.ref("SuppressionsTable"),
        list_id=list_id,
        path=path,
    )
    return report.imported


def create_list(stack: LocalStack, list_id: str, name: str) -> None:
    from newsletter.store.lists import put_list

    put_list(stack.client("dynamodb"), stack.ref("ListsTable"), list_id, name)


def publish_and_deliver(stack: LocalStack, key: str, body: bytes) -> dict:
    """Upload an issue and run every function as Lambda would until the queues are empty."""
    result = stack.invoke_async("PublishFunction", stack.upload_issue(key, body))
    runs = stack.run("FanoutFunction", "SendFunction")
    return {"publish": result, "fanout": runs["FanoutFunction"], "send": runs["SendFunction"]}


def write_outbox(out: Path, folder: str = "outbox", messages: list | None = None) -> int:
    outbox = out / folder
    shutil.rmtree(outbox, ignore_errors=True)
    outbox.mkdir(parents=True)
    messages = sent_messages() if messages is None else messages
    for n, m in enumerate(messages, 1):
        to = m.destinations[0] if m.destinations else ""
        digest = hashlib.sha256(to.encode()).hexdigest()[:10]
        (outbox / f"{n:05d}-{digest}.eml").write_bytes(
            m.raw_data.encode("utf-8").replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        )
    return len(messages)


def read_document(path: Path) -> tuple[dict, bytes]:
    """The issue as `newsletter publish` reads it: the document with the translation files kept
    beside it merged in, checked as the publish function checks it; (its fields, the bytes to
    upload)."""
    import json

    from newsletter_cli.publishing import read_issue

    _, raw = read_issue(path)
    return json.loads(raw), raw


def reader_languages(path: Path) -> dict[str, str]:
    """Each subscriber's language as the CSV gives it (address: tag; empty if none)."""
    with path.open(encoding="utf-8", newline="") as f:
        return {row["email"].strip().lower(): (row.get("language") or "").strip() for row in csv.DictReader(f)}


def languages_sent(outbox: Path, readers: dict[str, str], default: str) -> dict:
    """The messages in `outbox` per Content-Language; the readers who got the default language
    because the issue lacks theirs, and those who got a broader form of theirs (pt-BR: pt), per
    their own language."""
    per_language: collections.Counter = collections.Counter()
    fell_back: collections.Counter = collections.Counter()
    broader: collections.Counter = collections.Counter()
    for eml in sorted(outbox.glob("*.eml")):
        msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        language = str(msg["Content-Language"] or "")
        per_language[language] += 1
        own = readers.get(msg["To"].addresses[0].addr_spec.lower(), "")
        if language == default and own and own.split("-")[0].lower() != default.split("-")[0].lower():
            fell_back[own] += 1
        elif own and own.lower() != language.lower():
            broader[f"{own}→{language}"] += 1
    return {
        "per_language": dict(sorted(per_language.items(), key=lambda kv: (-kv[1], kv[0]))),
        "fell_back": sum(fell_back.values()),
        "fell_back_from": dict(sorted(fell_back.items(), key=lambda kv: (-kv[1], kv[0]))),
        "broader": dict(sorted(broader.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def issue_stats(stack: LocalStack, issue_id: str) -> dict:
    from newsletter.store.issues import get_issue, statistics

    record = get_issue(stack.client("dynamodb"), stack.ref("IssuesTable"), issue_id) or {}
    return {**statistics(record), "status": record.get("status", "")}


def issue_stats_by_language(stack: LocalStack, issue_id: str) -> dict:
    """The issue's figures per language, as `newsletter status ISSUE` shows them."""
    from newsletter.store.issues import get_issue, statistics_by_language

    return statistics_by_language(get_issue(stack.client("dynamodb"), stack.ref("IssuesTable"), issue_id))


def one_click_unsubscribe(stack: LocalStack, eml: Path) -> dict:
    """What Gmail does when a reader presses "Unsubscribe": POST List-Unsubscribe=One-Click."""
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    https = msg["List-Unsubscribe"].split("<", 1)[1].split(">", 1)[0]
    event = stack.function_url_event("POST", https.split("?", 1)[1], "List-Unsubscribe=One-Click", base64_body=True)
    response = stack.invoke("UnsubscribeFunction", event)
    return {"address": msg["To"].addresses[0].addr_spec, "status": response["statusCode"]}


def suppressed(stack: LocalStack, addresses: list[str]) -> list[str]:
    from newsletter.store.subscribers import suppressed_among

    return sorted(suppressed_among(stack.client("dynamodb"), stack.ref("SuppressionsTable"), addresses))


def run(
    out: Path,
    issue_path: Path,
    subscribers_path: Path,
    quiet: bool = True,
    token_secret: str | None = None,
    second_issue: Path | None = None,
) -> dict:
    """The demo: publish and deliver an issue, feed SES's answers back, unsubscribe one reader,
    then (if given) publish a second issue that must skip everyone who left or bounced."""
    from moto import mock_aws

    from . import ses_feedback

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "lambda-logs.jsonl"
    with mock_aws():
        stack = LocalStack.create(token_secret=token_secret)
        issue, document = read_document(issue_path)
        list_id, issue_id = issue["list"], issue["issue_id"]
        default = issue.get("language") or "en"
        languages = [default, *(t["language"] for t in issue.get("translations") or [])]
        create_list(stack, list_id, "ICMPD Infomail")
        recipients = load_subscribers(stack, list_id, subscribers_path)
        with log_path.open("w", encoding="utf-8") as log, contextlib.redirect_stdout(log if quiet else sys.stdout):
            runs = publish_and_deliver(stack, bucket.issue_key(issue_path.stem), document)
            sent = write_outbox(out)
            by_language = languages_sent(out / "outbox", reader_languages(subscribers_path), default)
            ses_feedback.deliver(stack, ses_feedback.simulator_outcomes(stack, list_id))
            ordinary = next(
                p
                for p in sorted((out / "outbox").glob("*.eml"))
                if b"simulator.amazonses.com" not in p.read_bytes()[:2000]
            )
            unsubscribed = one_click_unsubscribe(stack, ordinary)
            second = None
            if second_issue is not None:
                before = len(sent_messages())
                second_doc, second_raw = read_document(second_issue)
                publish_and_deliver(stack, bucket.issue_key(second_issue.stem), second_raw)
                second_id = second_doc["issue_id"]
                new = sent_messages()[before:]
                second_to = sorted({d for m in new for d in m.destinations[:1]})
                write_outbox(out, f"outbox-{second_id}", new)
                second = {"issue_id": second_id, "to": second_to, **issue_stats(stack, second_id)}
        web = out / "web"
        web.mkdir(exist_ok=True)
        for language in languages:
            key = bucket.web_key(issue_id, None if language == default else language)
            body = stack.client("s3").get_object(Bucket=stack.bucket, Key=key)["Body"].read()
            (web / key.removeprefix("web/")).write_bytes(body)
        stats = issue_stats(stack, issue_id)
        per_language_stats = issue_stats_by_language(stack, issue_id)
        left = suppressed(stack, sorted(ses_feedback.SIMULATOR))
    return {
        "issue_id": issue_id,
        "languages": languages,
        "default_language": default,
        "recipients": recipients,
        "outbox": sent,
        "sent_per_language": by_language["per_language"],
        "fell_back": by_language["fell_back"],
        "fell_back_from": by_language["fell_back_from"],
        "broader": by_language["broader"],
        "statistics_per_language": per_language_stats,
        "runs": runs,
        **stats,
        "suppressed": left,
        "unsubscribed_reader": unsubscribed,
        "second": second,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issue", type=Path, default=EXAMPLES / "issues" / "2015-07.json")
    parser.add_argument("--subscribers", type=Path, default=EXAMPLES / "subscribers.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument(
        "--second-issue",
        type=Path,
        default=EXAMPLES / "issues" / "2015-08.json",
        help="published after the feedback, to show who is skipped",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="print the functions' logs instead of writing them to out/"
    )
    args = parser.parse_args(argv)
    r = run(args.out, args.issue, args.subscribers, quiet=not args.verbose, second_issue=args.second_issue)
    print(
        f"outbox: {args.out / 'outbox'} ({r['outbox']} messages)   web: {args.out / 'web'}   logs: "
        f"{args.out / 'lambda-logs.jsonl'}"
    )
    print(f"SES feedback: suppressed {', '.join(r['suppressed']) or 'nobody'}")
    u = r["unsubscribed_reader"]
    print(f"one-click unsubscribe: POST answered {u['status']} (reader's address is in the logs only as a hash)")
    print(f"issue {r['issue_id']} statistics: " + ", ".join(f"{k} {r[k]}" for k in STATS))
    per_language = r["sent_per_language"]
    print(
        f"issue {r['issue_id']} in {', '.join(r['languages'])}: messages per language "
        + ", ".join(f"{language or '(none)'} {n}" for language, n in per_language.items())
        + f" (total {sum(per_language.values())})"
    )
    lacking = ", ".join(f"{language} {n}" for language, n in r["fell_back_from"].items())
    broader = ", ".join(f"{pair} {n}" for pair, n in r["broader"].items())
    print(
        f"  fell back to the default ({r['default_language']}): {r['fell_back']} readers of a language the issue "
        f"lacks ({lacking or 'none'}); got a broader form of theirs: {broader or 'nobody'}"
    )
    second = r["second"]
    if second:
        gone = [a for a in r["suppressed"] + [u["address"]] if a in second["to"]]
        print(
            f"second issue {second['issue_id']}: sent {second['sent']} to "
            f"{args.out / ('outbox-' + second['issue_id'])}, "
            f"queued {second['queued']}, skipped {second['skipped']}; suppressed or unsubscribed "
            f"readers mailed: {len(gone)}"
        )
    print(
        f"recipients {r['recipients']}, queued {r['queued']}, sent {r['sent']}, "
        f"skipped {r['skipped'] + (r['recipients'] - r['queued'])}, failed {r['failed']}, not handled {r['pending']}"
    )
    ok = r["failed"] == r["pending"] == 0 and r["sent"] == r["outbox"] == sum(per_language.values())
    ok = ok and set(per_language) <= set(r["languages"])
    ok = ok and (not second or (second["failed"] == second["pending"] == 0 and not gone))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
