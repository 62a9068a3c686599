"""The in-process hub: one ring buffer of encoded events per topic (a dashboard),
integer cursors for readers, and a condition that wakes them.

Modelled on the MessageBuffer of Tornado's chat demo, but never global, and with
a snapshot (the newest event of each widget) for a reader whose cursor fell off
the buffer, so that a slow reader costs constant memory: it holds only an int.

Each event is encoded to bytes once, in publish(); every reader of every topic
writes those same bytes.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from datetime import timedelta

from tornado.locks import Condition

from .models import Sample
from .sse import encode_event


def encode_sample(sample: Sample) -> bytes:
    return encode_event(sample.to_json(), event=sample.widget, id=sample.id)


class Topic:
    """The recent events of one dashboard.

    Events with id <= floor are no longer in the buffer (they may be in the
    database). Ids are global across topics, so a topic's ids have gaps.
    """

    __slots__ = ("name", "size", "ids", "chunks", "floor", "last_id", "latest", "changed", "readers")

    def __init__(self, name: str, size: int, floor: int):
        self.name = name
        self.size = size
        self.ids: list[int] = []
        self.chunks: list[bytes] = []
        self.floor = floor
        self.last_id = floor
        self.latest: dict[str, tuple[int, bytes, Sample]] = {}
        self.changed = Condition()
        self.readers = 0

    def append(self, sample: Sample, chunk: bytes) -> None:
        self.ids.append(sample.id)
        self.chunks.append(chunk)
        self.last_id = sample.id
        self.latest[sample.widget] = (sample.id, chunk, sample)
        if len(self.ids) > 2 * self.size:
            # Trim in halves rather than per event: amortised O(1), and bisect stays usable.
            cut = len(self.ids) - self.size
            self.floor = self.ids[cut - 1]
            del self.ids[:cut]
            del self.chunks[:cut]
        self.changed.notify_all()

    def since(self, cursor: int) -> list[bytes] | None:
        """The encoded events after `cursor`, or None when some of them left the buffer."""
        if cursor < self.floor:
            return None
        return self.chunks[bisect_right(self.ids, cursor):]

    def snapshot(self, cursor: int = -1) -> list[bytes]:
        """The newest event of each widget newer than `cursor`, in id order."""
        newest = sorted((event_id, chunk) for event_id, chunk, _ in self.latest.values() if event_id > cursor)
        return [chunk for _, chunk in newest]


class Hub:
    def __init__(self, buffer: int = 1024):
        self.buffer = buffer
        self.topics: dict[str, Topic] = {}
        self.last_id = 0
        self.closed = False
        self.published = 0

    def seed(self, topics: dict[str, Iterable[str]], latest: dict[str, Sample], last_id: int) -> None:
        """Start every topic from what the database holds: the newest sample of each
        widget, and a floor at the database's last id (older events come from there)."""
        self.last_id = max(self.last_id, last_id)
        for name, widgets in topics.items():
            topic = self.topics.get(name) or Topic(name, self.buffer, self.last_id)
            self.topics[name] = topic
            for widget in widgets:
                if widget in latest and widget not in topic.latest:
                    sample = latest[widget]
                    topic.latest[widget] = (sample.id, encode_sample(sample), sample)

    def topic(self, name: str) -> Topic | None:
        return self.topics.get(name)

    def publish(self, sample: Sample, topics: Iterable[str]) -> bytes:
        chunk = encode_sample(sample)
        self.last_id = max(self.last_id, sample.id)
        self.published += 1
        for name in topics:
            topic = self.topics.get(name)
            if topic is not None:
                topic.append(sample, chunk)
        return chunk

    def latest(self, name: str) -> dict[str, Sample]:
        topic = self.topics.get(name)
        return {widget: sample for widget, (_, _, sample) in topic.latest.items()} if topic else {}

    def wait(self, topic: Topic, cursor: int, timeout: float):
        """A future that resolves when the topic has an event after `cursor`, the hub
        closes, or `timeout` seconds pass; None when there is no need to wait.

        A reader may resolve the future itself (set_result) to stop waiting early,
        e.g. when its connection closed: the condition skips done futures."""
        if topic.last_id > cursor or self.closed:
            return None
        # Tornado reads a float timeout as an absolute loop time; a timedelta is relative.
        return topic.changed.wait(timeout=timedelta(seconds=timeout))

    def close(self) -> None:
        """Wake every reader so that streams can say goodbye and end."""
        self.closed = True
        for topic in self.topics.values():
            topic.changed.notify_all()

    @property
    def readers(self) -> int:
        return sum(topic.readers for topic in self.topics.values())
