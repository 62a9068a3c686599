"""Store, then publish: the one path every new sample takes, from a ticker, a
streaming source or the push API. Group commit: one writer task takes every
sample waiting at that moment and commits them in one transaction, then
publishes them in id order and wakes each caller.

The recorder knows no hub: `publish(samples)` is handed to it (the service wires
it to the hub), and called with the committed samples in id order.

Deliberate oddities, please read before "fixing":
- There is no queue and no sleeping writer: the first caller to find nobody
  writing starts a task, which runs while anything is waiting and then ends.
  Whatever arrives during a write goes into the next one, so batches grow with
  the load by themselves and an idle server has no task at all.
- A caller's items are one job: committed together or not at all (the batch push
  API's rule). When a combined transaction fails, the jobs are retried one
  transaction each, so one bad job fails alone and the others are stored.
- A caller that is cancelled while it waits does not take its sample back: it
  was queued, it is written (and published) like the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..core.samples import OK, Sample
from .store import Item, Store

log = logging.getLogger("dashboard.recorder")

Publish = Callable[[list[Sample]], None]


class _Job:
    __slots__ = ("future", "items", "rows")

    def __init__(self, items: Sequence[Item], future: asyncio.Future[list[Sample]]):
        self.items = items
        self.future = future
        self.rows: list[Any] = []

    def done(self, samples: list[Sample]) -> None:
        if not self.future.done():  # its caller may have been cancelled
            self.future.set_result(samples)

    def failed(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class Recorder:
    def __init__(self, store: Store, publish: Publish, *, on_write: Callable[[float], None] | None = None):
        self.store = store
        self.publish = publish
        self.on_write = on_write  # seconds each transaction took, the wait for the database's lock included
        self._waiting: list[_Job] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # transactions committed, and the samples in them: for tests and metrics
        self.written = 0

    async def record(self, widget: str, value: Any, status: str = OK, message: str | None = None) -> Sample:
        (sample,) = await self.record_many([(widget, value, status, message)])
        return sample

    async def record_many(self, items: Sequence[Item]) -> list[Sample]:
        """Commit all items in one transaction (with whatever else is waiting), then publish
        them in id order; returns once they are committed."""
        return await self.submit(items)

    def submit(self, items: Sequence[Item]) -> asyncio.Future[list[Sample]]:
        """Queue items to be committed together; the future is their committed samples. A
        streaming source submits without waiting, so its next message joins the next batch."""
        future: asyncio.Future[list[Sample]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Job(list(items), future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_while_waiting(), name="recorder")
        return future

    async def idle(self) -> None:
        """Until everything queued so far is written."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def _write_while_waiting(self) -> None:
        try:
            while self._waiting:
                jobs, self._waiting = self._waiting, []
                await self._write(jobs)
        finally:
            # No await between the last empty check and this line: a job queued after it
            # finds no writer and starts the next one.
            self._writer = None

    async def _write(self, jobs: list[_Job]) -> None:
        ready = []
        for job in jobs:
            try:
                job.rows = self.store.encode(job.items)
            except (TypeError, ValueError) as exc:  # a value with no JSON form: this job only
                job.failed(exc)
            else:
                ready.append(job)
        if not ready:
            return
        try:
            await self._commit(ready)
        except Exception as exc:
            if len(ready) == 1:
                ready[0].failed(exc)
                return
            log.warning("a write of %d batches failed (%s); writing them one by one", len(ready), exc)
            for job in ready:
                try:
                    await self._commit([job])
                except Exception as one:
                    job.failed(one)

    async def _commit(self, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        batches = await self.store.commit([job.rows for job in jobs])
        # No await between the commit and this call: the next batch cannot commit, let
        # alone publish, in between, so samples are published in commit (= id) order.
        try:
            self.publish([sample for batch in batches for sample in batch])
        except Exception:  # committed is committed: the callers still get their samples
            log.exception("publishing %d committed sample(s) failed", sum(len(batch) for batch in batches))
        self.batches += 1
        self.written += sum(len(batch) for batch in batches)
        if self.on_write is not None:
            self.on_write(time.perf_counter() - started)
        for job, samples in zip(jobs, batches, strict=True):
            job.done(samples)
