"""The in-process hub: one ring buffer of encoded events per topic (a dashboard),
integer cursors for readers, and fan-out passes that feed them.

Modelled on the MessageBuffer of Tornado's chat demo, but never global, and with
a snapshot (the newest event of each widget) for a reader whose cursor fell off
the buffer, so that a slow reader costs constant memory: it holds only an int.

Each event is encoded to bytes once, in publish(); every reader of every topic
writes those same bytes.

Readers (reader.py says what a topic asks of them) subscribe(): a topic with
subscribers runs one fan-out pass per burst of events (or per `batch` window),
in which every idle subscriber gets the events after its cursor; subscribers at
the same cursor share one joined payload. No future, task or timer per reader per event, as the chat demo's
Condition would have: with thousands of readers those were most of the CPU.
`direct` readers that took every byte of the last pass form the topic's
caught-up group: their cursor is the group's, what they were sent is counted
once for the group, and the pass frames its payload once with the topic's
`frame` (an HTTP chunk, say) and hands it to their `send` callables in a loop
that does nothing else (it does not even touch the reader objects: at
thousands of readers, each object touched per event is a cache miss that
shows). Every other reader gets push(payload, upto, count).
Likewise one timer per topic calls tick(now) on every subscriber every
`tick_every` seconds (keep-alives, lifetimes), not a timer per reader.

Which widgets each topic shows, and the topics' settings, are given when the hub
is seeded and changed through reconfigure() and apply(), never by editing its
dicts from outside.

Besides one topic per dashboard, a stream that follows only some widgets (of one
dashboard or of several) reads a subset topic: a topic of exactly those widgets,
made on first use (subset()), shared by every stream of the same set, and fed by
publish() like the others. The whole-dashboard topics are not touched by it: a
subset costs its own readers, and an append per event of its widgets. A subset
topic with no reader left is dropped once it has been idle for SUBSET_LINGER
(checked whenever a subset is asked for), or sooner, least recently asked for first,
when MAX_SUBSETS exist and another is asked for: only subsets with open streams are
ever refused room.

Ids: a sample's id is its event id. `Hub.last_id` and `Topic.last_id` are the
newest sample ids the hub and a topic have seen. A topic's `position` is the
newest place in its buffer: that id, or a fraction above it after a control
event (append_control). Cursors are positions.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from ..core.events import ControlEvent, Gap
from ..core.samples import Sample
from ..core.sse import encode_event
from .reader import Reader


def encode_sample(sample: Sample) -> bytes:
    """encode_event(sample.to_json(), event=sample.widget, id=sample.id), byte for byte.
    Written out for every sample on its way to the streams: the JSON is ASCII with no
    line break (ensure_ascii; JSON escapes CR and LF), one data line as it stands; a
    widget id with anything but printable ASCII takes the general path, which refuses
    a line break in it."""
    widget = sample.widget
    if widget.isascii() and widget.isprintable():
        return f"id: {sample.id}\nevent: {widget}\ndata: {sample.to_json()}\n\n".encode("ascii")
    return encode_event(sample.to_json(), event=widget, id=sample.id)


CONTROLS_PER_EVENT = 1024
# Sent before the snapshot that replaces events a reader was too slow to take.
FELL_BEHIND = Gap("fell behind").encode()
# The most a reader that is behind is sent in one write (what a stalled one then holds
# unsent); more waiting for it: `gap` and the newest value of each widget instead. So a
# slow reader costs at most this much of its own, however large the events.
BACKLOG_BYTES = 2 * 1024 * 1024
# Bytes of events a topic keeps, whatever [hub] buffer says: a reader is never sent more
# than BACKLOG_BYTES from the buffer, so older ones serve nobody, while events of up to
# [api] max_body each would otherwise hold buffer x 2 x max_body per dashboard.
BUFFER_BYTES = 2 * BACKLOG_BYTES
SUBSET_PREFIX = "~"  # a subset topic's name: "~a,b" (a dashboard id holds neither "~" nor ",")
MAX_SUBSETS = 256
SUBSET_BUFFER = 256  # events kept per subset topic: a resuming stream reads older ones from the database
SUBSET_LINGER = 60.0  # seconds a subset topic with no reader is kept, for its streams to resume into

# Committed samples of every widget with after < id <= upto (None: no bound), oldest first,
# at most limit + 1 of them: the store's `since`, handed to a hub that fills gaps from it.
Fill = Callable[[int, int | None, int], Awaitable[list[Sample]]]


@dataclass(frozen=True)
class TopicSettings:
    """How a hub's topics feed their readers; given when the hub is built, and again
    through Hub.apply() when a reload changes them."""

    batch: float = 0.0  # seconds a pass waits after the first event, to take the next ones along
    tick_every: float = 1.0  # seconds between the readers' tick() calls
    # How direct readers take a payload: as it is, unless a transport (HTTP chunks) says.
    frame: Callable[[bytes], bytes] = bytes
    # Called with (events, bytes, snapshots) once per pass, not per reader: counting for
    # metrics at every push cost a tenth of the fan-out's CPU.
    on_sent: Callable[[int, int, int], None] | None = None


class Topic:
    """The recent events of one dashboard.

    Events with id <= floor are no longer in the buffer (they may be in the
    database). Ids are global across topics, so a topic's ids have gaps.
    """

    __slots__ = (
        "_pass",
        "_ticker",
        "batch",
        "behind",
        "bytes",
        "caught_up",
        "chunks",
        "controls",
        "floor",
        "frame",
        "ids",
        "joined",
        "last_id",
        "latest",
        "name",
        "on_sent",
        "position",
        "readers",
        "sent_bytes",
        "sent_events",
        "sent_upto",
        "size",
        "tick_every",
        "used",
        "widgets",
    )

    def __init__(self, name: str, size: int, floor: int, settings: TopicSettings = TopicSettings()):
        self.name = name
        self.size = size
        self.ids: list[float] = []  # positions: sample ids, and fractions after them for control events
        self.chunks: list[bytes] = []
        self.bytes = 0  # of the chunks
        self.floor: float = floor
        self.position: float = floor  # the newest position: a sample id, or a control event's fraction after one
        self.last_id = floor  # the newest sample id: what a page may resume from
        self.controls = 0  # control events after last_id
        self.latest: dict[str, tuple[int, bytes, Sample]] = {}
        self.readers = 0  # open streams of this topic, those still in their opening included
        # Subscribers, each in one of two groups (dicts: ordered sets with O(1) removal; see
        # reader.py). Caught up: at the group's cursor sent_upto, keyed by the reader's send
        # (its own `cursor` is set when it leaves: cursor_of()); what the group was sent while
        # it was in is added to its counters when it leaves (counts()). Behind: the others.
        self.caught_up: dict[Callable[[bytes], int], Reader] = {}
        self.joined: dict[Reader, tuple[Callable[[bytes], int], int, int]] = {}  # send, group counts then
        self.behind: dict[Reader, None] = {}
        self.sent_upto: float = floor
        self.sent_events = 0  # everything the caught-up group was sent, per member
        self.sent_bytes = 0
        self._pass: asyncio.Handle | None = None
        self._ticker: asyncio.Handle | None = None
        self.widgets: tuple[str, ...] = ()  # the widgets it shows
        self.used = 0.0  # monotonic time a subset topic was last asked for (Hub.subset)
        self.apply(settings)

    def apply(self, settings: TopicSettings) -> None:
        self.batch = settings.batch
        self.tick_every = settings.tick_every
        self.frame = settings.frame
        self.on_sent = settings.on_sent

    def append(self, sample: Sample, chunk: bytes) -> None:
        self.latest[sample.widget] = (sample.id, chunk, sample)
        self.last_id = sample.id
        self.controls = 0
        self._add(sample.id, chunk)

    def append_control(self, chunk: bytes) -> None:
        """Buffer an event without an id (`reload`). It must wake readers whose cursor is
        the newest event id, yet leave event ids to samples, so it takes a position a
        fraction above that id: ints and floats compare, and bisect needs no change.
        Fractions of 1/1024 are exact in binary; after 1023 control events with no
        sample between them, further ones are dropped."""
        if self.controls + 1 >= CONTROLS_PER_EVENT:
            return
        self.controls += 1
        self._add(self.last_id + self.controls / CONTROLS_PER_EVENT, chunk)

    def _add(self, position: float, chunk: bytes) -> None:
        self.ids.append(position)
        self.chunks.append(chunk)
        self.position = position
        self.bytes += len(chunk)
        if len(self.ids) > 2 * self.size or self.bytes > 2 * BUFFER_BYTES:
            self._trim()
        if (self.joined or self.behind) and self._pass is None:
            loop = asyncio.get_running_loop()
            self._pass = loop.call_later(self.batch, self._fan_out) if self.batch else loop.call_soon(self._fan_out)

    def _trim(self) -> None:
        """Drop the oldest events down to `size` of them and BUFFER_BYTES, the newest one
        always kept: in halves rather than per event (amortised O(1)), so bisect stays usable."""
        cut = max(0, len(self.ids) - self.size)
        kept = self.bytes - sum(map(len, self.chunks[:cut]))
        while kept > BUFFER_BYTES and cut < len(self.ids) - 1:
            kept -= len(self.chunks[cut])
            cut += 1
        if cut:
            self.floor = self.ids[cut - 1]
            del self.ids[:cut]
            del self.chunks[:cut]
            self.bytes = kept

    def subscribe(self, reader) -> None:
        """Feed `reader` from its cursor on: what it missed now, new events as they come."""
        self.behind[reader] = None
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().call_later(self.tick_every, self._tick)
        self.feed(reader)

    def unsubscribe(self, reader) -> None:
        self.fell_behind(reader)
        self.behind.pop(reader, None)

    @property
    def subscribers(self) -> list:
        """Every reader the topic feeds."""
        return [*self.joined, *self.behind]

    def feed(self, reader) -> None:
        """Push whatever is newer than the reader's cursor (e.g. once its slow write drained)."""
        if reader not in self.behind:
            return  # not subscribed, or caught up: the next pass sends it what is new
        if reader.cursor < self.position and not reader.busy:
            payload, count, snapshot = self.backlog(reader.cursor)
            reader.push(payload, self.position, count)
            if self.on_sent is not None:
                self.on_sent(count, len(payload), int(snapshot))
        self._catch_up(reader)

    def fell_behind(self, reader) -> None:
        """Take a reader out of the caught-up group (its write stalled, it is gone): it is
        fed on its own from now on, and its counters get what the group was sent meanwhile."""
        joined = self.joined.pop(reader, None)
        if joined is not None:
            send, events, size = joined
            del self.caught_up[send]
            reader.cursor = self.sent_upto
            reader.events_sent += self.sent_events - events
            reader.bytes_sent += self.sent_bytes - size
            self.behind[reader] = None

    def _catch_up(self, reader) -> None:
        """Move a reader that is behind into the caught-up group, if it now is."""
        if (
            reader in self.behind
            and reader.direct
            and not reader.busy
            and (reader.cursor == self.sent_upto or not self.caught_up)
            and reader.send not in self.caught_up
        ):  # the group is keyed by send: one reader each
            del self.behind[reader]
            self.sent_upto = reader.cursor
            self.caught_up[reader.send] = reader
            self.joined[reader] = (reader.send, self.sent_events, self.sent_bytes)

    def cursor_of(self, reader):
        """Where a reader is: the group's cursor while it is caught up, else its own."""
        return self.sent_upto if reader in self.joined else reader.cursor

    def counts(self, reader) -> tuple[int, int]:
        """The events and bytes a reader was sent so far."""
        joined = self.joined.get(reader)
        if joined is None:
            return reader.events_sent, reader.bytes_sent
        return (reader.events_sent + self.sent_events - joined[1], reader.bytes_sent + self.sent_bytes - joined[2])

    def payload(self, cursor) -> tuple[bytes, int]:
        """Everything after `cursor` as one write, and how many events it holds; when the
        cursor fell off the buffer, `gap` and the newest value of each widget."""
        chunks = self.since(cursor)
        if chunks is None:
            chunks = [FELL_BEHIND, *self.snapshot(cursor)]
        return b"".join(chunks), len(chunks)

    def backlog(self, cursor) -> tuple[bytes, int, bool]:
        """payload(cursor) for a reader that is behind, and whether it is a snapshot: `gap`
        and the newest value of each widget, also when the events waiting for it are over
        BACKLOG_BYTES."""
        chunks = self.since(cursor)
        if chunks is None or (len(chunks) > 1 and sum(map(len, chunks)) > BACKLOG_BYTES):
            chunks = [FELL_BEHIND, *self.snapshot(cursor)]
            return b"".join(chunks), len(chunks), True
        return b"".join(chunks), len(chunks), False

    def _fan_out(self) -> None:
        self._pass = None
        upto = self.position
        events = size = snapshots = 0
        if self.caught_up and self.sent_upto < upto:
            events, size, snapshots = self._send_caught_up(upto)
        if self.behind:
            more = self._feed_behind(upto)
            events, size, snapshots = events + more[0], size + more[1], snapshots + more[2]
        if events and self.on_sent is not None:
            self.on_sent(events, size, snapshots)

    def _send_caught_up(self, upto) -> tuple[int, int, int]:
        """One payload to every caught-up reader. This loop runs once per reader per event
        and is most of what the server does besides the send itself: it is kept to the
        bare minimum, and all counting is done once for the group."""
        payload, count = self.payload(self.sent_upto)
        framed = self.frame(payload)
        framed_length = len(framed)
        snapshot = self.sent_upto < self.floor
        self.sent_upto = upto
        self.sent_events += count
        self.sent_bytes += len(payload)
        sends = list(self.caught_up)  # a copy: a reader that stalls or is gone leaves the group
        lost = 0
        for send in sends:
            try:
                taken = send(framed)
            except (BlockingIOError, InterruptedError):
                taken = 0  # its buffer is full
            except OSError:  # the peer is gone
                reader = self.caught_up[send]
                self.fell_behind(reader)
                reader.lost()
                lost += 1
                continue
            if taken != framed_length:
                reader = self.caught_up[send]
                self.fell_behind(reader)
                reader.stalled(framed, taken)
        members = len(sends) - lost
        return count * members, len(payload) * members, members if snapshot else 0

    def _feed_behind(self, upto) -> tuple[int, int, int]:
        """The pass for readers that are not caught up (a few, usually, at a few cursors):
        a push() each, then those that now are caught up join the group."""
        groups: dict[float, tuple[bytes, int, bool]] = {}  # cursor -> (payload, events, snapshot)
        events = size = snapshots = 0
        for reader in list(self.behind):
            cursor = reader.cursor
            if cursor >= upto or reader.busy:
                continue  # a busy one catches up through feed() when its write drained
            group = groups.get(cursor)
            if group is None:
                group = groups[cursor] = self.backlog(cursor)
            payload, count, snapshot = group
            reader.push(payload, upto, count)
            events += count
            size += len(payload)
            snapshots += snapshot
        for reader in list(self.behind):
            self._catch_up(reader)
        return events, size, snapshots

    def _tick(self) -> None:
        readers = self.subscribers
        if not readers:
            self._ticker = None
            return
        now = time.monotonic()
        for reader in readers:
            reader.tick(now)
        self._ticker = asyncio.get_running_loop().call_later(self.tick_every, self._tick)

    def end_subscribers(self) -> None:
        for reader in self.subscribers:
            reader.end()

    def since(self, cursor: int) -> list[bytes] | None:
        """The encoded events after `cursor`, or None when some of them left the buffer."""
        if cursor < self.floor:
            return None
        return self.chunks[bisect_right(self.ids, cursor) :]

    def snapshot(self, cursor: int = -1) -> list[bytes]:
        """The newest event of each widget newer than `cursor`, in id order."""
        newest = sorted((event_id, chunk) for event_id, chunk, _ in self.latest.values() if event_id > cursor)
        return [chunk for _, chunk in newest]


class Hub:
    """The topics of one process. Which widgets each topic (a dashboard) shows is given
    by seed() and reconfigure(); publish() appends a sample to the topics showing it."""

    def __init__(self, buffer: int = 1024, settings: TopicSettings = TopicSettings()):
        self.buffer = buffer
        self.settings = settings
        self.topics: dict[str, Topic] = {}  # a dashboard's topic, by its id
        self.subsets: dict[tuple[str, ...], Topic] = {}  # a subset topic, by its sorted widgets
        self._topics_of: dict[str, tuple[Topic, ...]] = {}  # widget -> the topics showing it
        self.last_id = 0
        self.closed = False
        self.published = 0

    def seed(self, topics: Mapping[str, Iterable[str]], latest: Mapping[str, Sample], last_id: int) -> None:
        """Start every topic from what the database holds: the newest sample of each
        widget, and a floor at the database's last id (older events come from there)."""
        self.last_id = max(self.last_id, last_id)
        self._place(topics, latest)

    def _place(self, topics: Mapping[str, Iterable[str]], latest: Mapping[str, Sample]) -> None:
        for name, widgets in topics.items():
            topic = self.topics.get(name) or Topic(name, self.buffer, self.last_id, self.settings)
            self.topics[name] = topic
            shown = set(widgets)
            topic.widgets = tuple(shown)
            for widget in shown:
                sample = latest.get(widget)
                # What the hub already holds stays when it is newer (heard live meanwhile).
                if sample is not None and (widget not in topic.latest or sample.id >= topic.latest[widget][0]):
                    topic.latest[widget] = (sample.id, encode_sample(sample), sample)
            for widget in set(topic.latest) - shown:
                del topic.latest[widget]  # else a fresh page's snapshot would still carry it
        self._index()

    def _index(self) -> None:
        placed: dict[str, list[Topic]] = {}
        for topic in (*self.topics.values(), *self.subsets.values()):
            for widget in topic.widgets:
                placed.setdefault(widget, []).append(topic)
        self._topics_of = {widget: tuple(shown) for widget, shown in placed.items()}

    def reconfigure(
        self,
        topics: Mapping[str, Iterable[str]],
        latest: Mapping[str, Sample],
        goodbye: ControlEvent,
        widgets: Iterable[str] | None = None,
    ) -> list[Topic]:
        """A reload: topics added, reshaped (widgets added get their value from `latest`,
        widgets gone leave the snapshot) or removed, and subset topics of a widget that
        is no longer in `widgets` (every widget there is) removed. A removed topic's readers
        get `goodbye`; it is returned so that its readers can be ended once that had time
        to reach them."""
        removed = [topic for name, topic in self.topics.items() if name not in topics]
        for topic in removed:
            del self.topics[topic.name]
        if widgets is not None:
            known = set(widgets)
            for key, topic in list(self.subsets.items()):
                if not known.issuperset(key):
                    removed.append(topic)
                    del self.subsets[key]
        for topic in removed:
            topic.append_control(goodbye.encode())
        self._place(topics, latest)
        return removed

    def subset(self, widgets: Iterable[str]) -> Topic | None:
        """The topic of exactly these widgets, made on first use with the newest value of
        each that a dashboard's topic holds (web.stream.subset_topic reads the others from the
        database); None when
        MAX_SUBSETS are in use."""
        key = tuple(sorted(set(widgets)))
        now = time.monotonic()
        topic = self.subsets.get(key)
        if topic is None:
            self._drop_idle_subsets(now)
            if len(self.subsets) >= MAX_SUBSETS and not self._drop_least_used_subset():
                return None
            size = min(self.buffer, SUBSET_BUFFER)
            topic = Topic(SUBSET_PREFIX + ",".join(key), size, self.last_id, self.settings)
            topic.widgets = key
            for widget in key:
                newest = max(
                    (shown.latest[widget] for shown in self._topics_of.get(widget, ()) if widget in shown.latest),
                    key=lambda entry: entry[0],
                    default=None,
                )
                if newest is not None:
                    topic.latest[widget] = newest
            self.subsets[key] = topic
            self._index()
        topic.used = now
        return topic

    def _drop_idle_subsets(self, now: float) -> None:
        idle = [key for key, topic in self.subsets.items() if not topic.readers and now - topic.used > SUBSET_LINGER]
        for key in idle:
            del self.subsets[key]
        if idle:
            self._index()

    def _drop_least_used_subset(self) -> bool:
        """Room for one more: the subset without readers that was asked for longest ago
        goes before its minute is up (a stream resuming into it later reads what it
        missed from the database). So only open streams hold subsets: requests that open
        and drop streams of ever new sets cannot keep everybody else's out."""
        unread = [(topic.used, key) for key, topic in self.subsets.items() if not topic.readers]
        if not unread:
            return False
        del self.subsets[min(unread)[1]]
        self._index()
        return True

    def subsets_showing(self, widgets: Iterable[str]) -> list[Topic]:
        """The subset topics that show any of these widgets."""
        wanted = set(widgets)
        return [topic for key, topic in self.subsets.items() if wanted.intersection(key)]

    def apply(self, settings: TopicSettings) -> None:
        """New topic settings (a reload changed [server] batch or keepalive, say), for every
        topic: the dashboards' and the widget subsets'."""
        self.settings = settings
        for topic in self._every_topic():
            topic.apply(settings)

    def _every_topic(self) -> tuple[Topic, ...]:
        return (*self.topics.values(), *self.subsets.values())

    def topic(self, name: str) -> Topic | None:
        return self.topics.get(name)

    def topics_of(self, widget: str) -> tuple[str, ...]:
        return tuple(topic.name for topic in self._topics_of.get(widget, ()))

    def publish(self, sample: Sample, topics: Iterable[str] | None = None) -> None:
        """Append the sample to the topics that show its widget (or to `topics`, which
        the hub's own tests name), encoded once for all of them."""
        chunk = encode_sample(sample)
        self.last_id = max(self.last_id, sample.id)
        self.published += 1
        if topics is None:
            for topic in self._topics_of.get(sample.widget, ()):
                topic.append(sample, chunk)
        else:
            for name in topics:
                named = self.topics.get(name)
                if named is not None:
                    named.append(sample, chunk)

    def publish_all(self, samples: Iterable[Sample]) -> None:
        """Publish committed samples, in the order given (id order)."""
        for sample in samples:
            self.publish(sample)

    def send_control(self, topic_name: str, event: ControlEvent) -> None:
        """Send a control event (e.g. `reload`) to every reader of a topic."""
        topic = self.topics.get(topic_name)
        if topic is not None:
            topic.append_control(event.encode())

    def latest(self, name: str) -> dict[str, Sample]:
        topic = self.topics.get(name)
        return {widget: sample for widget, (_, _, sample) in topic.latest.items()} if topic else {}

    async def start(self, fill: Fill) -> None:
        """Connect whatever carries events between processes (RedisHub, after seed());
        within one process there is nothing to connect. `fill(after, upto, limit)` reads
        committed samples from the database, for a hub that must close gaps."""

    def link(self) -> dict[str, object]:
        """What carries events between processes, and how it is doing (for /healthz)."""
        return {"backend": "memory"}

    async def stop(self) -> None:
        """Let go of what start() took, after close()."""

    def close(self) -> None:
        """End every reader, so that streams can say goodbye."""
        self.closed = True
        for topic in self._every_topic():
            topic.end_subscribers()

    @property
    def readers(self) -> int:
        return sum(topic.readers for topic in self._every_topic())
