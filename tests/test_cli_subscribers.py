"""`newsletter` subscriber import/export: cli/subscribers.py against moto, and a huge file against a fake."""

from __future__ import annotations

import io
import re
import threading
import time
import tracemalloc
import types
from pathlib import Path

import pytest

from newsletter.store import from_item
from newsletter.store.subscribers import partition, put_subscribers, shard_of
from newsletter_cli import subscribers as cli
from newsletter_cli.subscribers import BadImport

SUBS, SUPP, LIST = "Subscribers", "Suppressions", "infomail"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "subscribers.csv"


@pytest.fixture
def tables(ddb):
    """The two tables, keyed as in template.yaml (SubscribersTable, SuppressionsTable)."""
    ddb.create_table(
        TableName=SUBS,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "email", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "email", "KeyType": "RANGE"}],
    )
    ddb.create_table(
        TableName=SUPP,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "email", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "email", "KeyType": "HASH"}],
    )
    return ddb


def csv_file(tmp_path: Path, content: str | bytes, name: str = "subs.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def run(ddb, path: Path, list_id: str = LIST, **kwargs) -> cli.ImportReport:
    return cli.import_csv(ddb, subscribers_table=SUBS, suppressions_table=SUPP, list_id=list_id, path=path, **kwargs)


def scan(ddb) -> list[dict]:
    items = [from_item(i) for page in ddb.get_paginator("scan").paginate(TableName=SUBS) for i in page["Items"]]
    return sorted(items, key=lambda i: (i["pk"], i["email"]))


def stored(ddb, list_id: str = LIST) -> dict[str, dict]:
    return {i["email"]: i for i in scan(ddb) if i["list_id"] == list_id}


def accounted(r: cli.ImportReport) -> bool:
    return r.rows == r.imported + r.existing + r.duplicates + r.suppressed + r.invalid


# --- a good file ---------------------------------------------------------------------------------


def test_good_file_is_stored_normalised_with_attributes(tables, tmp_path, capsys):
    path = csv_file(
        tmp_path,
        "\ufeffEmail,NAME,Language,Status,Organisation,Country,\n"  # BOM, any case, a trailing comma
        "Ana.Silva@Example.COM,Ana Silva,pt,,ICMPD,Austria,\n"
        "  bob@example.org ,Bob,,unsubscribed,,,\n"
        'x@bücher.de,Jörg,de,ACTIVE,"Caritas, Wien",,\n',
    )
    r = run(tables, path)
    assert (r.rows, r.imported, r.existing, r.duplicates, r.suppressed, r.invalid) == (3, 3, 0, 0, 0, 0)
    assert r.problems == [] and r.report_path is None
    items = stored(tables)
    assert set(items) == {"ana.silva@example.com", "bob@example.org", "x@xn--bcher-kva.de"}
    ana = items["ana.silva@example.com"]
    assert ana["pk"] == partition(LIST, shard_of("ana.silva@example.com"))
    assert (ana["name"], ana["language"], ana["status"]) == ("Ana Silva", "pt", "active")
    assert ana["attributes"] == {"Organisation": "ICMPD", "Country": "Austria"}
    assert (items["bob@example.org"]["status"], items["bob@example.org"]["language"]) == ("unsubscribed", "en")
    assert "attributes" not in items["bob@example.org"]
    assert items["x@xn--bcher-kva.de"]["attributes"] == {"Organisation": "Caritas, Wien"}
    assert capsys.readouterr() == ("", "")  # nothing printed, least of all an address


def test_semicolon_csv_as_excel_saves_it_in_europe(tables, tmp_path):
    r = run(tables, csv_file(tmp_path, "E-Mail;Name\r\nana@example.com;Ana\r\n"))
    assert r.imported == 1 and stored(tables)["ana@example.com"]["name"] == "Ana"


# --- unusable files --------------------------------------------------------------------------------


def test_no_email_column_names_the_columns_found(tables, tmp_path):
    with pytest.raises(BadImport, match=r"no 'email' column; columns found: 'mail', 'Name'"):
        run(tables, csv_file(tmp_path, "mail,Name\nana@example.com,Ana\n"))


def test_a_header_that_is_data_is_refused_without_echoing_the_address(tables, tmp_path):
    with pytest.raises(BadImport, match="looks like data") as exc:
        run(tables, csv_file(tmp_path, "ana@example.com,Ana\n"))
    assert "ana@" not in str(exc.value)


def test_a_column_twice_is_refused(tables, tmp_path):
    with pytest.raises(BadImport, match="'email' appears more than once"):
        run(tables, csv_file(tmp_path, "email,name,Email\n"))


def test_not_utf8_names_line_and_byte_offset_and_writes_nothing(tables, tmp_path):
    good = b"email,name\nana@example.com,Ana\n"
    path = csv_file(tmp_path, good + b"bob@example.com,Jos\xe9\n")  # Latin-1 'é'
    with pytest.raises(BadImport, match=rf"line 3 \(byte offset {len(good) + 19}\): byte 0xe9 is not UTF-8"):
        run(tables, path)
    assert scan(tables) == []  # refused before the first write


def test_bad_utf8_across_the_read_blocks_is_located(tables, tmp_path):
    head = b"email\n" + b"a" * (cli.CHECK_BLOCK - 7)  # a lead byte ends the first block read
    assert run(tables, csv_file(tmp_path, head + "é\n".encode())).rows == 1  # split but valid: no error
    with pytest.raises(BadImport, match=rf"line 2 \(byte offset {len(head)}\)"):
        run(tables, csv_file(tmp_path, head + b"\xc3(\n"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\n\r\n", "no header line, only blank lines"),
        ("email,name\n".encode("utf-16"), "UTF-16"),
        ("email,name\n".encode("utf-16-le"), "line 1 .*NUL byte"),
        (b"PK\x03\x04\x14\x00\x06\x00", "Excel workbook"),
        (b"email,name\nana@example.com,Ana\xe2\x82", r"line 2 .*unexpected end of data"),  # cut mid-character
        (b"x" * 70_000, "not a CSV header"),
    ],
    ids=["empty", "blank", "utf-16", "utf-16-no-bom", "xlsx", "cut-character", "no-line-break"],
)
def test_unusable_files(tables, tmp_path, content, message):
    with pytest.raises(BadImport, match=message):
        run(tables, csv_file(tmp_path, content))


# --- bad rows ----------------------------------------------------------------------------------------


def test_bad_rows_are_reported_with_their_physical_line(tables, tmp_path):
    path = csv_file(
        tmp_path,
        "email,name,status\n"  # 1
        'good@example.com,"Multi\n'  # 2
        'line name",active\n'  # 3
        "\n"  # 4: blank, not a row
        "not-an-address,X,active\n"  # 5
        "a@b,Y,\n"  # 6
        "ok@example.org,Z,paused\n"  # 7
        "extra@example.org,W,active,oops\n"  # 8
        ",Nobody,active\n"  # 9
        "jörg@example.com,J,\n"  # 10
        '"Nick" Bad,x,active\n'  # 11
        "last@example.com,Last,active\n",  # 12
    )
    r = run(tables, path)
    assert (r.rows, r.imported, r.invalid) == (9, 1, 8) and accounted(r)
    assert set(stored(tables)) == {"last@example.com"}
    got = {p.line: p for p in r.problems}
    assert list(got) == [2, 5, 6, 7, 8, 9, 10, 11]
    # A name goes into the To header: a line break in it is refused, with the row's first line.
    assert got[2].value == "good@example.com" and got[2].reason.startswith("name must be a single line")
    assert got[5].value == "not-an-address" and "@-sign" in got[5].reason
    assert got[6].value == "a@b" and "period" in got[6].reason
    assert "'paused' is not one of active, unsubscribed, bounced, complained" in got[7].reason
    assert got[8].value == "extra@example.org" and got[8].reason.startswith("4 fields but the header has 3")
    assert got[9].reason == "no email address"
    assert "Internationalized characters before the @-sign" in got[10].reason
    assert got[11].reason.startswith("not valid CSV")


def test_rows_checked_in_a_second_process_come_out_as_checked_here(tables, tmp_path):
    # Every kind of row, in chunks of 3 so that the checker runs chunks ahead of the writes.
    content = (
        "email,name,status,organisation\n"
        'good@example.com,"Multi\nline name",active,\n'
        "\n"
        "not-an-address,X,active,\n"
        "a@b,Y,,\n"
        "ok@example.org,Z,paused,\n"
        "extra@example.org,W,active,Org,oops\n"
        ",Nobody,active,\n"
        "jörg@example.com,J,,\n"
        '"Nick" Bad,x,active,\n'
        "Last@Example.com,Last,active,Org\n"
        "first@bücher.example,Umlaut domain,unsubscribed,\n"
        "LAST@example.COM,Again,active,\n" + "".join(f"r{i}@example.com,Reader {i},active,Org {i}\n" for i in range(20))
    )
    path = csv_file(tmp_path, content)
    here = run(tables, path, list_id="here", chunk=3, check_apart=False)
    apart = run(tables, path, list_id="apart", chunk=3, check_apart=True)

    def report(r):
        return {k: v for k, v in vars(r).items() if k != "report_path"}

    def people(list_id):
        return {
            e: {k: v for k, v in i.items() if k not in ("pk", "list_id", "consent")}
            for e, i in stored(tables, list_id).items()
        }

    assert report(apart) == report(here) and here.rows == 31 and here.imported == 22 and accounted(apart)
    assert people("apart") == people("here") and "first@xn--bcher-kva.example" in people("apart")


def test_a_big_file_is_checked_in_a_second_process_and_it_ends_with_the_import(tables, tmp_path, monkeypatch):
    made = []

    class Spy(cli.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(cli, "ProcessPoolExecutor", Spy)
    small = csv_file(tmp_path, "email\n" + "".join(f"s{i}@example.com\n" for i in range(5)), "small.csv")
    assert run(tables, small, chunk=2).imported == 5 and not made
    monkeypatch.setattr(cli, "CHECK_APART_BYTES", small.stat().st_size)
    big = csv_file(tmp_path, "email\n" + "".join(f"b{i}@example.com\n" for i in range(5)), "big.csv")
    assert run(tables, big, chunk=2).imported == 5 and len(made) == 1
    assert not made[0]._processes  # shut down: no process left behind


def test_duplicates_within_the_file_in_any_case(tables, tmp_path):
    # chunk=2: one duplicate in the same chunk as its first row, one in a later chunk
    path = csv_file(tmp_path, "email\nA@example.com\na@EXAMPLE.com\nb@example.com\nc@example.com\nB@Example.com\n")
    r = run(tables, path, chunk=2)
    assert (r.rows, r.imported, r.duplicates) == (5, 3, 2)
    assert [(p.line, p.value, p.reason) for p in r.problems] == [
        (3, "a@EXAMPLE.com", "duplicate of an earlier row"),
        (6, "B@Example.com", "duplicate of an earlier row"),
    ]
    assert set(stored(tables)) == {"a@example.com", "b@example.com", "c@example.com"}


def test_existing_subscribers_are_never_overwritten(tables, tmp_path):
    put_subscribers(
        tables,
        SUBS,
        LIST,
        [
            {
                "email": "left@example.com",
                "name": "Old",
                "status": "unsubscribed",
                "language": "de",
                "attributes": {"x": "1"},
            },
            {"email": "bounced@example.com", "name": "B", "status": "bounced", "language": "en"},
            {"email": "angry@example.com", "name": "C", "status": "complained", "language": "en"},
        ],
    )
    before = scan(tables)
    path = csv_file(
        tmp_path,
        "email,name,status,language,org\n"
        "LEFT@example.com,New Name,active,fr,Y\nbounced@example.com,B,active,en,\nangry@example.com,C,,en,\n"
        "left@example.com,Again,active,en,\n",
    )
    r = run(tables, path, chunk=1)
    assert (r.rows, r.existing, r.duplicates, r.imported) == (4, 3, 1, 0)
    assert [(p.line, p.reason) for p in r.problems] == [(5, "duplicate of an earlier row")]
    assert scan(tables) == before
    assert stored(tables)["left@example.com"]["status"] == "unsubscribed"


def test_suppressed_addresses_are_skipped(tables, tmp_path):
    tables.put_item(TableName=SUPP, Item={"email": {"S": "gone@example.com"}, "reason": {"S": "bounce"}})
    r = run(tables, csv_file(tmp_path, "email\nGone@Example.com\nstays@example.com\ngone@example.com\n"), chunk=1)
    assert (r.suppressed, r.imported, r.duplicates) == (1, 1, 1)
    assert set(stored(tables)) == {"stays@example.com"}
    assert [(p.line, p.reason) for p in r.problems] == [
        (2, "suppressed (bounce): not imported"),
        (4, "duplicate of an earlier row"),
    ]


def test_a_hash_collision_cannot_drop_a_new_address(tables, tmp_path, monkeypatch):
    monkeypatch.setattr(cli._Seen, "add", lambda self, address: True)  # every address "seen before"
    r = run(tables, csv_file(tmp_path, "email\na@example.com\nb@example.com\n"), chunk=1)
    assert (r.imported, r.duplicates) == (2, 0)  # the tables had neither: new, whatever the hashes say


def test_running_an_import_again_changes_nothing(tables, tmp_path):
    lines = [f"Reader{i}@Example.org,Reader {i},en,{('active', 'unsubscribed')[i % 2]},Org {i % 3}" for i in range(120)]
    path = csv_file(tmp_path, "email,name,language,status,organisation\n" + "\n".join(lines) + "\n")
    first = run(tables, path)
    assert (first.rows, first.imported) == (120, 120)
    before = scan(tables)
    again = run(tables, path)
    assert (again.rows, again.existing, again.imported, again.problem_count) == (120, 120, 0, 0)
    assert scan(tables) == before


# --- readers who change meanwhile, consent, retries -----------------------------------------------


class Meanwhile:
    """The moto client, and another process that adds a reader between the import's lookup and its
    write, as a signup (or an earlier unsubscribe being stored) would: just after the lookup, or
    just before the import's first write."""

    def __init__(self, ddb, when: str, reader: dict):
        self.ddb, self.when, self.reader = ddb, when, reader
        self.arrived = threading.Event()
        self.lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.ddb, name)

    def _arrive(self) -> None:
        with self.lock:
            if not self.arrived.is_set():
                put_subscribers(self.ddb, SUBS, LIST, [self.reader])
                self.arrived.set()

    def batch_get_item(self, **request):
        response = self.ddb.batch_get_item(**request)
        if self.when == "after the lookup":
            self._arrive()
        return response

    def transact_write_items(self, **request):
        if self.when == "before the first write":
            self._arrive()
        return self.ddb.transact_write_items(**request)


@pytest.mark.parametrize("when", ["after the lookup", "before the first write"])
def test_a_reader_who_arrives_meanwhile_is_neither_overwritten_nor_reactivated(tables, tmp_path, when):
    reader = {
        "email": "late@example.com",
        "name": "Late Reader",
        "status": "unsubscribed",
        "language": "de",
        "attributes": {"org": "Theirs"},
    }
    path = csv_file(
        tmp_path,
        "email,name,language,status,org\n"
        "new@example.com,New,en,active,Ours\nLate@Example.com,Other Name,fr,active,Ours\nalso@example.com,Also,en,,\n",
    )
    client = Meanwhile(tables, when, reader)
    r = run(client, path)
    assert client.arrived.is_set()
    assert (r.rows, r.imported, r.existing, r.problem_count) == (3, 2, 1, 0) and accounted(r)
    items = stored(tables)
    late = {k: v for k, v in items["late@example.com"].items() if k not in ("pk", "list_id")}
    assert late == reader  # as they were: still unsubscribed, their name, language and attributes, no consent
    assert set(items) == {"new@example.com", "late@example.com", "also@example.com"}
    before = scan(tables)
    again = run(tables, path)
    assert (again.imported, again.existing) == (0, 3) and scan(tables) == before


def test_consent_is_recorded_on_the_subscribers_an_import_adds_and_only_on_them(tables, tmp_path, monkeypatch):
    from newsletter import clock

    monkeypatch.setattr(clock, "now", lambda: 1_435_737_600.0)
    put_subscribers(tables, SUBS, LIST, [{"email": "old@example.com", "name": "Old", "status": "active"}])
    (tmp_path / "exports").mkdir()
    path = csv_file(
        tmp_path / "exports",
        "email,name,status\nold@example.com,Old,\nnew@example.com,New,\ngone@example.com,Gone,unsubscribed\n",
        "fair.csv",
    )
    r = run(tables, path)
    assert (r.imported, r.existing) == (2, 1)
    items = stored(tables)
    consent = {"method": "import", "source": "fair.csv", "at": "2015-07-01T08:00:00Z"}  # the file's name, not its path
    assert items["new@example.com"]["consent"] == items["gone@example.com"]["consent"] == consent
    assert "consent" not in items["old@example.com"]


def test_an_imported_subscriber_is_stored_as_put_subscribers_stores_one(tables):
    from newsletter.store.subscribers import put_new_subscriber, put_new_subscribers

    reader = {
        "email": "zoe@example.com",
        "name": "Zoë",
        "status": "active",
        "language": "pt-BR",
        "attributes": {"org": "X", "size": 3, "none": None},
        "consent": {"method": "import", "source": "a.csv", "at": "2015-07-01T08:00:00Z"},
        "dropped": None,
    }
    put_subscribers(tables, SUBS, "one", [reader])
    assert put_new_subscriber(tables, SUBS, "two", reader) is True
    assert put_new_subscriber(tables, SUBS, "two", {**reader, "name": "Someone Else"}) is False
    items = {i["list_id"]["S"]: i for i in tables.scan(TableName=SUBS)["Items"]}
    strip = lambda item: {k: v for k, v in item.items() if k not in ("pk", "list_id")}  # noqa: E731
    assert strip(items["one"]) == strip(items["two"]) and items["two"]["name"] == {"S": "Zoë"}
    # The import's transactions write the same item, and leave one that is there as it is.
    other = {**reader, "email": "yann@example.com"}
    assert put_new_subscribers(tables, SUBS, "three", [reader, other]) == [True, True]
    assert put_new_subscribers(tables, SUBS, "three", [{**reader, "name": "X"}, {**other, "name": "Y"}]) == [False] * 2
    three = {i["email"]["S"]: i for i in tables.scan(TableName=SUBS)["Items"] if i["list_id"]["S"] == "three"}
    assert strip(three["zoe@example.com"]) == strip(items["one"]) and three["yann@example.com"]["name"] == {"S": "Zoë"}


def client_error(code: str, status: int = 400, **extra):
    from botocore.exceptions import ClientError

    response = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}, **extra}
    return ClientError(response, "TransactWriteItems")


def addresses(request: dict) -> list[str]:
    return [action["Put"]["Item"]["email"]["S"] for action in request["TransactItems"]]


class Flaky:
    """The moto client, whose TransactWriteItems with one address fails `times` times first; `made`:
    "before", the transaction is made before the error, as when DynamoDB's answer is lost; "later",
    it is made after the error, just before the next call (it was still under way)."""

    def __init__(self, ddb, address: str, times: int, error: Exception, made: str = ""):
        self.ddb, self.address, self.times, self.error, self.made = ddb, address, times, error, made
        self.calls = 0
        self.tokens: list[str] = []
        self.late: dict | None = None
        self.lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.ddb, name)

    def transact_write_items(self, **request):
        self.tokens.append(request["ClientRequestToken"])
        if self.late is not None:
            late, self.late = self.late, None
            self.ddb.transact_write_items(**late)
        if self.address in addresses(request):
            with self.lock:
                self.calls += 1
                failing = self.calls <= self.times
            if failing:
                if self.made == "before":
                    self.ddb.transact_write_items(**request)
                elif self.made == "later":
                    self.late = request
                raise self.error
        return self.ddb.transact_write_items(**request)


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    from newsletter.store import subscribers as store

    waited: list[float] = []
    monkeypatch.setattr(store, "clock", types.SimpleNamespace(sleep=waited.append))  # backoff, without the wait
    return waited


THREE = "email,name\na@example.com,A\nb@example.com,B\nc@example.com,C\n"


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
def test_a_throttled_write_is_retried_and_the_row_imported_once(tables, tmp_path, sleeps, code):
    client = Flaky(tables, "b@example.com", 2, client_error(code))
    r = run(client, csv_file(tmp_path, THREE))
    assert (r.rows, r.imported, r.existing) == (3, 3, 0) and accounted(r)
    assert client.calls == 3 and len(sleeps) == 2 and sleeps[0] < sleeps[1]  # backing off
    assert set(stored(tables)) == {"a@example.com", "b@example.com", "c@example.com"}


def test_a_write_throttled_for_good_stops_the_import_and_is_not_counted(tables, tmp_path, sleeps):
    from botocore.exceptions import ClientError

    client = Flaky(tables, "b@example.com", 100, client_error("ProvisionedThroughputExceededException"))
    with pytest.raises(ClientError, match="ProvisionedThroughputExceeded") as exc:
        run(client, csv_file(tmp_path, THREE))
    assert client.calls == 8 and len(sleeps) == 7
    # The other writes under way finish; once one has failed for good, no more are started.
    made = set(stored(tables))
    assert "b@example.com" not in made
    assert exc.value.__notes__ == [
        f"{len(made)} of 3 rows read were imported before this error; importing the same file again is safe "
        "(they come back as existing)."
    ]
    again = run(tables, csv_file(tmp_path, THREE))
    assert (again.imported, again.existing) == (3 - len(made), len(made))


@pytest.mark.parametrize("made", ["before", "later", ""])
def test_a_transaction_whose_answer_was_lost_counts_what_was_written(tables, tmp_path, sleeps, made):
    """Made before the answer was lost: the items read back are ours. Made later (still under way
    when they were read back): sent again, the failed conditions are read back and are ours. Not
    made: sent again. In each case all three are imported, once, none counted as existing."""
    put_subscribers(tables, SUBS, LIST, [{"email": "d@example.com", "name": "Theirs", "status": "unsubscribed"}])
    client = Flaky(tables, "b@example.com", 1, client_error("InternalServerError", 500), made=made)
    r = run(client, csv_file(tmp_path, THREE))
    assert (r.imported, r.existing) == (3, 0) and accounted(r)
    assert client.calls == (1 if made == "before" else 2) and len(stored(tables)) == 4
    assert len(set(client.tokens)) == len(client.tokens)  # a token of its own for each call
    assert {a: i["name"] for a, i in stored(tables).items()} == {
        "a@example.com": "A",
        "b@example.com": "B",
        "c@example.com": "C",
        "d@example.com": "Theirs",
    }


class Cancelling:
    """The moto client, whose first TransactWriteItems is cancelled with `reasons` (by position;
    the rest None) and not made; later calls go through."""

    def __init__(self, ddb, reasons: dict[int, str]):
        self.ddb, self.reasons, self.calls = ddb, reasons, []

    def __getattr__(self, name):
        return getattr(self.ddb, name)

    def transact_write_items(self, **request):
        self.calls.append(addresses(request))
        if len(self.calls) == 1:
            reasons = [{"Code": self.reasons.get(n, "None")} for n in range(len(request["TransactItems"]))]
            raise client_error("TransactionCanceledException", CancellationReasons=reasons)
        return self.ddb.transact_write_items(**request)


@pytest.mark.parametrize("reason", ["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"])
def test_puts_cancelled_by_a_conflict_or_throttling_go_again_after_a_backoff(tables, tmp_path, sleeps, reason):
    client = Cancelling(tables, {1: reason})
    r = run(client, csv_file(tmp_path, THREE))
    assert (r.imported, r.existing) == (3, 0) and accounted(r)
    assert client.calls == [["a@example.com", "b@example.com", "c@example.com"]] * 2 and len(sleeps) == 1
    assert set(stored(tables)) == {"a@example.com", "b@example.com", "c@example.com"}


def test_a_cancelled_transaction_goes_again_without_those_who_are_there(tables, tmp_path, sleeps):
    put_subscribers(tables, SUBS, LIST, [{"email": "b@example.com", "name": "Theirs", "status": "unsubscribed"}])
    from newsletter.store.subscribers import put_new_subscribers

    # As DynamoDB answers: b's Put fails its condition, the others' reasons are None.
    client = Cancelling(tables, {1: "ConditionalCheckFailed"})
    people = [{"email": f"{x}@example.com", "name": x.upper(), "status": "active"} for x in "abc"]
    assert put_new_subscribers(client, SUBS, LIST, people) == [True, False, True]
    assert client.calls[1] == ["a@example.com", "c@example.com"] and not sleeps  # at once: no backoff
    assert stored(tables)["b@example.com"]["name"] == "Theirs"


class Watched:
    """A DynamoDB (fakes/slow_dynamodb.py, 2 ms a request) with a client's 10 connections, counting
    the TransactWriteItems calls under way at once."""

    def __init__(self, ddb):
        self.ddb, self.now, self.most, self.calls = ddb, 0, 0, 0
        self.lock = threading.Lock()
        self.meta = types.SimpleNamespace(config=types.SimpleNamespace(max_pool_connections=10), endpoint_url=None)

    def __getattr__(self, name):
        return getattr(self.ddb, name)

    def transact_write_items(self, **request):
        with self.lock:
            self.now += 1
            self.calls += 1
            self.most = max(self.most, self.now)
        try:
            return self.ddb.transact_write_items(**request)
        finally:
            with self.lock:
                self.now -= 1


def test_writes_overlap_up_to_the_clients_connections(tables, tmp_path):
    from fakes.slow_dynamodb import SlowDynamoDB

    client = Watched(SlowDynamoDB({SUBS: ("pk", "email"), SUPP: ("email", None)}, latency=0.002))
    path = csv_file(tmp_path, "email\n" + "".join(f"w{i}@example.com\n" for i in range(1500)))
    assert run(client, path).imported == 1500  # 15 transactions of 100
    assert tables.meta.config.max_pool_connections == 10  # botocore's default
    assert 1 < client.most <= 10


def test_against_moto_the_transactions_go_one_at_a_time(tables, tmp_path):
    # moto copies every table for a transaction, unsafe while another changes one (the local stack).
    client = Watched(tables)
    client.meta = tables.meta
    # Three transactions (100, 100, 50) that would overlap: moto's copies make every one slower.
    path = csv_file(tmp_path, "email\n" + "".join(f"w{i}@example.com\n" for i in range(250)))
    assert run(client, path).imported == 250 and len(stored(tables)) == 250
    assert client.most == 1 and client.calls >= 3
    assert not cli._moto(types.SimpleNamespace(meta=types.SimpleNamespace(endpoint_url=None)))


def test_the_deployed_stacks_client_has_a_connection_for_each_writer():
    import boto3

    from newsletter_cli.stack import Target

    target = Target("stack", "newsletter", {}, session=boto3.Session(region_name="us-east-1"))
    client = target.client("dynamodb")
    assert client.meta.config.max_pool_connections == cli.WORKERS


def test_the_deployed_stacks_client_leaves_checking_parameters_to_dynamodb():
    # botocore's own check was a third of an import's CPU; DynamoDB checks every request anyway.
    import boto3
    from botocore.awsrequest import AWSResponse

    from newsletter_cli.stack import Target

    class Body:
        def stream(self, **_):
            yield b"{}"

    session = boto3.Session(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    client = Target("stack", "newsletter", {}, session=session).client("dynamodb")
    client.meta.events.register("before-send.dynamodb", lambda request, **_: AWSResponse(request.url, 200, {}, Body()))
    # With botocore's check this raises ParamValidationError before anything is sent.
    assert client.get_item(TableName="t", Key={"email": {"S": "a@example.com"}}, ConsistentRead="yes") is not None


def test_the_deployed_stacks_writer_processes_make_the_same_client():
    import pickle

    import boto3

    from newsletter_cli.stack import DYNAMODB_CONFIG, Target

    target = Target("stack", "newsletter", {}, session=boto3.Session(region_name="eu-west-1"), profile=None)
    spec = pickle.loads(pickle.dumps(target.client_spec()))  # as a writer process receives it
    assert spec == cli.ClientSpec(region="eu-west-1", config=DYNAMODB_CONFIG) and spec.credentials is None
    client = spec.client()
    assert client.meta.region_name == "eu-west-1" and client.meta.config.max_pool_connections == cli.WORKERS
    assert Target("local", "http://127.0.0.1:1", {}, local=object()).client_spec() is None  # moto: one process


# --- export, counts ------------------------------------------------------------------------------------


def test_export_round_trips_through_import(tables, tmp_path):
    path = csv_file(tmp_path, "".join(EXAMPLES.read_text(encoding="utf-8").splitlines(keepends=True)[:151]))
    assert run(tables, path).imported == 150
    put_subscribers(
        tables,
        SUBS,
        LIST,
        [
            {
                "email": "x@example.com",
                "name": "X",
                "status": "complained",
                "language": "de",
                "attributes": {"country": "AT"},
            },
        ],
    )
    out = io.StringIO(newline="")
    assert cli.export_csv(tables, subscribers_table=SUBS, list_id=LIST, out=out) == 151
    assert out.getvalue().splitlines()[0] == "email,name,language,status,organisation,country"
    exported = csv_file(tmp_path, out.getvalue(), "export.csv")

    r = run(tables, exported, list_id="copy")
    assert (r.rows, r.imported) == (151, 151)
    skip = ("pk", "list_id", "consent")  # consent is the import's record: not exported, recorded anew
    strip = lambda items: {a: {k: v for k, v in i.items() if k not in skip} for a, i in items.items()}
    assert strip(stored(tables, "copy")) == strip(stored(tables, LIST))
    assert {i["consent"]["source"] for i in stored(tables, "copy").values()} == {"export.csv"}

    unsubscribed = io.StringIO(newline="")
    n = cli.export_csv(tables, subscribers_table=SUBS, list_id=LIST, out=unsubscribed, status="unsubscribed")
    rows = unsubscribed.getvalue().splitlines()[1:]
    assert n == len(rows) > 0 and all(",unsubscribed," in row for row in rows)


def test_count_by_status(tables, tmp_path):
    assert cli.count_by_status(tables, subscribers_table=SUBS, list_id=LIST) == {
        "active": 0,
        "unsubscribed": 0,
        "bounced": 0,
        "complained": 0,
    }
    statuses = ["active"] * 7 + ["bounced"] * 2 + ["complained"]
    path = csv_file(tmp_path, "email,status\n" + "".join(f"r{i}@example.com,{s}\n" for i, s in enumerate(statuses)))
    run(tables, path)
    run(tables, path, list_id="other")  # another list's subscribers are not counted
    assert cli.count_by_status(tables, subscribers_table=SUBS, list_id=LIST) == {
        "active": 7,
        "unsubscribed": 0,
        "bounced": 2,
        "complained": 1,
    }


# --- the problems report, progress ---------------------------------------------------------------------


def test_many_problems_go_to_a_file_next_to_the_input(tables, tmp_path):
    path = csv_file(tmp_path, "email\n" + "".join(f"bad{i}\n" for i in range(25)) + "ok@example.com\n")
    r = run(tables, path)
    assert r.report_path == tmp_path / "subs.csv.problems.csv"
    assert (r.invalid, r.problem_count, len(r.problems), r.imported) == (25, 25, 25, 1)
    lines = r.report_path.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0] == "line,value,reason" and len(lines) == 26
    assert lines[1].startswith("2,bad0,") and lines[-1].startswith("26,bad24,")


def test_few_problems_stay_in_memory_unless_a_report_is_asked_for(tables, tmp_path):
    path = csv_file(tmp_path, "email\nbad\nok@example.com\n")
    r = run(tables, path)
    assert r.report_path is None and r.problem_count == 1
    assert not (tmp_path / "subs.csv.problems.csv").exists()
    asked = tmp_path / "report.csv"
    r = run(tables, path, report_path=asked)
    assert r.report_path == asked and asked.read_text(encoding="utf-8-sig").splitlines()[1].startswith("2,bad,")


def test_only_the_first_thousand_problems_are_kept_in_memory(tables, tmp_path):
    path = csv_file(tmp_path, "email\n" + "bad\n" * 1100)  # no address: no table is asked
    r = run(tables, path)
    assert (r.invalid, r.problem_count, len(r.problems)) == (1100, 1100, 1000)
    assert len(r.report_path.read_text(encoding="utf-8-sig").splitlines()) == 1101


def test_progress_after_each_chunk_ends_at_the_file_size(tables, tmp_path):
    path = csv_file(tmp_path, "email\n" + "".join(f"p{i}@example.com\n" for i in range(35)))
    calls: list[tuple[int, int]] = []
    run(tables, path, chunk=10, progress=lambda rows, done: calls.append((rows, done)))
    assert [rows for rows, _ in calls] == [10, 20, 30, 35]
    assert calls[-1][1] == path.stat().st_size
    assert all(a[1] <= b[1] for a, b in zip(calls, calls[1:], strict=False))


class BrokenDynamo:
    """Finds nothing, takes the first 25 writes, and fails for good from then on."""

    def __init__(self):
        self.writes = 0
        self.lock = threading.Lock()

    def batch_get_item(self, RequestItems: dict) -> dict:
        return {"Responses": {t: [] for t in RequestItems}}

    def transact_write_items(self, TransactItems: list, **_) -> dict:
        with self.lock:
            if self.writes + len(TransactItems) > 25:
                raise RuntimeError("throttled for good")
            self.writes += len(TransactItems)
        return {}


def test_a_failure_mid_import_says_how_far_it_got(tmp_path):
    path = csv_file(tmp_path, "email\n" + "".join(f"f{i}@example.com\n" for i in range(60)) + "bad\n")
    report = tmp_path / "report.csv"
    with pytest.raises(RuntimeError, match="throttled") as exc:
        cli.import_csv(
            BrokenDynamo(),
            subscribers_table=SUBS,
            suppressions_table=SUPP,
            list_id=LIST,
            path=path,
            chunk=25,
            report_path=report,
        )
    # The second chunk's writes fail while the rest of the file is read; the failure stops the
    # import at the next chunk, and only the writes that were made count.
    assert exc.value.__notes__ == [
        "25 of 61 rows read were imported before this error; importing the same file again is safe "
        "(they come back as existing)."
    ]
    assert report.read_bytes() == b"\xef\xbb\xbfline,value,reason\r\n"  # flushed and closed


# --- a huge file ------------------------------------------------------------------------------------------


class FakeDynamo:
    """BatchGetItem and TransactWriteItems of conditional Puts over a bitmap indexed by the row number
    in the address (r0000123@…), so that its own memory stays tiny and tracemalloc measures the
    import. Checks DynamoDB's limits and the conditions, leaves some keys for a retry and throttles
    some transactions. Thread-safe, as the import writes from many threads."""

    def __init__(self, rows: int, existing: set[int], suppressed: set[int]):
        self.on_list = bytearray(rows)
        for i in existing:
            self.on_list[i] = 1
        self.suppressed = suppressed
        self.gets = self.writes = self.written = self.retried = 0
        self.lock = threading.Lock()

    @staticmethod
    def row(address: str) -> int:
        return int(address[1:8])

    def batch_get_item(self, RequestItems: dict) -> dict:
        with self.lock:
            self.gets += 1
            gets = self.gets
        assert sum(len(r["Keys"]) for r in RequestItems.values()) <= 100
        responses, unprocessed = {}, {}
        for table, request in RequestItems.items():
            keys = request["Keys"]
            emails = [k["email"]["S"] for k in keys]
            assert len(set(emails)) == len(emails)
            if gets % 37 == 1 and len(keys) > 3:  # AWS may return some keys unprocessed
                unprocessed[table] = {**request, "Keys": keys[-3:]}
                emails = emails[:-3]
            if table == SUBS:
                assert request["ConsistentRead"] is True
                responses[table] = [{"email": {"S": e}} for e in emails if self.on_list[self.row(e)]]
            else:
                gone = [e for e in emails if self.row(e) in self.suppressed]
                responses[table] = [{"email": {"S": e}, "reason": {"S": "bounce"}} for e in gone]
        return {"Responses": responses, "UnprocessedKeys": unprocessed}

    def transact_write_items(self, TransactItems: list, ClientRequestToken: str) -> dict:
        from botocore.exceptions import ClientError

        assert 0 < len(TransactItems) <= 100 and len(ClientRequestToken) >= 32
        rows = []
        for action in TransactItems:
            put = action["Put"]
            assert put["TableName"] == SUBS and put["ConditionExpression"] == "attribute_not_exists(email)"
            item, email = put["Item"], put["Item"]["email"]["S"]
            assert item["pk"]["S"] == partition("big", shard_of(email)) and item["list_id"]["S"] == "big"
            assert item["consent"]["M"]["method"] == {"S": "import"}
            rows.append(self.row(email))
        assert len(set(rows)) == len(rows)  # DynamoDB refuses two actions on one item
        with self.lock:
            self.writes += 1
            if self.writes % 7 == 1:  # throttled: nothing written
                self.retried += 1
                error = {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}
                raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, "TransactWriteItems")
            if any(self.on_list[r] for r in rows):  # all or nothing
                reasons = [{"Code": "ConditionalCheckFailed"} if self.on_list[r] else {"Code": "None"} for r in rows]
                error = {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"}
                meta = {"HTTPStatusCode": 400}
                response = {"Error": error, "ResponseMetadata": meta, "CancellationReasons": reasons}
                raise ClientError(response, "TransactWriteItems")
            for r in rows:
                self.on_list[r] = 1
            self.written += len(rows)
        return {}


def write_huge(path: Path, rows: int, existing: set[int], suppressed: set[int]) -> dict[str, int]:
    """rows lines of subscribers with some invalid, duplicate, existing and suppressed; the counts import must find."""
    expected = dict.fromkeys(("imported", "existing", "duplicates", "suppressed", "invalid"), 0)
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("email,name,language,status,organisation\r\n")
        for r in range(rows):
            if r % 5000 == 17:
                f.write(f"not-an-address-{r},Reader {r},en,active,Org\r\n")
                expected["invalid"] += 1
            elif r % 1000 == 999:  # the address of row r-150, shouted: a duplicate from an earlier chunk
                f.write(f"R{r - 150:07d}@EXAMPLE.COM,Reader {r},en,active,Org\r\n")
                expected["duplicates"] += 1
            else:
                f.write(f"r{r:07d}@example.com,Reader {r},en,active,Organisation {r % 97}\r\n")
                expected["existing" if r in existing else "suppressed" if r in suppressed else "imported"] += 1
    return expected


# tracemalloc slows every allocation ~9x: 16,000 traced rows take ~8 s on this 2-core machine,
# 200,000 would take ~100 s. What is measured is memory per row, which does not depend on the count.
HUGE_ROWS = 16_000


def test_a_huge_file_streams_in_little_memory(tmp_path, monkeypatch):
    from newsletter.store import subscribers as store

    sleeps: list[float] = []
    monkeypatch.setattr(store, "clock", types.SimpleNamespace(sleep=sleeps.append))  # backoff, without the wait
    rows = HUGE_ROWS
    existing = {i for i in range(rows) if i % 2000 == 5}
    suppressed = {i for i in range(rows) if i % 3000 == 11}
    path = tmp_path / "huge.csv"
    expected = write_huge(path, rows, existing, suppressed)
    size = path.stat().st_size
    # Warm up first: lazy imports and first-call caches are not the import's memory.
    warm = csv_file(tmp_path, "email\nr0000000@example.com\n", "warm.csv")
    cli.import_csv(
        FakeDynamo(1, set(), set()), subscribers_table=SUBS, suppressions_table=SUPP, list_id="big", path=warm
    )
    fake = FakeDynamo(rows, existing, suppressed)
    calls: list[tuple[int, int]] = []

    tracemalloc.start()
    try:
        r = cli.import_csv(
            fake,
            subscribers_table=SUBS,
            suppressions_table=SUPP,
            list_id="big",
            path=path,
            progress=lambda n, done: calls.append((n, done)),
            report_path=tmp_path / "problems.csv",
            # What a chunk and a worker hold is the same for any file (bench/import_rate.py measures
            # it for the defaults up to a million rows); small ones let a per-row cost show here.
            # 50: a transaction holds its items' wire form at once (chunks of 100, one transaction
            # each, peaked at ~1.03 MB for this 0.96 MB file; 50 at ~0.80 MB).
            chunk=50,
            workers=4,
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert {k: getattr(r, k) for k in expected} == expected and r.rows == rows and accounted(r)
    assert fake.written == expected["imported"] and sum(fake.on_list) == len(existing) + expected["imported"]
    assert fake.retried > 0 and sleeps  # throttled writes and unprocessed keys were retried, with backoff
    assert len(calls) == rows // 50 + 1 and calls[-1] == (rows, size)
    assert len(r.problems) == r.problem_count == expected["invalid"] + expected["duplicates"] + expected["suppressed"]
    # Loading the file (a list of csv.DictReader rows) takes ~8x its size. Streaming holds two chunks
    # (one read, one written) and 8-16 bytes of hash an address (24 while the table grows): under
    # the file's own size.
    assert peak < size, f"peak {peak / 1e6:.2f} MB for a {size / 1e6:.2f} MB file"


# --- writer processes, through a DynamoDB endpoint on 127.0.0.1 ----------------------------------------


@pytest.fixture
def endpoint():
    """serve(fake): the fake (fakes/slow_dynamodb.py) answering DynamoDB's HTTP protocol on
    127.0.0.1 in this process; returns a boto3 client to it and the ClientSpec writer processes
    make theirs from. Never the network; moto is not running here."""

    from fakes.dynamodb_http import endpoint_url, serve

    servers = []

    def start(fake, *, serial: bool = False):
        server = serve(fake)
        servers.append(server)
        spec = cli.ClientSpec(
            region="us-east-1",
            endpoint_url=endpoint_url(server),
            credentials=("testing", "testing", None),
            config={"max_pool_connections": 16, "parameter_validation": False},
            serial=serial,
        )
        return spec.client(), spec

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def slow_tables(cls=None, latency: float = 0.0, **kwargs):
    """A SlowDynamoDB (or subclass) with an unsubscribed reader and a suppressed address."""
    from fakes.slow_dynamodb import SlowDynamoDB
    from newsletter.store.subscribers import new_item

    fake = (cls or SlowDynamoDB)({SUBS: ("pk", "email"), SUPP: ("email", None)}, latency=latency, **kwargs)
    before = {"email": "old@example.com", "name": "Before", "status": "unsubscribed", "language": "de"}
    fake.seed(SUBS, [new_item(LIST, before), new_item("here", before)])
    fake.seed(SUPP, [{"email": {"S": "gone@example.com"}, "reason": {"S": "bounce"}}])
    return fake


def fake_stored(fake, list_id: str = LIST) -> dict[str, dict]:
    items = (from_item(i) for k, i in fake.items.items() if k[0] == SUBS)
    return {i["email"]: i for i in items if i["list_id"] == list_id}


MIXED = (
    "email,name,status\n"
    "a@example.com,A,active\n"
    "not-an-address,X,active\n"
    "OLD@example.com,Theirs,active\n"
    "gone@example.com,G,active\n"
    "b@example.com,B,active\n"
    "A@EXAMPLE.COM,Again in the same chunk,active\n"
    "c@example.com,C,active\n"
    "B@example.com,Again in a later chunk,active\n"
    "old@example.com,Twice,active\n"
    + "".join(f"r{i}@example.com,Reader {i},active\n" for i in range(40))
    + "r7@EXAMPLE.com,Again much later,active\n"
)


def test_writer_processes_import_as_this_process_does(endpoint, tmp_path):
    fake = slow_tables()
    ddb, spec = endpoint(fake)
    path = csv_file(tmp_path, MIXED)
    here = run(ddb, path, list_id="here", chunk=4, writers=0, client_spec=spec, report_path=tmp_path / "here.csv")
    apart = run(ddb, path, chunk=4, writers=2, client_spec=spec, report_path=tmp_path / "apart.csv")

    def report(r):
        return {k: v for k, v in vars(r).items() if k != "report_path"}

    assert report(apart) == report(here) and accounted(apart)
    assert (apart.rows, apart.imported, apart.existing, apart.duplicates, apart.suppressed, apart.invalid) == (
        50,
        43,
        1,
        4,
        1,
        1,
    )
    assert [(p.line, p.reason.split(" (")[0]) for p in apart.problems] == [
        (3, "An email address must have an @-sign."),
        (5, "suppressed"),
        (7, "duplicate of an earlier row"),
        (9, "duplicate of an earlier row"),
        (10, "duplicate of an earlier row"),
        (51, "duplicate of an earlier row"),
    ]
    assert (tmp_path / "apart.csv").read_text("utf-8-sig") == (tmp_path / "here.csv").read_text("utf-8-sig")
    people = fake_stored(fake)
    assert people["old@example.com"]["name"] == "Before" and people["old@example.com"]["status"] == "unsubscribed"
    assert "consent" not in people["old@example.com"] and "gone@example.com" not in people
    assert people["a@example.com"]["name"] == "A" and people["b@example.com"]["name"] == "B"
    assert {p["consent"]["source"] for e, p in people.items() if e != "old@example.com"} == {"subs.csv"}
    assert len(people) == 44 and fake.calls["TransactWriteItems"] >= 2 * 13  # each writer: a part of each chunk


def test_a_big_file_with_a_client_spec_goes_to_writer_processes(endpoint, tmp_path, monkeypatch):
    made = []

    class Spy(cli.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(kwargs.get("initializer"))

    monkeypatch.setattr(cli, "ProcessPoolExecutor", Spy)
    monkeypatch.setattr(cli, "WRITERS", 2)
    fake = slow_tables()
    ddb, spec = endpoint(fake)
    path = csv_file(tmp_path, "email\n" + "".join(f"w{i}@example.com\n" for i in range(30)))
    assert run(ddb, path, chunk=10, client_spec=spec).imported == 30 and not made  # small: one process
    monkeypatch.setattr(cli, "CHECK_APART_BYTES", path.stat().st_size)
    assert run(ddb, path, list_id="big", chunk=10).imported == 30 and made == [cli._quiet]  # no spec: no writers
    made.clear()
    assert run(ddb, path, list_id="big", chunk=10, client_spec=spec).existing == 30
    assert made == [cli._start_writer, cli._start_writer]  # two writers; rows checked here, with CPU to spare
    moto_like = cli.ClientSpec(endpoint_url=spec.endpoint_url, credentials=spec.credentials, region="us-east-1")
    made.clear()
    assert run(ddb, path, list_id="moto", chunk=10, client_spec=moto_like).imported == 30
    assert made == [cli._quiet]  # 127.0.0.1 may be moto: one process, one transaction at a time


class Hiding:
    """Lookups miss one existing reader, as if they signed up just after it."""

    def batch_get_item(self, **request):
        result = super().batch_get_item(**request)
        if SUBS in result["Responses"]:
            result["Responses"][SUBS] = [i for i in result["Responses"][SUBS] if i["email"]["S"] != "old@example.com"]
        return result


def test_writer_processes_send_a_cancelled_transaction_again_without_who_is_there(endpoint, tmp_path):
    from fakes.slow_dynamodb import SlowDynamoDB

    fake = slow_tables(type("HidingDynamoDB", (Hiding, SlowDynamoDB), {}))
    ddb, spec = endpoint(fake)
    path = csv_file(
        tmp_path, "email,name\n" + "".join(f"r{i}@example.com,R\n" for i in range(10)) + "old@example.com,X\n"
    )
    r = run(ddb, path, chunk=100, writers=2, client_spec=spec)
    assert (r.imported, r.existing) == (10, 1) and accounted(r)
    assert fake_stored(fake)["old@example.com"]["name"] == "Before" and len(fake_stored(fake)) == 11


class Overlaps:
    """Counts the TransactWriteItems under way at once, each taking 20 ms."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.now = self.most = 0

    def transact_write_items(self, **request):
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.02)
            return super().transact_write_items(**request)
        finally:
            with self._lock:
                self.now -= 1


def test_against_a_serial_endpoint_the_writer_processes_take_turns(endpoint, tmp_path):
    from fakes.slow_dynamodb import SlowDynamoDB

    fake = slow_tables(type("Overlapping", (Overlaps, SlowDynamoDB), {}))
    ddb, spec = endpoint(fake, serial=True)
    path = csv_file(tmp_path, "email\n" + "".join(f"t{i}@example.com\n" for i in range(800)))
    assert run(ddb, path, chunk=400, writers=2, client_spec=spec).imported == 800
    assert fake.most == 1 and fake.calls["TransactWriteItems"] >= 8


class FailingLater:
    """Transactions fail for good (a ValidationException) from the `after`-th on."""

    after = 3

    def transact_write_items(self, **request):
        with self._lock:
            self.after -= 1
            failing = self.after < 0
        if failing:
            from fakes.errors import client_error

            raise client_error("ValidationException", "refused", "TransactWriteItems")
        return super().transact_write_items(**request)


def test_writer_processes_failing_mid_way_say_how_many_were_imported(endpoint, tmp_path):
    from botocore.exceptions import ClientError

    from fakes.slow_dynamodb import SlowDynamoDB

    fake = slow_tables(type("Failing", (FailingLater, SlowDynamoDB), {}))
    ddb, spec = endpoint(fake)
    path = csv_file(tmp_path, "email\n" + "".join(f"f{i}@example.com\n" for i in range(3000)))
    with pytest.raises(ClientError, match="refused") as exc:
        run(ddb, path, chunk=500, writers=2, client_spec=spec)
    written = len(fake_stored(fake)) - 1  # not the reader there before
    assert 0 < written < 3000
    # It stops within a few chunks (those already handed over finish); the count is what was written.
    (note,) = exc.value.__notes__
    read = int(re.fullmatch(rf"{written} of (\d+) rows read were imported before this error; .*", note).group(1))
    assert written < read < 3000
    fake.after = 10**6
    again = run(ddb, path, chunk=500, writers=2, client_spec=spec)
    assert (again.imported, again.existing) == (3000 - written, written)  # the rest, once


def test_a_row_gets_email_validators_verdict_whether_or_not_its_address_is_plain():
    """The import checks plain addresses without email-validator (signup.plain_address): every
    row's verdict and stored address are what email-validator alone makes of it."""
    from email_validator import EmailNotValidError, validate_email
    from test_signup import TRICKY_ADDRESSES, _generated_addresses

    from newsletter.privacy import normalise_address

    columns = cli._Columns(["email", "name"], ",")
    for address in TRICKY_ADDRESSES + _generated_addresses(3000):
        if not address.strip():
            continue  # "no email address", before any check
        try:
            found = validate_email(address.strip(), check_deliverability=False, allow_smtputf8=False)
            expected = normalise_address(found.ascii_email or found.normalized)
        except EmailNotValidError as exc:
            expected = str(exc)
        value, subscriber = columns.subscriber([address, ""])
        assert (subscriber if isinstance(subscriber, str) else subscriber["email"]) == expected, address


def test_a_writer_that_cannot_make_its_client_says_why_and_nothing_is_written(endpoint, tmp_path):
    fake = slow_tables()
    ddb, spec = endpoint(fake)
    broken = cli.ClientSpec(region="us-east-1", profile="no-such-profile-here", serial=False)
    with pytest.raises(RuntimeError, match="could not make its DynamoDB client: ProfileNotFound") as caught:
        run(ddb, csv_file(tmp_path, MIXED), chunk=4, writers=2, client_spec=broken)
    assert "0 of" in " ".join(caught.value.__notes__) and set(fake_stored(fake)) == {"old@example.com"}  # as seeded
