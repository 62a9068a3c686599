"""Retention: delete samples older than `[storage] retention`, every `prune_every`;
and rollups older than their own retention (`retention_10s`, `retention_1m`,
`retention_1h`): the minutes and hours outlive the raw samples by default, so graphs
of long ranges do.

Store.prune deletes in small batches, each under the write lock for a moment,
and lets writers in between, so a first prune of months of history never
holds up a ticker or a push. The newest sample of each widget is always kept:
it is what the page shows, and keeping it keeps ids growing.

The settings are read from `config()` at each round, so a reload applies them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ..config import Config
from .rollups import TIERS, tier_retention
from .store import Store

log = logging.getLogger("dashboard.retention")


class Pruner:
    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.store = store
        self.config = config
        self._now = now
        self.rounds = 0  # finished rounds, for tests and the curious
        self.pruned = 0
        self.pruned_rollups = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def prune_once(self) -> int:
        """One round; the samples it deleted."""
        storage = self.config().storage
        now = self._now()
        cutoff = now - timedelta(seconds=storage.retention)
        deleted = await self.store.prune(cutoff)
        self.pruned += deleted
        if deleted:
            log.info("pruned %d sample(s) older than %s", deleted, cutoff.isoformat(timespec="seconds"))
        kept = tier_retention(storage)
        buckets = await self.store.prune_rollups({step: int(now.timestamp() - kept[step]) for step in TIERS})
        self.pruned_rollups += buckets
        if buckets:
            log.info("pruned %d rollup bucket(s) past their retention", buckets)
        self.rounds += 1
        return deleted

    async def _run(self) -> None:
        # A round at start too: a server restarted more often than prune_every still prunes.
        while True:
            try:
                await self.prune_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away for a moment: try again next round
                log.exception("pruning old samples failed")
            await asyncio.sleep(self.config().storage.prune_every)
