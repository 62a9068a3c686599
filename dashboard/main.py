"""Wiring and lifecycle: open the store, seed the hub, start the tickers, listen;
and the reverse, gracefully, on SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid

import tornado.httpserver
import tornado.netutil

from .app import make_app, make_templates
from .config import Config
from .hub import Hub
from .recorder import Recorder
from .runtime import Runtime
from .scheduler import Scheduler
from .sources import build_sources
from .store import Store

log = logging.getLogger("dashboard.server")


class Server:
    """One process: web, hub and scheduler. Tests start it on port 0 with a temp database."""

    def __init__(self, config: Config, *, run_sources: bool = True, scheduler_options: dict | None = None):
        self.config = config
        self.run_sources = run_sources
        self.scheduler_options = scheduler_options or {}
        self.runtime: Runtime | None = None
        self.http: tornado.httpserver.HTTPServer | None = None
        self.port: int | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        config = self.config
        sources = build_sources(config) if self.run_sources else {}
        store = Store(config.storage.url)
        await store.open(migrate=True)
        hub = Hub(config.hub.buffer)
        runtime = Runtime(config=config, hub=hub, store=store, recorder=None, templates=make_templates(),
                          instance=uuid.uuid4().hex[:12])
        runtime.recorder = Recorder(store, hub, runtime.topics_of)
        latest = await store.latest(config.widgets)
        hub.seed({d.id: d.widgets for d in config.dashboards}, latest, await store.last_id())
        if sources:
            runtime.scheduler = Scheduler(config.widgets, sources, runtime.recorder, latest, **self.scheduler_options)
            runtime.scheduler.start()
        self.runtime = runtime
        self.http = tornado.httpserver.HTTPServer(make_app(runtime))
        sockets = tornado.netutil.bind_sockets(config.server.port, config.server.host)
        self.http.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        runtime.ready = True
        log.info("listening on http://%s:%d/", config.server.host, self.port)

    async def stop(self) -> None:
        """Stop accepting, say goodbye to every stream (with a jittered retry), stop the
        tickers, let the last write finish, close the database. Bounded by `grace`."""
        runtime = self.runtime
        if runtime is None:
            return
        runtime.ready = False
        self.http.stop()
        runtime.hub.close()
        grace = self.config.server.grace
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while runtime.streams and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if runtime.scheduler is not None:
            await runtime.scheduler.stop()
        # Whatever is still open (a client that stopped reading, an idle keep-alive) is
        # closed now; close_all_connections waits for each to wind down.
        try:
            await asyncio.wait_for(self.http.close_all_connections(), timeout=max(1.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            log.warning("some connections did not close within the grace period")
        await runtime.store.close()
        self.runtime = None
        self._stopped.set()
        log.info("stopped")

    async def run_until_signalled(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        await stopping.wait()
        log.info("stopping")
        await self.stop()

