"""Subscriber import, export and counts for the `newsletter` tool.

Plain functions over a boto3 DynamoDB client; the app (cli/app.py) does all printing. Nothing here
prints or logs an address: addresses appear only in the problems report the operator asked for.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import zlib
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from newsletter import clock, headers
from newsletter.privacy import normalise_address
from newsletter.signup import plain_address
from newsletter.store import subscribers
from newsletter.store.subscribers import ACTIVE, STATUSES, TRANSACT_BYTES, TRANSACT_ITEMS

CORE = ("email", "name", "language", "status")
MAX_NAME = 200
EMAIL_HEADERS = ("email", "e-mail")
DEFAULT_LANGUAGE = "en"  # as devstack/demo.py's loader
KEPT_PROBLEMS = 1000  # kept in memory; the report file has all of them
AUTO_REPORT_AFTER = 20  # more problems than this and no report_path: write <file>.problems.csv
MAX_HEADER = 64 * 1024
CHECK_BLOCK = 64 * 1024  # bytes read at a time by the encoding check: its decoded text is thrown away
CHUNK = 2000  # rows looked up, then written, together
LOOKUP = 50  # addresses a BatchGetItem: 50 subscriber keys and 50 suppression keys, its limit of 100
# Threads for the requests in flight: a chunk's lookups (CHUNK / LOOKUP BatchGetItem calls), then its
# transactions (up to 100 new subscribers each, about 20 a chunk). botocore's CPU, not the number of
# requests in flight, bounds the rate: 16 to 128 made no difference beyond the machine's noise
# (bench/import_rate.py). The deployed stack's client has as many connections (stack.DYNAMODB_CONNECTIONS).
WORKERS = 128
# Smaller files are checked in this process: starting the checker (a fresh interpreter importing
# email-validator) costs about what checking 10,000 rows does.
CHECK_APART_BYTES = 1024 * 1024
CHECK_AHEAD = 2  # chunks checked before the importer needs them
WRITE_AHEAD = 2  # chunks handed to the writer processes before the first of them is counted


def _default_writers() -> int:
    """Writer processes for a big file: one more than the cores (each waits for DynamoDB twice a
    chunk, and another keeps the core busy meanwhile: on 2 cores 3 made 5,400-6,000 rows/s in
    bench/import_rate.py, 2 made 5,000-5,300), at most 8; none on one core, where they would only
    add the hand-over."""
    cores = os.cpu_count() or 1
    return 0 if cores < 2 else min(cores + 1, 8)


WRITERS = _default_writers()


class BadImport(ValueError):
    """The file itself is unusable: empty, not UTF-8 text, not CSV, or without an email column."""


@dataclass
class Problem:
    line: int  # physical line where the row starts; the header is line 1
    value: str  # the email cell as found
    reason: str


@dataclass
class ImportReport:
    """What an import did with each row. `existing` counts the addresses already on the list and
    those that someone else added between the lookup and the write (the conditional write found
    them there): all left exactly as they were, whatever their status. `imported` counts only
    writes DynamoDB made."""

    rows: int = 0  # data rows read; rows == imported + existing + duplicates + suppressed + invalid
    imported: int = 0
    existing: int = 0  # already on the list, or added meanwhile: left exactly as they were
    duplicates: int = 0  # the same address (any case) earlier in the file
    suppressed: int = 0  # on the suppression list: not imported
    invalid: int = 0
    problems: list[Problem] = field(default_factory=list)  # the first KEPT_PROBLEMS
    problem_count: int = 0  # invalid + duplicates + suppressed
    report_path: Path | None = None  # every problem, when written


@dataclass(frozen=True)
class ClientSpec:
    """How a writer process makes a DynamoDB client of its own (a boto3 client cannot be pickled):
    cli/stack.py's Target.client_spec() gives one for a deployed stack. Without `credentials`, the
    child finds them as the parent did (the profile, the environment, an instance role).
    `serial`: the endpoint takes one transaction at a time (moto); None guesses it as _moto does."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    config: dict = field(default_factory=dict)  # botocore Config's arguments (stack.DYNAMODB_CONFIG)
    credentials: tuple[str, str, str | None] | None = None  # key id, secret, token: a local fake's
    serial: bool | None = None

    def client(self):
        import boto3
        from botocore.config import Config

        key, secret, token = self.credentials or (None, None, None)
        session = boto3.session.Session(
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            aws_session_token=token,
            region_name=self.region,
            profile_name=self.profile,
        )
        return session.client("dynamodb", endpoint_url=self.endpoint_url, config=Config(**self.config))


def import_csv(
    ddb,
    *,
    subscribers_table: str,
    suppressions_table: str,
    list_id: str,
    path: Path,
    progress: Callable[[int, int], None] | None = None,
    report_path: Path | None = None,
    chunk: int = CHUNK,
    workers: int = WORKERS,
    forgotten_id: Callable[[str], str] | None = None,
    check_apart: bool | None = None,
    client_spec: ClientSpec | None = None,
    writers: int | None = None,
) -> ImportReport:
    """Add the file's new, valid, unsuppressed addresses to the list; never change an existing subscriber.

    Streams the file in chunks of `chunk` rows. A chunk is looked up (BatchGetItem, LOOKUP addresses
    a call, the calls in parallel), then its new subscribers are written in TransactWriteItems of up
    to 100 Puts, each on condition that the address is not on the list (store.subscribers.
    put_new_subscribers: 2 write units an item), `workers` transactions at a time (at most the
    client's connection pool; one at a time against moto, see _moto), while the next chunk is read.
    A chunk's lookup waits for the writes before it: a later row must see an earlier row's write.
    Whoever signed up, unsubscribed or changed between the lookup and the write fails the condition,
    stays exactly as they are and counts as existing (the transaction goes again without them).
    Each subscriber written records its consent: {"method": "import", "source": the file's name,
    "at": when}. `progress(rows_read, bytes_read)` follows each chunk; compare bytes_read with the
    file's size. Running the same import again changes nothing. With `forgotten_id` (picklable, such
    as a functools.partial), an address the operator erased (`subscribers forget`) is refused like a
    suppressed one.

    Rows are checked (email-validator, the header rule) in a second process while this one talks
    to DynamoDB, up to CHECK_AHEAD chunks ahead, when the file has at least CHECK_APART_BYTES and
    there are no writer processes (or `check_apart`): both are CPU work under one GIL otherwise,
    and botocore's alone takes a core. With writers, this process is mostly idle (~16 µs a row), and
    checking here costs less CPU than sending each row to a checker and back.

    Writer processes. botocore's CPU (serialising, endpoint rules: ~130 µs a row) bounds one
    process to ~4,400 rows a second, so with a `client_spec` (a client the children can make) and
    `writers` processes (by default WRITERS for a file of CHECK_APART_BYTES, none for a smaller one
    or an endpoint that takes one transaction at a time), the lookups and writes of each chunk go
    to them, each with a client and a thread pool of its own. A row goes to the writer its address
    hashes to, and each writer does its parts in order, so a later row still sees an earlier row's
    write; up to WRITE_AHEAD chunks are handed over before the first is counted. This process keeps
    the reading, the duplicates, the counts and the problems, in line order. Against moto
    (`client_spec.serial`, or _moto) the writers still send one transaction at a time between them.
    """
    path = Path(path)
    _check_text(path)  # before writing anything: a wrong encoding must not leave half an import
    report = ImportReport()
    problems = _Problems(report, path, report_path)
    seen = _Seen()
    pending: dict[str, tuple[int, str, dict, bool]] = {}  # address -> line, cell, subscriber, seen in an earlier chunk
    found: list[Problem] = []  # this chunk's problems, written in line order once it is looked up
    # More threads than the client has connections would only wait for one (and urllib3 warns).
    workers = _threads(ddb, workers)
    serial = _moto(ddb) if client_spec is None or client_spec.serial is None else client_spec.serial
    big = path.stat().st_size >= CHECK_APART_BYTES
    if writers is None:
        writers = WRITERS if client_spec is not None and big and not serial else 0
    elif writers and client_spec is None:
        raise ValueError("writer processes need a client_spec: a boto3 client cannot be sent to them")
    pool = ThreadPoolExecutor(workers, thread_name_prefix="import") if not writers else None
    writing: _Writes | None = None  # the chunk being written (in this process)
    handed: deque[_Handed] = deque()  # the chunks with the writer processes, in order
    writer_processes: list[ProcessPoolExecutor] = []
    checker: ProcessPoolExecutor | None = None
    one_at_a_time = threading.Lock() if serial else None
    tables = (subscribers_table, suppressions_table)

    def settle(*, raising: bool = True) -> None:
        """Wait for the chunk being written and count it; raise what stopped it."""
        nonlocal writing
        if writing is None:
            return
        done, writing = writing.wait(), None
        report.imported += done.imported
        report.existing += done.existing
        if done.error is not None and raising:
            raise done.error

    def settle_handed(*, raising: bool = True) -> None:
        """Count the oldest chunk the writer processes have; raise what stopped it."""
        oldest = handed.popleft()
        errors: list[BaseException] = []
        for rows, future in zip(oldest.places, oldest.futures, strict=True):
            try:
                verdicts, imported, existing, error = future.result()
            except Exception as exc:  # noqa: BLE001 - a lookup failed, a writer died, or it was cancelled
                errors.append(exc)
                continue
            report.imported += imported
            report.existing += existing
            if error is not None:
                errors.append(error)
            for (line, value), verdict in zip(rows, verdicts, strict=True):
                _tally(report, verdict, line, value, oldest.found)
        for p in sorted(oldest.found, key=lambda p: p.line):
            problems.add(p)
        if errors and raising:
            raise errors[0]

    def flush() -> None:
        """Look the chunk up and start its writes, here."""
        nonlocal writing
        settle()
        on_list, suppressed = _look_up(pool, ddb, tables, list_id, list(pending), forgotten_id)
        new = []
        for address, (line, value, subscriber, seen_before) in pending.items():
            verdict = _verdict(address, seen_before, on_list, suppressed)
            if verdict[0] == NEW:
                new.append(subscriber)
            else:
                _tally(report, verdict, line, value, found)
        pending.clear()
        for p in sorted(found, key=lambda p: p.line):
            problems.add(p)
        found.clear()
        write = _write(ddb, subscribers_table, list_id, _consent(path), one_at_a_time)
        writing = _Writes(pool, workers, write, new)

    def hand() -> None:
        """Share the chunk out to the writer processes, by address."""
        nonlocal found
        parts: list[list[tuple[dict, bool]]] = [[] for _ in writer_processes]
        places: list[list[tuple[int, str]]] = [[] for _ in writer_processes]
        for address, (line, value, subscriber, seen_before) in pending.items():
            w = zlib.crc32(address.encode()) % len(writer_processes)
            parts[w].append((subscriber, seen_before))
            places[w].append((line, value))
        pending.clear()
        job = (tables, list_id, forgotten_id, _consent(path))
        futures = [w.submit(_write_part, job, part) for w, part in zip(writer_processes, parts, strict=True)]
        handed.append(_Handed(found, places, futures))
        found = []
        while len(handed) > WRITE_AHEAD:
            settle_handed()

    def settle_all(*, raising: bool = True) -> None:
        settle(raising=raising)
        if not raising:  # stopped: nothing not yet started is written
            for h in handed:
                for f in h.futures:
                    f.cancel()
        while handed:
            settle_handed(raising=raising)

    try:
        with path.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            columns, header_line = _Columns.read(text, path.name)
            # strict: a stray quote stops at its own row instead of quietly swallowing the next ones.
            reader = csv.reader(text, delimiter=columns.delimiter, strict=True)
            if check_apart is None:  # with writers, this process has CPU to spare: no hand-over to a checker
                check_apart = big and not writers
            spawn = multiprocessing.get_context("spawn")
            if check_apart:
                checker = ProcessPoolExecutor(1, mp_context=spawn, initializer=_quiet)
            # One process each, so that each does its parts in the order given.
            lock = spawn.Lock() if writers and serial else None
            writer_processes += [
                ProcessPoolExecutor(
                    1, mp_context=spawn, initializer=_start_writer, initargs=(client_spec, workers, lock)
                )
                for _ in range(writers)
            ]
            for rows in _checked(columns, _read(reader, header_line, chunk), checker):
                for start, value, subscriber in rows:
                    report.rows += 1
                    if isinstance(subscriber, str):
                        report.invalid += 1
                        found.append(Problem(start, value, subscriber))
                    elif subscriber["email"] in pending:  # BatchGetItem refuses a key twice in one call
                        report.duplicates += 1
                        found.append(Problem(start, value, "duplicate of an earlier row"))
                    else:
                        pending[subscriber["email"]] = (start, value, subscriber, seen.add(subscriber["email"]))
                if writers:
                    hand()
                else:
                    flush()
                if progress and len(rows) == chunk:
                    progress(report.rows, raw.tell())  # the binary position: text files can't tell() mid-iteration
            settle_all()
            if progress:
                progress(report.rows, raw.tell())
    except Exception as exc:  # DynamoDB gave up, the disk is full...: say what is already done
        settle_all(raising=False)  # the writes under way finish (or fail) first, so the count is true
        if report.rows:
            exc.add_note(
                f"{report.imported} of {report.rows} rows read were imported before this error; "
                "importing the same file again is safe (they come back as existing)."
            )
        raise
    finally:
        if writing is not None:  # interrupted (Ctrl-C): start no more writes
            writing.stop()
        for h in handed:
            for f in h.futures:
                f.cancel()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        for w in writer_processes:
            w.shutdown(wait=True, cancel_futures=True)
        if checker is not None:
            checker.shutdown(wait=True, cancel_futures=True)
        problems.close()
    return report


# What the lookup makes of a row (_verdict): (NEW, "") to write, or why not, with the suppression's reason.
NEW, EXISTING, DUPLICATE, SUPPRESSED = "new", "existing", "duplicate", "suppressed"


def _verdict(address: str, seen_before: bool, on_list: set[str], suppressed: dict[str, str]) -> tuple[str, str]:
    # `seen` only hints at an earlier row; the tables decide, so even a hash collision cannot
    # drop a new address: an earlier row's address was imported, was on the list or is suppressed.
    if seen_before and (address in on_list or address in suppressed):
        return DUPLICATE, ""
    if address in on_list:
        return EXISTING, ""
    if address in suppressed:
        return SUPPRESSED, suppressed[address]
    return NEW, ""


def _tally(report: ImportReport, verdict: tuple[str, str], line: int, value: str, found: list[Problem]) -> None:
    """Count a looked-up row that is not written (NEW ones count as their write does)."""
    kind, reason = verdict
    if kind == DUPLICATE:
        report.duplicates += 1
        found.append(Problem(line, value, "duplicate of an earlier row"))
    elif kind == EXISTING:
        report.existing += 1
    elif kind == SUPPRESSED:
        report.suppressed += 1
        found.append(Problem(line, value, f"suppressed ({reason}): not imported"))


def _consent(path: Path) -> dict:
    return {"method": "import", "source": path.name, "at": clock.iso()}


def _threads(ddb, workers: int) -> int:
    """`workers`, at most the client's connections."""
    connections = getattr(getattr(getattr(ddb, "meta", None), "config", None), "max_pool_connections", None)
    return max(1, min(workers, connections or workers))


def _look_up(pool, ddb, tables: tuple[str, str], list_id: str, addresses: list[str], forgotten_id):
    """(addresses on the list, {suppressed address: reason}): LOOKUP addresses a BatchGetItem, in parallel."""

    def lookup(part: list[str]) -> tuple[set[str], dict[str, str]]:
        return subscribers.lookup(ddb, *tables, list_id, part, forgotten_id)

    on_list: set[str] = set()
    suppressed: dict[str, str] = {}
    for listed, barred in pool.map(lookup, [addresses[i : i + LOOKUP] for i in range(0, len(addresses), LOOKUP)]):
        on_list |= listed
        suppressed.update(barred)
    return on_list, suppressed


def _write(ddb, table: str, list_id: str, consent: dict, one_at_a_time) -> Callable[[list, list], None]:
    """What writes one group of new subscribers, with their consent (one at a time under the lock)."""

    def write(group: list[dict], outcome: list) -> None:
        people = ({**s, "consent": consent} for s in group)  # made into items one at a time
        if one_at_a_time is None:
            subscribers.put_new_subscribers(ddb, table, list_id, people, outcome=outcome)
            return
        with one_at_a_time:
            subscribers.put_new_subscribers(ddb, table, list_id, people, outcome=outcome)

    return write


# --- the writer processes ---------------------------------------------------------------------

_writer: dict = {}  # in a writer process: its client, thread pool and the lock between writers


@dataclass
class _Handed:
    found: list[Problem]  # the chunk's problems found before the lookup
    places: list[list[tuple[int, str]]]  # per writer: (line, email cell) of each row handed to it
    futures: list  # per writer: its part's (verdicts, imported, existing, error)


def _start_writer(spec: ClientSpec, workers: int, lock) -> None:
    _quiet()
    try:
        ddb = spec.client()
    except Exception as exc:  # noqa: BLE001 - said by the first part (an initializer's error only breaks the pool)
        _writer["broken"] = f"{type(exc).__name__}: {exc}"
        return
    workers = _threads(ddb, workers)
    _writer.update(ddb=ddb, workers=workers, lock=lock, pool=ThreadPoolExecutor(workers, thread_name_prefix="import"))


def _write_part(job: tuple, part: list[tuple[dict, bool]]) -> tuple[list, int, int, BaseException | None]:
    """In a writer process: look up one chunk's part, write its new subscribers. Returns each row's
    verdict, the counts of what was written and found there, and what stopped the writes."""
    if "broken" in _writer:
        # A profile, region or credentials the writer process cannot use as the command did
        # (a profile that asks for an MFA code cannot ask here).
        raise RuntimeError(f"a writer process could not make its DynamoDB client: {_writer['broken']}")
    (subscribers_table, suppressions_table), list_id, forgotten_id, consent = job
    ddb, pool, workers = _writer["ddb"], _writer["pool"], _writer["workers"]
    addresses = [s["email"] for s, _ in part]
    on_list, suppressed = _look_up(pool, ddb, (subscribers_table, suppressions_table), list_id, addresses, forgotten_id)
    verdicts = [_verdict(s["email"], seen_before, on_list, suppressed) for s, seen_before in part]
    new = [s for (s, _), (kind, _) in zip(part, verdicts, strict=True) if kind == NEW]
    done = _Writes(pool, workers, _write(ddb, subscribers_table, list_id, consent, _writer["lock"]), new).wait()
    return verdicts, done.imported, done.existing, done.error


def export_csv(ddb, *, subscribers_table: str, list_id: str, out: TextIO, status: str | None = None) -> int:
    """Write the list (or its subscribers with `status`) as CSV that import_csv takes back; returns the rows.

    Columns: email, name, language, status, then one column per attribute name found. The names are
    only known at the end, so rows are spooled to a temporary file first (one pass over the table,
    constant memory). Open `out` with newline="".
    """
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    names: dict[str, None] = {}  # attribute names, in first-seen order
    rows = 0
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        for item in subscribers.members(ddb, subscribers_table, list_id, status=status):
            # An attribute may not shadow a column import_csv reads itself (no import makes one).
            attributes = (item.get("attributes") or {}).items()
            row = {k: _cell(v) for k, v in attributes if k.lower() not in CORE + EMAIL_HEADERS}
            names.update(dict.fromkeys(row))
            row.update({c: str(item.get(c) or "") for c in CORE})
            spool.write(json.dumps(row, ensure_ascii=False) + "\n")
            rows += 1
        spool.seek(0)
        writer = csv.DictWriter(out, fieldnames=[*CORE, *names], restval="")
        writer.writeheader()
        for line in spool:
            writer.writerow(json.loads(line))
    return rows


def count_by_status(ddb, *, subscribers_table: str, list_id: str) -> dict[str, int]:
    """Subscribers per status; every known status is present (0 if none), unexpected ones are added."""
    counts = dict.fromkeys(STATUSES, 0)
    for item in subscribers.members(ddb, subscribers_table, list_id, projection="#s"):
        status = item.get("status") or "(none)"
        counts[status] = counts.get(status, 0) + 1
    return counts


def count_by_language(ddb, *, subscribers_table: str, list_id: str) -> dict[str, int]:
    """Active subscribers per language tag as stored ("" for none): who would get an issue now."""
    counts: dict[str, int] = {}
    for item in subscribers.members(ddb, subscribers_table, list_id, status="active"):
        language = item.get("language") or ""
        counts[language] = counts.get(language, 0) + 1
    return counts


# --- the file ---------------------------------------------------------------------------------


def _check_text(path: Path) -> None:
    """One fast binary pass: the whole file must be UTF-8 text, else nothing is imported.

    Names the line and byte offset of the first bad byte, so the operator can find it.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    with path.open("rb") as f:
        head = f.read(4)
        if head.startswith(b"PK\x03\x04"):
            raise BadImport(f"{path.name} is a zip file or an Excel workbook, not CSV: save it as 'CSV UTF-8'")
        if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise BadImport(f"{path.name} is UTF-16 text: save it as 'CSV UTF-8'")
        if not head:
            raise BadImport(f"{path.name} is empty")
        f.seek(0)
        while True:
            block = f.read(CHECK_BLOCK)
            held = decoder.getstate()[0]  # the start of a character split across blocks
            bad, what = -1, ""
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                data = held + block
                bad = exc.start - len(held)
                what = f"byte 0x{data[exc.start]:02x} is not UTF-8 ({exc.reason}; a Windows or Latin-1 file?)"
            nul = block.find(b"\0")
            if nul >= 0 and (bad < 0 or nul < bad):
                bad, what = nul, "a NUL byte: binary data or UTF-16 text, not CSV"
            if what:
                at = offset + bad  # bad < 0: the character began in the previous block
                line += block[: max(bad, 0)].count(b"\n")
                raise BadImport(f"{path.name}, line {line} (byte offset {at}): {what}. Save the file as 'CSV UTF-8'.")
            if not block:
                return
            offset += len(block)
            line += block.count(b"\n")


class _Columns:
    """Which cell is what, from the header line."""

    def __init__(self, names: list[str], delimiter: str):
        lower = [n.lower() for n in names]
        self.delimiter, self.width = delimiter, len(names)
        self.email = next(i for i, n in enumerate(lower) if n in EMAIL_HEADERS)
        self.core = {c: lower.index(c) for c in CORE[1:] if c in lower}
        # Other named columns become attributes; unnamed ones (a trailing comma) are dropped.
        self.extra = [(i, n) for i, n in enumerate(names) if n and i != self.email and lower[i] not in CORE]

    @classmethod
    def read(cls, text: TextIO, name: str) -> tuple[_Columns, int]:
        """The columns and the header's line number (leading blank lines are skipped)."""
        number = 0
        while True:
            line = text.readline(MAX_HEADER)
            number += 1
            if not line:
                raise BadImport(f"{name} has no header line, only blank lines")
            if len(line) >= MAX_HEADER and not line.endswith(("\n", "\r")):
                raise BadImport(f"{name}, line {number}: longer than {MAX_HEADER // 1024} KiB, not a CSV header")
            if line.strip():
                break
        cells: list[list[str]] = []
        for delimiter in ",;\t":  # Excel in much of Europe saves "CSV" with semicolons
            try:
                cells.append([c.strip() for c in next(csv.reader([line], delimiter=delimiter))])
            except csv.Error as exc:
                raise BadImport(f"{name}, line {number}: not a CSV header ({exc})") from None
            found = [c.lower() for c in cells[-1]]
            if any(c in EMAIL_HEADERS for c in found):
                named = [c for c in found if c]
                twice = sorted({c for c in named if named.count(c) > 1})
                if twice:
                    raise BadImport(f"{name}, line {number}: column {twice[0]!r} appears more than once")
                return cls(cells[-1], delimiter), number
        if "@" in line:  # never echo it: it is probably someone's address
            raise BadImport(
                f"{name}, line {number} looks like data, not a header: add a first line naming the columns, "
                "one of them 'email'"
            )
        shown = ", ".join(repr(c[:40]) for c in cells[0]) or "none"
        raise BadImport(f"{name}, line {number}: no 'email' column; columns found: {shown}")

    def subscriber(self, cells: list[str]) -> tuple[str, dict | str]:
        """(the email cell, the subscriber to store) or (the email cell, why the row is rejected)."""
        value = cells[self.email] if self.email < len(cells) else ""
        if len(cells) > self.width:
            return value, f"{len(cells)} fields but the header has {self.width} (an unquoted comma?)"
        if not value.strip():
            return value, "no email address"
        # A plain address (nearly every one) is email-validator's verdict without its ~30 µs a row
        # (signup.plain_address: tests/test_signup.py holds the two to the same answers).
        email = plain_address(value.strip())
        if email is None:
            try:
                # No DNS: an import must not depend on the network or on a domain's mood today.
                # allow_smtputf8=False: SES does not accept non-ASCII before the @.
                checked = validate_email(value.strip(), check_deliverability=False, allow_smtputf8=False)
            except EmailNotValidError as exc:
                return value, str(exc)
            # ascii_email: an internationalised domain in its ASCII (punycode) form, as SES wants
            # it, so both spellings of one address are one subscriber.
            email = normalise_address(checked.ascii_email or checked.normalized)

        def cell(column: str) -> str:
            i = self.core.get(column)
            return cells[i].strip() if i is not None and i < len(cells) else ""

        # The name goes into every message's To header: the one header rule, at the door.
        why = headers.refused(cell("name"))
        if why:
            return value, f"name {why}"
        if len(cell("name")) > MAX_NAME:
            return value, f"name longer than {MAX_NAME} characters"
        status = cell("status").lower() or ACTIVE
        if status not in STATUSES:
            return value, f"status {cell('status')[:40]!r} is not one of {', '.join(STATUSES)}"
        attributes = {n: cells[i].strip() for i, n in self.extra if i < len(cells) and cells[i].strip()}
        return value, {
            "email": email,
            "name": cell("name"),
            "language": cell("language") or DEFAULT_LANGUAGE,
            "status": status,
            "attributes": attributes or None,
        }


def _read(reader, header_line: int, size: int) -> Iterator[list[tuple[int, list[str], str]]]:
    """The data rows in lists of `size`: (physical line where the row starts, its cells, why it is
    not valid CSV or ""). Blank rows are skipped."""
    rows: list[tuple[int, list[str], str]] = []
    while True:
        start = header_line + reader.line_num + 1
        try:
            cells = next(reader, None)
        except csv.Error as exc:  # the reader resumes at the next line: one bad row, not a bad file
            rows.append((start, [], f"not valid CSV: {exc}"))
        else:
            if cells is None:
                break
            if not any(c.strip() for c in cells):
                continue  # a blank line, or empty cells only (Excel leaves such rows)
            rows.append((start, cells, ""))
        if len(rows) >= size:
            yield rows
            rows = []
    if rows:
        yield rows


def _check(columns: _Columns, rows: list[tuple[int, list[str], str]]) -> list[tuple[int, str, dict | str]]:
    """(line, the email cell, the subscriber or why the row is rejected) for each row."""
    return [(line, *(("", broken) if broken else columns.subscriber(cells))) for line, cells, broken in rows]


def _checked(columns: _Columns, chunks: Iterator[list], checker: ProcessPoolExecutor | None) -> Iterator[list]:
    """The chunks checked, in order: here, or by `checker` up to CHECK_AHEAD chunks ahead."""
    if checker is None:
        for rows in chunks:
            yield _check(columns, rows)
        return
    ahead: deque = deque()
    for rows in chunks:
        ahead.append(checker.submit(_check, columns, rows))
        if len(ahead) > CHECK_AHEAD:
            yield ahead.popleft().result()
    while ahead:
        yield ahead.popleft().result()


def _quiet() -> None:
    """The checker process leaves Ctrl-C to the importer, which stops it (no second traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Problems:
    """Keeps the first KEPT_PROBLEMS in the report and streams all of them to a CSV file: the one
    asked for, or `<file>.problems.csv` next to the input once there are more than AUTO_REPORT_AFTER."""

    def __init__(self, report: ImportReport, source: Path, path: Path | None):
        self.report, self.asked = report, path is not None
        report.report_path = Path(path) if path else source.with_name(source.name + ".problems.csv")
        self.file: TextIO | None = None
        if self.asked:
            self._open()

    def _open(self) -> None:
        # utf-8-sig: the communications team opens it in Excel, which needs the BOM to see UTF-8.
        self.file = self.report.report_path.open("w", encoding="utf-8-sig", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(["line", "value", "reason"])

    def add(self, problem: Problem) -> None:
        r = self.report
        r.problem_count += 1
        if len(r.problems) < KEPT_PROBLEMS:
            r.problems.append(problem)
        if self.file is None and r.problem_count > AUTO_REPORT_AFTER:
            self._open()
            self.writer.writerows([p.line, p.value, p.reason] for p in r.problems[:-1])
        if self.file is not None:
            self.writer.writerow([problem.line, problem.value, problem.reason])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        elif not self.asked:
            self.report.report_path = None


class _Writes:
    """One chunk's new subscribers, in transactions of up to TRANSACT_ITEMS conditional Puts
    (store.subscribers.put_new_subscribers), `workers` transactions at a time: each worker takes the
    next group until none is left, or until a transaction has failed for good (the rest are then
    not tried)."""

    def __init__(
        self, pool: ThreadPoolExecutor, workers: int, write: Callable[[list, list], object], items: list[dict]
    ):
        self.imported = self.existing = 0
        self.error: BaseException | None = None
        groups = _groups(items)
        # One list iterator shared by the workers: its next() is a single step under the GIL, so
        # each group goes to one worker, without a lock.
        self._groups, self._write, self._lock, self._stopped = iter(groups), write, threading.Lock(), False
        self._futures = [pool.submit(self._work) for _ in range(min(workers, len(groups)))]

    def _work(self) -> None:
        imported = existing = 0
        try:
            for group in self._groups:
                if self._stopped:
                    break
                outcome: list[bool | None] = [None] * len(group)
                try:
                    self._write(group, outcome)
                finally:  # what a transaction that failed for good did write still counts
                    imported += outcome.count(True)
                    existing += outcome.count(False)
        except BaseException as exc:  # noqa: BLE001 - handed to the importing thread by wait()
            self._stopped = True
            with self._lock:
                self.error = self.error or exc
        finally:
            with self._lock:
                self.imported += imported
                self.existing += existing

    def stop(self) -> None:
        self._stopped = True

    def wait(self) -> _Writes:
        wait_for(self._futures)
        return self


def _moto(ddb) -> bool:
    """Whether `ddb` may talk to moto (the local stack, in this process or as its server, or a test),
    or to anything but AWS's endpoints (DynamoDB Local): moto's TransactWriteItems copies every table
    while another request may change one, so there the import sends one transaction at a time."""
    url = getattr(getattr(ddb, "meta", None), "endpoint_url", None)
    if not isinstance(url, str):
        return False  # not a botocore client
    if not (urlsplit(url).hostname or "").endswith((".amazonaws.com", ".amazonaws.com.cn")):
        return True
    mock = sys.modules.get("moto.core.models")
    return bool(getattr(getattr(mock, "botocore_stubber", None), "enabled", False))


def _groups(items: list[dict]) -> list[list[dict]]:
    """The subscribers in groups of at most TRANSACT_ITEMS and, at a generous estimate of 4 bytes a
    character, at most TRANSACT_BYTES (TransactWriteItems takes 4 MB a call)."""
    groups: list[list[dict]] = []
    group: list[dict] = []
    size = 0
    for item in items:
        attributes = item.get("attributes") or {}
        chars = len(item["email"]) + len(item["name"]) + sum(len(k) + len(str(v)) for k, v in attributes.items())
        need = 4 * chars + 400  # the consent, keys, language, status and names
        if group and (len(group) == TRANSACT_ITEMS or size + need > TRANSACT_BYTES):
            groups.append(group)
            group, size = [], 0
        group.append(item)
        size += need
    if group:
        groups.append(group)
    return groups


class _Seen:
    """The addresses met so far, as 64-bit hashes in an open-addressing table: 16-32 bytes an
    address (25 at the peak of a growth; a million addresses: ~17 MB), where a set of str takes
    ~130 and a set of int ~70. A collision (~1e-8 for a million) only makes a row look like a
    duplicate to the caller, which then asks the tables (see flush)."""

    def __init__(self) -> None:
        self.slots, self.n = array("Q", [0]) * 1024, 0

    def add(self, address: str) -> bool:
        """Add; True if it (or a hash twin) was there already."""
        h = int.from_bytes(hashlib.blake2b(address.encode(), digest_size=8).digest(), "big") | 1  # 0: empty slot
        slots, mask = self.slots, len(self.slots) - 1
        i = h & mask
        while slots[i]:
            if slots[i] == h:
                return True
            i = (i + 1) & mask
        slots[i] = h
        self.n += 1
        if self.n * 2 > len(slots):  # keep probes short: at most half full
            self.slots = array("Q", [0]) * (2 * len(slots))  # no bytes() copy: it would double the peak
            mask = len(self.slots) - 1
            for h in slots:
                if h:
                    i = h & mask
                    while self.slots[i]:
                        i = (i + 1) & mask
                    self.slots[i] = h
        return False


# --- the tables -------------------------------------------------------------------------------


def _cell(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict, set, bool)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)  # numbers come back as Decimal
