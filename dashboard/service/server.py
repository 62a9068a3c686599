"""Wiring and lifecycle: open the store, seed the hub, start the tickers, listen;
and the reverse, gracefully, on SIGINT or SIGTERM. SIGHUP reloads the config.
systemd is told each step (READY, RELOADING, STOPPING) and pinged while healthy."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import gc
import logging
import signal
import socket
import uuid
from collections.abc import Callable
from typing import Any

import tornado.netutil

from ..config import Config, ConfigError
from ..config.model import server_url
from ..core.samples import ERROR, OK, Sample
from ..sources import build_sources
from ..sources.scheduler import Scheduler
from ..storage.retention import Pruner
from ..storage.store import Store
from ..web.app import make_app, make_runtime, own_body_limit
from ..web.runtime import Runtime
from . import reload as reloading
from .connections import ConnectionLimits, GuardedHTTPServer
from .roles import ROLES, make_hub, make_lease, worker_app
from .systemd import Notifier, Watchdog

log = logging.getLogger("dashboard.server")

LISTEN_BACKLOG = 1024  # the kernel caps it at net.core.somaxconn


class CannotStart(Exception):
    """The server cannot start; str() is one line: what, where, and what to do."""


def listen_failure(host: str, port: int, exc: OSError) -> str:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the address is already in use (another server?): stop that one, "
            "or choose another port with --port or [server] port"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"cannot listen on {where}: {host} is not an address of this machine: set [server] host or --host "
            'to one of its addresses ("0.0.0.0" for all)'
        )
    if exc.errno == errno.EACCES:
        return (
            f"cannot listen on {where}: permission denied (a port below 1024 needs a privilege): use a port "
            "above 1023, or give the service CAP_NET_BIND_SERVICE"
        )
    if isinstance(exc, socket.gaierror):
        return f"cannot listen on {where}: the host name {host!r} does not resolve: set [server] host or --host"
    return f"cannot listen on {where}: {exc.strerror or exc}"


class Server:
    """One process: web, hub and scheduler. Tests start it on port 0 with a temp database."""

    def __init__(
        self,
        config: Config,
        *,
        run_sources: bool = True,
        scheduler_options: dict | None = None,
        role: str = "all",
        reuse_port: bool = False,
        notifier: Notifier | None = None,
        watchdog_interval: float | None = None,
        config_loader: Callable[[], Config] | None = None,
    ):
        self.config = config
        self.notifier = notifier or Notifier(None)  # systemd's $NOTIFY_SOCKET; a no-op without one
        self.watchdog_interval = watchdog_interval  # half of $WATCHDOG_USEC, or None
        self.watchdog: Watchdog | None = None
        self.config_loader = config_loader  # re-reads the config file on reload; None: no reload
        self.pruner: Pruner | None = None
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task] = set()
        self.role = ROLES[role]  # all, web or worker: see dashboard/roles.py
        self.reuse_port = reuse_port  # SO_REUSEPORT: several processes share the port
        self.lease = None  # with the Redis hub, the lock that lets one process run the tickers
        self.run_sources = run_sources
        self.scheduler_options = scheduler_options or {}
        self.runtime: Runtime | None = None
        self.scheduler: Scheduler | None = None  # the tickers, when this process runs them
        self.http: GuardedHTTPServer | None = None
        self.port: int | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        """CannotStart, StoreUnavailable or ResourceMissing, each one line, when the address
        cannot be bound, the database cannot be opened, or the install lacks its templates."""
        config = self.config
        store = Store(config.storage.url)
        await store.open(migrate=True)
        instance = uuid.uuid4().hex[:12]
        hub = make_hub(config, self.role, instance)
        runtime = make_runtime(config, hub, store, instance)
        latest = await store.shown(config.widgets.values())
        hub.seed({d.id: d.widgets for d in config.dashboards}, latest, await store.last_id())
        await hub.start(lambda after, upto, limit: store.since(None, after, upto=upto, limit=limit))
        sockets = []
        try:
            sockets = self._bind(config.server.host, config.server.port)
            self.port = sockets[0].getsockname()[1]
            # The port is known now (it may have been 0): sources reach "self:/..." there.
            config = self.config = runtime.config = dataclasses.replace(
                config, listening=server_url(config.server.host, self.port)
            )
            sources = build_sources(config) if self.run_sources and self.role.tickers else {}
        except BaseException:
            for sock in sockets:
                sock.close()
            hub.close()
            await hub.stop()
            await store.close()
            raise
        # Even with no ticker yet: a reload may add some.
        if self.run_sources and self.role.tickers:
            self.lease = make_lease(
                config, start_tickers=self._start_leased_tickers, stop_tickers=self._stop_leased_tickers
            )
            if self.lease is None:
                self._run_scheduler(runtime, self._scheduler(runtime, sources, latest))
            self.pruner = Pruner(store, lambda: runtime.config)
            self.pruner.start()
        # The alerts are judged where the tickers run (with the Redis hub: by the process
        # holding the lease, see _start_leased_tickers); web processes follow the judge.
        if runtime.alerts is not None and self.role.tickers and self.lease is None:
            await runtime.alerts.start(latest, tail=self._shared())
        elif runtime.alerts is not None and self.role.web:
            await runtime.alerts.follow()
        self.runtime = runtime
        app = make_app(runtime) if self.role.web else worker_app(make_app(runtime))
        # Tornado's defaults take 100 MB bodies and 64 KB of headers from anyone, and wait an
        # hour for a head, for ever for a body; a push raises its own request's body limit to
        # [api] max_body (web/push.py). The limits and the accept loop: connections.py.
        self.http = http = GuardedHTTPServer(
            app,
            limits=ConnectionLimits.of(config.server),
            max_body_size=config.server.max_body,
            own_body_limit=own_body_limit,
        )
        http.add_sockets(sockets)
        runtime.ready = True
        if self.lease is not None:
            await self.lease.start()
        log.info("listening on http://%s:%d/", config.server.host, self.port)
        self.notifier.ready(self._status())
        if self.watchdog_interval:
            self.watchdog = Watchdog(self.notifier, self.watchdog_interval, self.healthy)
            self.watchdog.start()

    def _bind(self, host: str, port: int) -> list:
        try:
            # After a restart every open dashboard reconnects within seconds: Tornado's
            # listen backlog of 128 would drop most of those SYNs, each then retried 1 s later.
            return tornado.netutil.bind_sockets(port, host, reuse_port=self.reuse_port, backlog=LISTEN_BACKLOG)
        except OSError as exc:
            raise CannotStart(listen_failure(host, port, exc)) from exc

    def _scheduler(self, runtime: Runtime, sources: dict[str, Any], latest: dict[str, Sample]) -> Scheduler:
        options = {"on_run": runtime.metrics.source_ran, **self.scheduler_options}
        return Scheduler(dict(runtime.config.widgets), sources, runtime.recorder, latest, **options)

    def _run_scheduler(self, runtime: Runtime, scheduler: Scheduler | None) -> None:
        """Start these tickers (None: this process runs none now); the web side sees
        them as the runtime's `scheduler` (for /healthz)."""
        self.scheduler = runtime.scheduler = scheduler
        if scheduler is not None:
            scheduler.start()

    def healthy(self) -> bool:
        """What the watchdog pings for: serving, and the tickers (if any) running. The
        loop itself needs no check: the pings are sent from it."""
        runtime = self.runtime
        return runtime is not None and runtime.ready and runtime.ticker_state() != "stopped"

    def _status(self) -> str:
        assert self.runtime is not None
        config = self.runtime.config
        return (
            f"{len(config.dashboards)} dashboard(s), {len(config.widgets)} widget(s) "
            f"on http://{config.server.host}:{self.port}/"
        )

    async def stop(self) -> None:
        """Stop accepting, say goodbye to every stream (with a jittered retry), stop the
        tickers, let the last write finish, close the database. Bounded by `grace`."""
        runtime = self.runtime
        if runtime is None:
            return
        self.notifier.stopping()
        runtime.ready = False
        for task in list(self._background):  # a reload in progress is dropped
            task.cancel()
        if self.watchdog is not None:
            await self.watchdog.stop()
        http = self.http
        assert http is not None
        http.stop()
        runtime.hub.close()
        grace = runtime.config.server.grace
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        # Streams leave runtime.streams as their goodbye goes out; nothing signals the last one.
        while runtime.streams and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if self.lease is not None:
            await self.lease.stop()  # stops the tickers here, and lets a standby take them now
        if self.scheduler is not None:
            await self.scheduler.stop()
        if runtime.alerts is not None:
            await runtime.alerts.stop()  # a notification cut short is sent again at the next start, same id
        if self.pruner is not None:
            await self.pruner.stop()
        await runtime.hub.stop()
        # Whatever is still open (a client that stopped reading, an idle keep-alive) is
        # closed now; close_all_connections waits for each to wind down.
        try:
            await asyncio.wait_for(http.close_all_connections(), timeout=max(1.0, deadline - loop.time()))
        except TimeoutError:
            log.warning("some connections did not close within the grace period")
        await runtime.recorder.idle()  # what was queued (an acknowledged push waits for it) is written
        await runtime.store.close()
        self.runtime = None
        self._stopped.set()
        log.info("stopped")

    async def _start_leased_tickers(self) -> None:
        # Fresh sources and latest values: another process may have run the tickers until now.
        runtime = self.runtime
        assert runtime is not None
        latest = await runtime.store.shown(runtime.config.widgets.values())
        self._run_scheduler(runtime, self._scheduler(runtime, build_sources(runtime.config), latest))
        if runtime.alerts is not None:
            await runtime.alerts.start(latest, tail=self._shared())

    async def _stop_leased_tickers(self) -> None:
        scheduler = self.scheduler
        if self.runtime is not None:
            self._run_scheduler(self.runtime, None)
        if scheduler is not None:
            await scheduler.stop()
        alerts = self.runtime.alerts if self.runtime is not None else None
        if alerts is not None:
            await alerts.stop()
            if self.role.web:
                await alerts.follow()

    def _shared(self) -> bool:
        """Other processes write samples too (the Redis hub): the judge reads them from the database."""
        return self.config.hub.backend == "redis"

    async def reload(self) -> bool:
        """Re-read the config file and apply it (see dashboard/reload.py); False, with
        one log line saying why, when the server keeps running the config it had."""
        if self.config_loader is None or self.runtime is None:
            return False
        async with self._reload_lock:
            self.notifier.reloading()
            try:
                return await self._reload(self.runtime)
            finally:
                if self.runtime is not None and self.runtime.ready:  # not once STOPPING=1 was sent
                    self.notifier.ready(self._status())

    async def _reload(self, runtime: Runtime) -> bool:
        old = runtime.config
        assert self.config_loader is not None
        try:
            config, changes, sources, latest = await reloading.prepare(runtime, self.config_loader())
        except ConfigError as exc:
            log.error("config not reloaded, still running the previous one: %s", exc)
            return False
        except Exception as exc:  # the database is away, say: same answer, keep running
            log.error("config not reloaded, still running the previous one: %s: %s", type(exc).__name__, exc)
            return False
        reloading.switch(runtime, config, changes, latest)
        self.config = config
        if self.scheduler is not None:
            await reloading.update_tickers(self.scheduler, config, changes, sources)
        else:  # no tickers in this process, or another process holds the lease
            reloading.close_sources(sources.values())
        runtime.metrics.forget_widgets(changes.widgets_removed, (OK, ERROR))
        if self.http is not None:
            self.http.apply(ConnectionLimits.of(config.server), config.server.max_body)
        if config.server.log_level != old.server.log_level:
            logging.getLogger().setLevel(config.server.log_level.upper())
        log.info("config reloaded: %s", changes.describe())
        if changes.restart_needed:
            log.warning(
                "config reload: %s changed; the new value applies at the next restart",
                ", ".join(changes.restart_needed),
            )
        return True

    def _in_background(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)  # a strong reference: the loop keeps only weak ones
        task.add_done_callback(self._background.discard)

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        # Installed before start(): SIGHUP's default action would end the process.
        loop.add_signal_handler(signal.SIGHUP, lambda: self._in_background(self.reload()))
        await self.start()
        # What start() built (modules, config, engine, templates) lives as long as the
        # process: frozen, it is left out of every full garbage collection, a pause
        # that thousands of open streams feel as latency.
        gc.collect()
        gc.freeze()
        await stopping.wait()
        log.info("stopping")
        await self.stop()
