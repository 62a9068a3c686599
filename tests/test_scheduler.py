"""The scheduler with driven time: intervals never pass in real time; the test
wakes each widget's sleep itself and looks at what was stored and published."""

import asyncio
import logging
from collections import defaultdict

import pytest

from dashboard.config import load_config
from dashboard.core.samples import Sample
from dashboard.core.tasks import MAX_BACKOFF, backoff
from dashboard.hub.memory import Hub
from dashboard.sources import SourceError
from dashboard.sources.scheduler import Scheduler
from dashboard.storage.recorder import Recorder
from dashboard.storage.store import Store
from tests.helpers import wait_until, write_config

HANG = object()  # a fetch that never returns


class DrivenTime:
    """A sleep for the scheduler that records the delay asked for and returns only
    when the test wakes that widget."""

    def __init__(self):
        self.delays: dict[str, list[float]] = defaultdict(list)
        self._gates: dict[str, asyncio.Future] = {}

    async def sleep(self, delay: float) -> None:
        widget = asyncio.current_task().get_name().removeprefix("source:")
        gate = asyncio.get_running_loop().create_future()
        self._gates[widget] = gate
        self.delays[widget].append(delay)
        await gate

    async def asleep(self, widget: str, count: int = 1) -> None:
        """Wait until the widget has gone to sleep `count` times (and sleeps now)."""
        await wait_until(
            lambda: len(self.delays[widget]) >= count and not self._gates[widget].done(),
            message=f"{widget} asleep {count} time(s)",
        )

    async def step(self, widget: str, times: int = 1) -> None:
        """Let the widget run `times` more times."""
        for _ in range(times):
            count = len(self.delays[widget])
            self._gates[widget].set_result(None)
            await self.asleep(widget, count + 1)


class Script:
    """A polled source that returns, raises or hangs on the next item of a script;
    the last item repeats."""

    def __init__(self, *items):
        self.items = list(items)
        self.calls = 0
        self.closed = False

    async def fetch(self):
        item = self.items[min(self.calls, len(self.items) - 1)]
        self.calls += 1
        if item is HANG:
            await asyncio.get_running_loop().create_future()
        if isinstance(item, BaseException):
            raise item
        return item

    async def close(self):
        self.closed = True


def widgets_toml(**widgets: str) -> str:
    """A config with one dashboard showing these widgets; values are extra widget keys."""
    names = ", ".join(f'"{name}"' for name in widgets)
    text = f'[storage]\nurl = "sqlite+aiosqlite:///data/test.db"\n\n[[dashboards]]\nid = "main"\nwidgets = [{names}]\n'
    for name, extra in widgets.items():
        text += f'\n[widgets.{name}]\nsource = {{ kind = "push" }}\n{extra}\n'
    return text


NUMBER = 'view = "number"\nevery = "10s"'


@pytest.fixture
def pipeline(tmp_path, io_loop):
    """Builds a scheduler over a real store and hub; stops it and closes the store after."""
    made = []

    async def build(sources: dict, *, latest: dict | None = None, **widgets: str):
        config = load_config(write_config(tmp_path, widgets_toml(**widgets)))
        store = Store(config.storage.url)
        await store.open()
        hub = Hub(64)
        hub.seed({"main": list(config.widgets)}, {}, 0)
        recorder = Recorder(store, hub.publish_all)
        time = DrivenTime()
        scheduler = Scheduler(config.widgets, sources, recorder, latest, sleep=time.sleep)
        made.append((scheduler, store))
        return scheduler, store, hub, time

    yield build

    async def teardown():
        for scheduler, store in made:
            await scheduler.stop()
            await store.close()

    io_loop.run_sync(teardown)


async def stored(store: Store, widget: str) -> list[tuple]:
    return [(s.value, s.status, s.message) for s in await store.history(widget)]


@pytest.mark.gen_test(timeout=30)
async def test_a_value_is_stored_only_when_it_changed(pipeline):
    source = Script(1, 1, 2, 2, 2, 1)
    scheduler, store, hub, time = await pipeline({"a": source}, a=NUMBER)
    scheduler.start()
    await time.asleep("a")
    await time.step("a", 5)
    assert source.calls == 6
    assert await stored(store, "a") == [(1, "ok", None), (2, "ok", None), (1, "ok", None)]
    assert len(hub.topic("main").ids) == 3
    assert scheduler.states["a"].runs == 6
    assert time.delays["a"] == [10.0] * 6


@pytest.mark.gen_test(timeout=30)
async def test_on_change_false_stores_every_run(pipeline):
    scheduler, store, _hub, time = await pipeline({"a": Script(1, 1, 2, 2)}, a=NUMBER + "\non_change = false")
    scheduler.start()
    await time.asleep("a")
    await time.step("a", 3)
    assert [value for value, _, _ in await stored(store, "a")] == [1, 1, 2, 2]


@pytest.mark.gen_test(timeout=30)
async def test_the_value_from_before_a_restart_is_not_stored_again(pipeline):
    before = Sample(7, "a", None, 1)
    scheduler, store, _hub, time = await pipeline({"a": Script(1, 2)}, latest={"a": before}, a=NUMBER)
    scheduler.start()
    await time.asleep("a")
    assert await stored(store, "a") == []
    await time.step("a")
    assert await stored(store, "a") == [(2, "ok", None)]


@pytest.mark.gen_test(timeout=30)
async def test_a_source_that_never_returns_times_out(pipeline):
    scheduler, store, _hub, time = await pipeline({"a": Script(HANG)}, a=NUMBER + '\ntimeout = "50ms"')
    scheduler.start()
    await time.asleep("a")
    state = scheduler.states["a"]
    assert state.status == "error"
    assert state.message == "timed out after 0.05s"
    assert await stored(store, "a") == [(None, "error", "timed out after 0.05s")]
    # The next delay is the backoff, not the interval.
    await time.step("a")
    assert time.delays["a"] == [10.0, 20.0]


@pytest.mark.parametrize(
    "every, failures, expected",
    [
        (10, 0, 10),
        (10, 1, 10),
        (10, 2, 20),
        (10, 3, 40),
        (10, 5, 160),
        (10, 6, 300),
        (10, 60, 300),
        (0.5, 1, 0.5),
        (0.5, 10, 256),
        (0.5, 11, 300),
        (600, 1, 600),
        (600, 4, 600),  # an interval above the cap is never shortened
    ],
)
def test_backoff_doubles_up_to_a_cap(every, failures, expected):
    assert MAX_BACKOFF == 300
    assert backoff(every, failures) == expected


@pytest.mark.gen_test(timeout=30)
async def test_failures_back_off_exponentially_and_recovery_resets(pipeline):
    boom = SourceError("boom")
    source = Script(*[boom] * 8, 1, 2, boom, 3)
    scheduler, _store, _hub, time = await pipeline({"a": source}, a=NUMBER)
    scheduler.start()
    await time.asleep("a")
    await time.step("a", 11)
    assert time.delays["a"] == [10, 20, 40, 80, 160, 300, 300, 300, 10, 10, 10, 10]
    assert scheduler.states["a"].failures == 0


@pytest.mark.gen_test(timeout=30)
async def test_an_error_keeps_the_last_good_value_and_is_stored_once_per_message(pipeline):
    boom, other = SourceError("boom"), SourceError("other")
    scheduler, store, hub, time = await pipeline({"a": Script(5, boom, boom, boom, other, 5, 5)}, a=NUMBER)
    scheduler.start()
    await time.asleep("a")
    await time.step("a", 6)
    assert await stored(store, "a") == [
        (5, "ok", None),
        (5, "error", "boom"),
        (5, "error", "other"),
        (5, "ok", None),  # recovery is news even when the value is the same
    ]
    # The stream says so too: the failing sample carries its message.
    assert b'"status":"error","message":"boom"' in b"".join(hub.topic("main").chunks)


@pytest.mark.gen_test(timeout=30)
async def test_a_rejected_value_is_an_error_with_the_reason(pipeline):
    scheduler, store, _hub, time = await pipeline({"a": Script("fast", float("nan"), 3)}, a=NUMBER)
    scheduler.start()
    await time.asleep("a")
    await time.step("a", 2)
    assert await stored(store, "a") == [
        (None, "error", "expected a number, got text 'fast'"),
        (None, "error", "expected a finite number, got nan"),
        (3, "ok", None),
    ]


@pytest.mark.gen_test(timeout=30)
async def test_a_failing_or_hanging_source_does_not_stop_the_others(pipeline):
    sources = {
        "hangs": Script(HANG),
        "fails": Script(SourceError("down")),
        "breaks": Script(KeyError("x")),  # a bug in a source, not a SourceError
        "works": Script(1, 2, 3, 4),
    }
    scheduler, store, _hub, time = await pipeline(
        sources, hangs=NUMBER + '\ntimeout = "1h"', fails=NUMBER, breaks=NUMBER, works=NUMBER
    )
    scheduler.start()
    await time.asleep("works")
    await time.asleep("fails")
    await time.asleep("breaks")
    await time.step("works", 3)
    await time.step("breaks", 2)
    assert await stored(store, "works") == [(v, "ok", None) for v in (1, 2, 3, 4)]
    assert await stored(store, "fails") == [(None, "error", "down")]
    assert await stored(store, "breaks") == [(None, "error", "KeyError: 'x'")]
    assert sources["breaks"].calls == 3
    assert (sources["hangs"].calls, scheduler.states["hangs"].runs) == (1, 0)
    assert scheduler.running


@pytest.mark.gen_test(timeout=30)
async def test_logs_only_when_a_source_starts_failing_and_when_it_recovers(pipeline, caplog):
    caplog.set_level(logging.INFO, logger="dashboard.scheduler")
    down = SourceError("down")
    bugs = [RuntimeError("bug") for _ in range(4)]
    source = Script(1, *[down] * 5, 2, 3, *bugs, 4)
    scheduler, _store, _hub, time = await pipeline({"a": source}, a=NUMBER)
    scheduler.start()
    await time.asleep("a")

    def logged():
        return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "dashboard.scheduler"]

    await time.step("a", 5)
    assert logged() == [("WARNING", "widget a failing: down")]
    await time.step("a", 2)
    assert logged()[1:] == [("INFO", "widget a recovered after 5 failed run(s)")]
    await time.step("a", 5)
    assert [level for level, _ in logged()] == ["WARNING", "INFO", "WARNING", "INFO"]
    assert logged()[2][1] == "widget a failing: RuntimeError: bug"
    # The unexpected exception is logged with its traceback, once.
    (bug_record,) = [r for r in caplog.records if r.exc_info]
    assert bug_record.exc_info[1] is bugs[0]


@pytest.mark.gen_test(timeout=30)
async def test_stop_cancels_every_loop_and_closes_the_sources(pipeline):
    sources = {"hangs": Script(HANG), "sleeps": Script(1)}
    scheduler, store, _hub, time = await pipeline(sources, hangs=NUMBER + '\ntimeout = "1h"', sleeps=NUMBER)
    scheduler.start()
    await time.asleep("sleeps")
    assert scheduler.running
    tasks = list(scheduler._tasks.values())
    await scheduler.stop()
    assert all(task.cancelled() for task in tasks)
    assert not scheduler.running
    assert sources["hangs"].closed and sources["sleeps"].closed
    assert await stored(store, "hangs") == []
    await scheduler.stop()  # twice is fine


class Upstream:
    """A streaming source: each connection plays one script of values and
    exceptions; HANG keeps the connection open, an asyncio.Event waits for the test."""

    def __init__(self, *connections):
        self.connections = list(connections)
        self.opened = 0

    async def stream(self, emit):
        script = self.connections[self.opened]
        self.opened += 1
        for item in script:
            if item is HANG:
                await asyncio.get_running_loop().create_future()
            if isinstance(item, asyncio.Event):
                await item.wait()
                continue
            if isinstance(item, BaseException):
                raise item
            await emit(item)


@pytest.mark.gen_test(timeout=30)
async def test_a_streaming_source_is_restarted_with_backoff(pipeline):
    source = Upstream(
        [1, 2, SourceError("connection lost")],
        [SourceError("refused")],
        [],  # the upstream closed cleanly: still a failure
        ["x", 3, HANG],
    )
    scheduler, store, _hub, time = await pipeline({"a": source}, a=NUMBER)
    scheduler.start()
    await time.asleep("a")
    assert time.delays["a"] == [10]
    await time.step("a", 2)
    assert time.delays["a"] == [10, 20, 40]
    time._gates["a"].set_result(None)
    await wait_until(lambda: scheduler.states["a"].status == "ok", message="the stream to recover")
    assert source.opened == 4
    assert await stored(store, "a") == [
        (1, "ok", None),
        (2, "ok", None),
        (2, "error", "connection lost"),
        (2, "error", "refused"),
        (2, "error", "stream ended"),
        (2, "error", "expected a number, got text 'x'"),
        (3, "ok", None),
    ]
    assert scheduler.states["a"].failures == 0


@pytest.mark.gen_test(timeout=30)
async def test_a_stream_does_not_wait_for_each_commit_and_keeps_its_order(pipeline):
    values = [n // 3 for n in range(3000)]  # each value three times: stored once (on_change)
    scheduler, store, hub, _time = await pipeline({"a": Upstream([*values, HANG])}, a=NUMBER)
    scheduler.start()
    await wait_until(lambda: hub.topic("main").last_id >= 1000, timeout=20, message="a thousand samples")
    assert await stored(store, "a") == [(n, "ok", None) for n in range(1000)]
    # Messages join the batch being gathered while the previous one commits.
    assert scheduler.recorder.batches < 200


@pytest.mark.gen_test(timeout=30)
async def test_a_stream_value_whose_write_failed_is_stored_when_it_comes_again(pipeline):
    closed, reopened = asyncio.Event(), asyncio.Event()
    scheduler, store, _hub, _time = await pipeline({"a": Upstream([5, closed, 7, reopened, 7, HANG])}, a=NUMBER)
    scheduler.start()
    await wait_until(lambda: scheduler.last.get("a") and scheduler.last["a"].id, message="5 stored")
    await store.close()  # every write fails now
    closed.set()
    # 7 was sent, its write failed: change detection goes back to the stored 5.
    await wait_until(lambda: scheduler.last["a"].value == 5 and scheduler.last["a"].id, message="7 failed")
    await store.open()
    reopened.set()
    await wait_until(lambda: scheduler.last["a"].value == 7 and scheduler.last["a"].id, message="7 stored")
    assert await stored(store, "a") == [(5, "ok", None), (7, "ok", None)]


class BadGoodbye(Script):
    async def close(self):
        raise OSError("socket already gone")


@pytest.mark.gen_test(timeout=30)
async def test_stop_closes_every_source_even_when_one_close_fails(pipeline, caplog):
    sources = {"bad": BadGoodbye(1), "good": Script(2)}
    scheduler, _store, _hub, time = await pipeline(sources, bad=NUMBER, good=NUMBER)
    scheduler.start()
    await time.asleep("bad")
    await scheduler.stop()
    assert sources["good"].closed
    assert any("closing the source of widget bad failed" in r.getMessage() for r in caplog.records)
