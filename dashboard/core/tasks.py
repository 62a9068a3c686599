"""Retrying and stopping: the doubling backoff of everything that retries (sources,
notifiers), and cancelling tasks so that they really end."""

from __future__ import annotations

import asyncio

MAX_BACKOFF = 300.0  # seconds: five minutes, at most, between two tries


def backoff(first: float, failures: int) -> float:
    """The wait after the n-th failure in a row: first * 2**(n-1), capped at MAX_BACKOFF
    (or at `first`, when that is longer)."""
    return min(first * 2.0 ** max(failures - 1, 0), max(first, MAX_BACKOFF))


async def cancel_until_done(tasks: list[asyncio.Task[object]]) -> None:
    """Cancel the tasks, again and again until they ended: on Python 3.11
    asyncio.wait_for swallows a cancellation that arrives just as what it awaits
    completes (bpo-42130), and a loop that waits with it would then run on."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
