"""Exactly one process runs the tickers when several could: the one that holds a
lock in Redis (SET NX PX, renewed every third of its lifetime).

- A holder that dies stops renewing; the lock expires after `ttl` and a standby
  takes it at its next try (every ttl/3): the tickers move within about 1.3 ttl.
- A holder that cannot reach Redis stops its own tickers before the lock could
  have expired (FENCE of the ttl after its last renewal), so two processes never
  run the tickers at once, even when the partition is on the holder's side.
- A graceful stop releases the lock: a standby takes over at its next try
  instead of waiting for the expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import LockError, RedisError

from ..hub.redis_hub import redis_address, redis_client

log = logging.getLogger("dashboard.lease")

FENCE = 0.75


class TickerLease:
    def __init__(
        self,
        url: str,
        key: str,
        ttl: float,
        *,
        start_tickers: Callable[[], Awaitable[None]],
        stop_tickers: Callable[[], Awaitable[None]],
    ):
        self.url = url
        self.key = key
        self.ttl = ttl
        self.held = False
        self.attempts = 0  # tries to take or renew the lock, for tests and metrics
        self._start_tickers = start_tickers
        self._stop_tickers = stop_tickers
        # A call that hangs must fail well before the fence, or the fence comes late.
        self._client = redis_client(url, socket_timeout=max(0.2, ttl / 5))
        self._lock = self._client.lock(key, timeout=ttl, blocking=False, thread_local=False)
        self._task: asyncio.Task | None = None
        self._failing = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ticker-lease")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.held:
            await self._give_up("stopping", level=logging.INFO)
            try:
                await self._lock.release()
            except (LockError, RedisError, OSError):
                pass  # expired or unreachable: it expires by itself
        await self._client.aclose()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        renewed = 0.0
        while True:
            attempt = loop.time()
            got = await self._try()
            if got:
                renewed = attempt
                if not self.held:
                    await self._take()
            elif self.held and (got is False or loop.time() - renewed >= FENCE * self.ttl):
                await self._give_up("another process holds it" if got is False else "Redis unreachable")
            delay = self.ttl / 3
            if self.held and got is None:  # wake in time to fence
                delay = min(delay, max(0.05, renewed + FENCE * self.ttl - loop.time()))
            await asyncio.sleep(delay)

    async def _try(self) -> bool | None:
        """Renew or take the lock: True held, False someone else holds it, None unknown."""
        self.attempts += 1
        try:
            if self.held or await self._lock.owned():  # owned: still ours after a blip
                await self._lock.reacquire()
                got = True
            else:
                got = await self._lock.acquire(blocking=False)
        except LockError:  # the key expired or another process took it
            got = False
        except (RedisError, OSError) as exc:
            if not self._failing:
                log.warning("cannot reach Redis at %s for the ticker lock: %s", redis_address(self.url), exc)
            self._failing = True
            return None
        if self._failing:
            log.info("reached Redis at %s again for the ticker lock", redis_address(self.url))
            self._failing = False
        return got

    async def _take(self) -> None:
        try:
            await self._start_tickers()
        except Exception:  # the database is down, say: let the lock go and try again later
            log.exception("took the ticker lock but could not start the tickers")
            with contextlib.suppress(LockError, RedisError, OSError):
                await self._lock.release()
            return
        self.held = True
        log.info("took the ticker lock %s: the tickers run in this process", self.key)

    async def _give_up(self, reason: str, level: int = logging.WARNING) -> None:
        self.held = False
        log.log(level, "let go of the ticker lock (%s): the tickers stop in this process", reason)
        await self._stop_tickers()
