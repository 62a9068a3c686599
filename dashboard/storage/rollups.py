"""Rollups: per-bucket aggregates of each widget's samples, kept in SQL beside the
raw samples, so that a month-long graph reads hundreds of rows, not millions.

Three tiers, 10 seconds, 1 minute and 1 hour (`TIERS`), each with its own retention
(`[storage] retention_10s`, `retention_1m`, `retention_1h`): a page's first paint of
twenty 10-minute graphs reads 60 buckets each, not 600 samples; a year reads 8,760
hours. What a sample adds to its bucket, the one rule every path follows:
- only samples with status "ok" count (a failed run keeps the last value: no new
  measurement);
- a number (not a boolean) counts, with its value;
- a status value (an object whose "state" is ok, warn or down) counts in its
  state's column, and with its `latency_ms` when that is a number;
- anything else (text, lists) counts for nothing.

The rule is written once, in SQL (`_TERMS`, per dialect), and everything that
builds or reads buckets uses it: the roll-up pass, import, the raw tier of a
series, and (a copy, as migrations must keep their own) migration 0002.

How the rollups keep up, and why this way: the writer does not add each batch's
aggregates in the batch's own transaction. That costs a page per widget per
commit (measured: a third of a 100-widget batch's time). Instead a roll-up pass
(`roll_up_sql`) runs about once a second in the writer: it aggregates the samples
with ids above `rollup_state.upto` into both tiers and moves `upto`, in one
transaction, so a crash loses nothing (the next pass, at the latest when the store
opens, picks up where the last one ended). Answers add that tail, straight from
the samples (`tier_series_sql`): a series is always complete up to its last
commit. Imported rows (ids below zero) are rolled up by the import itself.

A series covers whole buckets: a bucket's start is a multiple of the step in Unix
seconds, and a bucket counts the samples with start <= ts < start + step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import StorageConfig
from ..core.views import STATUS_STATES

TEN, MINUTE, HOUR, DAY = 10, 60, 3600, 86400
TIERS = (TEN, MINUTE, HOUR)
ROLL_UP_EVERY = 1.0  # seconds between roll-up passes while samples come in
# Steps a series may have, in seconds: round on a clock, each a multiple of the tier it
# is read from (and the sub-minute ones divisors of a minute). Past a week, whole days.
NICE_STEPS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, DAY, 2 * DAY, 7 * DAY)
# Buckets under ten seconds are computed from the raw samples, a row per sample: only
# for ranges up to a day (a longer one gets coarser buckets, fewer than asked).
RAW_SPAN = DAY
COLUMNS = ("n", "measured", "total", "low", "high", *STATUS_STATES)


# -- choosing a series' step and source ------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A series' buckets: `step` seconds wide, from `start` to `end` (both multiples of
    step, Unix seconds), read from `tier` (0: the raw samples, else the rollups of that
    step)."""

    start: int
    end: int
    step: int
    tier: int


def tier_retention(storage: StorageConfig) -> dict[int, float]:
    """How far back each tier of rollups reaches (`[storage] retention_10s`, `_1m`, `_1h`)."""
    return {TEN: storage.retention_10s, MINUTE: storage.retention_1m, HOUR: storage.retention_1h}


def nice_step(seconds: float) -> int:
    """The smallest round step of at least `seconds` (and at least a second)."""
    for step in NICE_STEPS:
        if step >= seconds:
            return step
    return math.ceil(seconds / DAY) * DAY


def plan(start: float, end: float, points: int, *, now: float, kept: dict[int, float], least: int = 1) -> Plan:
    """The step and tier for at most `points` whole buckets over [start, end) (Unix
    seconds): the smallest round step that gives no more, read from the finest tier
    that holds it.

    `kept` is how far back each tier reaches, in seconds (0: the raw samples): a range
    that starts before a tier's retention is read from a coarser tier. `least` is the
    smallest step wanted (10: never a row per sample)."""
    step = nice_step(max((end - start) / points, least))
    while True:
        step, tier = _tier(step, start, end, now, kept)
        low = math.floor(start / step) * step
        high = max(math.ceil(end / step) * step, low + step)
        if (high - low) // step <= points:  # the ends' partial buckets count too
            return Plan(low, high, step, tier)
        step = nice_step(step + 1)


def _tier(step: int, start: float, end: float, now: float, kept: dict[int, float]) -> tuple[int, int]:
    """The step (made coarser where a tier no longer holds the range) and its tier."""
    tier = 0
    if step < TEN and (end - start > RAW_SPAN or start < now - kept[0]):
        step = TEN
    for finer, coarser in ((TEN, MINUTE), (MINUTE, HOUR)):
        if step >= finer:
            tier = finer
            if step < coarser and start < now - kept[finer]:
                step = coarser
    if step >= HOUR:
        tier = HOUR
    return step, tier


# -- the rule in SQL -----------------------------------------------------------------------

# Per dialect: a sample's Unix second (the floor), its ten seconds and its minute
# (anything that groups the samples of ten seconds, of a minute, together, and the Unix
# second those start at), whether its value is a number, that number, its state (a
# status value's "state"), whether it has a latency, and the latency.
#
# SQLite stores a JSON number as a number (the column has NUMERIC affinity), so
# typeof() tells a number without parsing JSON; only text starting with "{" can be a
# status object. Its timestamps are text, "YYYY-MM-DD HH:MM:SS.ffffff": ten seconds are
# the first 18 characters, a minute the first 16, and strftime() runs once per group,
# not once per sample ("YYYY-MM-DD HH:MM" is a time to it).
# PostgreSQL's json type refuses to take anything out of an object that holds a NUL
# ("\\u0000 cannot be converted to text"), whatever the key asked for: a status's
# detail with one would fail every series of its widget. The escape is swapped for a
# space's (six characters for six: the text stays valid JSON) before looking inside.
_PG_OBJECT = "CAST(replace(CAST(value AS TEXT), '\\u0000', '\\u0020') AS json)"
_TERMS = {
    "sqlite": {
        "seconds": "CAST(strftime('%s', ts) AS INTEGER)",
        "tens": "substr(ts, 1, 18)",
        "tens_seconds": "CAST(strftime('%s', substr(tens, 1, 16)) AS INTEGER) + 10 * CAST(substr(tens, 18, 1) AS INTEGER)",
        "minute": "substr(ts, 1, 16)",
        "minute_seconds": "CAST(strftime('%s', minute) AS INTEGER)",
        "is_number": "typeof(value) IN ('integer', 'real')",
        "number": "CAST(value AS REAL)",
        "state": "(CASE WHEN typeof(value) = 'text' AND substr(value, 1, 1) = '{' THEN json_extract(value, '$.state') END)",
        "has_latency": "json_type(value, '$.latency_ms') IN ('integer', 'real')",
        "latency": "json_extract(value, '$.latency_ms')",
    },
    "postgresql": {
        "seconds": "CAST(floor(extract(epoch FROM ts)) AS BIGINT)",
        "tens": "CAST(floor(extract(epoch FROM ts)) AS BIGINT) / 10",
        "tens_seconds": "tens * 10",
        "minute": "CAST(floor(extract(epoch FROM ts)) AS BIGINT) / 60",
        "minute_seconds": "minute * 60",
        "is_number": "json_typeof(value) = 'number'",
        "number": "CAST(CAST(value AS TEXT) AS DOUBLE PRECISION)",
        "state": f"(CASE WHEN json_typeof(value) = 'object' THEN {_PG_OBJECT} ->> 'state' END)",
        "has_latency": f"json_typeof({_PG_OBJECT} -> 'latency_ms') = 'number'",
        "latency": f"CAST({_PG_OBJECT} ->> 'latency_ms' AS DOUBLE PRECISION)",
    },
}
_STATES = ", ".join(f"'{state}'" for state in STATUS_STATES)
ROLLUP_COLUMNS = "widget, step, bucket, n, measured, total, low, high, ok, warn, down"
# A group's aggregates, from measured samples (x: the number, state: the state).
_AGGREGATES = (
    "count(*) AS n, count(x) AS measured, coalesce(sum(x), 0) AS total, min(x) AS low, max(x) AS high, "
    + ", ".join(f"sum(CASE WHEN state = '{state}' THEN 1 ELSE 0 END) AS {state}" for state in STATUS_STATES)
)
# The same, over groups of rollup rows.
_SUMS = "sum(n), sum(measured), sum(total), min(low), max(high), " + ", ".join(f"sum({s})" for s in STATUS_STATES)
# Adds a bucket's aggregates to the row already there (the same text on SQLite and
# PostgreSQL). min/max are written out: SQLite's two-argument min() is NULL when
# either side is, PostgreSQL's LEAST ignores NULLs.
_UPSERT = """ON CONFLICT (widget, step, bucket) DO UPDATE SET
    n = rollups.n + excluded.n,
    measured = rollups.measured + excluded.measured,
    total = rollups.total + excluded.total,
    low = CASE WHEN rollups.low IS NULL OR excluded.low < rollups.low THEN excluded.low ELSE rollups.low END,
    high = CASE WHEN rollups.high IS NULL OR excluded.high > rollups.high THEN excluded.high ELSE rollups.high END,
    ok = rollups.ok + excluded.ok,
    warn = rollups.warn + excluded.warn,
    down = rollups.down + excluded.down"""
# The ten-second buckets of one pass, aggregated once from the samples and added up
# into each tier (SQLite: a temporary table of the writer's connection; PostgreSQL: a
# common table expression).
PASS_TABLE = "temp.rollup_pass"
CREATE_PASS_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS rollup_pass (widget TEXT, bucket INTEGER, n INTEGER, measured INTEGER, "
    "total REAL, low REAL, high REAL, ok INTEGER, warn INTEGER, down INTEGER)"
)


# An import's staged rows (writer.py) hold their time as Unix microseconds (a number
# to divide, not a text to parse) and are all "ok".
_STAGED_TIMES = {
    "seconds": "micros / 1000000",
    "tens": "micros / 10000000",
    "tens_seconds": "tens * 10",
    "minute": "micros / 60000000",
    "minute_seconds": "minute * 60",
}


def _terms(dialect: str, staged: bool) -> dict[str, str]:
    terms = _TERMS["postgresql" if dialect == "postgresql" else "sqlite"]
    return {**terms, **_STAGED_TIMES} if staged else terms


def measured_samples_sql(
    dialect: str, where: str, *, by: str = "seconds", table: str = "samples", also: tuple[str, str] | None = None
) -> str:
    """The rows of `table` (the samples, or an import's stage) that count, as (widget,
    <by>, x, state), among those `where`; `by` is "seconds", "tens" or "minute" (see _TERMS);
    `also` one more column, (name, expression)."""
    staged = table != "samples"
    t = _terms(dialect, staged)
    valid = f"{t['state']} IN ({_STATES})"
    name, expression = also or ("", "")
    more, computed = (f"{name}, ", f"{expression} AS {name}, ") if also else ("", "")
    return f"""SELECT widget, {by}, {more}x, state FROM (
        SELECT widget, {t[by]} AS {by}, {computed}
            CASE WHEN {t["is_number"]} THEN {t["number"]}
                 WHEN {valid} THEN (CASE WHEN {t["has_latency"]} THEN {t["latency"]} END) END AS x,
            CASE WHEN {valid} THEN {t["state"]} END AS state
        FROM {table} WHERE {"" if staged else "status = 'ok' AND "}{where}
    ) AS measured WHERE x IS NOT NULL OR state IS NOT NULL"""


def _add(tier: int, source: str, where: str = "true") -> str:
    """Adds the aggregates of `source` (rows of widget, bucket and COLUMNS, buckets no
    wider than the tier) to the tier's rollups."""
    return (
        f"INSERT INTO rollups ({ROLLUP_COLUMNS}) SELECT widget, {tier}, bucket / {tier} * {tier} AS b, {_SUMS} "
        f"FROM {source} WHERE {where} GROUP BY widget, b {_UPSERT}"
    )


def _grouped(dialect: str, where: str, by: str, table: str) -> str:
    """The aggregates of the rows `where`, grouped by widget and `by` ("tens", "minute")."""
    t = _terms(dialect, table != "samples")
    return f"""SELECT widget, {t[by + "_seconds"]} AS bucket, {_AGGREGATES}
        FROM ({measured_samples_sql(dialect, where, by=by, table=table)}) AS m GROUP BY widget, {by}"""


def roll_up_sql(dialect: str, where: str) -> list[str]:
    """The statements that add the samples `where` to every tier (parameters: those of
    `where`, in each statement that has any): the roll-up pass."""
    tens = _grouped(dialect, where, "tens", "samples")
    if dialect == "postgresql":
        return [
            f"""WITH tens (widget, bucket, {", ".join(COLUMNS)}) AS ({tens}),
            ten AS ({_add(TEN, "tens")}), minutes AS ({_add(MINUTE, "tens")})
            {_add(HOUR, "tens")}"""
        ]
    return [
        CREATE_PASS_TABLE,
        f"DELETE FROM {PASS_TABLE}",
        f"INSERT INTO {PASS_TABLE} {tens}",
        *(_add(tier, PASS_TABLE) for tier in TIERS),
    ]


def import_roll_up_sql(dialect: str, table: str, since: dict[int, int]) -> tuple[list[str], list[str]]:
    """An import's staged rows (`table`) into the rollups, as two lists of statements:
    the aggregation, which touches temporary tables only (SQLite runs it before taking
    the write lock), and the additions to the tiers. `since`: per tier, the first bucket
    (Unix seconds) worth adding; an older one would go at the next pruning (a year of
    history makes no 10-second buckets)."""
    micros = {tier: since[tier] * 1_000_000 for tier in TIERS}
    tens = _grouped(dialect, f"micros >= {micros[TEN]}", "tens", table)
    minutes = _grouped(dialect, f"micros >= {min(micros[MINUTE], micros[HOUR])}", "minute", table)
    columns = ", ".join(COLUMNS)
    if dialect == "postgresql":
        return [], [
            f"""WITH tens (widget, bucket, {columns}) AS ({tens}),
            minutes (widget, bucket, {columns}) AS ({minutes}),
            ten AS ({_add(TEN, "tens")}), minute AS ({_add(MINUTE, "minutes", f"bucket >= {since[MINUTE]}")})
            {_add(HOUR, "minutes", f"bucket >= {since[HOUR]}")}"""
        ]
    return [
        *(
            statement
            for name, query in (("import_tens", tens), ("import_minutes", minutes))
            for statement in (
                f"DROP TABLE IF EXISTS temp.{name}",
                f"CREATE TEMP TABLE {name} AS {query}",
            )
        )
    ], [
        _add(TEN, "temp.import_tens"),
        _add(MINUTE, "temp.import_minutes", f"bucket >= {since[MINUTE]}"),
        _add(HOUR, "temp.import_minutes", f"bucket >= {since[HOUR]}"),
    ]


def raw_series_sql(dialect: str) -> str:
    """Buckets of :step seconds (a divisor of 60) from the raw samples of :widgets in
    [:start_ts, :end_ts). On SQLite the text of a time is cut, not parsed, for each
    sample: its minute, and its second within it; a minute's Unix second is worked out
    once per bucket."""
    where = "widget IN :widgets AND ts >= :start_ts AND ts < :end_ts"
    if dialect == "postgresql":
        inner = measured_samples_sql(dialect, where)
        return f"""SELECT widget, seconds / :step * :step AS t, {_AGGREGATES}
        FROM ({inner}) AS m
        GROUP BY widget, t ORDER BY widget, t"""
    inner = measured_samples_sql(
        dialect, where, by="minute", also=("slot", "CAST(substr(ts, 18, 2) AS INTEGER) / :step")
    )
    return f"""SELECT widget, {_TERMS["sqlite"]["minute_seconds"]} + slot * :step AS t, {_AGGREGATES}
    FROM ({inner}) AS m
    GROUP BY widget, minute, slot ORDER BY widget, t"""


def tier_series_sql(dialect: str) -> str:
    """Buckets of :step seconds from the :tier rollups of :widgets in [:start, :end)
    (Unix seconds; :start_ts and :end_ts the same as times), with the samples that no
    roll-up pass has taken yet (ids above rollup_state.upto) added.

    The tail is found by id, in one statement with the rollups it completes (one
    snapshot: a pass that commits meanwhile cannot make a sample count twice). SQLite
    is told not to look for it by widget and time (the unary "+"): over a month that
    index holds a million rows, the tail a second's."""
    if dialect == "postgresql":
        filters = "widget IN :widgets AND ts >= :start_ts AND ts < :end_ts"
    else:
        filters = "+widget IN :widgets AND +ts >= :start_ts AND +ts < :end_ts"
    tail = measured_samples_sql(dialect, f"id > (SELECT upto FROM rollup_state) AND {filters}")
    ones = ", ".join(f"CASE WHEN state = '{state}' THEN 1 ELSE 0 END" for state in STATUS_STATES)
    return f"""SELECT widget, bucket / :step * :step AS t, {_SUMS}
    FROM (
        SELECT widget, bucket, n, measured, total, low, high, {", ".join(STATUS_STATES)}
        FROM rollups WHERE widget IN :widgets AND step = :tier AND bucket >= :start AND bucket < :end
        UNION ALL
        SELECT widget, seconds AS bucket, 1, CASE WHEN x IS NULL THEN 0 ELSE 1 END, coalesce(x, 0), x, x, {ones}
        FROM ({tail}) AS tail
    ) AS parts
    GROUP BY widget, t ORDER BY widget, t"""
