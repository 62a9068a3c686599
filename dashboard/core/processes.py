"""What the places that run programs (the command source, the command notifier) share:
ending a program's whole process group, and saying in a few words why one failed."""

from __future__ import annotations

import os
import signal

SHOWN = 200  # characters of a program's output in a message


def kill_group(pgid: int) -> None:
    """SIGKILL to a process group (a program started with start_new_session=True, and
    whatever it started), which may be gone already."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already empty


def cut(text: str) -> str:
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def last_line(data: bytes) -> str:
    """The last line of output that is not blank, stripped and cut for a message."""
    lines = (line.strip() for line in reversed(data.decode("utf-8", "replace").splitlines()))
    return cut(next((line for line in lines if line), ""))


def exit_reason(code: int) -> str:
    """ "exit code 3", or "killed by SIGTERM" for a negative return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
