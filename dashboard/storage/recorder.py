"""Store, then publish: the one path every new sample takes, from a ticker or the push API."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from ..core.samples import OK, Sample
from .store import Store


class Publisher(Protocol):
    """What the recorder hands stored samples to: the hub, a sibling layer storage does not import."""

    def publish(self, sample: Sample, topics: Iterable[str]) -> object: ...


class Recorder:
    def __init__(self, store: Store, hub: Publisher, topics_of: Callable[[str], Iterable[str]]):
        self.store = store
        self.hub = hub
        self.topics_of = topics_of  # widget id -> the dashboards showing it; follows config reloads

    async def record(self, widget: str, value: Any, status: str = OK, message: str | None = None) -> Sample:
        (sample,) = await self.record_many([(widget, value, status, message)])
        return sample

    async def record_many(self, items: Sequence[tuple[str, Any, str, str | None]]) -> list[Sample]:
        """Commit all items in one transaction, then publish them in id order."""
        return await self.store.append_many(items, then=self._publish)

    def _publish(self, samples: list[Sample]) -> None:
        for sample in samples:
            self.hub.publish(sample, self.topics_of(sample.widget))
