"""Ports for the benchmarks' servers: a free one to start on, and waiting until a
started process listens there (or fails first, with the end of its log)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(
    port: int, process: subprocess.Popen | None = None, timeout: float = 30.0, log: Path | None = None
) -> None:
    """Until 127.0.0.1:port accepts; RuntimeError when `process` exits first (with the
    end of its `log`) or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            said = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}: {said}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port} after {timeout}s") from None
            time.sleep(0.05)
