"""`run.py import`: CSV and NDJSON history into the samples and the rollups, each file
all or nothing; a bad row is exit 2 and one line naming the file, the line and what was
wrong; a progress line on a terminal; imported rows are history, never events; the
same on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from dashboard.config import load_config
from dashboard.core.times import parse_time
from dashboard.storage.importer import ImportFailed, import_file
from dashboard.storage.rollups import HOUR, MINUTE, Plan
from dashboard.storage.store import Store
from tests.configs import dashboard, loopback_server, push_widget, push_widgets, table, widget
from tests.helpers import TOKEN, StreamClient, write_config
from tests.process import ROOT
from tests.test_rollups import as_rows, assert_same, brute_force
from tests.test_store import INEXACT_AS_TEXT
from tests.webclient import WebClient

CONFIG = (
    loopback_server(storage="sqlite+aiosqlite:///data/import.db")
    + table("api", tokens={"test": TOKEN}, history_limit=5000, rate="100000/s", burst=100000)
    + dashboard("main", ["cpu", "up", "note", "clock"])
    + push_widget("cpu", "graph", history="30d")
    + push_widget("up", "status")
    + push_widgets(note="text")
    + widget("clock", "clock")
    + push_widget("old", "number", enabled=False)
)
T0 = 1_790_000_000  # 2026-09-21T14:13:20Z


def run_import(config, *files, **outputs) -> subprocess.CompletedProcess:
    """run.py import; stdout and stderr captured unless given."""
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "import", "--config", str(config), *map(str, files)],
        cwd=ROOT,
        text=True,
        timeout=120,
        **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **outputs},
    )


def rows_of(database) -> list[tuple]:
    with closing(sqlite3.connect(database)) as db:
        return db.execute("SELECT id, widget, ts, value, status FROM samples ORDER BY id").fetchall()


def test_csv_and_ndjson_are_imported_with_ids_below_zero_and_values_as_their_views_keep_them(tmp_path):
    config = write_config(tmp_path, CONFIG)
    (tmp_path / "cpu.csv").write_text(
        "widget,ts,value\n"
        f"cpu,{T0},12.5\n"
        f"cpu,{T0 + 60.25},13\n"
        'note,2026-09-21T14:15:00Z,"""text, with a comma"""\n'
        "\n"  # a blank line is skipped
        f'up,{T0 + 120},"""warn"""\n'
    )
    (tmp_path / "up.ndjson").write_text(
        json.dumps({"widget": "up", "ts": "2026-09-21T16:13:20+02:00", "value": {"state": "down", "latency_ms": 5}})
        + "\n"
        + json.dumps({"ts": T0 + 1, "widget": "cpu", "value": 7})
        + "\n"
    )
    result = run_import(config, tmp_path / "cpu.csv", tmp_path / "up.ndjson")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no terminal: no progress line
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'cpu.csv'}: 4 rows imported in ")
    assert lines[1].startswith(f"{tmp_path / 'up.ndjson'}: 2 rows imported in ")
    rows = rows_of(tmp_path / "data" / "import.db")
    # The first file's rows take the ids just below zero, in file order; the second's go below them.
    assert [r[0] for r in rows] == [-6, -5, -4, -3, -2, -1]
    by_id = {r[0]: r[1:] for r in rows}
    assert by_id[-6] == ("up", "2026-09-21 14:13:20.000000", '{"state": "down", "latency_ms": 5}', "ok")
    assert by_id[-5] == ("cpu", "2026-09-21 14:13:21.000000", 7, "ok")
    assert by_id[-4] == ("cpu", "2026-09-21 14:13:20.000000", 12.5, "ok")
    assert by_id[-3] == ("cpu", "2026-09-21 14:14:20.250000", 13, "ok")
    assert by_id[-2] == ("note", "2026-09-21 14:15:00.000000", '"text, with a comma"', "ok")
    assert by_id[-1] == ("up", "2026-09-21 14:15:20.000000", '{"state": "warn"}', "ok")


@pytest.mark.parametrize(
    ("name", "content", "line", "problem"),
    [
        ("unknown widget", "widget,ts,value\ncpu,1,1\nmem,1,1\n", 3, 'widget: unknown widget "mem"'),
        ("clock", "widget,ts,value\nclock,1,1\n", 2, 'widget: widget "clock" is a clock and takes no values'),
        ("ts", "widget,ts,value\ncpu,yesterday,1\n", 2, "expected ISO 8601 or Unix seconds, got 'yesterday'"),
        ("disabled", "widget,ts,value\nold,1,1\n", 2, 'widget: widget "old" is disabled (enabled = false)'),
        ("ts before 1970", "widget,ts,value\ncpu,-5,1\n", 2, 'ts: expected a time from 1970 to 9999, got "-5"'),
        ("ts past 9999", "widget,ts,value\ncpu,1e300,1\n", 2, 'ts: expected a time from 1970 to 9999, got "1e300"'),
        ("ts in the future", "widget,ts,value\ncpu,9999-12-31T23:59:59Z,1\n", 2, "ts: expected a time before now"),
        ("ts nan", "widget,ts,value\ncpu,nan,1\n", 2, "ts: expected ISO 8601 or Unix seconds, got 'nan'"),
        ("ts _", "widget,ts,value\ncpu,1_790_000_000,1\n", 2, "ts: expected ISO 8601 or Unix seconds, got '1_790"),
        (
            "ts in other digits",
            "widget,ts,value\ncpu,١٧٩٠٠٠٠٠٠٠,1\n",
            2,
            "ts: expected ISO 8601 or Unix seconds, got '١٧٩",
        ),
        (
            "ts of 400 digits",
            '{"widget": "cpu", "ts": 1' + "0" * 400 + ', "value": 1}\n',
            1,
            'ts: expected a time from 1970 to 9999, got "1000000000000000000000000000000000000..."',
        ),
        ("ts 1e400", '{"widget": "cpu", "ts": 1e400, "value": 1}\n', 1, "ts: expected a time from 1970 to 9999"),
        # A record's line is where it starts, also when a quoted field goes on over lines.
        ("record over lines", 'widget,ts,value\ncpu,bad,"[1,\n2,\n3]"\n', 2, "ts: expected ISO 8601"),
        ("CR line ends", "widget,ts,value\rcpu,1,1\r", 1, "expected CSV with lines ending in LF or CRLF, got: "),
        ("CR in a field", "widget,ts,value\ncpu,17\r00,1\n", 2, "expected CSV with lines ending in LF or CRLF, got: "),
        (
            "a field past the limit",
            'widget,ts,value\nnote,1,"""' + ("x" * 500_000 + "\n") * 3 + '"""\n',
            2,
            "expected CSV with lines ending in LF or CRLF, got: field larger than field limit (1048576)",
        ),
        ("a line past the limit", "widget,ts,value\nnote,1," + "1" * 1_100_000 + "\n", 2, "expected lines of at most"),
        (
            "not json",
            "widget,ts,value\ncpu,1,1\ncpu,2,high\n",
            3,
            'value: expected a number or JSON (text in double quotes: """text"""), got "high"',
        ),
        (
            "NaN",
            "widget,ts,value\ncpu,1,NaN\n",
            2,
            'value: expected a number or JSON (text in double quotes: """text"""), got "NaN"',
        ),
        (
            "text for a graph",
            'widget,ts,value\ncpu,1,"""up"""\n',
            2,
            "value: widget \"cpu\" (graph): expected a number, got text 'up'",
        ),
        (
            "bad state",
            'widget,ts,value\nup,1,"""maybe"""\n',
            2,
            'value: widget "up" (status): expected "ok", "warn" or "down"',
        ),
        ("fields", "widget,ts,value\ncpu,1\n", 2, "expected 3 fields (widget, ts, value), got 2"),
        (
            "header",
            "name,time,value\ncpu,1,1\n",
            1,
            'expected a header with the columns widget, ts and value, got "name,time,value"',
        ),
        (
            "ndjson",
            '{"widget": "cpu", "ts": 1, "value": 1}\n{"widget": "cpu", "ts": 2,\n',
            2,
            "expected a JSON object, got invalid JSON",
        ),
        (
            "ndjson keys",
            '{"widget": "cpu", "ts": 1, "value": 1, "unit": "%"}\n',
            1,
            'expected an object with exactly "widget", "ts" and "value"',
        ),
        (
            "ndjson ts",
            '{"widget": "cpu", "ts": true, "value": 1}\n',
            1,
            "ts: expected ISO 8601 or Unix seconds, got true",
        ),
        ("bytes", b"widget,ts,value\ncpu,1,1\ncpu,2,\xff\xfe\n", 3, "expected UTF-8 text, got other bytes"),
    ],
)
def test_a_bad_row_is_exit_2_one_line_and_nothing_of_its_file(tmp_path, name, content, line, problem):
    config = write_config(tmp_path, CONFIG)
    good = tmp_path / "good.csv"
    good.write_text(f"widget,ts,value\ncpu,{T0},1\n")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run_import(config, good, bad)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {bad}:{line}: "), lines[0]
    assert problem in lines[0]
    assert "Traceback" not in result.stderr
    # The file before it stays imported; nothing of the bad one is.
    assert [r[1:3] for r in rows_of(tmp_path / "data" / "import.db")] == [("cpu", "2026-09-21 14:13:20.000000")]


def test_the_command_line_refuses_files_elsewhere_and_wants_some_for_import(tmp_path):
    config = write_config(tmp_path, CONFIG)
    result = subprocess.run(
        [sys.executable, "run.py", "import", "--config", str(config)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2 and "import: expected one or more CSV or NDJSON files" in result.stderr
    result = subprocess.run([sys.executable, "run.py", "check", "x.csv"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "check takes no files" in result.stderr
    missing = run_import(config, tmp_path / "nowhere.csv")
    assert missing.returncode == 2
    assert missing.stderr == f"error: {tmp_path / 'nowhere.csv'}: cannot read it: No such file or directory\n"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it would wait for a writer for ever
    weird = tmp_path / "new\nline\x1b[2J.csv"
    weird.mkdir()
    for path, problem in [
        (fifo, "expected a regular file, got a FIFO (write it to a file first)"),
        ("/dev/zero", "expected a regular file, got a character device"),
        (weird, "expected a regular file, got a directory"),
    ]:
        result = run_import(config, path)
        assert result.returncode == 2
        shown = str(path).replace("\n", "\\x0a").replace("\x1b", "\\x1b")  # as a terminal cannot act on it
        assert result.stderr == f"error: {shown}: {problem}\n"


def test_an_interrupted_import_stores_nothing_of_its_file_and_says_so(tmp_path):
    config = write_config(tmp_path, CONFIG)
    data = tmp_path / "big.csv"
    data.write_text("widget,ts,value\n" + "".join(f"cpu,{T0 + i},{i % 100}\n" for i in range(400_000)))
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "import", "--config", str(config), str(data)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Interrupted once it reads the file (it holds it open), not before.
        deadline = time.monotonic() + 60
        while str(data) not in {os.path.realpath(f"/proc/{process.pid}/fd/{fd}") for fd in _fds(process.pid)}:
            assert process.poll() is None and time.monotonic() < deadline, "the import never opened its file"
            time.sleep(0.005)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert err == "error: import interrupted: the file being imported was not stored\n"
    assert rows_of(tmp_path / "data" / "import.db") == []


def _fds(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return []


def test_every_imported_float_is_stored_as_the_very_same_double(tmp_path):
    config = write_config(tmp_path, CONFIG)
    csv_file, ndjson_file = tmp_path / "floats.csv", tmp_path / "floats.ndjson"
    csv_file.write_text("widget,ts,value\n" + "".join(f"cpu,{T0 + i},{v!r}\n" for i, v in enumerate(INEXACT_AS_TEXT)))
    ndjson_file.write_text(
        "".join(json.dumps({"widget": "cpu", "ts": T0 + i, "value": v}) + "\n" for i, v in enumerate(INEXACT_AS_TEXT))
    )
    for data in (csv_file, ndjson_file):
        assert run_import(config, data).returncode == 0
    with closing(sqlite3.connect(tmp_path / "data" / "import.db")) as db:
        stored = [v for (v,) in db.execute("SELECT value FROM samples ORDER BY id")]
    assert stored == INEXACT_AS_TEXT * 2  # each file in its order (the later one below)


def test_what_csv_and_ndjson_allow_is_imported(tmp_path):
    """A text past CSV's own field limit (128 KiB) and within a value's; NDJSON after a
    blank line."""
    config = write_config(tmp_path, CONFIG)
    long = tmp_path / "long.csv"
    long.write_text(f'widget,ts,value\nnote,{T0},"""' + "y" * 200_000 + '"""\n')
    spaced = tmp_path / "spaced.ndjson"
    spaced.write_text(f'\n  {{"widget": "note", "ts": {T0 + 1}, "value": "z"}}\n')
    result = run_import(config, long, spaced)
    assert result.returncode == 0, result.stderr
    assert [
        (w, len(json.loads(v)))
        for _, w, _, v, _ in sorted(rows_of(tmp_path / "data" / "import.db"), key=lambda r: r[2])
    ] == [
        ("note", 200_000),
        ("note", 1),
    ]


def test_a_database_that_cannot_take_the_import_is_exit_1_and_one_line(tmp_path):
    config = write_config(tmp_path, CONFIG)
    data = tmp_path / "ok.csv"
    data.write_text(f"widget,ts,value\ncpu,{T0},1\n")
    assert run_import(config, data).returncode == 0
    # Another program holds the write lock past the wait (30 s): refused, nothing stored.
    database = tmp_path / "data" / "import.db"
    with closing(sqlite3.connect(database, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        locked = run_import(config, data)
        other.execute("ROLLBACK")
    assert locked.returncode == 1
    assert (
        locked.stderr == f"error: cannot open the database: cannot open the database {database}: database is locked\n"
    )
    assert len(rows_of(database)) == 1
    # A file that is no database.
    database.unlink()
    database.write_bytes(b"not a database" * 1000)
    damaged = run_import(config, data)
    assert damaged.returncode == 1
    assert damaged.stderr.startswith(f"error: cannot open the database: the database {database} is damaged")
    assert len(damaged.stderr.splitlines()) == 1


def test_a_terminal_gets_a_progress_line(tmp_path):
    config = write_config(tmp_path, CONFIG)
    data = tmp_path / "big.csv"
    data.write_text("widget,ts,value\n" + "".join(f"cpu,{T0 + i},{i % 100}\n" for i in range(50_000)))
    leader, follower = pty.openpty()
    try:
        result = run_import(config, data, stderr=follower)
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: everything is read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert result.returncode == 0
    shown = seen.decode()
    assert "\rimporting ..." in shown  # the path, cut to its last characters
    assert " 100 %  50,000 rows" in shown
    assert shown.endswith("\r")  # the line is cleared: the result goes to stdout
    assert "50,000 rows imported" in result.stdout


@pytest.mark.gen_test(timeout=60)
async def test_imported_rows_are_history_not_events(servers, tmp_path):
    server = await servers.start(CONFIG, directory=tmp_path)
    first = await server.record("cpu", 1)
    client = await StreamClient.open(server.url("/events/main"), last_event_id=first.id)
    assert (await client.next_event()).type == "hello"
    data = tmp_path / "old.csv"
    data.write_text("widget,ts,value\n" + "".join(f"cpu,{T0 + 60 * i},{i}\n" for i in range(3000)))
    # Imported into the running server's database, by another process.
    result = await asyncio.get_running_loop().run_in_executor(None, run_import, server.config_path, data)
    assert result.returncode == 0, result.stderr
    after = await server.record("cpu", 2)
    assert after.id == first.id + 1  # live ids go on as if nothing happened
    event = await client.next_widget_event()
    assert (event.last_event_id, json.loads(event.data)["value"]) == (str(after.id), 2)  # not one imported row
    web = WebClient(server.port)
    history = (await web.get("/api/widgets/cpu/history?limit=5000")).json()["samples"]
    assert len(history) == 3002
    assert [s["value"] for s in history[:2]] == [0, 1] and [s["value"] for s in history[-2:]] == [1, 2]  # by time
    since = (await web.get(f"/api/widgets/cpu/history?since={first.id}")).json()["samples"]
    assert [s["value"] for s in since] == [2]  # events after the first: the import is none
    answer = (await web.get(f"/api/widgets/cpu/series?from={T0}&to={T0 + 3000 * 60}&points=60")).json()
    assert sum(answer["n"]) == 3000 and answer["step"] == HOUR * 1000
    client.close()


@pytest.mark.gen_test(timeout=60)
async def test_pushes_go_on_while_an_import_moves_its_rows_in(servers, tmp_path):
    server = await servers.start(CONFIG, directory=tmp_path)
    data = tmp_path / "big.csv"
    data.write_text("widget,ts,value\n" + "".join(f"cpu,{T0 + i},{i % 97}\n" for i in range(200_000)))
    importing = asyncio.get_running_loop().run_in_executor(None, run_import, server.config_path, data)
    web = WebClient(server.port, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    answers = []
    while not importing.done():
        answers.append((await web.request("POST", "/api/widgets/note", body=b'{"value": "still here"}')).status)
    assert (await importing).returncode == 0
    assert answers and set(answers) == {200}
    assert len(await server.runtime.store.history("cpu", limit=300_000)) == 200_000


@pytest.mark.gen_test(timeout=60)
async def test_an_import_on_postgresql_is_all_or_nothing_and_rolled_up(pg_url, tmp_path):
    config = load_config(write_config(tmp_path, CONFIG.replace("sqlite+aiosqlite:///data/import.db", pg_url)))
    rows = [("cpu", T0 + 17.5 * i, (i * 13) % 50 + (0.5 if i % 2 else 0), "ok") for i in range(2000)]  # ints, floats
    good = tmp_path / "good.csv"
    good.write_text("widget,ts,value\n" + "".join(f"{w},{s},{v}\n" for w, s, v, _ in rows))
    bad = tmp_path / "bad.csv"
    bad.write_text("widget,ts,value\ncpu,1,1\ncpu,2,x\n")
    store = Store(pg_url)
    await store.open()
    try:
        assert await import_file(store, config, good) == 2000
        with pytest.raises(ImportFailed, match=r"bad.csv:3: value: expected a number or JSON"):
            await import_file(store, config, bad)
        async with store.engine.connect() as conn:
            count, low, high = (await conn.execute(text("SELECT count(*), min(id), max(id) FROM samples"))).one()
        assert (count, low, high) == (2000, -2000, -1)
        end = T0 + 17.5 * 2000
        for step, tier in ((MINUTE, MINUTE), (HOUR, HOUR), (10, 0)):
            start = T0 // step * step
            got = await store.series(["cpu"], Plan(start, int(end) // step * step + step, step, tier))
            assert_same(as_rows(got["cpu"]), brute_force(rows, start, int(end) // step * step + step, step)["cpu"])
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("1790000000", 1_790_000_000.0),
        ("1790000000.25", 1_790_000_000.25),
        ("2026-09-21T14:13:20Z", 1_790_000_000.0),
        ("2026-09-21t14:13:20z", 1_790_000_000.0),  # RFC 3339 allows both in lower case
        ("2026-09-21T16:13:20+02:00", 1_790_000_000.0),
        ("2026-09-21 14:13:20.5", 1_790_000_000.5),
        ("2026-09-21", 1_789_948_800.0),
    ],
)
def test_times_are_iso_8601_or_unix_seconds(written, seconds):
    assert parse_time(written) == seconds
    assert datetime.fromtimestamp(parse_time(written), UTC).year == 2026


@pytest.mark.parametrize("written", ["yesterday", "", "2026-13-01", "1e9", "0x10"])
def test_anything_else_is_not_a_time(written):
    with pytest.raises(ValueError, match="expected ISO 8601 or Unix seconds"):
        parse_time(written)
