"""The real server as a child process (`run.py serve`), as systemd runs it: with a
datagram socket of the test standing in for $NOTIFY_SOCKET, stderr in a file, and
signals (SIGHUP, SIGTERM, SIGKILL) sent to it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.helpers import wait_until, write_config

ROOT = Path(__file__).resolve().parent.parent
RUN_PY = ROOT / "run.py"


def parse_notification(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().split("\n") if "=" in line)


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket. An abstract name (no
    file, no 108-byte path limit) so the server's "@" handling is used too."""

    def __init__(self):
        self.name = f"@dashboard-test-{uuid.uuid4().hex}"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + self.name[1:])
        self.socket.setblocking(False)
        self.received: list[dict[str, str]] = []

    async def next(self, timeout: float = 10.0) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        datagram = await asyncio.wait_for(loop.sock_recv(self.socket, 4096), timeout)
        message = parse_notification(datagram)
        self.received.append(message)
        return message

    async def wait_for(self, key: str, value: str = "1", timeout: float = 20.0) -> dict[str, str]:
        """The next notification with key=value; those before it are kept in `received`."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.next(max(0.01, deadline - time.monotonic()))
            if message.get(key) == value:
                return message

    def pending(self) -> list[dict[str, str]]:
        """The notifications already queued, without waiting."""
        out = []
        while True:
            try:
                out.append(parse_notification(self.socket.recv(4096)))
            except BlockingIOError:
                self.received.extend(out)
                return out

    def close(self) -> None:
        self.socket.close()


class ServerProcess:
    def __init__(
        self,
        directory: Path,
        config_text: str,
        *,
        watchdog_usec: int | None = None,
        env: dict[str, str] | None = None,
        preexec_fn=None,
    ):
        self.directory = Path(directory)
        self.config_path = write_config(self.directory, config_text)
        self.config_path.chmod(0o600)  # it may hold a push token: the server warns otherwise
        self.log_path = self.directory / "server.log"
        self.notify = NotifySocket()
        self.watchdog_usec = watchdog_usec
        self.extra_env = env or {}
        self.preexec_fn = preexec_fn  # run in the child before it starts (resource limits, say)
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self) -> None:
        env = {**os.environ, "NOTIFY_SOCKET": self.notify.name, **self.extra_env}
        env.pop("JOURNAL_STREAM", None)
        if self.watchdog_usec:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(RUN_PY), "serve", "--config", str(self.config_path)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=self.preexec_fn,
            )

    async def ready(self, timeout: float = 30.0) -> dict[str, str]:
        """Wait for READY=1; learns the port from its STATUS line (the config says port 0)."""
        try:
            message = await self.notify.wait_for("READY", timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"no READY=1; exit status {self.process.poll()}; log:\n{self.log()}") from None
        self.port = int(re.search(r":(\d+)/", message["STATUS"])[1])
        return message

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self, containing: str) -> list[str]:
        return [line for line in self.log().splitlines() if containing in line]

    def send(self, sig: int) -> None:
        self.process.send_signal(sig)

    async def exit_status(self, timeout: float = 20.0) -> int:
        await wait_until(lambda: self.process.poll() is not None, timeout=timeout, message="the server to exit")
        return self.process.returncode

    async def stop(self) -> None:
        """SIGTERM, and SIGKILL should that not do; for teardown."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await self.exit_status(timeout=15)
            except AssertionError:
                self.process.kill()
                self.process.wait()
        self.notify.close()
