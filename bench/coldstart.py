"""Benchmark 4: cold starts, each function against `import boto3` in the same kind of process.

For every function of template.yaml whose handler module exists, a fresh interpreter (the same
python, the function's template environment plus what the Lambda runtime sets) times importing
the handler module and handling its sample event from events/; see bench/_child.py. AWS is
in memory: `newsletter.aws.client` hands out fakes (installed before the timer), so no client is
created inside the measured span; what creating those clients would add is measured after the
span and reported beside it. Median of RUNS runs per function (rounds interleave the functions
and the baseline, after one discarded warm-up round), against the median of `import boto3`
alone after the same preparation. The ratio is of CPU time (user+sys of the span, all threads):
on an idle machine it is the wall-clock time, and on a busy one it is far steadier; the
wall-clock medians are reported beside it.

The public function (UnsubscribeFunction) answers many kinds of request, and which one comes
first to a new container decides what its cold start imports: it is measured once per kind
(PUBLIC_REQUESTS: the unsubscribe link and one-click, and every signup page, each with its sample
event), each a row of its own, and the goal counts the worst of them.

For the functions with a goal, one more run under `python -X importtime` (of the public
function's worst request) breaks the import time down by top-level package, so a miss names its
cause.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from . import common

RUNS = 10
GOAL_RATIO = 1.5
GOAL_FUNCTIONS = ("SendFunction", "UnsubscribeFunction")
EXPECTED_HANDLERS = {  # being added: reported as absent until their modules exist
    "UnsubscribeFunction": "newsletter.handlers.public",
    "FeedbackFunction": "newsletter.handlers.feedback",
}
CHILD = Path(__file__).with_name("_child.py")
PUBLIC = "UnsubscribeFunction"
# Each request the public function serves, with its sample event: a container's first request may
# be any of them. The signup POST carries a genuine proof of work (its challenge, signed with the
# samples' secret, never expires); the confirmation link names the pending signup _seed adds.
PUBLIC_REQUESTS = {  # request: (its sample, the statuses that mean it was answered as it should be)
    "GET /": ("function-url-unsubscribe-get.json", {200}),
    "POST / (one-click)": ("function-url-unsubscribe-post.json", {200}),
    "GET /subscribe/<list>": ("function-url-subscribe-get.json", {200}),
    "POST /subscribe/<list>": ("function-url-subscribe-post.json", {200}),
    "GET /confirm": ("function-url-confirm-get.json", {200}),
    # 410 (stale) while fakes/dynamodb.py cannot apply the confirming write (a nested path in its
    # condition, list_append): the row then stops there, before the page and the welcome mail.
    "POST /confirm": ("function-url-confirm-post.json", {200, 410}),
    "GET /preferences": ("function-url-preferences-get.json", {200}),
    # Not "POST /preferences": its write takes list_append, which the fake refuses.
    "GET /altcha": ("function-url-altcha-get.json", {200}),
    "GET /altcha.js": ("function-url-altcha-js-get.json", {200}),
}
EXAMPLE_LIST = common.ROOT / "examples" / "lists" / "infomail.json"
# The signup the confirmation samples confirm (their token's ref).
PENDING_SIGNUP = {"address": "rosa.ferreira@example.org", "signup_id": "sample-signup-0001"}
SES_RATE_FOR_COLD_START = 1_000_000.0  # pacing must not wait inside a cold start measurement


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _event_for(logical: str, props: dict) -> Path | None:
    """The function's first sample event: by its trigger (an SQS event by its queue), else by name."""
    files = sorted(common.EVENTS.glob("*.json"))
    short = logical.removesuffix("Function").lower()
    for ev in (props.get("Events") or {}).values():
        kind = ev.get("Type")
        if kind == "SQS":
            queue = ev["Properties"]["Queue"]
            queue = queue.get("Fn::GetAtt", [""])[0] if isinstance(queue, dict) else str(queue)
            for f in files:
                if f.stem.startswith("sqs-"):
                    arn = json.loads(f.read_text())["Records"][0].get("eventSourceARN", "")
                    if arn.endswith(f"-{queue}"):
                        return f
        prefixes = {"S3": ("s3-",), "SNS": ("sns-",), "Api": ("apigw", "api-"), "HttpApi": ("apigw", "http", "api-")}
        for f in files:
            if f.stem.startswith(prefixes.get(kind, ("\0",))):
                return f
    if props.get("FunctionUrlConfig"):
        urls = [f for f in files if f.stem.startswith("function-url")]
        named = [f for f in urls if short in f.stem.lower()]
        if named or urls:
            return (named or urls)[0]
    named = [f for f in files if short in f.stem.lower()]
    return named[0] if named else None


def _list_document_item(list_id: str) -> dict:
    """The example list as `newsletter lists put` stores it: consent texts, topics, welcome mail."""
    from newsletter.mailing_list import MailingList
    from newsletter.store import to_item

    record = MailingList.model_validate_json(EXAMPLE_LIST.read_text(encoding="utf-8")).record()
    assert record["list_id"] == list_id, "the example list document is the example issue's list"
    return to_item(record)


def _pending_signup_item(list_id: str) -> dict:
    """A signup waiting for its confirmation (what a signup POST writes), for the confirm samples."""
    import time

    from newsletter.store import to_item
    from newsletter.store.signups import PENDING, key_values

    now = int(time.time())
    signup = {
        "id": PENDING_SIGNUP["signup_id"],
        "at": "2015-07-01T08:16:12Z",
        "mailed_at": now,
        "expires_at": now + 7 * 86400,
        "name": "Rosa Ferreira",
        "language": "en",
        "topics": ["news", "events"],
        "consent": {"method": "form", "text_version": "2015-07", "text_language": "en", "language": "en"},
    }
    return to_item(
        {
            **key_values(list_id, PENDING_SIGNUP["address"]),
            "list_id": list_id,
            "status": PENDING,
            "name": "Rosa Ferreira",
            "language": "en",
            "topics": ["news", "events"],
            "signup": signup,
            "expires_at": now + 7 * 86400,
        }
    )


def _seed(tmp: Path, *, with_issue: bool, signup: bool = False) -> dict:
    """What the fakes hold: the template's tables, the example list, issue and subscribers; for
    the public function, the list's document (signup takes one) and a pending signup."""
    from fakes.dynamodb import FakeDynamoDB
    from newsletter.store import to_item

    names = common.table_names()
    tables = FakeDynamoDB.from_template(common.template(), names).table_specs()
    prepared = common.prepared_issue()
    issue_id, list_id = prepared["issue_id"], prepared["list_id"]
    items = {
        names["ListsTable"]: [to_item({"list_id": list_id, "name": prepared["list_name"]})],
        names["SubscribersTable"]: common.subscriber_items(list_id, common.subscribers_from_csv()),
    }
    if signup:
        items[names["ListsTable"]] = [_list_document_item(list_id)]
        items[names["SubscribersTable"]].append(_pending_signup_item(list_id))
    if with_issue:
        items[names["IssuesTable"]] = [
            to_item({"issue_id": issue_id, "sk": "issue", "list_id": list_id, "status": "sending"})
        ]
    from newsletter.store.bucket import issue_key, prepared_key

    bucket = common.physical_names()["NewsletterBucket"]["Ref"] if "NewsletterBucket" in common.physical_names() else ""
    message = tmp / "message.json"
    message.write_bytes(common.json_bytes(prepared))
    return {
        "tables": tables,
        "items": items,
        "s3": {
            f"{bucket}/{issue_key(issue_id)}": str(common.EXAMPLE_ISSUE),
            f"{bucket}/{prepared_key(issue_id)}": str(message),
        },
        "ses_rate": SES_RATE_FOR_COLD_START,
        "ssm_default": common.SECRET,
    }


def child_env(env: dict[str, str]) -> dict[str, str]:
    """A Lambda-like process environment: the function's variables, the packages on a plain path."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ", "TMPDIR", "SYSTEMROOT")}
    return {
        **keep,
        **env,
        "PYTHONPATH": os.pathsep.join([str(common.ROOT / "functions"), str(common.ROOT)]),
        "PYTHONDONTWRITEBYTECODE": "",
        "PYTHONHASHSEED": "0",
    }


def run_child(cfg: dict, env: dict[str, str], tmp: Path, *, importtime: bool = False, timeout: float = 120) -> dict:
    path = tmp / f"cfg-{os.getpid()}-{id(cfg)}.json"
    cfg = {**cfg, "out": str(path.with_suffix(".out.json"))}
    path.write_text(json.dumps(cfg))
    args = [sys.executable] + (["-X", "importtime"] if importtime else []) + [str(CHILD), str(path)]
    proc = subprocess.run(
        args,
        env=child_env(env),
        cwd=str(common.ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cold-start child failed ({cfg.get('handler', 'baseline')}):\n{proc.stderr[-3000:]}")
    out = json.loads(Path(cfg["out"]).read_text())
    if importtime:
        out["importtime"] = proc.stderr
    return out


def targets(tmp: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """Each function's child config and environment; and the functions left out, with why."""
    configs, skipped = {}, {}
    fns = common.functions()
    for logical, props in fns.items():
        module = props["Handler"].rpartition(".")[0]
        if not _module_exists(module):
            skipped[logical] = f"handler module {module} does not exist yet"
            continue
        event = _event_for(logical, props)
        if event is None:
            skipped[logical] = "no sample event in events/"
            continue
        seed_path = tmp / f"seed-{logical}.json"
        seed_path.write_text(json.dumps(_seed(tmp, with_issue=logical != "PublishFunction", signup=logical == PUBLIC)))
        configs[logical] = {
            "mode": "function",
            "handler": props["Handler"],
            "event": str(event),
            "function_name": f"{common.STACK}-{logical}",
            "timeout": int(props.get("Timeout", 3)),
            "memory": int(props.get("MemorySize", 128)),
            "seed_file": str(seed_path),
            "_env": common.lambda_environment(logical),
            "_event_name": event.name,
        }
    for logical, module in EXPECTED_HANDLERS.items():
        if logical not in fns and logical not in skipped:
            skipped[logical] = "not in template.yaml yet" + (
                "" if _module_exists(module) else f"; {module} does not exist yet"
            )
    return configs, skipped


def _load_seed(cfg: dict) -> dict:
    out = {k: v for k, v in cfg.items() if not k.startswith("_") and k != "seed_file"}
    out["seed"] = json.loads(Path(cfg["seed_file"]).read_text())
    return out


def answered(summary: str | None) -> bool:
    """Whether the child's summary of the response says the event was handled (no record
    reported failed, no server error)."""
    summary = summary or ""
    if summary.startswith("batchItemFailures="):
        return summary == "batchItemFailures=0"
    if summary.startswith("statusCode="):
        return summary.removeprefix("statusCode=").isdigit() and int(summary.removeprefix("statusCode=")) < 500
    return True


def importtime_breakdown(stderr: str) -> dict:
    """Self time (ms) by top-level package of what was imported inside the measured span."""
    lines = stderr.splitlines()
    try:
        start = max(i for i, line in enumerate(lines) if "BENCH-MARK start" in line)
    except ValueError:
        start = 0
    by_package: dict[str, float] = defaultdict(float)
    cumulative: list[tuple[float, str]] = []
    for line in lines[start + 1 :]:
        # "import time: <self us> | <cumulative us> | <indent><module>"
        if not line.startswith("import time:"):
            continue
        parts = line.split(":", 1)[1].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        self_us, cum_us, raw_name = int(parts[0]), int(parts[1]), parts[2]
        name = raw_name.strip()
        by_package[name.split(".")[0]] += self_us / 1000
        cumulative.append((cum_us / 1000, name))
    total = sum(by_package.values())
    top = sorted(by_package.items(), key=lambda kv: -kv[1])[:10]
    boto_family = {
        "boto3",
        "botocore",
        "s3transfer",
        "urllib3",
        "jmespath",
        "dateutil",
        "six",
        "certifi",
        "charset_normalizer",
        "idna",
    }
    outside = sorted(((k, v) for k, v in by_package.items() if k not in boto_family), key=lambda kv: -kv[1])[:8]
    heavy = sorted(
        (c for c in cumulative if c[1].startswith(("aws_lambda_powertools", "newsletter")) and c[0] >= 5),
        key=lambda c: -c[0],
    )[:10]
    return {
        "total_ms_under_importtime": round(total, 1),
        "self_ms_by_package": {k: round(v, 1) for k, v in top},
        "self_ms_outside_boto3_family": {k: round(v, 1) for k, v in outside},
        "heaviest_cumulative_ms": {name: round(ms, 1) for ms, name in heavy},
    }


def measured(configs: dict[str, dict]) -> dict[str, tuple[str, dict]]:
    """What is measured, by row: each function with its sample event; the public function once
    per kind of request it serves (PUBLIC_REQUESTS), each row named by its request."""
    rows = {}
    for logical, cfg in configs.items():
        if logical != PUBLIC:
            rows[logical] = (logical, cfg)
            continue
        for request, (event, statuses) in PUBLIC_REQUESTS.items():
            rows[f"{logical} {request}"] = (
                logical,
                {**cfg, "event": str(common.EVENTS / event), "_event_name": event, "_statuses": statuses},
            )
    return rows


def run(runs: int = RUNS) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as d:
        tmp = Path(d)
        configs, skipped = targets(tmp)
        seeds = {k: _load_seed(c) for k, c in configs.items()}
        rows = measured(configs)
        any_env = next(iter(configs.values()))["_env"] if configs else common.lambda_environment("SendFunction")
        base_cfg = {
            "mode": "baseline",
            "seed": next(iter(seeds.values()))["seed"]
            if seeds
            else {"tables": {}, "items": {}, "s3": {}, "ses_rate": 1},
        }

        def child(row: str, after_span, *, importtime: bool = False) -> dict:
            logical, cfg = rows[row]
            run_cfg = {**seeds[logical], "event": cfg["event"], "after_span": after_span}
            return run_child(run_cfg, cfg["_env"], tmp, importtime=importtime)

        names = list(rows)
        samples: dict[str, list[dict]] = defaultdict(list)
        order = ["baseline"] + names
        for round_no in range(runs + 1):
            rotated = order[round_no % len(order) :] + order[: round_no % len(order)]
            for name in rotated:
                if name in skipped:
                    continue
                if name == "baseline":
                    out = run_child(base_cfg, any_env, tmp)
                else:
                    try:
                        out = child(name, "per_session")
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:  # report it, measure the others
                        skipped[name] = f"its first event failed with the benchmark's fakes: {str(exc)[-400:]}"
                        continue
                if round_no:  # round 0 warms the page cache and writes bytecode
                    samples[name].append(out)
        names = [n for n in names if n not in skipped]
        base = common.median([s["cpu_s"] for s in samples["baseline"]])
        base_wall = common.median([s["total_s"] for s in samples["baseline"]])
        base_min = min(s["cpu_s"] for s in samples["baseline"])
        per_function = {}
        for name in names:
            s = samples[name]
            logical, cfg = rows[name]
            cpu = common.median([x["cpu_s"] for x in s])
            wall = common.median([x["total_s"] for x in s])
            clients = common.median([x.get("client_creation_s", 0.0) for x in s])
            per_function[name] = {
                "function": logical,
                "cpu_median_ms": common.ms(cpu),
                "ratio_to_boto3": round(cpu / base, 2),
                "ratio_of_cpu_minimums": round(min(x["cpu_s"] for x in s) / base_min, 2),  # robust to load
                "median_ms": common.ms(wall),
                "wall_ratio_to_boto3": round(wall / base_wall, 2),
                "import_ms": common.ms(common.median([x["import_s"] for x in s])),
                "first_event_ms": common.ms(common.median([x["first_call_s"] for x in s])),
                "wall_range_ms": [common.ms(min(x["total_s"] for x in s)), common.ms(max(x["total_s"] for x in s))],
                "event": cfg["_event_name"],
                "response": s[-1].get("response"),
                # A public sample answered otherwise than it should be timed another path.
                "answered": answered(s[-1].get("response"))
                and ("_statuses" not in cfg or s[-1].get("response") in {f"statusCode={c}" for c in cfg["_statuses"]}),
                "clients": sorted(set(s[-1].get("client_services", []))),
                "plus_client_creation_ms": common.ms(clients),
                "with_clients_wall_ratio_to_boto3": round((wall + clients) / base_wall, 2),
                "modules_loaded": s[-1].get("modules"),
                "goal": logical in GOAL_FUNCTIONS,
            }
        goal_rows = [n for n in names if per_function[n]["goal"]]
        # Why: the import breakdown of each goal function's worst row, and what one shared boto3
        # Session would save.
        diagnosis = {}
        for logical in GOAL_FUNCTIONS:
            mine = [n for n in goal_rows if per_function[n]["function"] == logical]
            if not mine:
                continue
            name = max(mine, key=lambda n: per_function[n]["ratio_to_boto3"])
            diagnosis[name] = importtime_breakdown(child(name, None, importtime=True)["importtime"])
            shared = [child(name, "shared_session")["client_creation_s"] for _ in range(5)]
            per_function[name]["plus_client_creation_shared_session_ms"] = common.ms(common.median(shared))
        goal_fns = [f for f in GOAL_FUNCTIONS if any(per_function[n]["function"] == f for n in goal_rows)]
        worst_row = max(goal_rows, key=lambda n: per_function[n]["ratio_to_boto3"], default=None)
        worst = per_function[worst_row]["ratio_to_boto3"] if worst_row else float("nan")
        # A cold start that ends in an error measures the error path: it does not count as met.
        met = bool(goal_rows) and all(
            per_function[n]["ratio_to_boto3"] <= GOAL_RATIO and per_function[n]["answered"] for n in goal_rows
        )
        # So does a goal row whose event failed with the fakes (it is in not_measured).
        met = met and not any(rows[n][0] in GOAL_FUNCTIONS for n in skipped if n in rows)
        public_rows = [n for n in goal_rows if per_function[n]["function"] == PUBLIC]
        return common.result(
            "cold_start",
            worst,
            "x import boto3 (worst of " + ", ".join(n.removesuffix("Function") for n in goal_fns) + ")",
            f"Send and Unsubscribe functions <= {GOAL_RATIO}x `import boto3` (CPU time, median of "
            f"{runs} fresh interpreters; the public function with each kind of request it serves)",
            met,
            worst=worst_row,
            public_requests={n.removeprefix(PUBLIC + " "): per_function[n]["ratio_to_boto3"] for n in public_rows},
            boto3_import_cpu_median_ms=common.ms(base),
            boto3_import_median_ms=common.ms(base_wall),
            boto3_import_wall_range_ms=[
                common.ms(min(x["total_s"] for x in samples["baseline"])),
                common.ms(max(x["total_s"] for x in samples["baseline"])),
            ],
            functions=per_function,
            not_measured=skipped,
            diagnosis=diagnosis,
            runs=runs,
            method="fresh `python bench/_child.py` per run; AWS clients replaced by in-memory fakes before the timer; "
            "the figure compares CPU time (user+sys, all threads) of the span, which other processes on the "
            "machine disturb far less than wall-clock time (reported beside it); client creation measured after "
            "the span (current aws.py: one boto3 Session per client); the public function once per kind of "
            "request (its first request decides what a new container imports)",
        )
