"""Rollups: per-bucket aggregates of each widget's samples, kept in SQL beside the
raw samples, so that a month-long graph reads hundreds of rows, not millions.

Two tiers, 1 minute and 1 hour (`TIERS`), each with its own retention
(`[storage] retention_1m`, `retention_1h`). What a sample adds to its bucket, the
one rule every path follows:
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

from ..core.views import STATUS_STATES

MINUTE, HOUR, DAY = 60, 3600, 86400
TIERS = (MINUTE, HOUR)
ROLL_UP_EVERY = 1.0  # seconds between roll-up passes while samples come in
# Steps a series may have, in seconds: round on a clock. Past a week, whole days.
NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, DAY, 2 * DAY, 7 * DAY)
# Sub-minute buckets are computed from the raw samples, which costs a row per sample:
# only for ranges up to a day (a longer one gets minute buckets, fewer than asked).
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


def nice_step(seconds: float) -> int:
    """The smallest round step of at least `seconds` (and at least a second)."""
    for step in NICE_STEPS:
        if step >= seconds:
            return step
    return math.ceil(seconds / DAY) * DAY


def plan(start: float, end: float, points: int, *, now: float, kept: dict[int, float]) -> Plan:
    """The step and tier for at most `points` buckets over [start, end) (Unix seconds).

    `kept` is how far back each tier reaches, in seconds (0: the raw samples): a range
    that starts before a tier's retention is read from a coarser tier."""
    span = end - start
    step = nice_step(span / points)
    tier = 0
    if step < MINUTE and (span > RAW_SPAN or start < now - kept[0]):
        step = MINUTE
    if step >= MINUTE:
        tier = MINUTE
        if step < HOUR and start < now - kept[MINUTE]:
            step = HOUR
        if step >= HOUR:
            tier = HOUR
    low = math.floor(start / step) * step
    high = max(math.ceil(end / step) * step, low + step)
    return Plan(low, high, step, tier)


# -- the rule in SQL -----------------------------------------------------------------------

# Per dialect: a sample's Unix second (the floor), its minute (anything that groups
# the samples of one minute together, and the Unix second of that minute from it),
# whether its value is a number, that number, its state (a status value's "state"),
# whether it has a latency, and the latency.
#
# SQLite stores a JSON number as a number (the column has NUMERIC affinity), so
# typeof() tells a number without parsing JSON; only text starting with "{" can be a
# status object. Its timestamps are text, "YYYY-MM-DD HH:MM:SS.ffffff": the minute is
# the first 16 characters, and strftime() runs once per minute, not once per sample.
_TERMS = {
    "sqlite": {
        "seconds": "CAST(strftime('%s', ts) AS INTEGER)",
        "minute": "substr(ts, 1, 16)",
        "minute_seconds": "CAST(strftime('%s', minute || ':00') AS INTEGER)",
        "is_number": "typeof(value) IN ('integer', 'real')",
        "number": "CAST(value AS REAL)",
        "state": "(CASE WHEN typeof(value) = 'text' AND substr(value, 1, 1) = '{' THEN json_extract(value, '$.state') END)",
        "has_latency": "json_type(value, '$.latency_ms') IN ('integer', 'real')",
        "latency": "json_extract(value, '$.latency_ms')",
    },
    "postgresql": {
        "seconds": "CAST(floor(extract(epoch FROM ts)) AS BIGINT)",
        "minute": "CAST(floor(extract(epoch FROM ts)) AS BIGINT) / 60",
        "minute_seconds": "minute * 60",
        "is_number": "json_typeof(value) = 'number'",
        "number": "CAST(CAST(value AS TEXT) AS DOUBLE PRECISION)",
        "state": "(CASE WHEN json_typeof(value) = 'object' THEN value ->> 'state' END)",
        "has_latency": "json_typeof(value -> 'latency_ms') = 'number'",
        "latency": "CAST(value ->> 'latency_ms' AS DOUBLE PRECISION)",
    },
}
_STATES = ", ".join(f"'{state}'" for state in STATUS_STATES)
ROLLUP_COLUMNS = "widget, step, bucket, n, measured, total, low, high, ok, warn, down"
# A group's aggregates, from measured samples (x: the number, state: the state).
_AGGREGATES = "count(*), count(x), coalesce(sum(x), 0), min(x), max(x), " + ", ".join(
    f"sum(CASE WHEN state = '{state}' THEN 1 ELSE 0 END)" for state in STATUS_STATES
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
# The minutes of one pass, aggregated once and added to both tiers (SQLite: a temporary
# table of the writer's connection; PostgreSQL: a common table expression).
PASS_TABLE = "temp.rollup_pass"
CREATE_PASS_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS rollup_pass (widget TEXT, bucket INTEGER, n INTEGER, measured INTEGER, "
    "total REAL, low REAL, high REAL, ok INTEGER, warn INTEGER, down INTEGER)"
)


# An import's staged rows (writer.py) hold their time as Unix microseconds (a number
# to divide, not a text to parse) and are all "ok".
_STAGED_TIMES = {
    "seconds": "micros / 1000000",
    "minute": "micros / 60000000",
    "minute_seconds": "minute * 60",
}


def _terms(dialect: str, staged: bool) -> dict[str, str]:
    terms = _TERMS["postgresql" if dialect == "postgresql" else "sqlite"]
    return {**terms, **_STAGED_TIMES} if staged else terms


def measured_samples_sql(dialect: str, where: str, *, by: str = "seconds", table: str = "samples") -> str:
    """The rows of `table` (the samples, or an import's stage) that count, as (widget,
    <by>, x, state), among those `where`; `by` is "seconds" or "minute" (see _TERMS)."""
    staged = table != "samples"
    t = _terms(dialect, staged)
    valid = f"{t['state']} IN ({_STATES})"
    return f"""SELECT widget, {by}, x, state FROM (
        SELECT widget, {t[by]} AS {by},
            CASE WHEN {t["is_number"]} THEN {t["number"]}
                 WHEN {valid} AND {t["has_latency"]} THEN {t["latency"]} END AS x,
            CASE WHEN {valid} THEN {t["state"]} END AS state
        FROM {table} WHERE {"" if staged else "status = 'ok' AND "}{where}
    ) AS measured WHERE x IS NOT NULL OR state IS NOT NULL"""


def roll_up_sql(dialect: str, where: str, *, table: str = "samples") -> list[str]:
    """The statements that add the rows of `table` `where` to both tiers (parameters:
    those of `where`, in each statement that has any)."""
    t = _terms(dialect, table != "samples")
    minutes = f"""SELECT widget, {t["minute_seconds"]} AS bucket, {_AGGREGATES}
        FROM ({measured_samples_sql(dialect, where, by="minute", table=table)}) AS m GROUP BY widget, minute"""
    to_minutes = f"INSERT INTO rollups ({ROLLUP_COLUMNS}) SELECT widget, {MINUTE}, bucket, {', '.join(COLUMNS)}"
    to_hours = (
        f"INSERT INTO rollups ({ROLLUP_COLUMNS}) SELECT widget, {HOUR}, bucket / {HOUR} * {HOUR} AS hour, {_SUMS}"
    )
    if dialect == "postgresql":
        return [
            f"""WITH minutes (widget, bucket, {", ".join(COLUMNS)}) AS ({minutes}),
            added AS ({to_minutes} FROM minutes {_UPSERT})
            {to_hours} FROM minutes GROUP BY widget, hour {_UPSERT}"""
        ]
    return [
        CREATE_PASS_TABLE,
        f"DELETE FROM {PASS_TABLE}",
        f"INSERT INTO {PASS_TABLE} {minutes}",
        f"{to_minutes} FROM {PASS_TABLE} WHERE true {_UPSERT}",
        f"{to_hours} FROM {PASS_TABLE} WHERE true GROUP BY widget, hour {_UPSERT}",
    ]


def raw_series_sql(dialect: str) -> str:
    """Buckets of :step seconds from the raw samples of :widgets in [:start_ts, :end_ts)."""
    inner = measured_samples_sql(dialect, "widget IN :widgets AND ts >= :start_ts AND ts < :end_ts")
    return f"""SELECT widget, seconds / :step * :step AS t, {_AGGREGATES}
    FROM ({inner}) AS m
    GROUP BY widget, t ORDER BY widget, t"""


def tier_series_sql(dialect: str) -> str:
    """Buckets of :step seconds from the :tier rollups of :widgets in [:start, :end)
    (Unix seconds; :start_ts and :end_ts the same as times), with the samples that no
    roll-up pass has taken yet (ids above rollup_state.upto) added."""
    tail = measured_samples_sql(
        dialect,
        "id > (SELECT upto FROM rollup_state) AND widget IN :widgets AND ts >= :start_ts AND ts < :end_ts",
    )
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
