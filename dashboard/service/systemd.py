"""Talking to systemd: sd_notify(3) over $NOTIFY_SOCKET, and the watchdog.

The protocol is one datagram per notification on an AF_UNIX socket, so the
standard library does it; no libsystemd binding. Outside systemd (no
$NOTIFY_SOCKET) every call is a no-op, so the server runs the same anywhere.

The watchdog pings are sent from the event loop itself, never from a thread:
a loop that is stuck (a blocking call, an endless callback) then stops the
pings, and systemd restarts the service after WatchdogSec.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from .logs import LineFormatter

log = logging.getLogger("dashboard.systemd")


class Notifier:
    """Sends sd_notify states ("READY=1", "WATCHDOG=1", ...) to systemd."""

    def __init__(self, address: str | None):
        # An address starting with "@" names a socket in the abstract namespace.
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address or None
        self._socket: socket.socket | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *states: str, wait: float = 1.0) -> bool:
        """Send the states in one datagram; False when there is no systemd to tell
        or it could not be told (a notification is never worth crashing for).

        When systemd's queue is full the send waits up to `wait` seconds, blocking the
        event loop: worth it for READY or STOPPING, said once, not for a watchdog ping
        (wait=0), which is dropped instead, so a stalled listener cannot stall the loop."""
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.settimeout(wait)
            self._socket.sendto("\n".join(states).encode("utf-8"), self.address)
            return True
        except (BlockingIOError, TimeoutError):
            log.debug("systemd's notification queue is full; dropped %s", states)
            return False
        except OSError as exc:
            log.warning("cannot notify systemd at %r: %s", self.address, exc)
            return False

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def reloading(self) -> bool:
        # systemd >= 253 wants the monotonic time with RELOADING=1; older versions ignore it.
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1", "STATUS=stopping")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1", wait=0)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between pings (half of $WATCHDOG_USEC, as sd_watchdog_enabled(3)
    advises), or None when systemd expects none from this process."""
    raw = environ.get("WATCHDOG_USEC", "")
    if not raw.isdigit() or int(raw) == 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None  # the variable was inherited from a parent that is watched, not us
    return int(raw) / 1e6 / 2


class Watchdog:
    """Pings systemd every `interval` seconds while `healthy()` says so."""

    def __init__(self, notifier: Notifier, interval: float, healthy: Callable[[], bool]):
        self.notifier = notifier
        self.interval = interval
        self.healthy = healthy
        self.checks = 0  # how many times the loop looked: lets a test wait for "a few rounds"
        self._task: asyncio.Task | None = None
        self._was_healthy = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="systemd-watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            healthy = self.healthy()
            self.checks += 1
            if healthy:
                self.notifier.watchdog()
            if healthy != self._was_healthy:
                # Said once per change, so a long outage does not flood the journal.
                if healthy:
                    log.info("healthy again: watchdog pings resume")
                else:
                    log.error("unhealthy: watchdog pings stop, systemd will restart the service")
                self._was_healthy = healthy
            await asyncio.sleep(self.interval)


def logs_to_journal(environ: Mapping[str, str], stream) -> bool:
    """True when `stream` is the journal stream systemd connected (systemd.exec(5),
    $JOURNAL_STREAM: compare device and inode), not merely an inherited variable."""
    try:
        stat = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # no real file: a test's StringIO, a closed stream
        return False
    return environ.get("JOURNAL_STREAM", "") == f"{stat.st_dev}:{stat.st_ino}"


class JournalFormatter(LineFormatter):
    """Lines for journald: no time (the journal stamps each line) and a syslog
    priority prefix like "<4>", which journald turns into the line's priority, so
    that `journalctl -p warning` shows warnings and errors only."""

    PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in self.PRIORITIES if record.levelno >= level), 7)
        # A traceback spans lines; each line after the first would lose the prefix, so all get it.
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).split("\n"))
