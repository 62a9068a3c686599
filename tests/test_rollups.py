"""Rollups and series, checked against a brute-force computation from the raw rows
(hypothesis), on SQLite and on PostgreSQL: samples written live (before and after the
roll-up pass took them), imported ones, and raw samples that retention deleted."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from dashboard.storage.rollups import DAY, HOUR, MINUTE, TEN, Plan, nice_step, plan
from dashboard.storage.schema import samples as samples_table
from dashboard.storage.store import Store, _alembic_upgrade, encode_value
from tests.helpers import opened_store

STATES = ("ok", "warn", "down")
BASE = 1_800_000_000  # 2027-01-15 08:00:00 UTC, a multiple of every step used here
FIXTURES_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
EVERY_BUCKET = {TEN: 0, MINUTE: 0, HOUR: 0}  # an import that keeps every tier's buckets, however old


def measure(value):
    """The rule of dashboard/storage/rollups.py, written again here as the oracle."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return None, float(value)
    if isinstance(value, dict) and value.get("state") in STATES:
        latency = value.get("latency_ms")
        number = float(latency) if isinstance(latency, (int, float)) and not isinstance(latency, bool) else None
        return value["state"], number
    return None


def brute_force(rows, start: int, end: int, step: int) -> dict[str, list[tuple]]:
    """widget -> [(t, n, measured, total, low, high, ok, warn, down)] from (widget, unix
    seconds, value, status) rows with start <= ts < end."""
    buckets: dict[tuple[str, int], list] = defaultdict(lambda: [0, 0, 0.0, None, None, 0, 0, 0])
    for widget, seconds, value, status in rows:
        measured = measure(value)
        if status != "ok" or measured is None or not start <= seconds < end:
            continue
        state, number = measured
        row = buckets[(widget, math.floor(seconds) // step * step)]
        row[0] += 1
        if number is not None:
            row[1] += 1
            row[2] += number
            row[3] = number if row[3] is None else min(row[3], number)
            row[4] = number if row[4] is None else max(row[4], number)
        if state is not None:
            row[5 + STATES.index(state)] += 1
    out: dict[str, list[tuple]] = defaultdict(list)
    for (widget, t), row in sorted(buckets.items()):
        out[widget].append((t, *row))
    return out


def as_rows(columns: dict[str, list]) -> list[tuple]:
    names = ("n", "measured", "total", "low", "high", *STATES)
    return [(t, *(columns[name][i] for name in names)) for i, t in enumerate(columns["t"])]


def assert_same(got: list[tuple], expected: list[tuple]) -> None:
    assert [row[0] for row in got] == [row[0] for row in expected]
    for have, want in zip(got, expected, strict=True):
        t, n, measured, total, low, high, *states = have
        assert (n, measured, *states) == (want[1], want[2], *want[6:]), (t, have, want)
        assert total == pytest.approx(want[3], rel=1e-9, abs=1e-6), (t, have, want)
        assert (low, high) == pytest.approx((want[4], want[5])), (t, have, want)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path, io_loop):
    url = (
        f"sqlite+aiosqlite:///{tmp_path}/rollups.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    )
    # No roll-up pass but those a test asks for: what each one took is counted.
    with opened_store(url, io_loop, roll_up_every=None) as store:
        yield store


async def reset(store: Store) -> None:
    async with store.engine.begin() as conn:
        for statement in ("DELETE FROM samples", "DELETE FROM rollups", "UPDATE rollup_state SET upto = 0"):
            await conn.execute(text(statement))


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def write_live(store: Store, rows) -> None:
    """Each row committed as a ticker's would be, at its own time."""
    for widget, seconds, value, status in rows:
        await store.commit([store.encode([(widget, value, status, None)])], ts=at(seconds))


async def write_imported(store: Store, rows) -> None:
    session = await store.begin_import()
    await session.add([(widget, round(seconds * 1_000_000), encode_value(value)) for widget, seconds, value, _ in rows])
    await session.commit(EVERY_BUCKET)


values = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(-1e9, 1e9, allow_nan=False),
    st.builds(
        lambda state, latency, detail: {
            "state": state,
            **({} if latency is None else {"latency_ms": latency}),
            **({} if detail is None else {"detail": detail}),
        },
        st.sampled_from([*STATES, "bogus"]),
        st.one_of(st.none(), st.integers(0, 5000), st.floats(0, 1e4), st.just("slow")),
        st.one_of(st.none(), st.text(max_size=3), st.just("\x00 and \\u0000")),  # a NUL, a backslash
    ),
    st.text(max_size=5),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
samples = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.integers(0, 3 * HOUR * 1000).map(lambda ms: BASE + ms / 1000),  # three hours, to the millisecond
        values,
        st.sampled_from(["ok", "ok", "ok", "error"]),
        st.booleans(),  # imported rather than written live
    ),
    max_size=25,
)
# (step, tier): the raw samples at any step; each tier at multiples of its own.
STEPS = [
    (1, 0),
    (5, 0),
    (30, 0),
    (10, TEN),
    (20, TEN),
    (60, TEN),
    (60, MINUTE),
    (300, MINUTE),
    (3600, MINUTE),
    (3600, HOUR),
    (7200, HOUR),
]


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES_OK)
@given(rows=samples, rolled=st.booleans(), window=st.tuples(st.integers(0, 3 * HOUR), st.integers(1, 3 * HOUR)))
def test_series_equal_a_brute_force_count_of_the_raw_rows(store, io_loop, rows, rolled, window):
    live = [row[:4] for row in rows if not row[4] and row[3] in ("ok", "error")]
    imported = [row[:4] for row in rows if row[4] and row[3] == "ok"]  # an import stores values, not failures

    async def check():
        await reset(store)
        await write_live(store, live)
        if imported:
            await write_imported(store, imported)
        if rolled:
            await store.roll_up()  # else the live ones are the tail an answer adds by itself
        for step, tier in STEPS:
            start = (BASE + window[0]) // step * step
            end = start + math.ceil(window[1] / step) * step
            got = await store.series(["a", "b"], Plan(start, end, step, tier))
            expected = brute_force(live + imported, start, end, step)
            for widget in ("a", "b"):
                assert_same(as_rows(got[widget]), expected.get(widget, []))

    io_loop.run_sync(check, timeout=60)


@pytest.mark.gen_test(timeout=60)
async def test_rollups_outlive_the_raw_samples_and_have_their_own_retention(store):
    now = datetime.now(UTC)
    start = int((now - timedelta(days=3)).timestamp()) // DAY * DAY
    rows = [("a", start + i * 97.5, i % 50, "ok") for i in range(3 * DAY // 97)]  # three days, every 97.5 s
    rows += [("s", start + i * 600.0, {"state": STATES[i % 3], "latency_ms": i}, "ok") for i in range(3 * 144)]
    await write_live(store, rows)
    assert await store.roll_up() == len(rows)
    # Raw samples older than a day go; every widget's newest stays.
    deleted = await store.prune(now - timedelta(days=1))
    assert deleted > len(rows) // 2
    for step, tier in [(TEN, TEN), (MINUTE, MINUTE), (900, MINUTE), (HOUR, HOUR), (DAY, HOUR)]:
        end = start + 3 * DAY
        got = await store.series(["a", "s"], Plan(start, end, step, tier))
        expected = brute_force(rows, start, end, step)
        assert_same(as_rows(got["a"]), expected["a"])
        assert_same(as_rows(got["s"]), expected["s"])
    # Minutes older than two days go, hours stay.
    cutoff = start + 2 * DAY
    removed = await store.prune_rollups({MINUTE: cutoff}, batch=50)
    assert removed == len({("a", int(s) // 60) for w, s, *_ in rows if w == "a" and s < cutoff}) + len(
        {int(s) // 60 for w, s, *_ in rows if w == "s" and s < cutoff}
    )
    minutes = await store.series(["a"], Plan(start, start + 3 * DAY, MINUTE, MINUTE))
    assert min(minutes["a"]["t"]) >= cutoff
    hours = await store.series(["a"], Plan(start, start + 3 * DAY, HOUR, HOUR))
    assert_same(as_rows(hours["a"]), brute_force(rows, start, start + 3 * DAY, HOUR)["a"])


@pytest.mark.gen_test(timeout=30)
async def test_a_pass_takes_each_sample_once_and_a_crash_before_it_loses_nothing(store, tmp_path):
    rows = [("a", BASE + i, i, "ok") for i in range(300)]
    await write_live(store, rows[:100])
    assert await store.roll_up() == 100
    assert await store.roll_up() == 0  # nothing new
    await write_live(store, rows[100:])
    # A store opened on the same database (a restart after kill -9: nothing rolled up
    # the last 200) rolls them up when it opens.
    again = Store(store.url, roll_up_every=None)
    await again.open()
    try:
        async with again.engine.connect() as conn:
            upto = (await conn.execute(text("SELECT upto FROM rollup_state"))).scalar()
        assert upto == max(s.id for s in await again.history("a", limit=1000))
        got = await again.series(["a"], Plan(BASE, BASE + 300, MINUTE, MINUTE))
        assert_same(as_rows(got["a"]), brute_force(rows, BASE, BASE + 300, MINUTE)["a"])
    finally:
        await again.close()


@pytest.mark.parametrize(
    ("seconds", "step"),
    [
        (0.2, 1),
        (1, 1),
        (1.5, 2),
        (3, 5),
        (11, 20),
        (59, 60),
        (61, 120),
        (3000, 3600),
        (86400, 86400),
        (8 * DAY, 8 * DAY),
    ],
)
def test_nice_steps_are_round_and_never_smaller_than_asked(seconds, step):
    assert nice_step(seconds) == step


KEPT = {0: 30 * DAY, TEN: 2 * DAY, MINUTE: 90 * DAY, HOUR: 400 * DAY}
NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("span", "points", "ago", "expected"),
    [
        (600, 1000, 0, (1, 0)),  # ten minutes: seconds, from the samples
        (600, 100, 0, (10, TEN)),  # ... or ten seconds, from their rollups
        (600, 60, 0, (10, TEN)),
        (6 * 3600, 1000, 0, (30, TEN)),
        (30 * DAY, 1000, 0, (HOUR, HOUR)),  # a month: hours
        (7 * DAY, 1000, 0, (900, MINUTE)),  # a week: quarter hours, from minutes
        (3 * DAY, 50000, 0, (60, MINUTE)),  # sub-minute over more than two days: minutes instead
        (2 * DAY, 50000, 0, (10, TEN)),  # ten seconds over two days (raw: at most a day)
        (600, 60, 5 * DAY, (60, MINUTE)),  # ten seconds, older than they are kept: minutes
        (600, 1000, 40 * DAY, (60, MINUTE)),  # older than the samples are kept: minutes
        (600, 1000, 100 * DAY, (HOUR, HOUR)),  # older than minutes are kept: hours
        (365 * DAY, 1000, 0, (43200, HOUR)),
    ],
)
def test_a_plan_takes_the_finest_tier_that_still_holds_the_range(span, points, ago, expected):
    start = NOW - ago - span
    chosen = plan(start, start + span, points, now=NOW, kept=KEPT)
    assert (chosen.step, chosen.tier) == expected
    assert chosen.start % chosen.step == 0 and chosen.end % chosen.step == 0
    assert chosen.start <= start and chosen.end >= start + span
    assert (chosen.end - chosen.start) / chosen.step <= points  # whole buckets, the ends' included


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.gen_test(timeout=60)
async def test_migration_0002_builds_the_rollups_of_the_samples_already_there(request, tmp_path, backend):
    url = f"sqlite+aiosqlite:///{tmp_path}/old.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = Store(url, roll_up_every=None)
    await store.open(migrate=False)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda sync: _alembic_upgrade(sync, "0001"))
        rows = [("a", BASE + 7.5 * i, (i * 3) % 17, "ok") for i in range(2000)]
        rows += [
            ("s", BASE + 60.0 * i, {"state": STATES[i % 3], "latency_ms": i, "detail": "\x00"}, "ok") for i in range(90)
        ]
        rows += [("a", BASE + 5.0, 1000, "error"), ("t", BASE, "text", "ok")]
        ten_days_ago = datetime.now(UTC).timestamp() - 10 * DAY
        old = [("old", ten_days_ago + 30 * i, i, "ok") for i in range(100)]
        async with store.engine.begin() as conn:  # as the server of revision 0001 wrote them
            await conn.execute(
                samples_table.insert(), [dict(widget=w, ts=at(s), value=v, status=st) for w, s, v, st in rows + old]
            )
        await store.migrate()
        async with store.engine.connect() as conn:
            upto = (await conn.execute(text("SELECT upto FROM rollup_state"))).scalar()
            tiers = dict(
                (await conn.execute(text("SELECT step, sum(n) FROM rollups WHERE widget = 'old' GROUP BY step"))).all()
            )
        assert upto == len(rows) + len(old)
        # Ten days ago: no 10-second buckets (two days are kept), minutes and hours.
        assert tiers == {MINUTE: 100, HOUR: 100}
        end = BASE + 4 * HOUR
        for step, tier in [(TEN, TEN), (MINUTE, MINUTE), (HOUR, HOUR)]:
            got = await store.series(["a", "s", "t"], Plan(BASE, end, step, tier))
            expected = brute_force(rows, BASE, end, step)
            for widget in ("a", "s", "t"):
                assert_same(as_rows(got[widget]), expected.get(widget, []))
    finally:
        await store.close()


@settings(max_examples=300, deadline=None)
@given(
    start=st.floats(0, 2e9),
    span=st.floats(1, 400 * DAY),
    points=st.integers(1, 5000),
    ago=st.floats(0, 500 * DAY),
)
def test_a_plan_never_gives_more_buckets_than_asked_and_covers_the_range(start, span, points, ago):
    now = start + span + ago
    chosen = plan(start, start + span, points, now=now, kept=KEPT)
    assert chosen.start <= start and chosen.end >= start + span
    assert chosen.start % chosen.step == 0 and chosen.end % chosen.step == 0
    assert 1 <= (chosen.end - chosen.start) // chosen.step <= points
    assert chosen.tier == 0 or chosen.step % chosen.tier == 0
