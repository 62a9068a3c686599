"""Store, then publish: the one path every new sample takes, from a ticker, a
streaming source or the push API.

The recorder knows no hub: `publish(samples)` is handed to it (the service wires
it to the hub), and called with the committed samples in id order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..core.samples import OK, Sample
from .store import Store

Publish = Callable[[list[Sample]], None]


class Recorder:
    def __init__(self, store: Store, publish: Publish, *, on_write: Callable[[float], None] | None = None):
        self.store = store
        self.publish = publish
        self.on_write = on_write  # seconds each write took, the wait for the write lock included

    async def record(self, widget: str, value: Any, status: str = OK, message: str | None = None) -> Sample:
        (sample,) = await self.record_many([(widget, value, status, message)])
        return sample

    async def record_many(self, items: Sequence[tuple[str, Any, str, str | None]]) -> list[Sample]:
        """Commit all items in one transaction, then publish them in id order."""
        started = time.perf_counter()
        samples = await self.store.append_many(items)
        # No await between the commit (inside append_many, under the store's write lock)
        # and this call: the next writer cannot commit, let alone publish, in between, so
        # samples are published in commit order without holding the lock meanwhile.
        self.publish(samples)
        if self.on_write is not None:
            self.on_write(time.perf_counter() - started)
        return samples
