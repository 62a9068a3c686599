"""`serve --processes N`: N copies of the server on one port (SO_REUSEPORT: the kernel
spreads new connections over them), and a parent that starts them, restarts one
that dies, and passes SIGTERM and SIGINT on.

Separate programs rather than fork(): each child starts from scratch, so no event
loop, database connection or Redis socket is ever shared by accident.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

log = logging.getLogger("dashboard.supervisor")

EXIT_CONFIG = 2  # a child's config error: restarting would not heal it
FIRST_DELAY, MAX_DELAY = 1.0, 30.0
HEALTHY_AFTER = 30.0  # a child that ran this long gets the short restart delay again


async def supervise(argv: list[str], count: int) -> int:
    """Run `count` children of `argv` until SIGTERM or SIGINT; the exit status."""
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
            process = await asyncio.create_subprocess_exec(*argv)
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
            log.warning("process %d (pid %d) exited with status %s; starting it again in %gs",
                        index, process.pid, code, delay)
            try:
                await asyncio.wait_for(stopping.wait(), delay)
            except asyncio.TimeoutError:
                pass

    tasks = [asyncio.create_task(keep_running(index)) for index in range(count)]
    log.info("started %d processes", count)
    await stopping.wait()
    for process in children.values():
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    await asyncio.gather(*tasks)
    await asyncio.gather(*(process.wait() for process in children.values()))
    return status
