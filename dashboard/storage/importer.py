"""Backfill: history from elsewhere, read from CSV or NDJSON files into the samples
and the rollups (`run.py import`, dashboard/service/cli.py).

- CSV has a header naming the columns widget, ts and value (in any order); NDJSON
  has one object {"widget": ..., "ts": ..., "value": ...} a line. A file is NDJSON
  when its first character is "{".
- ts is ISO 8601 (no offset: UTC) or Unix seconds; a CSV value is a number or JSON
  (text in double quotes), an NDJSON value any JSON.
- A file is a regular file (a FIFO or a device could block or never end) of lines
  of at most MAX_LINE bytes: what a file holds costs at most that much memory.
- Each widget must exist and take values, and each value goes through the same
  check as every other way in (dashboard.core.views.accept).
- A file is imported all or nothing: rows are staged as the file is read and moved
  into the samples table in one transaction at its end (storage/writer.py); the
  first bad row stops it with ImportFailed, which says the file, the line and what
  was wrong, and nothing of that file is stored.

Imported rows may be older than live ones: they take ids below every existing one
(they are history, not events: no stream replays them), and history queries and
graphs order by time.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import os
import stat
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from ..config import Config
from ..core.times import parse_time
from ..core.values import MAX_VALUE_BYTES
from ..core.views import VIEWS, ValueRejected, accept
from .rollups import TIERS, tier_retention
from .store import Store
from .writer import ImportRow

CHUNK = 20_000  # rows staged at a time
# A line (and a CSV field) at most: the largest value, quoted as CSV quotes it, and more.
MAX_LINE = 4 * MAX_VALUE_BYTES
csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE))
LATEST = 253402300800  # 10000-01-01 in Unix seconds: a datetime ends before it
CLOCK_SKEW = 60.0  # seconds a row may be dated after the import starts: another machine's clock
BOM = b"\xef\xbb\xbf"
COLUMNS = ("widget", "ts", "value")
# (bytes read, bytes in the file, rows read): called every chunk, and once at the end.
Progress = Callable[[int, int, int], None]


class ImportFailed(Exception):
    """A file that was not imported; str() is "FILE:LINE: what was wrong"."""

    def __init__(self, file: str, line: int | None, problem: str):
        super().__init__(f"{file}:{line}: {problem}" if line else f"{file}: {problem}")
        self.file = file
        self.line = line
        self.problem = problem


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # json.loads would take NaN and Infinity otherwise


# One decoder for every value: json.loads() with an argument builds a new one each call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _shown(text: str) -> str:
    return json.dumps(text if len(text) <= 40 else text[:37] + "...")


class Rows:
    """What a file says, row by row, checked: (widget, Unix microseconds, value as JSON)."""

    def __init__(self, config: Config):
        # Each widget that takes values, and its view.
        self.views = {w.id: w.view for w in config.widgets.values() if w.source is not None and VIEWS[w.view].values}
        self.maps = {w.id: w.value_map for w in config.widgets.values() if w.value_map}  # `map`, as for a push
        self.config = config
        # History, not the future: a row dated later would be every widget's "latest" for
        # as long as the future lasts (a CSV in local time without an offset, say).
        self.until = time.time() + CLOCK_SKEW

    def row(self, widget: Any, ts: Any, value: Any) -> ImportRow:
        """ValueError with what is wrong."""
        view = self.views.get(widget) if isinstance(widget, str) else None
        if view is None:
            raise ValueError(self._widget_problem(widget))
        if isinstance(ts, str):
            try:
                seconds = float(ts)  # Unix seconds, the common case, fast
                if "_" in ts or not ts.isascii() or not math.isfinite(seconds):
                    # float() takes "1_000", "nan", "inf" and any script's digits
                    raise ValueError
            except ValueError:
                try:
                    seconds = parse_time(ts)
                except ValueError as exc:
                    raise ValueError(f"ts: {exc}") from None
        elif isinstance(ts, (int, float)) and not isinstance(ts, bool):
            seconds = ts if isinstance(ts, float) or abs(ts) < LATEST else math.inf  # float() of 10**400 overflows
        else:
            raise ValueError(f"ts: expected ISO 8601 or Unix seconds, got {json.dumps(ts)}")
        if not (0 <= seconds < LATEST):  # also false for NaN
            raise ValueError(f"ts: expected a time from 1970 to 9999, got {_shown(str(ts))}")
        if seconds > self.until:
            raise ValueError(
                f"ts: expected a time before now (history: not the future; without an offset a time is UTC), "
                f"got {_shown(str(ts))}"
            )
        try:
            stored = accept(view, value, self.maps.get(widget))
        except ValueRejected as exc:
            raise ValueError(f"value: widget {_shown(widget)} ({view}): {exc}") from None
        kind = type(stored)
        # A float as itself (SQLite's reading of decimal text is not exact: storage/writer.py).
        encoded = stored if kind is float else str(stored) if kind is int else json.dumps(stored, allow_nan=False)
        return widget, round(seconds * 1_000_000), encoded

    def _widget_problem(self, widget: Any) -> str:
        if not isinstance(widget, str):
            return f"widget: expected a widget id, got {json.dumps(widget)}"
        known = self.config.widgets.get(widget)
        if known is None and widget in self.config.disabled_widgets:
            return f"widget: widget {_shown(widget)} is disabled (enabled = false)"
        if known is None:
            return f"widget: unknown widget {_shown(widget)}"
        return f"widget: widget {_shown(widget)} is a {known.view} and takes no values"

    def csv_rows(self, lines: Iterator[str], name: str) -> Iterator[ImportRow]:
        reader = csv.reader(lines)
        header = _csv_record(reader, name, 1)
        if header is None:
            return
        header = [column.strip() for column in header]
        if sorted(header) != sorted(COLUMNS):
            got = _shown(",".join(header))
            raise ImportFailed(name, 1, f"expected a header with the columns widget, ts and value, got {got}")
        w, t, v = (header.index(column) for column in COLUMNS)
        while True:
            start = reader.line_num + 1  # a quoted field may go on over several lines: its record starts here
            fields = _csv_record(reader, name, start)
            if fields is None:
                return
            if fields:  # not a blank line
                yield self._csv_row(fields, w, t, v, name, start)

    def _csv_row(self, fields: list[str], w: int, t: int, v: int, name: str, line: int) -> ImportRow:
        if len(fields) != 3:
            raise ImportFailed(name, line, f"expected 3 fields (widget, ts, value), got {len(fields)}")
        try:
            value = _DECODER.decode(fields[v])
        except (ValueError, RecursionError):
            got = _shown(fields[v])
            raise ImportFailed(
                name, line, f'value: expected a number or JSON (text in double quotes: """text"""), got {got}'
            ) from None
        try:
            return self.row(fields[w], fields[t], value)
        except ValueError as exc:
            raise ImportFailed(name, line, str(exc)) from None

    def ndjson_rows(self, lines: Iterator[str], name: str) -> Iterator[ImportRow]:
        for line, raw in enumerate(lines, start=1):
            if raw.strip():  # not a blank line
                yield self._ndjson_row(raw, name, line)

    def _ndjson_row(self, raw: str, name: str, line: int) -> ImportRow:
        try:
            item = _DECODER.decode(raw)
        except (ValueError, RecursionError) as exc:
            raise ImportFailed(name, line, f"expected a JSON object, got invalid JSON ({exc})") from None
        if not isinstance(item, dict) or sorted(item) != sorted(COLUMNS):
            raise ImportFailed(name, line, 'expected an object with exactly "widget", "ts" and "value"')
        try:
            return self.row(item["widget"], item["ts"], item["value"])
        except ValueError as exc:
            raise ImportFailed(name, line, str(exc)) from None


def _csv_record(reader: Any, name: str, line: int) -> list[str] | None:
    """The next record of a CSV reader, which starts on `line` (None at the end);
    ImportFailed for one it cannot read."""
    try:
        return next(reader, None)
    except csv.Error as exc:
        # A field over MAX_LINE, or a CR in an unquoted field (a file with CR line ends).
        raise ImportFailed(name, line, f"expected CSV with lines ending in LF or CRLF, got: {exc}") from None


async def import_file(
    store: Store, config: Config, path: str | os.PathLike, *, progress: Progress | None = None
) -> int:
    """Import one file, all or nothing; the rows imported. ImportFailed for a bad row, or
    a file that cannot be read (nothing of the file is then stored); one of the store's
    DATABASE_ERRORS when the database refuses it."""
    name = str(path)
    rows = Rows(config)
    try:
        kind = stat.S_IFMT(os.stat(path).st_mode)  # before open(): opening a FIFO waits for a writer
        if kind != stat.S_IFREG:
            raise ImportFailed(name, None, f"expected a regular file, got {_KINDS.get(kind, 'something else')}")
        # Read in the loop on purpose: parsing is the import's work, and the loop has nothing
        # else to do meanwhile but hand chunks to the writer.
        raw = open(path, "rb")  # noqa: ASYNC230, SIM115 - closed below
    except OSError as exc:
        raise ImportFailed(name, None, f"cannot read it: {exc.strerror or exc}") from None
    with raw:
        try:
            size = os.fstat(raw.fileno()).st_size
            first = raw.read(64).removeprefix(BOM).lstrip()[:1]  # NDJSON may start with a blank line
            raw.seek(0)
        except OSError as exc:
            raise ImportFailed(name, None, f"cannot read it: {exc.strerror or exc}") from None
        parse = rows.ndjson_rows if first == b"{" else rows.csv_rows
        session = await store.begin_import()
        try:
            count = await _stage(session, parse(_lines(raw, name), name), raw, size, progress)
        except BaseException:
            await session.abort()
            raise
        committed = await session.commit(_worth_keeping(config, time.time()))
    if progress is not None:
        progress(size, size, count)
    return committed


def _worth_keeping(config: Config, now: float) -> dict[int, int]:
    """Per tier, the first bucket that its retention keeps: older ones are not made."""
    kept = tier_retention(config.storage)
    return {tier: int(now - kept[tier]) // tier * tier for tier in TIERS}


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (write it to a file first)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _lines(raw: IO[bytes], name: str) -> Iterator[str]:
    """The file's lines as text, each decoded on its own: a byte that is not UTF-8 is
    reported on its line (a decoder reading ahead would say "somewhere")."""
    readline = raw.readline
    number = 0
    while True:
        try:
            line = readline(MAX_LINE + 1)
        except OSError as exc:
            raise ImportFailed(name, number + 1, f"cannot read it: {exc.strerror or exc}") from None
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE:
            raise ImportFailed(name, number, f"expected lines of at most {MAX_LINE} bytes")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFailed(name, number, f"expected UTF-8 text, got other bytes ({exc.reason})") from None
        yield text.removeprefix("\ufeff") if number == 1 else text


async def _stage(session: Any, parsed: Iterator[ImportRow], raw: IO[bytes], size: int, progress) -> int:
    """Stage the rows in chunks. While one chunk is written (in the writer's thread or
    to PostgreSQL), the next is parsed."""
    count = 0
    pending: asyncio.Future[None] | None = None
    chunk: list[ImportRow] = []
    try:
        for row in parsed:
            chunk.append(row)
            if len(chunk) == CHUNK:
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(session.add(chunk))
                count += len(chunk)
                chunk = []
                if progress is not None:
                    progress(raw.tell(), size, count)
                await asyncio.sleep(0)  # let the staging start
    finally:
        if pending is not None:
            await pending
    if chunk:
        await session.add(chunk)
        count += len(chunk)
    return count
