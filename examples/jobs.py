"""Example jobs for the `python` source: plain functions that return a value.

Each is named in examples/config.toml as `function = "jobs:<name>"`; the
config's directory is on sys.path, so this file imports as `jobs`. None of
them needs the network, so the example runs anywhere.
"""

from __future__ import annotations

import asyncio
import datetime
import os
from pathlib import Path


async def days_until(date: str) -> int:
    """Whole days from today until an ISO date ("2030-01-01"); negative once it has passed.
    An async function: it is awaited on the server's event loop, so it must not block."""
    target = datetime.date.fromisoformat(date)
    await asyncio.sleep(0)  # a real job would await its I/O here
    return (target - datetime.date.today()).days


def largest_files(path: str = "", count: int = 5) -> list[dict]:
    """The biggest files under a directory (by default this file's), as list rows in
    KiB. A plain function: it runs in a worker thread, so walking a large tree does
    not stall the server."""
    path = path or os.path.dirname(os.path.abspath(__file__))
    sizes = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            file = Path(root, name)
            try:
                sizes.append((file.stat().st_size, str(file.relative_to(path))))
            except (OSError, ValueError):
                continue  # vanished or unreadable while walking: skip it
    sizes.sort(reverse=True)
    return [{"label": name, "value": round(size / 1024, 1)} for size, name in sizes[:count]]
