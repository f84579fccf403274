"""Faults the way AWS produces them, injected into the functions' own AWS calls.

Two layers, as a function meets them on AWS:
- **above** the SDK: the error that reaches our code after botocore gave up retrying. Either the
  request never got there (a 5xx or throttling answer, a connection that could not be made), or
  it did and its answer was lost (a read timeout after the service acted).
- **below** the SDK: a transport error botocore itself sees and may retry: a connection refused
  before the request left, or the response lost after the service acted (then botocore's retry
  repeats a request that already took effect; that is how SDK retries duplicate work).

Plus crashes: the Lambda instance dies at the Nth AWS call of the run, before or after the
service acted; every later call of that invocation dies too (a dead process writes nothing, not
even in its `finally` blocks).

Only the calls the functions make through `newsletter.aws.client` are touched: the local stack's
own calls (the SQS poller, test set-up) never fail. Randomness is seeded, so a run repeats.

    python -m devstack.faults           # the fault table (`make faults`)
    python -m devstack.faults --rollout # the same with a staged issue: cohort, wait, verdict, rest
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from .proxy import intercept

SERVICES = ("dynamodb", "sqs", "s3", "sesv2")

# Errors each service answers when it is having a bad moment (all retryable by their docs).
TRANSIENT = {
    "dynamodb": [
        ("InternalServerError", 500),
        ("ProvisionedThroughputExceededException", 400),
        ("ThrottlingException", 400),
    ],
    "sqs": [("InternalError", 500), ("ServiceUnavailable", 503), ("RequestThrottled", 403)],
    "s3": [("InternalError", 500), ("SlowDown", 503), ("ServiceUnavailable", 503)],
    "sesv2": [("InternalFailure", 500), ("ServiceUnavailable", 503), ("TooManyRequestsException", 429)],
    "ssm": [("InternalServerError", 500), ("ThrottlingException", 400)],
}


class Crash(BaseException):
    """The Lambda instance died here (a BaseException: no `except Exception` of ours catches it)."""


def transient_error(service: str, operation: str, rnd: random.Random) -> ClientError:
    code, status = rnd.choice(TRANSIENT[service])
    return ClientError(
        {"Error": {"Code": code, "Message": f"injected {code}"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


@dataclass
class FaultPlan:
    """What goes wrong, and how often.

    rate: the share of calls that fail. layer: "above" or "below" the SDK (see the module).
    crash_at: the call (1-based, counted over the whole run) at which the instance dies;
    crash_after: whether it dies after the service acted on that call (else before).
    lose_ses_responses: the share of SendEmail calls whose answer is lost after SES accepted.
    """

    rate: float = 0.0
    seed: int = 0
    layer: str = "above"
    services: tuple[str, ...] = SERVICES
    crash_at: int | None = None
    crash_after: bool = False
    lose_ses_responses: float = 0.0
    kinds: tuple[str, ...] = ("error", "unreached", "lost")  # above the SDK: which failures to draw from
    injected: Counter = field(default_factory=Counter)
    calls: int = 0

    def __post_init__(self):
        if self.layer not in ("above", "below"):
            raise ValueError("layer is 'above' or 'below'")
        self._rnd = random.Random(self.seed)
        self._lock = threading.Lock()
        self._dead = False
        self._active = False
        self.crashed = False

    # --- what happens to one call ---------------------------------------------------------------

    def _draw_call(self, service: str) -> str | None:
        """What happens to the next call our code makes: 'crash', 'crash-after', 'dead',
        'lost-ses', or above the SDK 'error', 'unreached', 'lost'; None: nothing."""
        with self._lock:
            self.calls += 1
            if self._dead:
                return "dead"
            if self.crash_at is not None and self.calls == self.crash_at:
                self._dead = self.crashed = True
                return "crash-after" if self.crash_after else "crash"
            if service == "sesv2" and self.lose_ses_responses and self._rnd.random() < self.lose_ses_responses:
                return "lost-ses"
            if self.layer != "above" or service not in self.services or self._rnd.random() >= self.rate:
                return None
            return self._rnd.choice(self.kinds)

    def _draw_send(self, service: str) -> str | None:
        """Below the SDK, for each HTTP attempt botocore makes: 'unreached', 'lost' or None."""
        with self._lock:
            if (
                not self._active
                or self.layer != "below"
                or service not in self.services
                or self._rnd.random() >= self.rate
            ):
                return None
            return self._rnd.choice(("unreached", "lost"))

    def invocation_ended(self) -> None:
        """The dead instance is replaced: the next invocation calls AWS again."""
        with self._lock:
            self._dead = False

    def _note(self, service: str, operation: str, kind: str) -> None:
        with self._lock:
            self.injected[(service, kind)] += 1

    # --- above the SDK: a proxy around each client ----------------------------------------------

    def wrap(self, service: str, client):
        return intercept(client, lambda name, method, args, kwargs: self._above(service, name, method, args, kwargs))

    def _above(self, service, operation, method, args, kwargs):
        kind = self._draw_call(service)
        if kind in ("dead", "crash"):
            self._note(service, operation, "crash")
            raise Crash(f"instance died before {service}.{operation}")
        if kind == "crash-after":
            method(*args, **kwargs)
            self._note(service, operation, "crash after")
            raise Crash(f"instance died after {service}.{operation}")
        if kind is None:
            return method(*args, **kwargs)
        self._note(service, operation, kind)
        if kind == "error":
            raise transient_error(service, _op_name(operation), self._rnd)
        if kind == "unreached":
            raise EndpointConnectionError(endpoint_url=f"https://{service}.us-east-1.amazonaws.com")
        method(*args, **kwargs)  # "lost", "lost-ses": the service acted; its answer never came
        raise ReadTimeoutError(endpoint_url=f"https://{service}.us-east-1.amazonaws.com")

    # --- below the SDK: hooks on the client's HTTP send -----------------------------------------

    def hook(self, service: str, client) -> None:
        """Transport errors botocore sees: before the request reaches the service (moto), or after
        it acted. `register_first` runs before moto's own handler, `register_last` after it."""
        pending = threading.local()

        def before(request=None, **_):
            pending.kind = None
            kind = self._draw_send(service)
            if kind == "unreached":
                self._note(service, "", "unreached")
                raise EndpointConnectionError(endpoint_url=request.url if request else service)
            pending.kind = kind

        def after(request=None, **_):
            if getattr(pending, "kind", None) == "lost":
                pending.kind = None
                self._note(service, "", "lost")
                raise ReadTimeoutError(endpoint_url=request.url if request else service)

        # On "before-send" itself, where moto's handler is: botocore runs the handlers of a more
        # specific name ("before-send.sesv2") before those, whatever their first/last.
        client.meta.events.register_first("before-send", before)
        client.meta.events.register_last("before-send", after)

    # --- installing it --------------------------------------------------------------------------

    @contextmanager
    def installed(self):
        """`newsletter.aws.client` hands out faulty clients while inside (re-entrant)."""
        if self._active:
            yield self
            return
        from newsletter import aws

        real = aws.client

        def client(service: str):
            c = real(service)
            hooked = c.__dict__.setdefault("_fault_plans", set())
            if self.layer == "below" and id(self) not in hooked:
                hooked.add(id(self))  # clients outlive an invocation: hook each one once
                self.hook(service, c)
            return self.wrap(service, c)

        client.cache_clear = real.cache_clear
        aws.client = client
        self._active = True
        try:
            yield self
        finally:
            self._active = False
            aws.client = real


def _op_name(method: str) -> str:
    return "".join(p.capitalize() for p in method.split("_"))


# --- the whole pipeline under faults -------------------------------------------------------------

LIST_ID = "infomail"
DLQS = ("PublishDLQ", "FanoutDLQ", "SendDLQ", "FeedbackDLQ")


@dataclass
class Outcome:
    """What a run under faults left behind, and whether the promises held."""

    plan: FaultPlan
    expected: int  # active, unsuppressed readers
    mailed: int = 0  # of them, mailed once
    missing: list[str] = field(default_factory=list)  # expected, never mailed (and not uncertain)
    duplicated: list[str] = field(default_factory=list)  # mailed more than once
    strangers: list[str] = field(default_factory=list)  # mailed, but not expected
    uncertain: int = 0  # ledger: outcome unknown (never resent)
    uncertain_unmailed: int = 0  # of those, never mailed (the instance died before SES took it)
    dead_letters: dict[str, int] = field(default_factory=dict)
    status: str = ""
    counters: dict[str, int] = field(default_factory=dict)
    ledger: dict[str, int] = field(default_factory=dict)
    feedback_expected: dict[str, int] = field(default_factory=dict)
    virtual_hours: float = 0.0
    wall_s: float = 0.0

    @property
    def problems(self) -> list[str]:
        out = []
        if self.missing:
            out.append(f"{len(self.missing)} reader(s) never mailed")
        if self.duplicated:
            out.append(f"{len(self.duplicated)} reader(s) mailed more than once")
        if self.strangers:
            out.append(f"{len(self.strangers)} address(es) mailed that should not be")
        if any(self.dead_letters.values()):
            out.append("dead letters: " + ", ".join(f"{q} {n}" for q, n in self.dead_letters.items() if n))
        if self.status != "sent":
            out.append(f"issue is {self.status or 'missing'}, not sent")
        sends = {k: self.counters.get(k, 0) for k in ("sent", "skipped", "rejected", "uncertain")}
        if sends != {k: self.ledger.get(k, 0) for k in sends}:
            out.append(f"counters {sends} differ from the ledger {self.ledger}")
        if self.counters.get("queued", 0) != sum(self.ledger.values()):
            out.append(f"queued {self.counters.get('queued', 0)} but the ledger holds {sum(self.ledger.values())}")
        for name, n in self.feedback_expected.items():
            if self.counters.get(name, 0) != n:
                out.append(f"feedback counter {name} is {self.counters.get(name, 0)}, not {n}")
        return out


def readers(n: int = 300) -> tuple[list[dict], set[str]]:
    """n subscribers: a twentieth unsubscribed, a twentieth suppressed; and who must get the issue."""
    rows, suppressed = [], set()
    for i in range(n):
        address = f"reader{i:04d}@example.com"
        status = "unsubscribed" if i % 20 == 7 else "active"
        if i % 20 == 13:
            suppressed.add(address)
        rows.append({"email": address, "name": f"Reader {i}", "status": status, "language": "en"})
    expected = {r["email"] for r in rows if r["status"] == "active" and r["email"] not in suppressed}
    return rows, expected


# A staged issue under faults: its cohort, the Judge chain of its wait and its verdict meet them
# too (the feedback comes after, so the verdict passes and the whole list must be mailed once).
ROLLOUT = {"share_percent": 30, "wait_minutes": 30}


def run_pipeline(plan: FaultPlan, *, subscribers: int = 300, issue_path=None, rollout: dict | None = None) -> Outcome:
    """Publish an issue (rolled out by `rollout` if given) to `subscribers` readers with `plan`
    in the functions' AWS calls (publish, fan-out, send, then SES feedback for what was sent), as
    the template's Lambda semantics run them, and report what happened. Call outside any
    `mock_aws`."""
    import json
    import time
    from collections import Counter as Count

    from moto import mock_aws

    from newsletter import aws
    from newsletter.store import issues
    from newsletter.store.subscribers import put_subscribers
    from newsletter.store.suppressions import suppress

    from . import ses_feedback
    from .demo import create_list
    from .stack import ROOT, LocalStack, sent_messages

    started = time.monotonic()
    random.seed(plan.seed)  # the code's own jitter (requeue delays) too: a run repeats
    rows, expected = readers(subscribers)
    issue_path = issue_path or ROOT / "examples" / "issues" / "2015-07.json"
    aws.reset()
    with mock_aws():
        stack = LocalStack.create(token_secret="faults-secret")
        ddb = stack.client("dynamodb")
        create_list(stack, LIST_ID, "ICMPD Infomail")
        put_subscribers(ddb, stack.ref("SubscribersTable"), LIST_ID, rows)
        for address in sorted(
            {r["email"] for r in rows} - expected - {r["email"] for r in rows if r["status"] != "active"}
        ):
            suppress(ddb, stack.ref("SuppressionsTable"), address, "bounce", "2015-06-01T00:00:00Z")
        document = json.loads(issue_path.read_text(encoding="utf-8"))
        if rollout:
            document["rollout"] = rollout
        event = stack.upload_issue(f"issues/{issue_path.name}", json.dumps(document).encode("utf-8"))
        issue_id = document["issue_id"]
        start = stack.clock.time()

        stack.faults = plan
        stack.invoke_async("PublishFunction", event)
        stack.run("FanoutFunction", "SendFunction")
        # SES's answers for what the ledger says it sent: a delivery each, some bounces, a complaint.
        stack.faults = None
        sent = ses_feedback.sent_ledger(stack, issue_id)
        notes, fb_expected = [], Count()
        for n, item in enumerate(sorted(sent, key=lambda i: i["email"])):
            notes.append(
                ses_feedback.notification(
                    "Delivery", item["message_id"], [item["email"]], issue_id=issue_id, list_id=LIST_ID
                )
            )
            fb_expected["delivered"] += 1
            if n % 37 == 5:
                notes.append(
                    ses_feedback.notification(
                        "Bounce", item["message_id"], [item["email"]], issue_id=issue_id, list_id=LIST_ID
                    )
                )
                fb_expected["bounced_hard"] += 1
            elif n % 97 == 11:
                notes.append(
                    ses_feedback.notification(
                        "Complaint", item["message_id"], [item["email"]], issue_id=issue_id, list_id=LIST_ID
                    )
                )
                fb_expected["complained"] += 1
        ses_feedback.publish(stack, notes)
        stack.faults = plan
        stack.run("FeedbackFunction", "SendFunction")
        stack.faults = None

        copies = Count(m.destinations[0] for m in sent_messages() if m.destinations)
        ledger_items = {i["email"]: i for i in ses_feedback.ledger_items(stack, issue_id)}
        record = issues.get_issue(ddb, stack.ref("IssuesTable"), issue_id) or {}
        sqs = stack.client("sqs")
        dead = {}
        for q in DLQS:
            attrs = sqs.get_queue_attributes(QueueUrl=stack.ref(q), AttributeNames=["All"])["Attributes"]
            dead[q] = sum(
                int(attrs[k])
                for k in (
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                )
            )
        virtual_hours = (stack.clock.time() - start) / 3600
    aws.reset()

    uncertain = {a for a, i in ledger_items.items() if i.get("status") == "uncertain"}
    out = Outcome(plan=plan, expected=len(expected))
    out.mailed = sum(1 for a in expected if copies.get(a) == 1)
    out.missing = sorted(a for a in expected if not copies.get(a) and a not in uncertain)
    out.duplicated = sorted(a for a, n in copies.items() if n > 1)
    out.strangers = sorted(a for a in copies if a not in expected)
    out.uncertain = len(uncertain)
    out.uncertain_unmailed = sum(1 for a in uncertain if not copies.get(a))
    out.dead_letters = dead
    out.status = record.get("status", "")
    out.counters = {k: int(record.get(k) or 0) for k in issues.COUNTERS}
    out.ledger = dict(Count(i.get("status") for i in ledger_items.values()))
    out.feedback_expected = dict(fb_expected)
    out.virtual_hours = virtual_hours
    out.wall_s = time.monotonic() - started
    return out


def table(outcomes: list[Outcome]) -> str:
    head = (
        "layer",
        "rate",
        "seed",
        "faults",
        "expected",
        "mailed once",
        "missing",
        "twice",
        "uncertain",
        "dead letters",
        "status",
        "counters = ledger",
        "virtual h",
        "wall s",
    )
    rows = [head]
    for o in outcomes:
        p = o.plan
        counters_ok = not any(x.startswith(("counters", "queued", "feedback")) for x in o.problems)
        rows.append(
            (
                p.layer,
                f"{p.rate:.0%}",
                str(p.seed),
                str(sum(p.injected.values())),
                str(o.expected),
                str(o.mailed),
                str(len(o.missing)),
                str(len(o.duplicated)),
                f"{o.uncertain} ({o.uncertain_unmailed} unmailed)",
                str(sum(o.dead_letters.values())),
                o.status,
                "yes" if counters_ok else "NO",
                f"{o.virtual_hours:.1f}",
                f"{o.wall_s:.1f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=False)) for r in rows)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import contextlib
    import io
    import sys

    parser = argparse.ArgumentParser(description="The whole pipeline with transient faults injected: the fault table.")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.01, 0.03, 0.10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--layers", nargs="+", default=["above", "below"], choices=["above", "below"])
    parser.add_argument("--subscribers", type=int, default=300)
    parser.add_argument(
        "--crashes",
        action="store_true",
        help="instead: the instance dies at each AWS call in turn (before, then after it acted), 6 readers",
    )
    parser.add_argument("--rollout", action="store_true", help=f"a staged issue ({ROLLOUT})")
    parser.add_argument("--stride", type=int, default=1, help="with --crashes: every Nth call only")
    args = parser.parse_args(argv)
    rollout = ROLLOUT if args.rollout else None
    if args.crashes:
        return crash_sweep(stride=args.stride, rollout=rollout)
    outcomes = []
    for layer in args.layers:
        for rate in args.rates:
            for seed in args.seeds:
                with contextlib.redirect_stdout(io.StringIO()):  # the functions' logs
                    outcome = run_pipeline(
                        FaultPlan(rate=rate, seed=seed, layer=layer), subscribers=args.subscribers, rollout=rollout
                    )
                outcomes.append(outcome)
                print(f"{layer:5} {rate:4.0%} seed {seed}: " + ("; ".join(outcome.problems) or "ok"), file=sys.stderr)
    print(table(outcomes))
    broken = [o for o in outcomes if o.problems]
    print(f"\n{len(outcomes) - len(broken)} of {len(outcomes)} runs kept every promise.")
    return 1 if broken else 0


def crash_points(subscribers: int = 6, rollout: dict | None = None) -> int:
    """How many AWS calls the functions make in a run without faults (each is a place to die)."""
    import contextlib
    import io

    plan = FaultPlan()
    with contextlib.redirect_stdout(io.StringIO()):
        run_pipeline(plan, subscribers=subscribers, rollout=rollout)
    return plan.calls


def crash_sweep(subscribers: int = 6, stride: int = 1, rollout: dict | None = None) -> int:
    """The instance dies at every `stride`th call, before and after the service acted."""
    import contextlib
    import io
    import sys

    total = crash_points(subscribers, rollout)
    broken = 0
    for at in range(1, total + 1, stride):
        for after in (False, True):
            with contextlib.redirect_stdout(io.StringIO()):
                outcome = run_pipeline(
                    FaultPlan(crash_at=at, crash_after=after), subscribers=subscribers, rollout=rollout
                )
            problems = outcome.problems
            if outcome.uncertain_unmailed > 1:
                problems.append(f"{outcome.uncertain_unmailed} readers uncertain and unmailed (one crash, at most one)")
            broken += bool(problems)
            print(
                f"crash at call {at:3d} of {total} ({'after' if after else 'before'} it acted): "
                + ("; ".join(problems) or f"ok (uncertain {outcome.uncertain}, unmailed {outcome.uncertain_unmailed})"),
                file=sys.stderr if problems else sys.stdout,
            )
    print(
        f"\n{2 * len(range(1, total + 1, stride)) - broken} of {2 * len(range(1, total + 1, stride))} "
        "crash points kept every promise."
    )
    return 1 if broken else 0


if __name__ == "__main__":
    # Run as devstack.faults, not __main__: the local stack must see the same Crash class.
    from devstack.faults import main as _main

    raise SystemExit(_main())
