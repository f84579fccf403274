"""Benchmark 7: `newsletter subscribers import`, rows a second and memory.

Rate. A generated CSV of RATE_ROWS rows (1% invalid, 2% duplicates of an earlier row in the same
chunk or an earlier one, 2% already on the list as unsubscribed readers, 2% suppressed) goes
through the real `import_csv` and real boto3 DynamoDB clients, configured as the CLI's, whose
requests fakes/slow_dynamodb.SlowDynamoDB answers after 10 ms each (time.sleep in the request's
thread, so requests overlap as they do on the network). The fake runs in a process of its own and
answers DynamoDB's HTTP protocol on 127.0.0.1 (fakes/dynamodb_http.py, errors as DynamoDB sends
them): botocore serialises, signs, sends through urllib3 and parses every BatchGetItem and
TransactWriteItems and their answers, a cancelled transaction's CancellationReasons included. One
existing reader in 10,000 is hidden from the lookups, as if they had signed up just after it: the
transaction with their Put is cancelled and sent again without them. Every row must be accounted
for, every new reader written once with its consent, and the readers already on the list left
exactly as they were (checked on the fake's final state, fetched with GET /state). The file is
big enough for the import, as a deployed stack's does, to send its lookups and writes from writer
processes (cli/subscribers.py CHECK_APART_BYTES, WRITERS), each with its own client, while the
importing process reads and checks the rows. The CPU a row counts the importing process and its
writers (and checker, when there is one); the fake's process is DynamoDB's share and is reported beside
(fake_cpu_us_per_row). Goal: at least GOAL_ROWS_PER_S rows a second. Beside it, measured in the
same run: the same import in one process (writers=0, as before the writer processes), through
clients with botocore's defaults (parameter validation on, not the CLI's configuration), with the
rows checked in a second process (check_apart=True), and straight into the fake in the importing process
(botocore's work left out; a fake object cannot be shared between processes, so no writers); one
writer (a transaction at a time) on SEQUENTIAL_ROWS rows; and botocore's work alone for one
conditional PutItem and for one item of a TransactWriteItems of 100.

Why the fake moved out of the importing process: writer processes cannot share an object, and the
fake's CPU (about a tenth of the importing process's before) is DynamoDB's, not the import's.
Before, a before-send hook answered each request in the importing process, without HTTP; now
urllib3's real HTTP to 127.0.0.1 is measured too.

Memory. Fresh interpreters (`python -m bench.import_rate --memory ROWS`) import MEMORY_ROWS
generated rows each with no latency, into a fake that keeps one byte a row (so that only the
import's memory grows), after a small warm-up import. Each resets its peak RSS just before the
import (/proc/self/clear_refs) and reports the peak above what it held then. Per row, an import
may only keep an 8-byte hash in a table at most half full (cli/subscribers.py _Seen: 16-32 bytes
an address, 24 at the peak of a growth); everything else is per chunk. Goal: from 100,000 to
1,000,000 rows the peak grows by at most GOAL_BYTES_PER_ROW bytes a row. A ratio of the two peaks
is reported too, but it is no goal: it depends on the fixed part (two chunks in flight, the
workers), which is large next to 100,000 rows' hashes, so it would pass a leak or fail a bigger chunk.
The memory runs import into a fake object in the importing interpreter, so without writers: the
importing process keeps the same per-row table either way, and with writers it holds at most
WRITE_AHEAD + 1 chunks' rows (their lines and cells) while the writers work.
"""

from __future__ import annotations

import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import common

RATE_ROWS = 50_000
SEQUENTIAL_ROWS = 200
SDK_CALLS = 1_000  # conditional writes whose botocore CPU is timed alone
MEMORY_ROWS = (100_000, 1_000_000)
LATENCY_S = 0.010
GOAL_ROWS_PER_S = 5_000
GOAL_BYTES_PER_ROW = 32
LIST_ID = "bench"
LANGUAGES = ("en", "fr", "pt", "de")


# --- the file -----------------------------------------------------------------------------------


def kind(n: int) -> str:
    """What data row n (from 0) is: invalid, duplicate, existing, suppressed or new."""
    m = n % 100
    if m == 7:
        return "invalid"
    if m in (13, 61) and n >= 1000:
        return "duplicate"  # of row n - 701 (often an earlier chunk) or n - 3 (the same chunk): both new rows
    if m in (23, 71):
        return "existing"
    if m in (37, 89):
        return "suppressed"
    return "new"


def address(n: int) -> str:
    return f"r{n:07d}@example.com"


def write_csv(path: Path, rows: int) -> dict[str, int]:
    """The file, streamed to disk; the counts the import must report."""
    counts = dict.fromkeys(("imported", "existing", "duplicates", "suppressed", "invalid"), 0)
    field = {"new": "imported", "existing": "existing", "suppressed": "suppressed"}
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("email,name,language,status,organisation\r\n")
        for n in range(rows):
            k = kind(n)
            if k == "invalid":
                f.write(f"not-an-address-{n},Reader {n},en,active,Org\r\n")
                counts["invalid"] += 1
            elif k == "duplicate":
                first = n - 701 if n % 100 == 13 else n - 3
                f.write(f"R{first:07d}@EXAMPLE.COM,Reader {n},en,active,Org\r\n")
                counts["duplicates"] += 1
            else:
                f.write(f"{address(n)},Reader {n},{LANGUAGES[n % 4]},active,Organisation {n % 97}\r\n")
                counts[field[k]] += 1
    return counts


def _counts(report) -> dict[str, int]:
    return {k: getattr(report, k) for k in ("imported", "existing", "duplicates", "suppressed", "invalid")}


# --- rate -----------------------------------------------------------------------------------------


def _tables() -> tuple[str, str]:
    names = common.table_names()
    return names["SubscribersTable"], names["SuppressionsTable"]


def _slow_fake(rows: int, latency: float):
    """SlowDynamoDB with the rows' existing readers (unsubscribed) and suppressed addresses."""
    from fakes.slow_dynamodb import SlowDynamoDB
    from newsletter.store import to_item
    from newsletter.store.subscribers import partition, shard_of

    subs, sups = _tables()

    class Counted(SlowDynamoDB):
        """Counts the Puts made and the transactions cancelled; its lookups miss the _hidden readers."""

        puts = cancelled = 0

        def transact_write_items(self, **request):
            try:
                result = super().transact_write_items(**request)
            except Exception:
                with self._lock:
                    self.cancelled += 1
                raise
            with self._lock:
                self.puts += len(request["TransactItems"])
            return result

        def batch_get_item(self, **request):
            result = super().batch_get_item(**request)
            if subs in result["Responses"]:
                found = result["Responses"][subs]
                result["Responses"][subs] = [i for i in found if not _hidden(int(i["email"]["S"][1:8]))]
            return result

    fake = Counted({subs: ("pk", "email"), sups: ("email", None)}, latency=latency)
    before = [
        {"email": address(n), "name": "Before", "status": "unsubscribed", "language": "de"}
        for n in range(rows)
        if kind(n) == "existing"
    ]
    fake.seed(
        subs, [to_item({**r, "pk": partition(LIST_ID, shard_of(r["email"])), "list_id": LIST_ID}) for r in before]
    )
    fake.seed(
        sups, [to_item({"email": address(n), "reason": "bounce"}) for n in range(rows) if kind(n) == "suppressed"]
    )
    return fake, {r["email"] for r in before}


def _import(ddb, path: Path, tmp: Path, **kwargs):
    from newsletter_cli.subscribers import import_csv

    subs, sups = _tables()
    chunks = []
    t0, c0 = time.perf_counter(), _cpu()
    report = import_csv(
        ddb,
        subscribers_table=subs,
        suppressions_table=sups,
        list_id=LIST_ID,
        path=path,
        progress=lambda rows, done: chunks.append(rows),
        report_path=tmp / "problems.csv",
        **kwargs,
    )
    return report, time.perf_counter() - t0, _cpu() - c0, len(chunks)


def _cpu() -> float:
    """This process's CPU time and its ended children's: the import's row checker and writers (not the
    served fake, which is still running)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _check_slow(state: dict, report, expected: dict, before: set[str], source: str) -> list[str]:
    """What is wrong with the tables after the import ([] when nothing); `state` is the fake's
    (_Served.state, or _state of one in this process)."""
    subs, _ = _tables()
    wrong = []
    if _counts(report) != expected:
        wrong.append(f"counts {_counts(report)} != {expected}")
    items = [i for table, i in state["items"] if table == subs]
    if len(items) != expected["existing"] + expected["imported"]:
        wrong.append(f"{len(items)} subscribers stored")
    for item in items:
        email = item["email"]["S"]
        if email in before:
            if item["name"]["S"] != "Before" or item["status"]["S"] != "unsubscribed" or "consent" in item:
                wrong.append(f"{email} was changed")
        elif item.get("consent", {}).get("M", {}).get("source") != {"S": source}:
            wrong.append(f"{email} has no consent from {source}")
    if state["puts"] != expected["imported"]:
        wrong.append(f"{state['puts']} Puts made for {expected['imported']} new readers")
    return wrong[:5]


def _state(fake) -> dict:
    """What a fake in this process holds, as _Served.state gives it."""
    return {
        "items": [(k[0], i) for k, i in fake.items.items()],
        "calls": dict(fake.calls),
        "puts": fake.puts,
        "cancelled": fake.cancelled,
    }


def _hidden(n: int) -> bool:
    """An existing reader the lookup does not see, as if they signed up just after it: the
    transaction with their Put is cancelled, and sent again without them."""
    return kind(n) == "existing" and n % 10_000 == 23


def _serve(rows: int, latency: float, conn) -> None:
    """In a process of its own: the rows' SlowDynamoDB (see _slow_fake) answering DynamoDB's HTTP
    protocol on 127.0.0.1 (fakes/dynamodb_http.py) until told to stop; its address goes back on `conn`."""
    import signal

    from fakes.dynamodb_http import endpoint_url, serve

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the benchmark, which stops this
    fake, _ = _slow_fake(rows, latency)
    server = serve(fake, state=lambda: {"puts": fake.puts, "cancelled": fake.cancelled})
    conn.send(endpoint_url(server))
    conn.recv()  # "stop"
    server.shutdown()


class _Served:
    """The benchmark's fake in a process of its own, as DynamoDB is: the import's writer processes
    share it through their own clients, and its CPU is not the import's."""

    def __init__(self, rows: int, latency: float):
        import multiprocessing

        spawn = multiprocessing.get_context("spawn")
        self.conn, theirs = spawn.Pipe()
        self.process = spawn.Process(target=_serve, args=(rows, latency, theirs), daemon=True)
        self.process.start()
        theirs.close()  # so that recv() ends if it dies before answering
        self.url = self.conn.recv()

    def spec(self, *, defaults: bool = False):
        """How the import's clients reach it: the CLI's configuration (or botocore's defaults), any
        credentials, one endpoint that takes transactions at once (it is not moto)."""
        from newsletter_cli.stack import DYNAMODB_CONFIG, DYNAMODB_CONNECTIONS
        from newsletter_cli.subscribers import ClientSpec

        config = {"max_pool_connections": DYNAMODB_CONNECTIONS} if defaults else dict(DYNAMODB_CONFIG)
        credentials = ("ASIABENCH", "bench", "bench")
        return ClientSpec(
            region="us-east-1", endpoint_url=self.url, config=config, credentials=credentials, serial=False
        )

    def state(self) -> dict:
        from urllib.request import urlopen

        with urlopen(self.url + "/state", timeout=60) as answer:  # 127.0.0.1 only
            return json.loads(answer.read())

    def stop(self) -> None:
        self.conn.send("stop")
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


def _served_import(path: Path, tmp: Path, expected: dict, *, defaults: bool = False, **kwargs) -> dict:
    """One import of `path` through real boto3 clients to a fresh _Served fake: its figures."""
    served = _Served(RATE_ROWS, LATENCY_S)
    try:
        spec = served.spec(defaults=defaults)
        cpu_before = served.state()["cpu_s"]
        report, wall, cpu, chunks = _import(spec.client(), path, tmp, client_spec=spec, **kwargs)
        state = served.state()
    finally:
        served.stop()
    before = {address(n) for n in range(RATE_ROWS) if kind(n) == "existing"}
    return {
        "rows_per_s": round(RATE_ROWS / wall),
        "wall_s": round(wall, 2),
        "cpu_us_per_row": round(cpu / RATE_ROWS * 1e6),
        "fake_cpu_us_per_row": round((state["cpu_s"] - cpu_before) / RATE_ROWS * 1e6),
        "requests": state["calls"],
        "transactions_cancelled": state["cancelled"],
        "counts": _counts(report),
        "chunks_reported": chunks,
        "wrong": _check_slow(state, report, expected, before, path.name),
    }


def _rate(tmp: Path) -> dict:
    """The goal's figure: the import through real boto3 clients (the CLI's configuration, see
    _Served) answered by SlowDynamoDB after LATENCY_S, in its own process. Beside it: the same
    in one process (no writer processes), with botocore's defaults, with the rows checked in the
    second process, straight into the fake (botocore's work left out), and one transaction at a time."""
    from newsletter_cli.subscribers import CHUNK, WORKERS, WRITERS

    path = tmp / "subscribers.csv"
    expected = write_csv(path, RATE_ROWS)
    main = _served_import(path, tmp, expected)
    one_process = _served_import(path, tmp, expected, writers=0)
    default = _served_import(path, tmp, expected, defaults=True)
    apart = _served_import(path, tmp, expected, check_apart=True)

    bare, bare_before = _slow_fake(RATE_ROWS, LATENCY_S)
    bare_report, bare_wall, bare_cpu, _ = _import(bare, path, tmp)
    bare_wrong = _check_slow(_state(bare), bare_report, expected, bare_before, path.name)

    small = tmp / "first-rows.csv"
    write_csv(small, SEQUENTIAL_ROWS)
    one, _ = _slow_fake(SEQUENTIAL_ROWS, LATENCY_S)
    _, one_wall, _, _ = _import(one, small, tmp, workers=1)
    return {
        "rows": RATE_ROWS,
        **main,
        "latency_ms": LATENCY_S * 1000,
        "writers": WRITERS,
        "workers": WORKERS,
        "chunk": CHUNK,
        "expected": expected,
        "note": "real boto3 DynamoDB clients (the CLI's configuration), one a writer process, sending HTTP to "
        "fakes/slow_dynamodb.py in a process of its own on 127.0.0.1, which answers after 10 ms: BatchGetItem, "
        "TransactWriteItems made or cancelled. cpu_us_per_row: the importing process, its row checker and its "
        "writers; fake_cpu_us_per_row: the fake's process (DynamoDB's share, not the import's)",
        "one_process": {
            **{k: one_process[k] for k in ("rows_per_s", "wall_s", "cpu_us_per_row", "fake_cpu_us_per_row", "wrong")},
            "note": "the same import without writer processes (writers=0): as before them",
        },
        "fake_client": {
            "rows_per_s": round(RATE_ROWS / bare_wall),
            "wall_s": round(bare_wall, 2),
            "cpu_us_per_row": round(bare_cpu / RATE_ROWS * 1e6),
            "requests": dict(bare.calls),
            "wrong": bare_wrong,
            "note": "the same file into fakes/slow_dynamodb.py called directly, in the importing process: "
            "botocore's work and HTTP left out, no writer processes (a fake object cannot be shared)",
        },
        "botocore_defaults": {
            **{k: default[k] for k in ("rows_per_s", "wall_s", "cpu_us_per_row", "fake_cpu_us_per_row", "wrong")},
            "note": "the same import through clients with botocore's defaults (parameter validation, "
            "account-based endpoints): not the CLI's configuration",
        },
        "checked_apart": {
            **{k: apart[k] for k in ("rows_per_s", "wall_s", "cpu_us_per_row", "fake_cpu_us_per_row", "wrong")},
            "note": "the same import with the rows checked in a second process (check_apart=True)",
        },
        "one_writer_rows_per_s": round(SEQUENTIAL_ROWS / one_wall),
        "one_writer_rows": SEQUENTIAL_ROWS,
    }


# --- botocore's own work --------------------------------------------------------------------------


def _sdk() -> dict:
    """botocore's CPU (a client configured as the CLI's) for one conditional PutItem, alone, and for
    one item of a TransactWriteItems of 100 (which DynamoDB bills at twice the write units): what a
    request costs here, not there."""
    import boto3
    from botocore.config import Config

    from newsletter_cli.stack import DYNAMODB_CONFIG

    from .per_recipient import _canned

    subs, _ = _tables()
    written = _canned({}, "application/x-amz-json-1.0")
    session = boto3.session.Session(
        aws_access_key_id="ASIABENCH", aws_secret_access_key="bench", aws_session_token="bench", region_name="us-east-1"
    )
    quick = session.client("dynamodb", config=Config(**DYNAMODB_CONFIG))
    quick.meta.events.register("before-send.dynamodb", written)
    item = _sdk_item(0)
    c0 = time.process_time()
    for n in range(SDK_CALLS):
        quick.put_item(TableName=subs, Item=_sdk_item(n), ConditionExpression="attribute_not_exists(email)")
    put_us = (time.process_time() - c0) / SDK_CALLS * 1e6
    actions = [
        {
            "Put": {
                "TableName": subs,
                "Item": {**item, "email": {"S": address(n)}},
                "ConditionExpression": "attribute_not_exists(email)",
            }
        }
        for n in range(100)
    ]
    c0 = time.process_time()
    for _ in range(SDK_CALLS // 100):
        quick.transact_write_items(TransactItems=actions)
    transact_us = (time.process_time() - c0) / (SDK_CALLS // 100 * 100) * 1e6
    return {
        "botocore_cpu_us_per_put_item": round(put_us),
        "botocore_cpu_us_per_item_in_transact_100": round(transact_us),
        "note": "real boto3 DynamoDB client, HTTP canned at once",
    }


def _sdk_item(n: int) -> dict:
    """A subscriber item as the import writes it (wire format)."""
    from newsletter.store import to_item
    from newsletter.store.subscribers import partition, shard_of

    consent = {"method": "import", "source": "subscribers.csv", "at": "2015-07-01T08:00:00Z"}
    values = {"email": address(n), "name": f"Reader {n}", "language": "en", "status": "active", "consent": consent}
    return to_item({**values, "pk": partition(LIST_ID, shard_of(values["email"])), "list_id": LIST_ID})


# --- memory -----------------------------------------------------------------------------------------


def _status(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Linux: VmHWM back to the current RSS (clear_refs 5), so the peak is the import's."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _compact_fake(rows: int):
    """SlowDynamoDB, no latency, one byte a row: a subscriber is on the list if the import wrote
    it or kind() says it was there; suppressed if kind() says so. Items are built when asked for."""
    from fakes.slow_dynamodb import SlowDynamoDB

    subs, sups = _tables()

    class RowIndexed(SlowDynamoDB):
        def __init__(self):
            super().__init__({subs: ("pk", "email"), sups: ("email", None)}, latency=0)
            self.written = bytearray(rows)

        def _get(self, key: tuple) -> dict | None:
            email = key[-1][1]
            n = int(email[1:8])
            if key[0] == subs:
                return {"email": {"S": email}} if self.written[n] or kind(n) == "existing" else None
            return {"email": {"S": email}, "reason": {"S": "bounce"}} if kind(n) == "suppressed" else None

        def _put(self, key: tuple, item: dict) -> None:
            self.written[int(key[-1][1][1:8])] = 1

    return RowIndexed()


def memory_child(rows: int) -> dict:
    """In a fresh interpreter: import `rows` generated rows; the peak RSS above the start."""
    import resource

    from newsletter_cli.subscribers import import_csv

    subs, sups = _tables()
    with tempfile.TemporaryDirectory(prefix="bench-import-") as d:
        tmp = Path(d)
        path = tmp / "subscribers.csv"
        expected = write_csv(path, rows)
        warm = tmp / "warm.csv"
        write_csv(warm, 3 * 2000 + 50)  # a few chunks: the workers started, first-call caches filled
        kwargs = {"subscribers_table": subs, "suppressions_table": sups, "list_id": LIST_ID}
        import_csv(_compact_fake(3 * 2000 + 50), path=warm, report_path=tmp / "warm-problems.csv", **kwargs)
        fake = _compact_fake(rows)
        gc.collect()
        reset = _reset_peak()
        start_kb = _status("VmRSS") or 0
        hwm_kb = _status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0, c0 = time.perf_counter(), _cpu()
        report = import_csv(fake, path=path, report_path=tmp / "problems.csv", **kwargs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        peak_kb = _status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "rows": rows,
        "start_rss_kb": start_kb,
        "peak_rss_kb": peak_kb,
        "growth_kb": peak_kb - (start_kb if reset else hwm_kb),
        "peak_reset": reset,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "accounted": _counts(report) == expected and report.rows == rows,
    }


def _start_child(rows: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.import_rate", "--memory", str(rows)],
        cwd=common.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish_child(child: subprocess.Popen) -> dict:
    out, err = child.communicate(timeout=900)
    if child.returncode:
        raise RuntimeError(f"the memory child failed: {err.strip()[-500:]}")
    return json.loads(out.strip().splitlines()[-1])


# --- the benchmark -----------------------------------------------------------------------------------


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-import-") as d:
        tmp = Path(d)
        rate = _rate(tmp)  # alone, as the SDK run: they are timed
        sdk = _sdk()
        # The memory runs time nothing that matters: they run beside each other.
        children = [_start_child(rows) for rows in MEMORY_ROWS]
        try:
            memory = [_finish_child(c) for c in children]
        finally:
            for c in children:
                if c.poll() is None:
                    c.kill()
    small, big = memory
    per_row = (big["growth_kb"] - small["growth_kb"]) * 1024 / (big["rows"] - small["rows"])
    memory_met = per_row <= GOAL_BYTES_PER_ROW and all(m["accounted"] for m in memory)
    rate_met = rate["rows_per_s"] >= GOAL_ROWS_PER_S and not rate["wrong"]
    return common.result(
        "import_rate",
        rate["rows_per_s"],
        "rows/s (real boto3 client, 10 ms a request)",
        f">= {GOAL_ROWS_PER_S:,} rows/s through a real boto3 client at 10 ms a request, every row accounted "
        f"for; memory: at most "
        f"{GOAL_BYTES_PER_ROW} bytes a row more from {small['rows']:,} to {big['rows']:,} rows",
        rate_met and memory_met,
        rate=rate,
        rate_met=rate_met,
        one_writer_speedup=round(rate["fake_client"]["rows_per_s"] / rate["one_writer_rows_per_s"], 1),
        with_sdk=sdk,
        memory=memory,
        memory_met=memory_met,
        memory_bytes_per_row=round(per_row, 1),
        memory_goal_bytes_per_row=GOAL_BYTES_PER_ROW,
        memory_peak_ratio=round(big["peak_rss_kb"] / small["peak_rss_kb"], 2),
        memory_growth_ratio=round(big["growth_kb"] / max(small["growth_kb"], 1), 2),
        memory_note="peak RSS above the RSS just before the import (after a warm-up import), in a fresh "
        "interpreter, no latency, a fake that keeps one byte a row",
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory"]:
        print(json.dumps(memory_child(int(sys.argv[2]))))
    else:
        print(json.dumps(run(), indent=2))
