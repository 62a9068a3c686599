"""The hub for several processes: Redis pub/sub between them, the in-memory hub's
topics, buffers and cursors within each.

Deliberate oddities, please read before "fixing":
- publish() does not append to the local topics. It queues the sample for Redis
  and returns; this process hears its own sample back from Redis like every
  other process does. So a sample reaches local readers exactly once, in the
  order Redis delivered it, whichever process stored it.
- A process holds ONE subscription (one connection, one channel) whatever its
  number of clients; the local Topic buffers fan out from there.
- Holes are filled from the database (through the `fill` function start() is
  handed: the hub itself knows no store), never from Redis: after (re)subscribing,
  every sample after the last id this process has seen; on an id jump, the ids
  in between. The store commits ids in order across processes (see
  Store.append_many), so what the database holds below an id that arrived is
  final, and a late message for a filled id is simply dropped.
- A sample may come twice (a publish retried after a dropped link, or one filled
  from the database and then heard from Redis): anything at or below the last
  id seen is dropped.
- redis-py's own retries are off: a silent reconnect would hide a lost link,
  and a lost link is exactly when this hub must catch up from the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry  # the asyncio client's own: redis-py 8 warns about the sync one
from redis.backoff import NoBackoff

from ..core.samples import Sample, value_json
from .memory import Fill, Hub

log = logging.getLogger("dashboard.hub")

OUTBOX_LIMIT = 10_000  # queued while Redis is away; older ones are dropped (the database has them)
PUBLISH_BATCH = 256  # messages per pipelined round trip
FILL_PAGE = 1000  # rows per catch-up query
IDLE_PING = 5.0  # seconds of silence on the subscription before asking Redis for a pong
CONFIRM_TIMEOUT = 5.0
FIRST_BACKOFF, MAX_BACKOFF = 0.05, 5.0


def sample_message(sample: Sample, origin: str) -> bytes:
    body = {
        "id": sample.id,
        "widget": sample.widget,
        "ts": sample.ts.isoformat(),
        "value": sample.value,
        "status": sample.status,
        "message": sample.message,
        "origin": origin,
    }
    return value_json(body, compact=True).encode("ascii")


def message_sample(raw: bytes) -> tuple[Sample, str]:
    """(sample, origin) from a message; ValueError, KeyError or TypeError when it is not one of ours."""
    body = json.loads(raw)
    sample = Sample(
        int(body["id"]),
        str(body["widget"]),
        datetime.fromisoformat(body["ts"]),
        body["value"],
        str(body["status"]),
        body["message"],
    )
    return sample, str(body.get("origin", ""))


def redis_client(url: str, **options) -> Redis:
    return Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=5, socket_keepalive=True, **options)


def redis_address(url: str) -> str:
    """Where a Redis URL points, for log lines: never its password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}"


class Backoff:
    def __init__(self, first: float = FIRST_BACKOFF, most: float = MAX_BACKOFF):
        self.first, self.most = first, most
        self.delay = first

    def reset(self) -> None:
        self.delay = self.first

    def next(self) -> float:
        # Jittered, so that every web process does not knock on a restarted Redis at once.
        delay = self.delay * random.uniform(0.8, 1.2)
        self.delay = min(self.delay * 2, self.most)
        return delay


class RedisHub(Hub):
    def __init__(
        self,
        url: str,
        *,
        buffer: int = 1024,
        channel: str = "dashboard:events",
        origin: str = "",
        subscribe: bool = True,
    ):
        super().__init__(buffer)
        self.url = url
        self.channel = channel
        self.origin = origin  # which process published a message: for logs and tests
        self.subscribe = subscribe  # a worker only publishes: it has no readers
        self.linked = False  # the subscription is live
        self.publishing = True  # the last attempt to publish to Redis went through
        self.dropped = 0  # messages dropped from a full outbox
        self.filled = 0  # samples taken from the database to fill holes
        self._outbox: deque[bytes] = deque()
        self._outbox_ready = asyncio.Event()
        self._outbox_empty = asyncio.Event()
        self._outbox_empty.set()
        self._first_attempt = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._fill_from: Fill | None = None

    # --- lifecycle --------------------------------------------------------------

    async def start(self, fill: Fill) -> None:
        """Start publishing, and subscribing unless told not to. Returns once the first
        subscription attempt succeeded (and caught up) or failed: a Redis that is down
        at start is retried in the background, like one that goes away later."""
        self._fill_from = fill
        self._tasks.append(asyncio.create_task(self._publish_loop(), name="redis-hub:publish"))
        if self.subscribe:
            self._tasks.append(asyncio.create_task(self._subscribe_loop(), name="redis-hub:subscribe"))
            await self._first_attempt.wait()

    async def stop(self, grace: float = 2.0) -> None:
        # Give queued samples a moment to go out: other processes would otherwise see
        # them only at the next id jump or reconnect.
        try:
            await asyncio.wait_for(self._outbox_empty.wait(), grace)
        except TimeoutError:
            log.warning("%d event(s) not published to Redis before stopping", len(self._outbox))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def link(self) -> dict:
        """Redis as this process sees it. `subscribed` is None for a worker, which only
        publishes; while it is False, this process's streams get nothing new (they get
        what they missed, from the database, once it is back)."""
        return {
            "backend": "redis",
            "redis": redis_address(self.url),
            "channel": self.channel,
            "subscribed": self.linked if self.subscribe else None,
            "publishing": self.publishing,
            "queued": len(self._outbox),
            "dropped": self.dropped,
            "filled": self.filled,
        }

    # --- publishing ----------------------------------------------------------------

    def publish(self, sample: Sample, topics: Iterable[str] | None = None) -> None:
        # Local readers get this sample when it comes back from Redis (module docstring).
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._outbox.popleft()
            self.dropped += 1
        self._outbox.append(sample_message(sample, self.origin))
        self._outbox_empty.clear()
        self._outbox_ready.set()

    async def _publish_loop(self) -> None:
        backoff = Backoff()
        client: Redis | None = None
        try:
            while True:
                await self._outbox_ready.wait()
                self._outbox_ready.clear()
                try:
                    client = client or redis_client(self.url, socket_timeout=5)
                    await self._send_outbox(client)
                except Exception as exc:  # Redis gone, a timeout: the messages stay queued
                    if self.publishing:
                        log.warning("cannot publish to Redis at %s: %s", redis_address(self.url), exc)
                    self.publishing = False
                    await _close(client)
                    client = None
                    self._outbox_ready.set()
                    await asyncio.sleep(backoff.next())
                    continue
                if not self.publishing:
                    log.info("publishing to Redis at %s again", redis_address(self.url))
                    self.publishing = True
                    if self.dropped:
                        log.warning(
                            "%d event(s) were dropped while Redis was away; readers take them from the database",
                            self.dropped,
                        )
                backoff.reset()
        finally:
            await _close(client)

    async def _send_outbox(self, client: Redis) -> None:
        while self._outbox:
            batch = [self._outbox.popleft() for _ in range(min(PUBLISH_BATCH, len(self._outbox)))]
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for message in batch:
                        pipe.publish(self.channel, message)
                    await pipe.execute()
            except BaseException:
                # Back to the front, in order: sent again later, duplicates are dropped on receipt.
                self._outbox.extendleft(reversed(batch))
                while len(self._outbox) > OUTBOX_LIMIT:
                    self._outbox.popleft()
                    self.dropped += 1
                raise
        self._outbox_empty.set()

    # --- subscribing ---------------------------------------------------------------

    async def _subscribe_loop(self) -> None:
        backoff = Backoff()
        while True:
            client = redis_client(self.url)
            pubsub = client.pubsub()
            try:
                await self._subscribe(pubsub)
                caught_up = await self._fill()
                self._link_up(caught_up)
                backoff.reset()
                await self._listen(pubsub)
            except Exception as exc:  # the link dropped, Redis restarted, the database failed a fill
                self._link_down(exc)
            finally:
                await _close(pubsub)
                await _close(client)
            await asyncio.sleep(backoff.next())

    async def _subscribe(self, pubsub) -> None:
        await pubsub.subscribe(self.channel)
        # Only once Redis confirms is every later publish ours to hear, and only then may
        # the database be asked what came before; otherwise a sample could fall between.
        while True:
            message = await pubsub.get_message(timeout=CONFIRM_TIMEOUT)
            if message is None:
                raise ConnectionError(f"no subscription confirmed within {CONFIRM_TIMEOUT:g}s")
            if message["type"] == "subscribe":
                return

    async def _listen(self, pubsub) -> None:
        waiting_for_pong = False
        while True:
            message = await pubsub.get_message(timeout=IDLE_PING)
            if message is None:
                # TCP keepalive takes minutes to notice a dead peer; a ping on a quiet link is quicker.
                if waiting_for_pong:
                    raise ConnectionError(f"no answer from Redis within {IDLE_PING:g}s")
                waiting_for_pong = True
                await pubsub.ping()
                continue
            waiting_for_pong = False
            if message["type"] == "message":
                await self._receive(message["data"])

    async def _receive(self, raw: bytes) -> None:
        try:
            sample, _origin = message_sample(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a message on Redis channel %s that is not a sample", self.channel)
            return
        if sample.id <= self.last_id:
            return  # heard twice, or already filled from the database
        if sample.id > self.last_id + 1:
            await self._fill(upto=sample.id - 1)
        self._deliver(sample)

    async def _fill(self, upto: int | None = None) -> int:
        """Deliver what the database holds after the last id seen (up to `upto`)."""
        count = 0
        while True:
            # Every widget, not only those shown here: a config reload may add some at any time.
            assert self._fill_from is not None, "start() hands the hub its fill"
            samples = await self._fill_from(self.last_id, upto, FILL_PAGE)
            for sample in samples[:FILL_PAGE]:
                self._deliver(sample)
            count += min(len(samples), FILL_PAGE)
            if len(samples) <= FILL_PAGE:
                break
        if upto is not None:
            self.last_id = max(self.last_id, upto)  # the rest of the gap: ids rolled back, never committed
        self.filled += count
        return count

    def _deliver(self, sample: Sample) -> None:
        Hub.publish(self, sample)

    def _link_up(self, caught_up: int) -> None:
        log.info(
            "subscribed to Redis at %s, channel %s; %d event(s) caught up from the database",
            redis_address(self.url),
            self.channel,
            caught_up,
        )
        self.linked = True
        self._first_attempt.set()

    def _link_down(self, exc: Exception) -> None:
        if self.linked or not self._first_attempt.is_set():
            log.warning(
                "lost the subscription to Redis at %s: %s; retrying, the database fills the gap",
                redis_address(self.url),
                str(exc) or type(exc).__name__,
            )
        self.linked = False
        self._first_attempt.set()


async def _close(resource) -> None:
    if resource is not None:
        try:
            await resource.aclose()
        except Exception:  # closing a broken connection may fail too; it is gone either way
            pass
    return None
