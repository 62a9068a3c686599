#!/usr/bin/env python3
"""History at scale: the import rate, and how a series and a page cost as the range
and the number of graphs grow. Figures printed, nothing asserted.

    .venv/bin/python bench/history.py                     # 3 runs, medians
    .venv/bin/python bench/history.py --runs 1 --requests 10
    .venv/bin/python bench/history.py --root /path/to/another/checkout --no-import

What it measures (each run on fresh SQLite files in a temp directory):
- import: `run.py import` of a CSV of --rows rows (default 1.3 million: one widget,
  a value every 2 s for 30 days) into a migrated, empty database; rows per second
  as the command reports them, and the whole command's wall time.
- series: GET /api/widgets/<id>/series for 30 days against 10 minutes of the same
  widget (a value every 2 s, so 1.3 million samples against 300), medians of
  --requests requests each, one keep-alive connection, requests interleaved.
- pages: /d/<dashboard> with one graph of 30 days against one of 10 minutes (the
  same data: 1.3 million samples, 300); then a dashboard of 20 graphs with 10
  minutes of 1-second history each (600 samples each) against one such graph; the
  time to the whole answer, and its size.
The database for the series and pages is filled straight through sqlite3 (rows
with ids above zero, as live samples have), so that --root can point at a checkout
from before rollups existed: it migrates them like any database it finds.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from ports import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400
TARGETS = {"import": 100_000, "series": 5.0, "page_30d": 3.0, "page_20": 5.0}


def config_text(directory: Path, port: int) -> str:
    widgets = {"m30": "30d", "m10": "10m", **{f"g{i}": "10m" for i in range(20)}}
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        'log_level = "warning"',
        "",
        "[storage]",
        f'url = "sqlite+aiosqlite:///{directory}/history.db"',
        "",
    ]
    for name, ids in {
        "d30": ["m30"],
        "d10": ["m10"],
        "twenty": [f"g{i}" for i in range(20)],
        "one": ["g0"],
    }.items():
        lines += ["[[dashboards]]", f'id = "{name}"', "widgets = [" + ", ".join(f'"{i}"' for i in ids) + "]", ""]
    for widget, history in widgets.items():
        every = "1s" if widget.startswith("g") else "2s"
        lines += [
            f"[widgets.{widget}]",
            'view = "graph"',
            f'every = "{every}"',
            f'history = "{history}"',
            'source = { kind = "push" }',
            "",
        ]
    return "\n".join(lines)


def run_py(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(root / "run.py"), *args], cwd=root, capture_output=True, text=True, timeout=timeout
    )


def sqlite_ts(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def walk(count: int, seed: int):
    rng = random.Random(seed)
    value = 50.0
    for _ in range(count):
        value += rng.uniform(-1, 1)
        yield round(value, 3)


def fill(database: Path, now: float, rows: int) -> int:
    """m30 and m10: a value every 2 s (30 days, 10 minutes); g0..g19: every second for 10 minutes."""
    plan = [("m30", 2.0, rows), ("m10", 2.0, 300), *((f"g{i}", 1.0, 600) for i in range(20))]
    total = 0
    with sqlite3.connect(database) as db:
        for widget, every, count in plan:
            first = now - every * count
            values = walk(count, hash(widget) & 0xFFFF)
            db.executemany(
                "INSERT INTO samples (widget, ts, value, status) VALUES (?, ?, ?, 'ok')",
                ((widget, sqlite_ts(first + every * i), str(v)) for i, v in enumerate(values)),
            )
            total += count
    return total


def write_csv(path: Path, now: float, rows: int) -> None:
    first = now - 2.0 * rows
    with open(path, "w") as out:
        out.write("widget,ts,value\n")
        for i, value in enumerate(walk(rows, 1)):
            out.write(f"m30,{first + 2.0 * i:.0f},{value}\n")


def measure_import(root: Path, directory: Path, rows: int) -> dict:
    config = directory / "import.toml"
    config.write_text(config_text(directory, 0).replace("history.db", "import.db"))
    data = directory / "import.csv"
    write_csv(data, time.time(), rows)
    migrate = run_py(root, "migrate", "--config", str(config))
    if migrate.returncode:
        raise RuntimeError(migrate.stderr)
    started = time.perf_counter()
    result = run_py(root, "import", "--config", str(config), str(data))
    wall = time.perf_counter() - started
    if result.returncode:
        raise RuntimeError(result.stderr)
    reported = float(re.search(r"\(([\d,]+) rows/s\)", result.stdout)[1].replace(",", ""))
    return {"import_rows_per_s": reported, "import_wall_s": wall, "import_rows": rows}


class Client:
    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> tuple[float, int, int]:
        """Seconds to the whole answer, its status and its size."""
        started = time.perf_counter()
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        body = response.read()
        return time.perf_counter() - started, response.status, len(body)


def timed(client: Client, paths: dict[str, str], requests: int) -> dict[str, tuple[float, int]]:
    """Median seconds and size of each path, requests interleaved (noise hits all alike)."""
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    sizes: dict[str, int] = {}
    for path in paths.values():  # a first request each, not counted: caches, compiled statements
        client.get(path)
    for _ in range(requests):
        for name, path in paths.items():
            took, status, size = client.get(path)
            if status != 200:
                raise RuntimeError(f"GET {path}: {status}")
            seconds[name].append(took)
            sizes[name] = size
    return {name: (statistics.median(values), sizes[name]) for name, values in seconds.items()}


def measure_reads(root: Path, directory: Path, rows: int, requests: int, series: bool) -> dict:
    port = free_port()
    config = directory / "history.toml"
    config.write_text(config_text(directory, port))
    migrate = run_py(root, "migrate", "--config", str(config))
    if migrate.returncode:
        raise RuntimeError(migrate.stderr)
    fill(directory / "history.db", time.time(), rows)
    log = open(directory / "server.log", "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [sys.executable, str(root / "run.py"), "serve", "--config", str(config)],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, server, timeout=120, log=directory / "server.log")  # the first start rolls up 1.3 M rows
        client = Client(port)
        out = {}
        if series:
            got = timed(
                client,
                {"s30": "/api/widgets/m30/series?from=-30d", "s10": "/api/widgets/m30/series?from=-10m"},
                requests,
            )
            out.update(series_30d_ms=got["s30"][0] * 1000, series_10m_ms=got["s10"][0] * 1000)
        got = timed(client, {"p30": "/d/d30", "p10": "/d/d10", "twenty": "/d/twenty", "one": "/d/one"}, requests)
        out.update(
            page_30d_ms=got["p30"][0] * 1000,
            page_10m_ms=got["p10"][0] * 1000,
            page_20_ms=got["twenty"][0] * 1000,
            page_1_ms=got["one"][0] * 1000,
            page_30d_kb=got["p30"][1] / 1024,
            page_20_kb=got["twenty"][1] / 1024,
            page_1_kb=got["one"][1] / 1024,
        )
        return out
    finally:
        server.terminate()
        server.wait(30)
        log.close()


COLUMNS = [
    ("import_rows_per_s", "import rows/s", "{:,.0f}"),
    ("import_wall_s", "import s", "{:.1f}"),
    ("series_30d_ms", "series 30d ms", "{:.1f}"),
    ("series_10m_ms", "series 10m ms", "{:.1f}"),
    ("page_30d_ms", "page 30d ms", "{:.1f}"),
    ("page_10m_ms", "page 10m ms", "{:.1f}"),
    ("page_20_ms", "20 graphs ms", "{:.1f}"),
    ("page_1_ms", "1 graph ms", "{:.1f}"),
    ("page_20_kb", "20 graphs KB", "{:.0f}"),
    ("page_1_kb", "1 graph KB", "{:.0f}"),
]


def print_row(row: dict, label: str) -> None:
    cells = [
        ("-" if row.get(key) is None else pattern.format(row[key])).rjust(len(title)) for key, title, pattern in COLUMNS
    ]
    print("  ".join(cells) + f"  {label}")


def ratio(row: dict, top: str, bottom: str) -> float | None:
    return row[top] / row[bottom] if row.get(top) and row.get(bottom) else None


def verdict(name: str, value: float | None, target: float, *, at_most: bool) -> str:
    if value is None:
        return f"{name}: not measured"
    met = value <= target if at_most else value >= target
    sign = "<=" if at_most else ">="
    if met:
        return f"{name}: {value:,.3g} meets the target ({sign} {target:,g})"
    miss = (value - target) / target if at_most else (target - value) / target
    return f"{name}: {value:,.3g} MISSES the target ({sign} {target:,g}) by {miss:.0%}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="History benchmark (see bench/README.md).")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_296_000, help="rows of 30 days (default: every 2 s)")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per path (default 20)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose run.py is measured")
    parser.add_argument("--no-import", action="store_true", help="skip the import")
    parser.add_argument("--no-series", action="store_true", help="skip the series endpoint (a checkout without it)")
    args = parser.parse_args(argv)
    print(
        f"# history {datetime.now().strftime('%Y-%m-%d %H:%M')}: {args.rows:,} rows of 30 days, "
        f"{args.requests} requests per path, {args.runs} run(s), {os.cpu_count()} cores, root {args.root}"
    )
    print(f"# command: {' '.join(sys.argv)}")
    print("  ".join(title for _, title, _ in COLUMNS))
    rows = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="history-") as tmp:
            directory = Path(tmp)
            row: dict = {}
            if not args.no_import:
                (directory / "import").mkdir()
                row.update(measure_import(args.root, directory / "import", args.rows))
            (directory / "reads").mkdir()
            row.update(measure_reads(args.root, directory / "reads", args.rows, args.requests, not args.no_series))
            rows.append(row)
            print_row(row, f"run {run + 1}")
    median = {
        key: statistics.median([r[key] for r in rows if r.get(key) is not None] or [0]) or None for key, _, _ in COLUMNS
    }
    print_row(median, "median")
    print("# " + verdict("import rows/s", median["import_rows_per_s"], TARGETS["import"], at_most=False))
    if median["import_rows_per_s"]:
        print(
            f"#   {args.rows:,} rows in {args.rows / median['import_rows_per_s']:.1f} s (target: 1.3 million in under 15 s)"
        )
    print(
        "# " + verdict("series 30 days / 10 minutes", ratio(median, "series_30d_ms", "series_10m_ms"), 5, at_most=True)
    )
    print("# " + verdict("page 30 days / 10 minutes", ratio(median, "page_30d_ms", "page_10m_ms"), 3, at_most=True))
    print("# " + verdict("page 20 graphs / 1 graph", ratio(median, "page_20_ms", "page_1_ms"), 5, at_most=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
