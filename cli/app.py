"""`newsletter`: preview, test-send and publish issues, watch and steer them, manage subscribers.

    newsletter [--local | --stack NAME] COMMAND ...

Against a deployed stack the tool finds the bucket, tables and queues from the CloudFormation
stack's outputs; with `--local` it uses the local stack (moto on 127.0.0.1) and runs the
functions itself, as Lambda would. Bad input gets a message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from newsletter.lifecycle import Status

from .stack import CliError, Target, local_target, samconfig_defaults, stack_target

app = typer.Typer(
    help=__doc__.split("\n\n")[0],
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
subscribers_app = typer.Typer(help="Import, export and count a list's subscribers.", no_args_is_help=True)
local_app = typer.Typer(
    help="The local stack: a moto server on 127.0.0.1 that --local commands use.", no_args_is_help=True
)
dlq_app = typer.Typer(
    help="Dead letters: what each DLQ holds (without addresses), and moving them back.", invoke_without_command=True
)
app.add_typer(subscribers_app, name="subscribers")
lists_app = typer.Typer(help="A list's document (topics, consent, signup) and its signup form.", no_args_is_help=True)
app.add_typer(lists_app, name="lists")
app.add_typer(local_app, name="local")
app.add_typer(dlq_app, name="dlq")
secret_app = typer.Typer(
    help="The unsubscribe tokens' secret: which version signs, and rotating it.", no_args_is_help=True
)
app.add_typer(secret_app, name="secret")

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

EXIT_ERROR, EXIT_BAD_INPUT = 1, 2


class Options:
    def __init__(self, local: bool, stack: str | None, region: str | None, profile: str | None):
        self.local, self.stack, self.region, self.profile = local, stack, region, profile
        self._target: Target | None = None

    def target(self) -> Target:
        if self._target is None:
            if self.local:
                self._target = local_target()
            else:
                defaults = samconfig_defaults()
                name = self.stack or os.environ.get("NEWSLETTER_STACK") or defaults.get("stack_name") or "newsletter"
                self._target = stack_target(name, region=self.region or defaults.get("region"), profile=self.profile)
        return self._target


def handled(command):
    """Known failures become a message and an exit code; nothing else prints a traceback either."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        from newsletter.issue import InvalidIssue

        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except InvalidIssue as exc:
            err.print(
                Text(
                    f"The issue document is not valid ({len(exc.problems)} problem(s)); nothing was sent:",
                    style="bold red",
                )
            )
            for p in exc.problems:
                err.print(Text(f"  - {p}"))
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except CliError as exc:
            err.print(Text(f"error: {exc}", style="bold red"))
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except ClientError as exc:
            e = exc.response.get("Error", {})
            err.print(Text(f"AWS refused {exc.operation_name}: {e.get('Code')}: {e.get('Message')}", style="bold red"))
            raise typer.Exit(EXIT_ERROR) from None
        except BotoCoreError as exc:
            err.print(Text(f"AWS error: {exc}", style="bold red"))
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - the promise: no traceback for the user
            err.print(Text(f"unexpected error: {type(exc).__name__}: {exc}", style="bold red"))
            if os.environ.get("NEWSLETTER_DEBUG"):
                raise
            err.print("set NEWSLETTER_DEBUG=1 to see the traceback")
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper


@app.callback()
def main_options(
    ctx: typer.Context,
    local: bool = typer.Option(False, "--local", help="Use the local stack (moto on 127.0.0.1), not AWS."),
    stack: str | None = typer.Option(
        None, "--stack", help="CloudFormation stack name [default: samconfig.toml's, or 'newsletter']."
    ),
    region: str | None = typer.Option(
        None, "--region", help="AWS region [default: samconfig.toml's, or your AWS config's]."
    ),
    profile: str | None = typer.Option(None, "--profile", help="AWS profile."),
):
    """Preview, test-send and publish newsletter issues; steer them; manage subscribers."""
    if local and stack:
        raise typer.BadParameter("use either --local or --stack, not both")
    ctx.obj = Options(local, stack, region, profile)


def _target(ctx: typer.Context) -> Target:
    return ctx.obj.target()


def _addresses(values: list[str]) -> list[str]:
    from email_validator import EmailNotValidError, validate_email

    from newsletter.privacy import normalise_address

    out = []
    for v in values:
        try:
            out.append(normalise_address(validate_email(v, check_deliverability=False).normalized))
        except EmailNotValidError as exc:
            raise CliError(f"--to {v!r} is not an email address: {exc}") from None
    return list(dict.fromkeys(out))


# --- preview ------------------------------------------------------------------------------------


@app.command()
@handled
def preview(
    ctx: typer.Context,
    issue: Path = typer.Argument(..., help="The issue document (JSON)."),
    out: Path = typer.Option(
        Path("out/preview"), "--out", help="Where to write the HTML, text, web page, .eml and screenshots."
    ),
    screenshots: bool = typer.Option(
        True, "--screenshots/--no-screenshots", help="Desktop and phone screenshots (needs Chromium)."
    ),
):
    """Validate and render every language of an issue as the publish function would, and check
    its deliverability and translations. Sends nothing.

    Translation files beside the document (2015-07.fr.json) are read as publish reads them. With
    --local or --stack, the stack's sender, web address and list name are used, and the list's
    readers are counted per language to show who would fall back to the default.
    """
    from . import preview as pv

    try:
        result = pv.preview(issue, out_dir=out, screenshots=screenshots, **_stack_sample(ctx.obj, issue))
    except OSError as exc:
        raise CliError(f"cannot read {issue}: {exc.strerror or exc}") from None
    pv.print_report(console, result)
    if result.report.errors:
        raise typer.Exit(EXIT_ERROR)


def _stack_sample(options: Options, path: Path) -> dict:
    """With --local or --stack given, the stack's own sender, web address and list name."""
    import json

    from newsletter.store import lists

    from .subscribers import count_by_language

    if not (options.local or options.stack):
        return {}
    target = options.target()
    env = target.publish_environment()
    try:
        list_id = json.loads(path.read_bytes()).get("list")
    except (OSError, ValueError, AttributeError):
        return {}  # the preview itself reports what is wrong with the document
    found = (
        lists.get_list(target.client("dynamodb"), target.ref("ListsTable"), list_id)
        if isinstance(list_id, str)
        else None
    )
    found = found or {}
    return {
        "sender_name": found.get("from_name") or env.get("SENDER_NAME", "Newsletter"),
        "sender_address": found.get("from_address") or env.get("SENDER_ADDRESS", "news@example.org"),
        "web_base_url": env.get("WEB_BASE_URL", "https://example.org/web"),
        "list_name": found.get("name"),
        "audience": count_by_language(
            target.client("dynamodb"), subscribers_table=target.ref("SubscribersTable"), list_id=list_id
        )
        if isinstance(list_id, str)
        else None,
    }


# --- send-test and publish ------------------------------------------------------------------------


def _progress_view(issue_id: str):
    """A live progress bar (recipients handled of queued) with the issue's counts beside it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from . import publishing

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"),
        console=console,
        transient=False,
    )
    task = progress.add_task(issue_id, total=None, counts="waiting for the publish function")

    def update(record: dict | None) -> None:
        if record is None:
            return
        c = publishing.counts(record)
        progress.update(
            task,
            completed=c["handled"],
            total=max(c["queued"], 1),  # grows while fan-out runs
            counts=f"{record.get('status')}: queued {c['queued']}, sent {c['sent']}, failed {c['failed']}, "
            f"bounced {c['bounced']}, complained {c['complained']}",
        )

    return progress, update


def _finish(target: Target, issue_id: str, record: dict | None) -> None:
    from . import publishing

    if target.is_local:
        written = publishing.local_outbox(issue_id, publishing.counts(record)["sent"])
        if written:
            console.print(f"outbox: {written[0].parent} ({len(written)} messages, as SES accepted them)")
    _stats_table([record] if record else [])
    if record:
        _rollout_lines(record)
    status = (record or {}).get("status")
    if status == Status.PAUSED:
        console.print(
            Text(
                f"paused: {record.get('paused_reason', '')}; resume with: newsletter resume {issue_id}", style="yellow"
            )
        )
    elif status not in (Status.SENT, Status.CANCELLED):
        console.print(f"still {status}: newsletter status {issue_id} shows how it goes on")


def _rollout_lines(record: dict) -> None:
    """A rolled-out issue's plan, phase, cohort figures and verdict (newsletter.rollout)."""
    from newsletter import rollout

    shown = rollout.describe(record)
    if shown is None:
        return
    limits = shown["limits"]
    console.print(
        f"rollout: {shown['share_percent']}% of the list first, then {shown['wait_minutes']} min for its feedback; "
        f"the rest only under {limits['bounce_rate_percent']}% hard bounces and "
        f"{limits['complaint_rate_percent']}% complaints"
    )
    phase = shown["phase"]
    said = {
        rollout.COHORT: "the cohort is being sent",
        rollout.WAITING: "the cohort is sent; waiting for its feedback",
        rollout.REST: "the rest of the list is sent",
        rollout.HELD: "held: the rest of the list waits",
    }.get(phase, str(phase))
    if phase == rollout.WAITING and shown.get("judge_at"):
        said += f" until {datetime.fromtimestamp(int(shown['judge_at']), UTC).strftime('%Y-%m-%d %H:%M UTC')}"
    console.print(f"  phase: {said}")
    cohort = shown.get("cohort")
    if cohort:
        console.print(
            f"  cohort: {cohort['sent']} sent of {cohort['queued']} queued, {cohort['delivered']} delivered, "
            f"{cohort['bounced_hard']} hard bounces ({cohort['bounce_rate_percent']}%), "
            f"{cohort['complained']} complaints ({cohort['complaint_rate_percent']}%)"
        )
    if shown.get("verdict") == "passed":
        console.print(f"  verdict: passed at {shown.get('judged_at', '')}")
    elif shown.get("verdict") == "held":
        console.print(
            Text(f"  verdict: held at {shown.get('judged_at', '')}: {shown.get('reason', '')}", style="yellow")
        )
        if phase == rollout.HELD:
            console.print(Text(f"  send the rest anyway with: newsletter resume {record['issue_id']}", style="yellow"))
    if shown.get("released_at"):
        console.print(f"  released by an operator at {shown['released_at']}")


@app.command("send-test")
@handled
def send_test(
    ctx: typer.Context,
    issue: Path = typer.Argument(..., help="The issue document (JSON)."),
    to: list[str] = typer.Option(..., "--to", help="A test address (repeat for several)."),
    language: str | None = typer.Option(
        None, "--language", help="The language version to send (one of the issue's; default: the default language)."
    ),
):
    """Send the issue to test addresses only, subject marked [TEST], through the real send path."""
    from . import publishing

    document, raw = publishing.read_issue(issue)
    addresses = _addresses(to)
    target = _target(ctx)
    test_id = publishing.send_test(target, document, raw, addresses, language=language)
    console.print(f"test send {test_id}: {len(addresses)} address(es) queued on {target.kind} {target.name}")
    progress, update = _progress_view(test_id)
    with progress:
        if target.is_local:
            record = publishing.run_local(target, test_id, update)
        else:
            record = publishing.follow(target, test_id, None, update, timeout_s=300)
    _finish(target, test_id, record)
    c = publishing.counts(record)
    if c["skipped"]:
        console.print(
            Text(f"{c['skipped']} address(es) skipped: suppressed (bounced or complained earlier)", style="yellow")
        )
    if c["failed"] or (record or {}).get("status") != Status.SENT:
        raise typer.Exit(EXIT_ERROR)


@app.command()
@handled
def publish(
    ctx: typer.Context,
    issue: Path = typer.Argument(..., help="The issue document (JSON)."),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Follow the sending live until it is done."),
    timeout: float = typer.Option(
        6 * 3600, "--timeout", help="Stop following after this many seconds (sending goes on)."
    ),
    at: str | None = typer.Option(
        None,
        "--at",
        help="Schedule the send instead: ISO 8601 with a UTC offset (2026-03-02T09:00+01:00), or a local time "
        "with --time-zone (or the document's time_zone). At least 2 minutes ahead.",
    ),
    time_zone: str | None = typer.Option(None, "--time-zone", help="The IANA time zone of --at (Europe/Vienna)."),
):
    """Validate the issue, upload it to the stack's bucket (which publishes it), and follow the sending;
    with --at (or the document's send_at), render it now and start the send at that time."""
    from . import publishing, schedule

    document, raw = publishing.read_issue(issue)
    target = _target(ctx)
    document, raw = schedule.prepare(target, document, raw, at=at, time_zone=time_zone)
    up = publishing.upload(target, document, raw)
    if document.send_at:
        console.print(schedule.announce(schedule.follow_upload(target, document, up)))
        return
    if up.already:
        console.print(
            f"{document.issue_id} was already published from this document (status "
            f"{up.already.get('status')}); not sent again"
        )
    else:
        console.print(f"uploaded s3://{target.ref('NewsletterBucket')}/{up.key}")
    if not follow and not target.is_local:
        console.print(f"follow it with: newsletter status {document.issue_id}")
        return
    progress, update = _progress_view(document.issue_id)
    try:
        with progress:
            if target.is_local:
                record = publishing.run_local(target, document.issue_id, update, key=None if up.already else up.key)
            else:
                record = publishing.follow(target, document.issue_id, up.key, update, timeout_s=timeout)
    except KeyboardInterrupt:
        if target.is_local:  # here the CLI is Lambda: what is queued waits for it
            err.print("interrupted: the rest waits on the local queues; run the same publish command to go on")
        else:
            err.print(f"stopped following; the sending goes on: newsletter status {document.issue_id}")
        raise typer.Exit(130) from None
    _finish(target, document.issue_id, record)
    if publishing.counts(record)["failed"]:
        raise typer.Exit(EXIT_ERROR)


# --- status, pause, resume, cancel --------------------------------------------------------------------


def _language_table(record: dict) -> None:
    """An issue in several languages: its figures per language."""
    from newsletter.store.issues import statistics_by_language

    by_language = statistics_by_language(record)
    if not by_language:
        return
    table = Table(title="per language", title_justify="left")
    table.add_column("language")
    columns = ("sent", "skipped", "failed", "delivered", "bounced", "complained", "unsubscribed")
    for col in columns:
        table.add_column(col, justify="right")
    for language, c in by_language.items():
        table.add_row(language, *(str(c[k]) for k in columns))
    console.print(table)


def _stats_table(records: list[dict]) -> None:
    """One issue: every figure, one per line. Several: a row each, narrow enough for 80 columns."""
    from . import publishing

    if len(records) == 1:
        r, c = records[0], publishing.counts(records[0])
        table = Table(title=Text(f"{r['issue_id']}: {r.get('subject', '')}"), title_justify="left", show_header=False)
        table.add_column("", style="bold")
        table.add_column("", justify="right")
        rows = [("status", str(r.get("status", "")))]
        rows += [
            (k, str(c[k]))
            for k in (
                "queued",
                "sent",
                "skipped",
                "rejected",
                "uncertain",
                "delivered",
                "bounced_hard",
                "bounced_soft",
                "complained",
                "unsubscribed",
                "opened",
                "clicked",
            )
        ]
        rows += [
            (k, str(r[k]))
            for k in (
                "accepted_at",
                "send_at",
                "fanout_started_at",
                "sent_at",
                "paused_at",
                "paused_reason",
                "cancelled_at",
                "web_url",
            )
            if r.get(k)
        ]
        for k, v in rows:
            table.add_row(k.replace("_", " "), Text(v))
        console.print(table)
        return
    table = Table()
    table.add_column("issue", overflow="fold")
    table.add_column("status")
    for col in ("sent/queued", "failed", "deliv.", "bounced", "compl.", "unsub."):
        table.add_column(col, justify="right")
    table.add_column("date")
    for r in records:
        c = publishing.counts(r)
        when = (r.get("sent_at") or r.get("fanout_started_at") or r.get("accepted_at") or "")[:10]
        table.add_row(
            Text(r["issue_id"]),
            Text(str(r.get("status", ""))),
            f"{c['sent']}/{c['queued']}",
            *(str(c[k]) for k in ("failed", "delivered", "bounced", "complained", "unsubscribed")),
            when,
        )
    console.print(table)


def _states_help() -> str:
    from .recipients import STATES

    return "; ".join(f"{state}: {meaning}" for state, meaning in STATES.items())


@app.command()
@handled
def status(
    ctx: typer.Context,
    issue: str | None = typer.Argument(None, help="One issue id; all issues without it."),
    tests: bool = typer.Option(False, "--tests", help="Include test sends."),
    recipients: str | None = typer.Option(
        None,
        "--recipients",
        metavar="STATE",
        help="Instead of the figures: the issue's readers in STATE, as CSV (email, name, language, state, "
        "when, detail). " + _states_help() + ".",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="With --recipients: the CSV file to write [default: standard output]."
    ),
):
    """Per-issue statistics: queued, sent, failed, delivered, bounced, complained, unsubscribed, opens, clicks;
    or, with --recipients STATE, who of an issue's readers is in that state, as CSV."""
    from . import publishing

    target = _target(ctx)
    if recipients is not None or out is not None:
        _export_recipients(target, issue, recipients, out)
        return
    if issue:
        record = publishing.get_record(target, issue)
        if record is None:
            raise CliError(f"no issue {issue!r} on {target.kind} {target.name!r}")
        _stats_table([record])
        _rollout_lines(record)
        _language_table(record)
        from .links import links_table

        clicked = links_table(target.client("dynamodb"), target.ref("IssuesTable"), record)
        if clicked is not None:
            console.print(clicked)
        if record.get("status") == Status.PAUSED:
            console.print(Text(f"paused: {record.get('paused_reason', '')}", style="yellow"))
        if record.get("reconciled_at"):
            console.print(f"counters checked against the send ledger at {record['reconciled_at']}")
        if record.get("counters_corrected"):
            console.print(
                Text(
                    f"the ledger corrected them by {record['counters_corrected']} (see the fan-out function's log)",
                    style="yellow",
                )
            )
        return
    records = [r for r in publishing.all_records(target) if tests or not r.get("test")]
    if not records:
        console.print("no issues published yet")
        return
    _stats_table(records)


def _tables(target: Target):
    from .recipients import Tables

    return Tables(
        issues=target.ref("IssuesTable"),
        sends=target.ref("SendsTable"),
        subscribers=target.ref("SubscribersTable"),
        suppressions=target.ref("SuppressionsTable"),
        feedback=target.ref("FeedbackTable"),
    )


def _export_recipients(target: Target, issue: str | None, state: str | None, out: Path | None) -> None:
    """`status ISSUE --recipients STATE [--out FILE]`: the CSV; the count on standard error (or
    after the file's name), never an address."""
    from . import publishing
    from . import recipients as who

    if not issue or not state:
        raise CliError("--recipients STATE needs an ISSUE (and --out needs --recipients)")
    if state not in who.STATES:
        raise CliError(f"--recipients {state!r}: one of {', '.join(who.STATES)}")
    record = publishing.get_record(target, issue)
    if record is None:
        raise CliError(f"no issue {issue!r} on {target.kind} {target.name!r}")
    ddb, tables = target.client("dynamodb"), _tables(target)
    try:
        who.exportable(ddb, tables, record, state)
    except who.NotRecorded as exc:
        raise CliError(f"{issue}: {exc}") from None
    if out is None:
        n = who.export(ddb, tables, record, state, sys.stdout)
        err.print(f"{n} reader(s) of {issue} {state}")
        return
    with out.open("w", newline="", encoding="utf-8") as f:
        n = who.export(ddb, tables, record, state, f)
    console.print(f"{n} reader(s) of {issue} {state} written to {out}")


@app.command()
@handled
def resend(
    ctx: typer.Context,
    issue: str = typer.Argument(..., help="Issue id."),
    not_sent: bool = typer.Option(
        False,
        "--not-sent",
        help="Queue the issue again for the readers it was queued for and never sent (the issue cancelled, "
        "a batch in the DLQ): never anyone sent, delivered, bounced, rejected or uncertain; whoever "
        "unsubscribed or was suppressed since is recorded skipped, not mailed.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Resend even though the send or fan-out queue still holds messages: the ledger still mails "
        "nobody twice, and a reader whose batch is still queued is mailed by whichever batch comes first.",
    ),
):
    """Send an issue to the readers it was queued for and never sent, through the same send path:
    each send claims its reader in the ledger first, so running it twice, or while the issue still
    sends, mails nobody twice. A cancelled issue is sending again while they are sent."""
    from newsletter.sender import ISSUE_TTL
    from newsletter.store.subscribers import SHARDS

    from . import publishing
    from . import recipients as who

    if not not_sent:
        raise CliError("say whom to resend to: --not-sent (the readers it was queued for and never sent)")
    target = _target(ctx)
    record = publishing.get_record(target, issue)
    if record is None:
        raise CliError(f"no issue {issue!r} on {target.kind} {target.name!r}")
    sqs = target.client("sqs")
    waiting = who.queue_depths(sqs, {"send queue": target.ref("SendQueue"), "fan-out queue": target.ref("FanoutQueue")})
    why = who.refusal(record, waiting, force=force)
    if why:
        raise CliError(f"not resending {issue}: {why}")
    ddb, tables = target.client("dynamodb"), _tables(target)
    # On AWS a send function may have read "cancelled" up to ISSUE_TTL ago and still trust it:
    # a reopened issue's batches wait longer than that. Locally the CLI is that function, afresh.
    delay = 0 if target.is_local or record.get("status") != Status.CANCELLED else int(ISSUE_TTL) + 5
    try:
        done = who.resend_not_sent(ddb, sqs, tables, record, target.ref("SendQueue"), delay_s=delay)
    except who.NotRecorded as exc:
        raise CliError(f"not resending {issue}: {exc}") from None
    segments = int(record.get("segments_done") or 0)
    if record.get("rollout") and record.get("rollout_phase") != "rest":
        console.print(
            f"its rollout is {record.get('rollout_phase')}: only its cohort was queued, and only the cohort is resent"
        )
    elif segments < SHARDS:
        console.print(
            f"{SHARDS - segments} of its {SHARDS} fan-out segments never finished (see newsletter dlq): "
            "readers they did not reach were never queued, and are not resent"
        )
    if not done.queued:
        console.print(f"{issue}: nobody to resend to (everyone it was queued for was counted)")
        return
    if done.reopened:
        console.print(f"{issue} was cancelled: it is sending again")
    console.print(f"{issue}: {done.queued} reader(s) queued again in {done.batches} batch(es); {done.to_mail} to mail")
    for reason, n in sorted(done.since.items()):
        console.print(f"  {n} {reason}: the send function records them skipped")
    if done.abandoned:
        console.print(f"  {done.abandoned} whose send died under way: recorded uncertain, never sent")
    if done.uncounted:
        console.print(f"  {done.uncounted} handled but never counted: counted now, not mailed again")
    dead = who.queue_depths(sqs, {"SendDLQ": target.ref("SendDLQ")})["SendDLQ"]
    if dead:
        console.print(f"SendDLQ holds {dead} message(s): redriving them later mails nobody twice")
    if target.is_local:
        # As after a resume: the simulator answers only the readers sent now.
        _finish(target, issue, publishing.run_local(target, issue, lambda record: None))
    else:
        console.print(f"follow it with: newsletter status {issue}")


def _control(ctx: typer.Context, action: str, issue: str) -> None:
    from newsletter import lifecycle

    from . import publishing, schedule

    target = _target(ctx)
    ddb, table = target.client("dynamodb"), target.ref("IssuesTable")
    fn = {
        "pause": lifecycle.pause_issue,
        "resume": lifecycle.resume_issue,
        # A scheduled issue's schedule is deleted too.
        "cancel": lambda _ddb, _table, issue_id: schedule.cancel_issue(target, issue_id),
    }[action]
    if fn(ddb, table, issue):
        done = {
            "pause": "paused: its batches wait on the queue",
            "resume": "sending again",
            "cancel": "cancelled: nothing more of it is sent",
        }[action]
        console.print(f"{issue}: {done}")
        if action == "cancel":
            _out_of_archive(target, issue)
        if action == "resume":
            _rollout_resumed(target, issue)
        return
    record = publishing.get_record(target, issue)
    if record is None:
        raise CliError(f"no issue {issue!r} on {target.kind} {target.name!r}")
    if action == "resume" and record.get("status") == Status.SENDING and record.get("rollout_phase") == "held":
        # Resumed before, but the rest of its list was never queued (the resume was cut short).
        _rollout_resumed(target, issue)
        return
    to = {"pause": lifecycle.PAUSED, "resume": lifecycle.SENDING, "cancel": lifecycle.CANCELLED}[action]
    needs = " or ".join(lifecycle.ALLOWED[to] if action != "resume" else (lifecycle.PAUSED,))
    raise CliError(f"cannot {action} {issue}: it is {record.get('status')}, not {needs}")


def _rollout_resumed(target: Target, issue: str) -> None:
    """After a resume: a held rollout's override (the rest of the list is queued), or a cohort
    handled while paused, whose wait starts now. Locally the CLI then is Lambda, as for a publish."""
    import logging

    from newsletter import rollout

    from . import publishing

    did = rollout.after_resume(
        target.client("dynamodb"),
        target.client("sqs"),
        target.ref("IssuesTable"),
        target.ref("FanoutQueue"),
        issue,
        logging.getLogger("newsletter.cli"),
    )
    if did:
        console.print(f"{issue}: {did}")
    if target.is_local:
        progress, update = _progress_view(issue)
        with progress:
            record = publishing.run_local(target, issue, update)
        _finish(target, issue, record)


def _out_of_archive(target: Target, issue: str) -> None:
    """A cancelled issue leaves its list's public archive and feed (it stays listed as cancelled in
    the private index, so a publish still finishing cannot bring it back)."""
    from newsletter import archive

    from . import publishing

    record = publishing.get_record(target, issue)
    if record is None or record.get("test") or not record.get("list_id"):
        return
    if archive.remove(target.client("s3"), target.ref("NewsletterBucket"), record["list_id"], issue):
        console.print(f"{issue}: taken out of the {record['list_id']} archive and feed")


@app.command()
@handled
def pause(ctx: typer.Context, issue: str = typer.Argument(..., help="Issue id.")):
    """Pause a sending issue: its remaining batches wait on the queue, nothing is lost."""
    _control(ctx, "pause", issue)


@app.command()
@handled
def resume(ctx: typer.Context, issue: str = typer.Argument(..., help="Issue id.")):
    """Resume a paused issue."""
    _control(ctx, "resume", issue)


@app.command()
@handled
def cancel(
    ctx: typer.Context,
    issue: str = typer.Argument(..., help="Issue id."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
):
    """Cancel an issue for good: nobody else receives it."""
    if not yes and not typer.confirm(
        f"Cancel {issue} for good? Nobody who has not received it yet will.", default=False
    ):
        raise typer.Exit(EXIT_ERROR)
    _control(ctx, "cancel", issue)


def _register_schedule_commands() -> None:
    from . import schedule

    app.command("schedule")(handled(schedule.schedule_command))
    app.command("reschedule")(handled(schedule.reschedule_command))


_register_schedule_commands()


# --- the token secret -------------------------------------------------------------------------------


def _when(at: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


@secret_app.command("show")
@handled
def secret_show(ctx: typer.Context):
    """The token secret's versions: which one signs, and until when the older ones are honoured."""
    target = _target(ctx)
    ring = target.token_keys()
    current = ring.current()
    console.print(
        f"{target.token_secret_name()}: version {current.version} signs (written {_when(current.written_at)})"
    )
    for version in range(current.version - 1, max(0, current.version - 10), -1):
        until = ring.honoured_until(version)
        if until is None:
            break
        state = "honoured until" if ring.honoured(version) is not None else "no longer honoured since"
        console.print(f"  version {version}: {state} {_when(until)}")
    console.print(f"links signed with a replaced version keep working {ring.grace_s / 86400:.0f} days (TokenGraceDays)")


@secret_app.command("rotate")
@handled
def secret_rotate(
    ctx: typer.Context,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
):
    """Write a new token secret (a new SSM version): new mail is signed with it; links in mail
    already sent keep working for TokenGraceDays, then stop."""
    import secrets

    target = _target(ctx)
    ring = target.token_keys()
    current = ring.current()
    days = ring.grace_s / 86400
    if not yes and not typer.confirm(
        f"Replace version {current.version} of {target.token_secret_name()}? Links already sent keep working "
        f"{days:.0f} days.",
        default=False,
    ):
        raise typer.Exit(EXIT_ERROR)
    answer = target.client("ssm").put_parameter(
        Name=target.token_secret_name(), Value=secrets.token_urlsafe(48), Type="SecureString", Overwrite=True
    )
    console.print(
        f"version {answer['Version']} signs from now on (the functions read it within 5 minutes); "
        f"links signed with version {current.version} keep working until about "
        f"{_when(ring.current().written_at + ring.grace_s)}"
    )
    console.print("the address hashes in the logs change with it: `newsletter subscribers hash` prints the new ones")


# --- dead letters ----------------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


@dlq_app.callback()
@handled
def dlq_list(ctx: typer.Context):
    """What each dead-letter queue holds: how many, the oldest, and a few of them (no addresses)."""
    if ctx.invoked_subcommand is not None:
        return
    from . import dlq

    reports = dlq.inspect(_target(ctx))
    table = Table(title=Text("dead letters"), title_justify="left")
    for column, justify in (("queue", "left"), ("holds", "left"), ("messages", "right"), ("oldest", "right")):
        table.add_column(column, justify=justify)
    for r in reports:
        table.add_row(r.queue.logical, r.queue.holds, str(r.count), _age(r.oldest_age_s))
    console.print(table)
    for r in reports:
        for sample in r.samples:
            console.print(Text(f"  {r.queue.logical}: {sample}"))
    waiting = [r.queue.logical for r in reports if r.count]
    if waiting:
        console.print(f"Fix the cause (see the functions' logs), then: newsletter dlq redrive {waiting[0]}")
    else:
        console.print("no dead letters")


@dlq_app.command("redrive")
@handled
def dlq_redrive(
    ctx: typer.Context, queue: str = typer.Argument(..., help="PublishDLQ, FanoutDLQ, SendDLQ or FeedbackDLQ.")
):
    """Move a DLQ's messages back to be tried again (SQS's message move task; locally, the same)."""
    from . import dlq

    target = _target(ctx)
    which = dlq.queue_named(queue)
    result = dlq.redrive(target, which)
    where = which.source or f"{which.function} (invoked again)"
    if result.task:
        console.print(
            f"{which.logical}: moving about {result.moved} message(s) back to {where} (SQS task {result.task})"
        )
    else:
        console.print(f"{which.logical}: {result.moved} message(s) back to {where}")


# --- subscribers -------------------------------------------------------------------------------------


def _check_list_id(list_id: str) -> None:
    import re

    from newsletter.issue import ID_PATTERN

    if not re.match(ID_PATTERN, list_id):
        raise CliError(
            f"--list {list_id!r}: a list id is 1 to 64 letters, digits, '_' or '-', starting with a letter or digit"
        )


def _ensure_list(target: Target, list_id: str, name: str | None) -> bool:
    from newsletter.store import lists

    ddb = target.client("dynamodb")
    if lists.get_list(ddb, target.ref("ListsTable"), list_id) is not None:
        return False
    lists.put_list(ddb, target.ref("ListsTable"), list_id, name or list_id)
    return True


@subscribers_app.command("import")
@handled
def subscribers_import(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ..., help="CSV with an email column; optional name, language, status; other columns become attributes."
    ),
    list_id: str = typer.Option(..., "--list", help="The list to import into (created if new)."),
    list_name: str | None = typer.Option(None, "--list-name", help="Display name for a new list (List-Id, footer)."),
    report: Path | None = typer.Option(None, "--report", help="Write every skipped or invalid row here (CSV)."),
):
    """Add subscribers from a CSV file: validated, lowercased, without duplicates; never re-activates anyone."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from . import subscribers as subs

    if not file.is_file():
        raise CliError(f"no such file: {file}")
    _check_list_id(list_id)
    if list_name is not None:
        from newsletter import headers

        why = headers.refused(list_name) or ("" if list_name.strip() else "must not be empty")
        if why:
            raise CliError(f"--list-name {why}")
    target = _target(ctx)
    size = file.stat().st_size
    with Progress(
        TextColumn("importing"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]} rows"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("import", total=size, rows=0)
        try:
            result = subs.import_csv(
                target.client("dynamodb"),
                subscribers_table=target.ref("SubscribersTable"),
                suppressions_table=target.ref("SuppressionsTable"),
                list_id=list_id,
                path=file,
                progress=lambda rows, done: progress.update(task, completed=done, rows=rows),
                report_path=report,
                forgotten_id=_forgotten_id(target),
                client_spec=target.client_spec(),
            )
        except subs.BadImport as exc:
            raise CliError(f"{exc}; nothing was imported") from None
    # The list exists once it has subscribers: an unusable file creates nothing.
    created = bool(result.imported or result.existing) and _ensure_list(target, list_id, list_name)
    if created:
        console.print(f"created list {list_id}")
    table = Table(title=Text(f"{file} → list {list_id}"), title_justify="left")
    table.add_column("rows", justify="right")
    for col in ("imported", "existing", "duplicates", "suppressed", "invalid"):
        table.add_column(col, justify="right")
    table.add_row(
        *(str(getattr(result, k)) for k in ("rows", "imported", "existing", "duplicates", "suppressed", "invalid"))
    )
    console.print(table)
    shown = [p for p in result.problems if p.reason][:20]
    for p in shown:
        console.print(Text(f"  line {p.line}: {p.reason}"))
    if result.problem_count > len(shown):
        console.print(f"  … {result.problem_count - len(shown)} more")
    if result.report_path:
        console.print(f"every skipped or invalid row: {result.report_path}")
    if result.invalid:
        raise typer.Exit(EXIT_BAD_INPUT if not result.imported and not result.existing else 0)


@subscribers_app.command("unsubscribe")
@handled
def subscribers_unsubscribe(
    ctx: typer.Context,
    address: str | None = typer.Argument(None, help="The address to unsubscribe (with --list)."),
    list_id: str | None = typer.Option(None, "--list", help="The list to unsubscribe ADDRESS from."),
    token: str | None = typer.Option(
        None, "--token", help="Instead: the token of an unsubscribe request by mail (its subject, 'unsubscribe TOKEN')."
    ),
):
    """Unsubscribe one reader by hand: an address and a list, or the token a mailto request carries."""
    from newsletter import clock, tokens
    from newsletter.store import subscribers as store

    if token:
        if address or list_id:
            raise CliError("give either --token or ADDRESS with --list, not both")
        target = _target(ctx)
        value = token.strip()
        value = value.split()[-1] if value.lower().startswith("unsubscribe") else value
        try:
            list_id, address = tokens.verify(target.token_keys(), value)
        except tokens.InvalidToken as exc:
            raise CliError(f"--token is not one of ours ({exc}); nothing changed") from None
    else:
        if not address or not list_id:
            raise CliError("give ADDRESS and --list LIST (or --token TOKEN)")
        address = _addresses([address])[0]
        _check_list_id(list_id)
        target = _target(ctx)
    if store.unsubscribe(
        target.client("dynamodb"),
        target.ref("SubscribersTable"),
        list_id,
        address,
        clock.iso(),
        unsubscribed_via="operator",
    ):
        console.print(f"unsubscribed from {list_id}: {address}")
        return
    record = store.get_subscriber(target.client("dynamodb"), target.ref("SubscribersTable"), list_id, address)
    if record is None:
        raise CliError(f"{address} is not on list {list_id!r}; nothing changed")
    console.print(f"{address} is already {record.get('status')} on {list_id}; nothing changed")


@subscribers_app.command("export")
@handled
def subscribers_export(
    ctx: typer.Context,
    list_id: str = typer.Option(..., "--list", help="The list to export."),
    out: Path | None = typer.Option(None, "--out", help="CSV file to write [default: standard output]."),
    status_filter: str | None = typer.Option(None, "--status", help="Only subscribers with this status."),
):
    """Write a list's subscribers as CSV (the import format)."""
    from newsletter.store.subscribers import STATUSES

    from . import subscribers as subs

    if status_filter and status_filter not in STATUSES:
        raise CliError(f"--status {status_filter!r}: one of {', '.join(STATUSES)}")
    target = _target(ctx)
    kwargs = dict(subscribers_table=target.ref("SubscribersTable"), list_id=list_id, status=status_filter)
    if out is None:
        n = subs.export_csv(target.client("dynamodb"), out=sys.stdout, **kwargs)
        err.print(f"{n} subscriber(s) exported")
        return
    with out.open("w", newline="", encoding="utf-8") as f:
        n = subs.export_csv(target.client("dynamodb"), out=f, **kwargs)
    console.print(f"{n} subscriber(s) of {list_id} written to {out}")


def _forgotten_id(target: Target):
    """How an erased address is found in the suppression list (None before anyone was erased:
    the token secret's first version, the key, is labelled by the first `forget`)."""
    from newsletter.erasure import KEY_VERSION, erasure_key, forgotten_id

    try:
        key = target.token_key(KEY_VERSION)
    except CliError:
        return None  # no token secret yet: nobody can have been erased
    if key is None:
        return None
    # A partial, not a lambda: the import's writer processes receive it.
    return functools.partial(forgotten_id, erasure_key(key.secret))


@subscribers_app.command("show")
@handled
def subscribers_show(ctx: typer.Context, address: str = typer.Argument(..., help="The person's email address.")):
    """Print, as JSON, everything the stack holds about a person: subscriptions and consent,
    suppression, what was sent to them and SES's feedback (for an access request)."""
    import json

    from . import person

    print(json.dumps(person.show(_target(ctx), address), default=str, ensure_ascii=False, indent=2))


@subscribers_app.command("forget")
@handled
def subscribers_forget(
    ctx: typer.Context,
    address: str = typer.Argument(..., help="The person's email address."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
):
    """Erase a person everywhere (subscriptions, consent, sends, feedback, suppression), keeping only
    a keyed hash in the suppression list so that no import or signup brings them back."""
    from newsletter.privacy import address_hash

    from . import person

    if not yes and not typer.confirm(f"Erase everything held about {address}? This cannot be undone"):
        raise typer.Exit(EXIT_ERROR)
    deleted = person.forget(_target(ctx), address)
    console.print(
        f"erased {address_hash(address)}: {deleted['subscriptions']} subscription(s), {deleted['sends']} send(s), "
        f"{deleted['feedback']} feedback item(s), {deleted['suppression']} suppression; "
        "a keyed hash now keeps the address out"
    )


@subscribers_app.command("hash")
@handled
def subscribers_hash(ctx: typer.Context, addresses: list[str] = typer.Argument(..., help="One or more addresses.")):
    """The keyed hash the functions' logs carry for an address (to find one reader's log lines)."""
    from newsletter.privacy import address_hash

    secret = _target(ctx).token_secret()
    for address in addresses:
        console.print(f"{address_hash(address, secret=secret)}  {address}")


@subscribers_app.command("count")
@handled
def subscribers_count(ctx: typer.Context, list_id: str = typer.Option(..., "--list", help="The list to count.")):
    """A list's subscribers by status."""
    from . import subscribers as subs

    target = _target(ctx)
    counts = subs.count_by_status(
        target.client("dynamodb"), subscribers_table=target.ref("SubscribersTable"), list_id=list_id
    )
    table = Table(title=Text(f"list {list_id}"), title_justify="left")
    table.add_column("status")
    table.add_column("subscribers", justify="right")
    for k, v in counts.items():
        table.add_row(k, str(v))
    table.add_row(Text("total", style="bold"), Text(str(sum(counts.values())), style="bold"))
    console.print(table)


# --- lists ------------------------------------------------------------------------------------------


def _public_url(target: Target) -> str:
    """Where the stack's public pages are (signup forms, the preference centre)."""
    if target.is_local:
        import json

        from devstack import server

        try:
            state = json.loads((server.state_dir() / server.STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = {}
        if state.get("public_url"):
            return state["public_url"]
        raise CliError("the local stack serves no public pages: restart it (newsletter local stop, local start)")
    url = target.outputs.get("PublicUrl")
    if not url:
        raise CliError(f"stack {target.name!r} has no output PublicUrl: is it up to date (sam deploy)?")
    return url


@lists_app.command("put")
@handled
def lists_put(ctx: typer.Context, document: Path = typer.Argument(..., help="The list document (JSON).")):
    """Create or update a list from its document: name, languages, topics, consent text, signup settings."""
    from . import lists

    target = _target(ctx)
    doc = lists.read_document(document)
    record = lists.put(target.client("dynamodb"), target.ref("ListsTable"), doc)
    console.print(f"list {doc.list_id}: {record['name']} ({', '.join(record['languages'])})")
    if record.get("signup", {}).get("open", True):
        try:
            console.print(f"signup form: {_public_url(target).rstrip('/')}/subscribe/{doc.list_id}")
        except CliError as exc:
            err.print(str(exc))


@lists_app.command("show")
@handled
def lists_show(ctx: typer.Context, list_id: str = typer.Argument(..., help="The list id.")):
    """Print a list's record as JSON."""
    import json

    from newsletter.store import lists

    target = _target(ctx)
    record = lists.get_list(target.client("dynamodb"), target.ref("ListsTable"), list_id)
    if record is None:
        raise CliError(f"no list {list_id!r}")
    console.print_json(json.dumps(record, default=str, ensure_ascii=False))


@lists_app.command("form")
@handled
def lists_form(ctx: typer.Context, list_id: str = typer.Argument(..., help="The list id.")):
    """Print the list's signup form as HTML to paste into another site's page (an origin the list allows)."""
    from newsletter.store import lists as store

    from . import lists

    target = _target(ctx)
    record = store.get_list(target.client("dynamodb"), target.ref("ListsTable"), list_id)
    if record is None or not (record.get("consent") or {}).get("text"):
        raise CliError(f"list {list_id!r} has no signup form: put its document first (newsletter lists put)")
    print(lists.form_snippet(_public_url(target), record), end="")


# --- the local stack -------------------------------------------------------------------------------


@local_app.command("start")
@handled
def local_start(
    host: str | None = typer.Option(
        None,
        "--host",
        help="The address to listen on [default: 127.0.0.1]. For `sam local invoke`, one that containers "
        "reach, such as the Docker bridge's gateway (docker network inspect bridge).",
    ),
    env_vars: Path | None = typer.Option(
        None,
        "--env-vars",
        help="Where to write the functions' environment for `sam local invoke --env-vars` "
        "[default: sam-env.json beside the stack's state].",
    ),
):
    """Start the local stack (any --local command starts it too); write the env-vars file for sam local."""
    from devstack import sam_local, server

    try:
        state = server.start(host=host)
    except (RuntimeError, ValueError) as exc:
        raise CliError(str(exc)) from None
    target = local_target()
    console.print(f"local stack running at {target.name}")
    if state.get("public_url"):
        console.print(f"public pages at {state['public_url']} (a list's signup form: /subscribe/<list>)")
    path = sam_local.write_env_vars(target.local, env_vars or server.state_dir() / sam_local.ENV_FILE)
    console.print(f"sam local invoke --env-vars {path}")
    if state.get("host", server.LOOPBACK) == server.LOOPBACK:
        console.print("(on 127.0.0.1 no container reaches it: for sam local invoke, start it with --host)")


@local_app.command("stop")
@handled
def local_stop():
    """Stop the local stack; everything in it is gone."""
    from devstack import server

    console.print("local stack stopped" if server.stop() else "no local stack was running")


@local_app.command("status")
@handled
def local_status():
    """Whether the local stack runs, and where."""
    from devstack import server

    state = server.running()
    if state:
        console.print(
            f"local stack running at {state['endpoint_url']} (pid {state['pid']}, since {state['started_at']})"
        )
        if state.get("public_url"):
            console.print(f"public pages at {state['public_url']}")
    else:
        console.print("no local stack is running")
        raise typer.Exit(EXIT_ERROR)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
