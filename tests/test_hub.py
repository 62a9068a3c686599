"""The hub on its own: ring buffers, cursors, snapshots, subscribers and fan-out passes."""

import asyncio
import json
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dashboard.core.events import Reload
from dashboard.core.samples import Sample
from dashboard.core.sse import decode
from dashboard.hub.memory import BACKLOG_BYTES, BUFFER_BYTES, Hub, Topic, TopicSettings, encode_sample

TS = datetime(2026, 11, 21, 10, 15, 2, 120000, tzinfo=UTC)


def sample(event_id: int, widget: str = "a", value=None) -> Sample:
    return Sample(event_id, widget, TS, event_id if value is None else value)


def ids_of(chunks: list[bytes]) -> list[int]:
    return [int(event.last_event_id) for event in decode(b"".join(chunks))]


def widgets_of(chunks: list[bytes]) -> list[str]:
    return [event.type for event in decode(b"".join(chunks))]


def hub_with(topics: dict, size: int = 16, last_id: int = 0) -> Hub:
    hub = Hub(size)
    hub.seed(topics, {}, last_id)
    return hub


def test_since_returns_only_newer_events_in_one_batch():
    hub = hub_with({"main": ["a", "b"]})
    for event_id in range(1, 6):
        hub.publish(sample(event_id, "ab"[event_id % 2]), ["main"])
    topic = hub.topic("main")
    assert ids_of(topic.since(0)) == [1, 2, 3, 4, 5]
    assert ids_of(topic.since(3)) == [4, 5]
    assert topic.since(5) == []
    assert topic.last_id == 5


def test_since_with_gaps_in_ids_starts_after_the_cursor():
    # Ids are global: a topic sees only its own widgets' ids, with gaps in between.
    hub = hub_with({"main": ["a"], "other": ["c"]})
    for event_id, widget in [(1, "a"), (2, "c"), (3, "c"), (4, "a"), (5, "c"), (6, "a")]:
        hub.publish(sample(event_id, widget), hub_topics(widget))
    main = hub.topic("main")
    assert ids_of(main.since(2)) == [4, 6]
    assert ids_of(main.since(4)) == [6]
    assert ids_of(hub.topic("other").since(1)) == [2, 3, 5]


def hub_topics(widget: str) -> list[str]:
    return {"a": ["main"], "c": ["other"]}[widget]


def test_chunk_is_the_encoded_sample():
    hub = hub_with({"main": ["a"]})
    hub.publish(sample(7, "a", 1.5), ["main"])
    chunk = hub.topic("main").chunks[-1]
    assert chunk == encode_sample(sample(7, "a", 1.5))
    (event,) = decode(chunk)
    assert (event.type, event.last_event_id) == ("a", "7")
    assert event.data == '{"widget":"a","value":1.5,"ts":"2026-11-21T10:15:02.120Z","status":"ok"}'


def test_an_event_on_two_topics_shares_the_same_bytes():
    hub = hub_with({"main": ["a", "b"], "other": ["b", "c"]})
    hub.publish(sample(1, "b"), ["main", "other"])
    main, other = hub.topic("main"), hub.topic("other")
    chunk = main.chunks[-1]
    assert other.chunks[-1] is chunk
    assert main.since(0)[0] is other.since(0)[0]
    assert main.latest["b"][1] is chunk


def test_publish_to_an_unknown_topic_is_ignored():
    hub = hub_with({"main": ["a"]})
    hub.publish(sample(1, "a"), ["main", "gone"])
    assert hub.topic("gone") is None
    assert hub.last_id == 1


def test_a_reader_that_fell_off_the_buffer_gets_none_then_a_snapshot():
    size = 16
    hub = hub_with({"main": ["a", "b", "c"]}, size=size)
    widgets = ["a", "b", "c"]
    for event_id in range(1, 101):
        hub.publish(sample(event_id, widgets[event_id % 3]), ["main"])
    topic = hub.topic("main")
    assert topic.since(1) is None
    assert topic.since(topic.floor - 1) is None
    assert topic.since(topic.floor) is not None
    # The newest event of each widget, in id order (98 -> c, 99 -> a, 100 -> b).
    snapshot = topic.snapshot(1)
    assert ids_of(snapshot) == [98, 99, 100]
    assert widgets_of(snapshot) == ["c", "a", "b"]
    # Only widgets with something newer than the cursor.
    assert ids_of(topic.snapshot(98)) == [99, 100]
    assert topic.snapshot(100) == []
    assert ids_of(topic.snapshot()) == [98, 99, 100]


def test_buffer_memory_is_bounded():
    size = 16
    hub = hub_with({"main": ["a", "b"], "other": ["b"]}, size=size)
    longest = 0
    for event_id in range(1, 5001):
        hub.publish(sample(event_id, "ab"[event_id % 2]), ["main", "other"] if event_id % 2 else ["main"])
        for topic in hub.topics.values():
            assert len(topic.ids) == len(topic.chunks)
            longest = max(longest, len(topic.ids))
    assert longest == 2 * size
    for topic in hub.topics.values():
        assert size <= len(topic.ids) <= 2 * size
        assert len(topic.latest) <= 2
        # What is still in the buffer is the recent end, in order.
        assert topic.ids == sorted(topic.ids)
        assert topic.ids[-1] == topic.last_id
        assert topic.floor < topic.ids[0]
    assert ids_of(hub.topic("main").since(hub.topic("main").floor)) == hub.topic("main").ids


def test_seed_starts_each_topic_from_the_database():
    latest = {"a": sample(40, "a", 1.0), "b": sample(42, "b", "x"), "c": sample(41, "c", 3)}
    hub = Hub(16)
    hub.seed({"main": ["a", "b"], "other": ["c"]}, latest, 42)
    main = hub.topic("main")
    assert hub.last_id == 42
    assert (main.floor, main.last_id, main.ids) == (42, 42, [])
    assert ids_of(main.snapshot()) == [40, 42]
    assert ids_of(hub.topic("other").snapshot()) == [41]
    assert hub.latest("main") == {"a": latest["a"], "b": latest["b"]}
    assert hub.latest("nope") == {}
    # Older ids are the database's business; newer ones are not there yet.
    assert main.since(41) is None
    assert main.since(42) == []
    hub.publish(sample(43, "a", 2.0), ["main"])
    assert ids_of(main.since(42)) == [43]
    assert ids_of(main.snapshot()) == [42, 43]


def test_seed_keeps_newer_values_already_published():
    hub = Hub(16)
    hub.seed({"main": ["a"]}, {}, 0)
    hub.publish(sample(5, "a", 5), ["main"])
    hub.seed({"main": ["a"]}, {"a": sample(3, "a", 3)}, 3)
    assert ids_of(hub.topic("main").snapshot()) == [5]
    assert hub.last_id == 5


class Reader:
    """A subscriber fed through push(): a cursor, a busy flag, push/tick/end."""

    direct = False

    def __init__(self, cursor=0):
        self.cursor = cursor
        self.busy = False
        self.pushes = []
        self.ended = False

    def push(self, payload, upto, count):
        self.pushes.append((payload, upto, count))
        self.cursor = upto

    def tick(self, now):
        pass

    def end(self):
        self.ended = True


async def next_pass():
    """Let the topic's fan-out pass (scheduled with call_soon) run."""
    await asyncio.sleep(0)


@pytest.mark.gen_test(timeout=30)
async def test_a_subscriber_gets_what_it_missed_at_once_and_news_in_one_pass():
    hub = hub_with({"main": ["a"]})
    topic = hub.topic("main")
    hub.publish(sample(1), ["main"])
    reader = Reader(cursor=0)
    topic.subscribe(reader)
    assert [(upto, count) for _, upto, count in reader.pushes] == [(1, 1)]
    hub.publish(sample(2), ["main"])
    hub.publish(sample(3), ["main"])
    await next_pass()
    assert [(upto, count) for _, upto, count in reader.pushes] == [(1, 1), (3, 2)]
    assert ids_of([reader.pushes[-1][0]]) == [2, 3]


@pytest.mark.gen_test(timeout=30)
async def test_subscribers_at_one_cursor_share_one_payload_and_a_busy_one_catches_up_later():
    hub = hub_with({"main": ["a"]})
    topic = hub.topic("main")
    readers = [Reader() for _ in range(3)]
    for reader in readers:
        topic.subscribe(reader)
    readers[2].busy = True
    hub.publish(sample(1), ["main"])
    await next_pass()
    assert readers[0].pushes[0][0] is readers[1].pushes[0][0]  # the same bytes object
    assert readers[2].pushes == []
    readers[2].busy = False
    topic.feed(readers[2])  # what the stream does when its pending write drained
    assert [(upto, count) for _, upto, count in readers[2].pushes] == [(1, 1)]


@pytest.mark.gen_test(timeout=30)
async def test_unsubscribed_and_closed_readers_get_nothing_more():
    hub = hub_with({"main": ["a"], "other": ["b"]})
    gone, staying, elsewhere = Reader(), Reader(), Reader()
    hub.topic("main").subscribe(gone)
    hub.topic("main").subscribe(staying)
    hub.topic("other").subscribe(elsewhere)
    hub.topic("main").unsubscribe(gone)
    hub.publish(sample(1), ["main"])
    await next_pass()
    assert gone.pushes == [] and len(staying.pushes) == 1
    hub.close()
    assert hub.closed and staying.ended and elsewhere.ended and not gone.ended


def test_readers_counts_all_topics():
    hub = hub_with({"main": ["a"], "other": ["b"]})
    hub.topic("main").readers += 2
    hub.topic("other").readers += 1
    assert hub.readers == 3


def test_topic_trims_to_size_when_twice_full():
    topic = Topic("main", 4, 0)
    for event_id in range(1, 9):
        topic.append(sample(event_id), b"x")
    assert topic.ids == list(range(1, 9))
    topic.append(sample(9), b"x")
    assert (topic.ids, topic.floor) == ([6, 7, 8, 9], 5)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 64),
    lengths=st.lists(st.one_of(st.integers(0, 400_000), st.sampled_from([1, 65_536, 400_000])), max_size=80),
)
@example(size=64, lengths=[65_536] * 5 + [400_000] * 60 + [1] * 10)
def test_a_topic_holds_bounded_bytes_yet_every_event_a_backlog_may_be_sent(size, lengths):
    """Events of up to [api] max_body each: a topic keeps at most 2 x BUFFER_BYTES of them
    (or the newest alone), yet never drops one that a reader behind by at most `size`
    events and BACKLOG_BYTES would be sent from the buffer."""
    topic = Topic("main", size, 0)
    for event_id, length in enumerate(lengths, start=1):
        topic.append(sample(event_id), b"x" * length)
        assert topic.bytes == sum(map(len, topic.chunks)) and len(topic.ids) == len(topic.chunks)
        assert topic.bytes <= max(2 * BUFFER_BYTES, length) and len(topic.ids) <= 2 * size
        assert topic.ids[-1] == event_id and topic.floor == event_id - len(topic.ids)
        newest = lengths[:event_id][-size:]
        while len(newest) > 1 and sum(newest) > BACKLOG_BYTES:
            newest = newest[1:]
        assert len(topic.ids) >= len(newest), (len(topic.ids), len(newest))


class DirectReader(Reader):
    """A subscriber the fan-out sends to itself: send() takes at most `room` bytes,
    or raises what a socket would."""

    direct = True

    def __init__(self, cursor=0, room=1 << 20, error=None):
        super().__init__(cursor)
        self.room = room
        self.error = error
        self.sent = []
        self.events_sent = self.bytes_sent = 0
        self.stalls = []
        self.gone = False

    def send(self, data):
        if self.error is not None:
            raise self.error
        taken = min(self.room, len(data))
        self.sent.append(bytes(data[:taken]))
        return taken

    def push(self, payload, upto, count):
        super().push(payload, upto, count)
        self.events_sent += count
        self.bytes_sent += len(payload)

    def stalled(self, data, taken):
        self.stalls.append((data, taken))
        self.busy, self.direct = True, False

    def drained(self, topic):
        """What a stream does once the kernel took its pending bytes."""
        self.busy, self.direct = False, True
        topic.feed(self)

    def lost(self):
        self.gone = True


@pytest.mark.gen_test(timeout=30)
async def test_direct_readers_get_the_payload_framed_once_by_the_topic():
    hub = hub_with({"main": ["a"]})
    topic = hub.topic("main")
    framed_payloads = []

    def frame(payload):
        framed_payloads.append(payload)
        return b"<" + payload + b">"

    topic.frame = frame
    counted = []
    topic.on_sent = lambda events, size, snapshots: counted.append((events, size, snapshots))
    readers = [DirectReader() for _ in range(3)] + [Reader()]
    for reader in readers:
        topic.subscribe(reader)
    hub.publish(sample(1), ["main"])
    hub.publish(sample(2), ["main"])
    await next_pass()
    payload = readers[3].pushes[0][0]  # the push()-fed reader gets it unframed
    assert ids_of([payload]) == [1, 2]
    assert framed_payloads == [payload]  # one frame() for the whole pass
    assert all(r.sent == [b"<" + payload + b">"] for r in readers[:3])
    assert all((topic.cursor_of(r), *topic.counts(r)) == (2, 2, len(payload)) for r in readers[:3])
    assert counted == [(8, 4 * len(payload), 0)]


@pytest.mark.gen_test(timeout=30)
async def test_a_direct_reader_whose_socket_is_full_or_gone_is_told_and_the_rest_carry_on():
    hub = hub_with({"main": ["a"]})
    topic = hub.topic("main")
    full, partly, gone, fine = (
        DirectReader(error=BlockingIOError()),
        DirectReader(room=10),
        DirectReader(error=ConnectionResetError()),
        DirectReader(),
    )
    for reader in (full, partly, gone, fine):
        topic.subscribe(reader)
    hub.publish(sample(1), ["main"])
    await next_pass()
    framed = fine.sent[0]
    assert full.stalls == [(framed, 0)] and partly.stalls == [(framed, 10)]
    assert gone.gone and not gone.stalls
    # Stalled readers are skipped until they drained; the others get the next event.
    hub.publish(sample(2), ["main"])
    await next_pass()
    assert len(fine.sent) == 2 and len(partly.sent) == 1 and full.sent == []
    assert (full.cursor, partly.cursor) == (1, 1)


@pytest.mark.gen_test(timeout=30)
async def test_readers_that_fell_off_the_buffer_get_a_snapshot_and_are_counted():
    hub = hub_with({"main": ["a", "b"]}, size=2)
    topic = hub.topic("main")
    counted = []
    topic.on_sent = lambda events, size, snapshots: counted.append(snapshots)
    behind, current = DirectReader(), DirectReader()
    topic.subscribe(current)
    for event_id in range(1, 6):
        hub.publish(sample(event_id, widget="ab"[event_id % 2]), ["main"])
        await next_pass()  # one pass per event: `current` keeps up
    topic.subscribe(behind)  # at cursor 0, which the buffer no longer holds
    assert counted == [0, 0, 0, 0, 0, 1]
    assert ids_of(current.sent) == [1, 2, 3, 4, 5]
    # `gap` first (no id: the decoder's last id stays empty), then the newest of each widget.
    (gap, *snapshot) = decode(b"".join(payload for payload, _, _ in behind.pushes))
    assert (gap.type, gap.last_event_id, json.loads(gap.data)) == ("gap", "", {"reason": "fell behind"})
    assert [int(e.last_event_id) for e in snapshot] == [4, 5]


def event_bytes(*event_ids: int) -> int:
    return sum(len(encode_sample(sample(event_id))) for event_id in event_ids)


@pytest.mark.gen_test(timeout=30)
async def test_a_reader_that_stalls_leaves_the_caught_up_group_and_rejoins_once_drained_counted_exactly():
    hub = hub_with({"main": ["a"]})
    topic = hub.topic("main")
    steady, slow = DirectReader(), DirectReader()
    topic.subscribe(steady)
    topic.subscribe(slow)
    assert list(topic.joined) == [steady, slow] and not topic.behind
    hub.publish(sample(1), ["main"])
    await next_pass()
    slow.room = 10
    hub.publish(sample(2), ["main"])
    await next_pass()
    assert list(topic.joined) == [steady] and list(topic.behind) == [slow]
    hub.publish(sample(3), ["main"])
    hub.publish(sample(4), ["main"])
    await next_pass()
    assert len(slow.sent) == 2  # nothing after the stalled write while it waits
    slow.room = 1 << 20
    slow.drained(topic)
    assert [(upto, count) for _, upto, count in slow.pushes] == [(4, 2)]  # what it missed, at once
    assert list(topic.joined) == [steady, slow] and not topic.behind
    hub.publish(sample(5), ["main"])
    await next_pass()
    assert ids_of(slow.sent[:1] + slow.sent[2:]) == [1, 5] and ids_of(steady.sent) == [1, 2, 3, 4, 5]
    # Counted once per pass for the group, yet exact per reader (the stalled write counts whole).
    assert topic.counts(steady) == topic.counts(slow) == (5, event_bytes(1, 2, 3, 4, 5))
    topic.unsubscribe(steady)
    assert (steady.events_sent, steady.bytes_sent) == (5, event_bytes(1, 2, 3, 4, 5))
    assert list(topic.joined) == [slow] and not topic.behind


@pytest.mark.gen_test(timeout=30)
async def test_a_reader_that_stalls_between_passes_gets_nothing_from_the_next_one():
    hub = hub_with({"main": ["a"]})
    topic = hub.topic("main")
    reader = DirectReader()
    topic.subscribe(reader)
    hub.publish(sample(1), ["main"])
    await next_pass()
    reader.stalled(b"a keep-alive", 0)  # what a stream's own write does when it stalls
    topic.fell_behind(reader)
    hub.publish(sample(2), ["main"])
    await next_pass()
    assert ids_of(reader.sent) == [1] and list(topic.behind) == [reader]
    reader.drained(topic)
    assert [(upto, count) for _, upto, count in reader.pushes] == [(2, 1)]
    assert list(topic.joined) == [reader]


@pytest.mark.gen_test(timeout=30)
async def test_readers_that_share_one_send_each_get_every_event():
    hub = hub_with({"main": ["a"]})
    topic = hub.topic("main")
    first = DirectReader()
    second = DirectReader()
    second.send = first.send  # the caught-up group is keyed by send: the second stays behind
    topic.subscribe(first)
    topic.subscribe(second)
    assert list(topic.joined) == [first] and list(topic.behind) == [second]
    hub.publish(sample(1), ["main"])
    await next_pass()
    assert ids_of(first.sent) == [1]  # by the group's loop
    assert ids_of([payload for payload, _, _ in second.pushes]) == [1]  # fed on its own
    assert topic.counts(first) == topic.counts(second) == (1, event_bytes(1))


# --- subset topics: streams of some widgets ---------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_subset_topic_gets_its_widgets_events_and_leaves_the_dashboards_fan_out_alone():
    hub = hub_with({"main": ["a", "b"], "other": ["b", "c"]})
    hub.publish(sample(1, "a"))
    hub.publish(sample(2, "c"))
    main = hub.topic("main")
    whole = DirectReader(cursor=main.position)
    main.subscribe(whole)
    subset = hub.subset(["c", "a"])
    assert hub.subset(["a", "c", "a"]) is subset and subset.name == "~a,c"
    assert ids_of(subset.snapshot()) == [1, 2]  # seeded from the dashboards' topics
    part = DirectReader(cursor=subset.position)
    subset.subscribe(part)
    for event_id, widget in [(3, "a"), (4, "b"), (5, "c")]:
        hub.publish(sample(event_id, widget))
    await next_pass()
    assert ids_of(part.sent) == [3, 5]
    assert ids_of(whole.sent) == [3, 4]
    assert list(main.caught_up.values()) == [whole] and list(subset.caught_up.values()) == [part]
    assert hub.topics_of("a") == ("main", "~a,c")


def test_a_reload_that_removes_a_widget_removes_its_subset_topics_with_a_goodbye():
    hub = hub_with({"main": ["a", "b"]})
    gone, kept = hub.subset(["a"]), hub.subset(["b"])
    removed = hub.reconfigure({"main": ["b"]}, {}, Reload("configuration changed"), widgets=["b"])
    assert removed == [gone] and list(hub.subsets) == [("b",)]
    assert widgets_of(gone.chunks) == ["reload"]
    assert hub.topics_of("a") == () and hub.subsets[("b",)] is kept


def test_new_settings_reach_the_subset_topics_too():
    hub = hub_with({"main": ["a", "b"]})
    subset = hub.subset(["a"])
    settings = TopicSettings(batch=0.5, tick_every=0.25)
    hub.apply(settings)
    for topic in (hub.topic("main"), subset):
        assert (topic.batch, topic.tick_every) == (0.5, 0.25), topic.name
    assert hub.subset(["b"]).batch == 0.5  # and those made after
