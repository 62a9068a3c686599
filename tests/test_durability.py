"""kill -9 in the middle of heavy writes loses nothing that was acknowledged, and
leaves a database that opens, migrates and passes SQLite's integrity check.

The writes: pushes from many connections at once (single values and batches, which
the group commit gathers into shared transactions) and several tickers as fast as the
scheduler runs them. Acknowledged means: the push API answered with the sample's id,
or the sample went out on the event stream (the hub publishes only after the commit).
The rollups the writer had not taken yet when it was killed are taken when the store
opens again: at the end they count every stored sample exactly once."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.configs import dashboard, loopback_server, push_widgets, table, widget
from tests.helpers import TOKEN, StreamClient
from tests.process import ROOT, ServerProcess

TICKERS = ("walk", "walk2", "walk3")
CONFIG = (
    loopback_server(storage="sqlite+aiosqlite:///data/durable.db", grace="2s")
    # The pushers go as fast as they can: no rate limit gets in the way.
    + table("api", tokens={"test": TOKEN}, rate="1000000/s", burst=1000000)
    + dashboard("main", ["pushed", *TICKERS, "batch_a", "batch_b"])
    + push_widgets(pushed="number", batch_a="number", batch_b="text")
    # As fast as the scheduler goes: a write per run, changed or not.
    + "".join(
        widget(
            name,
            "number",
            every="1ms",
            timeout="1s",
            on_change=False,
            source={"kind": "random_walk", "start": 100.0, "volatility": 0.01},
        )
        for name in TICKERS
    )
)

ROUNDS = 3
ACKNOWLEDGED_BEFORE_KILL = 1500
PUSHERS = 16  # connections pushing at once
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


async def push_forever(server: ServerProcess, acknowledged: set[int], pusher: int) -> None:
    """Push single values and batches until the server is gone; keep every id it answered.
    Each pusher has a client, and so a connection, of its own."""
    client = AsyncHTTPClient(force_instance=True)
    n = 0
    while True:
        n += 1
        if n % 2:
            request = (server.url("/api/widgets/pushed"), {"value": pusher * 1_000_000 + n})
        else:
            request = (server.url("/api/widgets"), {"values": {"batch_a": n, "batch_b": f"{pusher}.{n}"}})
        try:
            response = await client.fetch(
                request[0], method="POST", body=json.dumps(request[1]), headers=HEADERS, request_timeout=10
            )
        except Exception:  # refused, reset, 599: the server was killed mid-request
            client.close()
            return
        body = json.loads(response.body)
        acknowledged.update(body["ids"].values() if "ids" in body else [body["id"]])


async def read_stream(server: ServerProcess, acknowledged: set[int]) -> None:
    client = await StreamClient.open(server.url("/events/main"))
    try:
        while True:
            event = await client.next_event(timeout=30)
            if event.last_event_id:
                acknowledged.add(int(event.last_event_id))
    except (EOFError, ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        client.close()


def missing_ids(database, ids: set[int]) -> set[int]:
    ordered = sorted(ids)
    found = set()
    with sqlite3.connect(database) as conn:
        for start in range(0, len(ordered), 500):
            chunk = ordered[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(row[0] for row in conn.execute(f"SELECT id FROM samples WHERE id IN ({marks})", chunk))
    return set(ids) - found


def integrity(database) -> str:
    with sqlite3.connect(database) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def rollups_count_every_sample_once(database) -> None:
    """Per widget and tier: the samples the rollups counted, and the numbers stored."""
    with sqlite3.connect(database) as conn:
        stored = dict(
            conn.execute(
                "SELECT widget, count(*) FROM samples WHERE status = 'ok' AND typeof(value) IN ('integer', 'real') "
                "GROUP BY widget"
            )
        )
        for step in (60, 3600):
            counted = dict(conn.execute("SELECT widget, sum(n) FROM rollups WHERE step = ? GROUP BY widget", (step,)))
            assert counted == stored, step


@pytest.mark.gen_test(timeout=180)
async def test_kill_9_during_heavy_writes_loses_no_acknowledged_sample(tmp_path):
    database = tmp_path / "data" / "durable.db"
    all_acknowledged: set[int] = set()
    for round_number in range(ROUNDS):
        # The same directory each round: the server starts on the database the last kill left.
        server = ServerProcess(tmp_path, CONFIG)
        server.start()
        try:
            await server.ready()
            pushed: set[int] = set()
            streamed: set[int] = set()
            writers = [asyncio.ensure_future(push_forever(server, pushed, n)) for n in range(PUSHERS)]
            reader = asyncio.ensure_future(read_stream(server, streamed))
            deadline = asyncio.get_running_loop().time() + 60
            while len(pushed) < ACKNOWLEDGED_BEFORE_KILL or len(streamed) < ACKNOWLEDGED_BEFORE_KILL:
                assert asyncio.get_running_loop().time() < deadline, (len(pushed), len(streamed), server.log())
                assert not any(w.done() for w in writers), server.log()
                await asyncio.sleep(0.01)
            server.send(signal.SIGKILL)
            assert await server.exit_status() == -signal.SIGKILL
            await asyncio.gather(*writers, reader)
        finally:
            await server.stop()

        acknowledged = pushed | streamed
        assert integrity(database) == "ok"
        assert missing_ids(database, acknowledged) == set(), f"round {round_number}"
        assert missing_ids(database, all_acknowledged) == set(), f"round {round_number}: an earlier round's"
        all_acknowledged |= acknowledged
        migrate = subprocess.run(
            [sys.executable, str(ROOT / "run.py"), "migrate", "--config", str(server.config_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert migrate.returncode == 0, migrate.stderr
        assert "up to date" in migrate.stdout
    assert len(all_acknowledged) >= ROUNDS * ACKNOWLEDGED_BEFORE_KILL
    # `migrate` opened the store after the last kill: the rollups caught up then.
    rollups_count_every_sample_once(database)
