"""`run.py import FILE...`: each file into the store, all or nothing, with a progress
line on a terminal (dashboard/storage/importer.py does the reading and checking).

The progress line is a carriage return and one line of text on stderr, rewritten
ten times a second: a library (tqdm, rich) would draw the same line and bring a
dependency for it. Off a terminal (a pipe, a log) nothing but the result is written.
"""

from __future__ import annotations

import time
from typing import TextIO

from ..config import Config
from ..core.resources import ResourceMissing
from ..storage.importer import ImportFailed, import_file
from ..storage.store import DATABASE_ERRORS, Store, StoreUnavailable, database_reason
from .tail import visible

EXIT_BAD_INPUT = 2
EXIT_DATABASE = 1


class ProgressLine:
    """`importing history.csv  42 %  546,000 rows  118,000 rows/s`, redrawn in place."""

    def __init__(self, name: str, out: TextIO, *, every: float = 0.1, clock=time.monotonic):
        self.name = name if len(name) <= 30 else "..." + name[-27:]
        self.out = out
        self.every = every
        self.clock = clock
        self.started = clock()
        self.shown_at = 0.0
        self.width = 0

    def __call__(self, done: int, total: int, rows: int) -> None:
        now = self.clock()
        if now - self.shown_at < self.every and done < total:
            return
        self.shown_at = now
        percent = 100 * done // total if total else 100
        rate = rows / (now - self.started) if now > self.started else 0
        line = f"importing {self.name}  {percent:3d} %  {rows:,} rows  {rate:,.0f} rows/s"
        self.out.write("\r" + line.ljust(self.width))
        self.out.flush()
        self.width = len(line)

    def clear(self) -> None:
        if self.width:
            self.out.write("\r" + " " * self.width + "\r")
            self.out.flush()
            self.width = 0


async def import_files(config: Config, files: list[str], out: TextIO, err: TextIO) -> int:
    """Import each file in turn; 0, or one line `error: ...` at the first file that cannot
    be imported (the files before it stay imported): 2 when the file is at fault
    (`error: FILE:LINE: what`), 1 when the database is (it cannot be opened, or refused
    the import: locked by another program for longer than its wait, say)."""
    store = Store(config.storage.url)
    try:
        await store.open(migrate=True)
    except (StoreUnavailable, ResourceMissing) as exc:
        print(f"error: cannot open the database: {exc}", file=err)
        return EXIT_DATABASE
    try:
        for name in files:
            progress = ProgressLine(visible(name), err) if err.isatty() else None
            started = time.monotonic()
            try:
                rows = await import_file(store, config, name, progress=progress)
            except ImportFailed as exc:
                _clear(progress)
                where = f"{visible(exc.file)}:{exc.line}" if exc.line else visible(exc.file)
                print(f"error: {where}: {exc.problem}", file=err)
                return EXIT_BAD_INPUT
            except DATABASE_ERRORS as exc:
                _clear(progress)
                print(f"error: {visible(name)}: not imported, nothing of it stored: {database_reason(exc)}", file=err)
                return EXIT_DATABASE
            _clear(progress)
            seconds = time.monotonic() - started
            print(
                f"{visible(name)}: {rows:,} rows imported in {seconds:.1f} s "
                f"({rows / seconds if seconds else 0:,.0f} rows/s)",
                file=out,
            )
    finally:
        await store.close()
    return 0


def _clear(progress: ProgressLine | None) -> None:
    if progress is not None:
        progress.clear()
