"""GET /api/widgets/<id>/series on the real server: columnar buckets of whole steps,
checked against a brute-force count of the raw rows; the states of a status widget;
the forms of `from` and `to`; a 400 for each bad parameter; the viewer rules."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.configs import dashboard, loopback_server, push_widget, table
from tests.helpers import TOKEN
from tests.test_auth import AUTH_CONFIG, BOB_PASSWORD, sign_in
from tests.test_rollups import brute_force
from tests.webclient import WebClient

CONFIG = (
    loopback_server()
    + table("api", tokens={"test": TOKEN})
    + dashboard("main", ["cpu", "up", "note"])
    + push_widget("cpu", "graph", history="1h")
    + push_widget("up", "status", history="1d")
    + push_widget("note", "text")
)
COLUMNS = {"widget", "from", "to", "step", "t", "min", "avg", "max", "n"}


async def put(server, rows) -> None:
    """Store (widget, unix seconds, value) rows at their own times, as their tickers would have."""
    store = server.runtime.store
    for widget, seconds, value in rows:
        await store.commit([store.encode([(widget, value, "ok", None)])], ts=datetime.fromtimestamp(seconds, UTC))


async def series(server, widget: str, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return await WebClient(server.port).get(f"/api/widgets/{widget}/series?{query}")


def check_against(answer: dict, rows, widget: str) -> None:
    step = answer["step"] // 1000
    expected = brute_force(rows, answer["from"] // 1000, answer["to"] // 1000, step).get(widget, [])
    assert answer["t"] == [row[0] * 1000 for row in expected]
    assert answer["n"] == [row[1] for row in expected]
    assert answer["min"] == [row[4] for row in expected]
    assert answer["max"] == [row[5] for row in expected]
    assert answer["avg"] == pytest.approx([row[3] / row[2] if row[2] else None for row in expected])


@pytest.mark.gen_test(timeout=30)
async def test_buckets_are_whole_steps_and_equal_a_count_of_the_raw_rows(servers):
    server = await servers.start(CONFIG)
    base = int(time.time()) // 3600 * 3600 - 3600
    rows = [("cpu", base + 10 * i + 0.25, (i * 7) % 23) for i in range(300) if i % 50 < 40]  # with a gap
    await put(server, [(w, s, v) for w, s, v in rows])
    rows = [(w, s, v, "ok") for w, s, v in rows]
    for points, step in ((50, 60), (600, 5), (10, 300)):
        reply = await series(server, "cpu", **{"from": base, "to": base + 3000, "points": points})
        assert reply.status == 200, reply.text
        answer = reply.json()
        assert set(answer) == COLUMNS and answer["widget"] == "cpu"
        assert answer["step"] == step * 1000
        assert (answer["from"], answer["to"]) == (base * 1000, (base + 3000) * 1000)
        assert all(t % answer["step"] == 0 for t in answer["t"])
        assert len(answer["t"]) <= points
        check_against(answer, rows, "cpu")
        if step <= 60:  # empty buckets are left out: each 100 s gap makes some
            assert len(answer["t"]) < 3000 // step


@pytest.mark.gen_test(timeout=30)
async def test_a_status_widget_counts_its_states_per_bucket(servers):
    server = await servers.start(CONFIG)
    base = int(time.time()) // 3600 * 3600 - 2 * 3600
    states = ["ok"] * 50 + ["warn"] * 5 + ["down"] * 3 + ["ok"] * 62
    rows = [("up", base + 60 * i, {"state": state, "latency_ms": 20 + i}) for i, state in enumerate(states)]
    await put(server, rows)
    answer = (await series(server, "up", **{"from": base, "to": base + 7200, "points": 2})).json()
    assert set(answer) == COLUMNS | {"ok", "warn", "down"}
    assert answer["step"] == 3600_000 and answer["t"] == [base * 1000, (base + 3600) * 1000]
    assert (answer["ok"], answer["warn"], answer["down"]) == ([52, 60], [5, 0], [3, 0])
    assert answer["n"] == [60, 60]
    assert (answer["min"], answer["max"]) == ([20, 80], [79, 139])  # the latency
    # A text widget has nothing that counts: no buckets, and no states.
    note = (await series(server, "note", **{"from": "-1d"})).json()
    assert set(note) == COLUMNS and note["t"] == [] and note["n"] == []


@pytest.mark.gen_test(timeout=30)
async def test_from_and_to_are_iso_unix_seconds_or_relative_and_default_to_the_history(servers):
    server = await servers.start(CONFIG)
    before = time.time()
    default = (await series(server, "cpu")).json()
    after = time.time()
    # The widget's history (an hour) up to now, in whole buckets of at most 1000.
    assert default["from"] <= (before - 3600) * 1000 and default["to"] >= before * 1000
    assert default["to"] - default["from"] <= (after - before + 3600) * 1000 + 2 * default["step"]
    assert default["step"] == 5000  # 3600 / 1000 points -> 3.6 s -> 5 s
    month = (await series(server, "cpu", **{"from": "-30d", "to": "now"})).json()
    assert month["step"] == 3600_000  # a month from the hourly rollups
    base = 1_796_378_400  # 2026-12-04T10:00:00Z
    iso = (await series(server, "cpu", **{"from": "2026-12-04T10:00:00Z", "to": "2026-12-04T11:00:00%2B00:00"})).json()
    unix = (await series(server, "cpu", **{"from": base, "to": base + 3600.0})).json()
    naive = (await series(server, "cpu", **{"from": "2026-12-04T10:00:00", "to": "2026-12-04T11:00"})).json()
    assert (iso["from"], iso["to"]) == (unix["from"], unix["to"]) == (naive["from"], naive["to"])
    assert (unix["from"], unix["to"]) == (base * 1000, (base + 3600) * 1000)
    ten_minutes = (await series(server, "cpu", **{"from": "-10m"})).json()
    assert math.isclose((ten_minutes["to"] - ten_minutes["from"]) / 1000, 600, abs_tol=2)
    # A `to` alone: the widget's history before it.
    earlier = (await series(server, "cpu", to=base)).json()
    assert (earlier["from"], earlier["to"]) == ((base - 3600) * 1000, base * 1000)


@pytest.mark.parametrize(
    ("query", "error"),
    [
        (
            "from=yesterday",
            'from: expected ISO 8601, Unix seconds, a time back from now like "-30d" or "-10m", or "now", got \'yesterday\'',
        ),
        (
            "to=-5x",
            'to: expected ISO 8601, Unix seconds, a time back from now like "-30d" or "-10m", or "now", got \'-5x\'',
        ),
        (
            "from=2026-13-01",
            'from: expected ISO 8601, Unix seconds, a time back from now like "-30d" or "-10m", or "now", got \'2026-13-01\'',
        ),
        ("points=0", "points: expected a number from 1 to 5000, got 0"),
        ("points=5001", "points: expected a number from 1 to 5000, got 5001"),
        ("points=many", "points: expected a whole number, got 'many'"),
        ("from=now&to=-1h", "from: expected a time before to"),
        ("from=-1", "from: expected a time after 1970"),
        ("to=0", "to: expected a time after 1970"),
        (
            "from=%D9%A1%D9%A7%D9%A9%D9%A6",  # Arabic-Indic digits: no Unix seconds
            'from: expected ISO 8601, Unix seconds, a time back from now like "-30d" or "-10m", or "now", got \'١٧٩٦\'',
        ),
        ("from=-4000d", "from: expected a range of at most ten years"),
        ("from=999999999990&to=999999999999", "to: expected a time before the year 10000"),
        (
            "from=9999-12-31&to=10000-01-02",
            'to: expected ISO 8601, Unix seconds, a time back from now like "-30d" or "-10m", or "now", got \'10000-01-02\'',
        ),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_bad_parameters_get_a_400_that_says_which_and_why(servers, query, error):
    server = await servers.start(CONFIG)
    reply = await WebClient(server.port).get(f"/api/widgets/cpu/series?{query}")
    assert reply.status == 400 and reply.headers["Content-Type"].startswith("application/json")
    assert reply.json() == {"error": error}


@pytest.mark.gen_test(timeout=30)
async def test_a_range_in_the_last_years_a_date_holds_is_answered(servers):
    # The buckets round the end up, past the year 9999 here: the query stops at its last second.
    server = await servers.start(CONFIG)
    last = datetime(9999, 12, 31, 23, 0, tzinfo=UTC).timestamp()
    await put(server, [("cpu", last, 7)])
    for query in ("from=9990-01-01&to=9999-12-31T23:59:59&points=1", f"from={last - 60}&to={last + 60}"):
        reply = await WebClient(server.port).get(f"/api/widgets/cpu/series?{query}")
        assert reply.status == 200, reply.text
        assert reply.json()["n"] == [1]


# Times as a script, a browser or a fuzzer might send them.
instants = (
    st.integers(-(10**14), 10**14).map(str)
    | st.integers(253402300800 - 20 * 366 * 86400, 253402300800 + 86400).map(str)  # the last years a date holds
    | st.floats(allow_nan=True, allow_infinity=True).map(repr)
    | st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)).map(
        lambda d: d.isoformat()
    )
    | st.builds(
        lambda n, unit: f"-{n}{unit}", st.integers(0, 10**12), st.sampled_from(["s", "m", "h", "d", "w", "y", ""])
    )
    | st.sampled_from(["now", "", "-", "0", "9999-12-31T23:59:59.999999+14:00", "0001-01-01T00:00:00-14:00", "1e309"])
    | st.text(max_size=12)
)


@pytest.fixture
def series_server(servers, io_loop):
    return io_loop.run_sync(lambda: servers.start(CONFIG))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(start="999999999990", end="999999999999", points="1000")  # a 500 once: past the year 9999
@example(start="9999-12-30", end="253402300799", points="1")  # rounds up past 9999
@given(start=instants, end=instants, points=st.integers(-2, 6000).map(str) | st.text(max_size=6))
def test_any_range_gets_a_series_or_a_400_that_says_why(series_server, io_loop, start, end, points):
    query = urlencode({"from": start, "to": end, "points": points})
    reply = io_loop.run_sync(lambda: WebClient(series_server.port).get(f"/api/widgets/cpu/series?{query}"), timeout=30)
    assert reply.status in (200, 400), (reply.status, reply.text)
    answer = reply.json()
    if reply.status == 200:
        assert set(answer) == COLUMNS and answer["from"] < answer["to"]
    else:
        assert set(answer) == {"error"} and answer["error"].split(":")[0] in ("from", "to", "points")


@pytest.mark.gen_test(timeout=30)
async def test_a_series_follows_the_viewer_rules_of_the_widgets_dashboards(servers):
    server = await servers.start(AUTH_CONFIG)
    await server.record("c", 3)
    stranger = await WebClient(server.port).get("/api/widgets/c/series")
    assert stranger.status == 401
    assert stranger.json() == {"error": "sign in first: this widget is on a dashboard that needs a viewer"}
    assert (await WebClient(server.port).get("/api/widgets/nope/series")).status == 404
    bob = WebClient(server.port)
    await sign_in(bob, "bob", BOB_PASSWORD)
    answer = (await bob.get("/api/widgets/c/series?from=-1m")).json()
    assert answer["n"] == [1] and answer["avg"] == [3]
    assert (await bob.get("/api/widgets/d/series")).status == 403
