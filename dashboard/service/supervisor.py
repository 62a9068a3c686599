"""`serve --processes N`: N copies of the server on one port (SO_REUSEPORT: the kernel
spreads new connections over them), and a parent that starts them, restarts one
that dies, and passes SIGTERM and SIGINT on.

Separate programs rather than fork(): each child starts from scratch, so no event
loop, database connection or Redis socket is ever shared by accident.

Under systemd the parent is the service's main process: it alone says READY,
STOPPING and WATCHDOG. Its children get no $NOTIFY_SOCKET, since systemd would
drop their messages (NotifyAccess=main) and wait for a READY that never came.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time

from .systemd import Notifier, Watchdog

log = logging.getLogger("dashboard.supervisor")

EXIT_CONFIG = 2  # a child's config error: restarting would not heal it
FIRST_DELAY, MAX_DELAY = 1.0, 30.0
HEALTHY_AFTER = 30.0  # a child that ran this long gets the short restart delay again
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def child_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in SYSTEMD_VARIABLES}


async def wait_for_port(host: str, port: int, stopping: asyncio.Event) -> bool:
    """True once something accepts connections on host:port; False if told to stop first."""
    while not stopping.is_set():
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return True
    return False


async def supervise(
    argv: list[str],
    count: int,
    *,
    address: tuple[str, int] | None = None,
    notifier: Notifier | None = None,
    watchdog_interval: float | None = None,
) -> int:
    """Run `count` children of `argv` until SIGTERM or SIGINT; the exit status.

    With a notifier, READY=1 goes out once `address` accepts connections."""
    notifier = notifier or Notifier(None)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    children: dict[int, asyncio.subprocess.Process] = {}
    status = 0

    async def keep_running(index: int) -> None:
        nonlocal status
        delay = FIRST_DELAY
        while not stopping.is_set():
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(*argv, env=child_environment())
            children[index] = process
            if stopping.is_set():  # the signal came while this one was starting
                process.send_signal(signal.SIGTERM)
            code = await process.wait()
            if stopping.is_set():
                return
            if code == EXIT_CONFIG:
                log.error("process %d stopped on a configuration error; stopping all", index)
                status = EXIT_CONFIG
                stopping.set()
                return
            delay = FIRST_DELAY if time.monotonic() - started > HEALTHY_AFTER else min(delay * 2, MAX_DELAY)
            log.warning(
                "process %d (pid %d) exited with status %s; starting it again in %gs", index, process.pid, code, delay
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)

    tasks = [asyncio.create_task(keep_running(index)) for index in range(count)]
    log.info("started %d processes", count)
    watchdog = None
    if watchdog_interval:
        # The children's own health is this loop's business (it restarts them); the
        # pings say that the loop itself still runs.
        watchdog = Watchdog(notifier, watchdog_interval, healthy=lambda: not stopping.is_set())
        watchdog.start()
    if address is not None and await wait_for_port(*address, stopping):
        notifier.ready(f"{count} processes on http://{address[0]}:{address[1]}/")
    await stopping.wait()
    notifier.stopping()
    if watchdog is not None:
        await watchdog.stop()
    for process in children.values():
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    await asyncio.gather(*tasks)
    await asyncio.gather(*(process.wait() for process in children.values()))
    return status
