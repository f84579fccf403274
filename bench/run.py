"""`make bench`: run every benchmark on this machine, write bench/results.json and
bench/results.md, and print the table.

    python -m bench.run                  # all of them (a few minutes)
    python -m bench.run --only cold_start memory   # replaces those entries of results.json

Figures that depend on the machine's speed are ratios against a baseline measured in the same
run, with the absolute numbers beside them. Exit status 0 when every benchmark ran (met or
not), 1 when one of them crashed.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import traceback
from datetime import UTC, datetime

from . import common

# (name, title) in the order of the issue; they run in RUN_ORDER (the noise-sensitive cold starts
# early, before the big fan-out allocates a million subscribers; the cost model last).
BENCHMARKS = [
    ("per_recipient", "1. Per-recipient cost"),
    ("ses_rate", "2. SES rate"),
    ("fanout_scale", "3. Fan-out at scale"),
    ("cold_start", "4. Cold start"),
    ("memory", "5. Memory"),
    ("cost", "6. Cost per million emails"),
    ("import_rate", "7. Subscriber import"),
]
RUN_ORDER = ["per_recipient", "cold_start", "memory", "import_rate", "fanout_scale", "ses_rate", "cost"]
RESULTS_JSON = common.BENCH / "results.json"
RESULTS_MD = common.BENCH / "results.md"


def _runner(name: str, results: dict):
    if name == "per_recipient":
        from .per_recipient import run
    elif name == "ses_rate":
        from .ses_rate import run
    elif name == "fanout_scale":
        from .fanout_scale import run
    elif name == "cold_start":
        from .coldstart import run
    elif name == "memory":
        from .memory import run
    elif name == "import_rate":
        from .import_rate import run
    else:
        from .cost import run as cost_run

        return lambda: cost_run(results)
    return run


def absolute(entry: dict) -> str:
    """The absolute numbers behind a figure, in one line."""
    d, name = entry["details"], entry["name"]
    if "error" in d and len(d) <= 2:
        return d["error"].splitlines()[0][:100]
    if name == "per_recipient":
        return (
            f"fast {d['fast_msgs_per_s']:,} msgs/s ({d['fast_cpu_us_per_msg']} us CPU), naive "
            f"{d['naive_msgs_per_s']} msgs/s; "
            f"with boto3's own work {d['with_sdk_cpu_us_per_recipient']:,} us/recipient; "
            f"three languages {d['three_languages_msgs_per_s']:,} msgs/s ({d['three_languages_to_one']:.0%} of one)"
        )
    if name == "ses_rate":
        return (
            f"{d['achieved_per_s']}/s of {d['allowed_per_s']:.0f}/s, {d['instances']} instances x "
            f"{d['workers_per_instance']} workers; "
            f"throttles {d['throttles']} ({d['throttle_share']:.2%}), requeued "
            f"{d['requeued_batches']}, lost {d['lost']}, "
            f"duplicated {d['duplicated']}, {d['recipients']:,} in {d['wall_s']} s"
        )
    if name == "fanout_scale":
        b = d["biggest_segment"]
        return (
            f"{d['queued']:,} queued of {d['subscribers']:,}; CPU {d['cpu_s']} s ({d['cpu_ms_per_1000']} ms/1,000); "
            f"DynamoDB {d['ddb_requests_per_1000']} req/1,000; biggest segment {b['cpu_s']} s CPU here, "
            f"~{d['biggest_segment_lambda_cpu_s']} s at {d['lambda_cpu_share']} (limit 900 s)"
        )
    if name == "cold_start":
        fns = ", ".join(
            f"{k.removesuffix('Function')} {v['cpu_median_ms']:.0f} ms ({v['ratio_to_boto3']}x)"
            for k, v in d["functions"].items()
        )
        return f"CPU: import boto3 {d['boto3_import_cpu_median_ms']:.0f} ms; {fns}"
    if name == "memory":
        return (
            f"peak {entry['figure']} MB vs MemorySize {d['template_memory_size_mb']} MB "
            f"(python+boto3 {d['python_plus_boto3_mb']} MB), {d['batch']}"
        )
    if name == "import_rate":
        r, small, big = d["rate"], *d["memory"]
        return (
            f"{r['rows']:,} rows in {r['wall_s']} s through real boto3 clients ({r['cpu_us_per_row']} us CPU a row, "
            f"{r['writers']} writer processes' included; the fake's process "
            f"{r['fake_cpu_us_per_row']} us); in one process {r['one_process']['rows_per_s']:,} rows/s; "
            f"rows checked in a second process "
            f"{r['checked_apart']['rows_per_s']:,} rows/s; botocore's defaults "
            f"{r['botocore_defaults']['rows_per_s']:,} rows/s; straight into the fake "
            f"{r['fake_client']['rows_per_s']:,} rows/s; memory: peak +{small['growth_kb'] / 1024:.1f} MB for "
            f"{small['rows']:,} rows, "
            f"+{big['growth_kb'] / 1024:.1f} MB for {big['rows']:,} ({d['memory_bytes_per_row']} bytes a row more)"
        )
    if name == "cost":
        return (
            "; ".join(f"{r}: ours ${s['ours_usd']:.2f} vs SES ${s['ses_usd']:.2f}" for r, s in d["summary"].items())
            + f" per {d['emails']:,} emails"
        )
    return ""


def table(entries: list[dict]) -> list[str]:
    titles = dict(BENCHMARKS)
    rows = [("benchmark", "figure", "goal", "met", "absolute")]
    for e in entries:
        figure = "n/a" if e["figure"] is None else f"{e['figure']} {e['unit']}"
        rows.append((titles.get(e["name"], e["name"]), figure, e["goal"], "yes" if e["met"] else "NO", absolute(e)))
    return rows


def markdown(entries: list[dict], info: dict) -> str:
    from .cost import table as cost_table

    out = [
        "# Benchmark results",
        "",
        f"Run {info['finished']} on {info['machine']['cpus']} CPUs ({info['machine']['processor']}), "
        f"Python {info['machine']['python']}, load average at start {info['machine']['load_average_at_start']}; "
        f"{info['duration_s']:.0f} s in all. Other processes may have been running."
        + (
            f" This run repeated only {', '.join(info['partial'])}; the other rows are from the run before."
            if info.get("partial")
            else ""
        ),
        "",
        "| Benchmark | Figure | Goal | Met | Absolute numbers |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in table(entries)[1:]:
        out.append("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |")
    cold = next((e for e in entries if e["name"] == "cold_start" and "functions" in e["details"]), None)
    if cold:
        out += [
            "",
            "## Cold starts",
            "",
            "| Function | CPU (median) | x import boto3 | x (fastest runs) | Wall (median) | x (wall) | Import (wall) "
            "| First event (wall) | + creating its clients (now) | Event |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for name, f in cold["details"]["functions"].items():
            out.append(
                f"| {name} | {f['cpu_median_ms']:.0f} ms | {f['ratio_to_boto3']} | {f['ratio_of_cpu_minimums']} | "
                f"{f['median_ms']:.0f} ms | "
                f"{f['wall_ratio_to_boto3']} | {f['import_ms']:.0f} ms | {f['first_event_ms']:.0f} ms | "
                f"{f['plus_client_creation_ms']:.0f} ms | {f['event']} |"
            )
        for name, why in cold["details"].get("not_measured", {}).items():
            out.append(f"| {name} | not measured: {why} | | | | | | | | |")
        out.append(
            f"\n`import boto3` alone: {cold['details']['boto3_import_cpu_median_ms']:.0f} ms CPU, "
            f"{cold['details']['boto3_import_median_ms']:.0f} ms wall (medians). "
            '"+ creating its clients": what creating the boto3 clients its first event asked for adds '
            "(outside the measured span; one boto3 Session per client, as newsletter/aws.py does now)."
        )
        for name, diag in cold["details"].get("diagnosis", {}).items():
            f = cold["details"]["functions"].get(name, {})
            outside = ", ".join(f"{k} {v:.0f}" for k, v in diag["self_ms_outside_boto3_family"].items())
            heavy = ", ".join(f"{k} {v:.0f}" for k, v in list(diag["heaviest_cumulative_ms"].items())[:4])
            out.append(
                f"\n{name} under `-X importtime` (ms, inflated by the tracing): outside the boto3 "
                "family "
                f"{outside}; heaviest: {heavy}. Its clients from one shared Session: "
                ""
                f"{f.get('plus_client_creation_shared_session_ms', 0):.0f} ms instead of "
                f"{f.get('plus_client_creation_ms', 0):.0f} ms."
            )
    imp = next((e for e in entries if e["name"] == "import_rate" and "memory" in e["details"]), None)
    if imp:
        d = imp["details"]
        r, sdk = d["rate"], d["with_sdk"]
        out += [
            "",
            "## Subscriber import",
            "",
            f"{r['rows']:,} rows at {r['latency_ms']:.0f} ms a request through real boto3 clients configured as "
            f"the CLI's, to a fake DynamoDB in its own process: {r['rows_per_s']:,} rows/s ({r['cpu_us_per_row']} us "
            f"CPU a row, the writers' included; the fake's own {r['fake_cpu_us_per_row']} us; "
            f"{r['writers']} writer processes of {r['workers']} threads, chunks of {r['chunk']:,}). In one process "
            f"(no writer processes): {r['one_process']['rows_per_s']:,} rows/s. Rows checked in a second process: "
            f"{r['checked_apart']['rows_per_s']:,} rows/s. With botocore's defaults (parameter validation): "
            f"{r['botocore_defaults']['rows_per_s']:,} rows/s. Straight into the fake (botocore left out): "
            f"{r['fake_client']['rows_per_s']:,} rows/s. One writer: {r['one_writer_rows_per_s']} rows/s. botocore's "
            f"CPU for a conditional PutItem {sdk.get('botocore_cpu_us_per_put_item', '?')} us, for one item of a "
            f"TransactWriteItems of 100 {sdk.get('botocore_cpu_us_per_item_in_transact_100', '?')} us.",
            "",
            "| Rows | RSS before | Peak RSS | Peak above before | Import (wall) |",
            "| ---: | ---: | ---: | ---: | ---: |",
            *(
                f"| {m['rows']:,} | {m['start_rss_kb'] / 1024:.1f} MB | {m['peak_rss_kb'] / 1024:.1f} MB | "
                f"{m['growth_kb'] / 1024:.1f} MB | {m['wall_s']} s |"
                for m in d["memory"]
            ),
            "",
            f"{d['memory_bytes_per_row']} bytes a row more from the first to the second (goal: at most "
            f"{d['memory_goal_bytes_per_row']}); peak RSS ratio {d['memory_peak_ratio']}, ratio of the growths "
            f"{d['memory_growth_ratio']}.",
        ]
    cost = next((e for e in entries if e["name"] == "cost" and "breakdown" in e["details"]), None)
    if cost:
        out += ["", "## Cost per million emails", "", "```", *cost_table(cost), "```"]
    out += ["", "Full figures: `bench/results.json`.", ""]
    return "\n".join(out)


def _finite(value):
    """JSON has no NaN or infinity: a figure that could not be computed is null."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks.")
    parser.add_argument("--only", nargs="+", choices=[n for n, _ in BENCHMARKS], help="run only these")
    args = parser.parse_args(argv)
    wanted = set(args.only or [n for n, _ in BENCHMARKS])
    if "cost" in wanted:
        wanted |= {"per_recipient", "ses_rate", "fanout_scale"}  # the cost model's inputs

    info = {"machine": common.machine(), "started": datetime.now(UTC).isoformat(timespec="seconds")}
    common.log(f"machine: {info['machine']}")
    t0 = time.monotonic()
    results: dict[str, dict] = {}
    crashed = False
    for name in RUN_ORDER:
        if name not in wanted:
            continue
        common.log(f"{name} ...")
        t = time.monotonic()
        try:
            results[name] = _runner(name, results)()
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            crashed = True
            traceback.print_exc(file=sys.stderr)
            results[name] = common.result(name, None, "", "", False, error=f"{type(exc).__name__}: {exc}")
        results[name]["details"]["benchmark_s"] = round(time.monotonic() - t, 1)
        common.log(
            f"{name}: {results[name]['figure']} {results[name]['unit']} "
            f"({'met' if results[name]['met'] else 'NOT met'}, {time.monotonic() - t:.0f} s)"
        )
        gc.collect()
    info["duration_s"] = time.monotonic() - t0
    info["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    entries = [_finite(results[n]) for n, _ in BENCHMARKS if n in results]
    if args.only and RESULTS_JSON.exists():
        # A partial run replaces its own entries and keeps the others from the last run.
        try:
            kept = {
                e["name"]: e for e in json.loads(RESULTS_JSON.read_text(encoding="utf-8")) if e["name"] not in results
            }
        except (ValueError, KeyError, TypeError):
            kept = {}
        fresh = {e["name"]: e for e in entries}
        entries = [fresh.get(n) or kept[n] for n, _ in BENCHMARKS if n in fresh or n in kept]
        info["partial"] = sorted(results)

    RESULTS_JSON.write_text(json.dumps(entries, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    RESULTS_MD.write_text(markdown(entries, info), encoding="utf-8")

    rows = table(entries)
    width = max(len(r[0]) for r in rows)
    fig = max(len(r[1]) for r in rows)
    print(
        f"Benchmarks on {info['machine']['cpus']} CPUs, Python {info['machine']['python']}, "
        f"{info['duration_s']:.0f} s (load average at start {info['machine']['load_average_at_start']})"
    )
    print()
    print(f"{'benchmark':{width}}  {'figure':{fig}}  met  goal")
    for bench_name, figure, goal, met, numbers in rows[1:]:
        print(f"{bench_name:{width}}  {figure:{fig}}  {met:3}  {goal}")
        print(f"{'':{width}}  {numbers}")
    if "cost" in results and "breakdown" in results["cost"]["details"]:
        from .cost import table as cost_table

        print()
        print("\n".join(cost_table(results["cost"])))
    met = sum(1 for e in entries if e["met"])
    print(
        f"\nGoals met: {met} of {len(entries)}. Written: {RESULTS_JSON.relative_to(common.ROOT)}, "
        f"{RESULTS_MD.relative_to(common.ROOT)}"
    )
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
