"""A value from a program's standard output: a number, JSON, text, or lines.

The program runs in a process group of its own, so that on a timeout the
whole group is killed, grandchildren included, and nothing is left running
when the widget gives up. For the same reason anything still alive in the
group when the program exits is killed too: a dashboard command must not
leave daemons behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..core.processes import cut, exit_reason, kill_group, last_line
from ..core.views import number_from_text
from . import SourceError

PARSERS = ("auto", "number", "json", "text", "lines")
MAX_STDOUT = 1024 * 1024
STDERR_TAIL = 16 * 1024


class _Output(asyncio.SubprocessProtocol):
    """Keeps standard output up to MAX_STDOUT and the tail of standard error.

    The pipes are read to the end whatever arrives (what is over the limit is
    dropped), so a program blocked on a full pipe can always finish; asyncio's
    StreamReader would stop reading, and on Python 3.11 Process.wait() then
    never returns."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.stdout = bytearray()
        self.stderr = b""
        self.too_large = False
        self.finished = loop.create_future()  # exited with its output closed, or wrote too much
        self.exited = loop.create_future()  # the program exited and was reaped

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 2:
            self.stderr = (self.stderr + data)[-STDERR_TAIL:]
        elif len(self.stdout) + len(data) > MAX_STDOUT:
            self.too_large = True
            _resolve(self.finished)
        elif not self.too_large:
            self.stdout += data

    def process_exited(self) -> None:
        _resolve(self.exited)

    def connection_lost(self, exc: Exception | None) -> None:
        _resolve(self.finished)


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # Python's json takes NaN and Infinity; JSON does not


def parse_output(parse: str, text: str) -> Any:
    if parse == "lines":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if parse == "text":
        return text.strip()
    number = number_from_text(text)
    if parse == "number":
        if number is None:
            raise SourceError(f"expected a number on standard output, got {cut(text.strip())!r}")
        return number
    if number is not None:
        return number
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        if parse == "json":
            raise SourceError(f"invalid JSON on standard output: {exc}") from None
    return text.strip()


class Command:
    def __init__(self, argv: tuple[str, ...], cwd: Path, env: dict[str, str], parse: str, name: str):
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.parse = parse
        self.name = name  # the program, for messages

    async def fetch(self) -> Any:
        transport, output = await self._start()
        try:
            await output.finished
        finally:
            await _stop(transport, output)  # also on cancellation: the scheduler's timeout
        if output.too_large:
            raise SourceError(f"{self.name} wrote more than {MAX_STDOUT // 1024} KiB to standard output")
        code = transport.get_returncode()
        if code is not None and code != 0:
            detail = last_line(output.stderr)
            raise SourceError(f"{self.name} failed: {exit_reason(code)}" + (f": {detail}" if detail else ""))
        return parse_output(self.parse, output.stdout.decode("utf-8", "replace"))

    async def _start(self) -> tuple[asyncio.SubprocessTransport, _Output]:
        loop = asyncio.get_running_loop()
        starting = asyncio.ensure_future(
            loop.subprocess_exec(
                lambda: _Output(loop),
                *self.argv,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
        try:
            return await asyncio.shield(starting)
        except OSError as exc:
            raise SourceError(f"cannot run {self.name}: {exc.strerror or exc}") from None
        except asyncio.CancelledError:
            # The program runs before asyncio has connected its pipes; cancelled in
            # between, asyncio would kill the leader only and its children would live on.
            try:
                transport, output = await starting
            except OSError:
                raise asyncio.CancelledError from None
            await _stop(transport, output)
            raise


async def _stop(transport: asyncio.SubprocessTransport, output: _Output) -> None:
    """Kill whatever is left of the program's process group, close the pipes, and
    wait until the leader is reaped, so neither an orphan nor a zombie stays behind.

    The group id is the leader's pid. The kernel does not hand out a pid that is
    still some group's id, so the kill cannot hit a stranger unless our group is
    already empty and the pid came round again in between."""
    kill_group(transport.get_pid())
    try:
        await asyncio.shield(output.exited)
    except asyncio.CancelledError:  # cancelled again while reaping: finish, then pass it on
        await output.exited
        raise
    finally:
        # Only now: closing a transport whose process still runs polls it, and that
        # would race the child watcher for its exit status.
        transport.close()


def _read_argv(options, shell: bool) -> tuple[str, ...]:
    if shell:
        script = options.raw("argv")
        if not isinstance(script, str) or not script.strip():
            raise options.error("argv", "expected a shell command line (a string) with shell = true")
        return ("/bin/sh", "-c", script)
    if isinstance(options.raw("argv"), str):
        raise options.error("argv", 'expected an array like ["df", "-h"]; a string is run only with shell = true')
    argv = options.str_list("argv")
    if not argv or not argv[0]:
        raise options.error("argv", "expected the program and its arguments, got an empty array")
    return argv


def _check_program(options, program: str, cwd: Path, env: dict[str, str]) -> None:
    """Catch a missing program at `run.py check` rather than on the first run."""
    if "/" in program:
        found = (cwd / program).is_file() and os.access(cwd / program, os.X_OK)
    else:
        found = shutil.which(program, path=env.get("PATH", os.environ.get("PATH"))) is not None
    if not found:
        raise options.error(
            "argv", f"no executable program {program!r} ({'relative to cwd' if '/' in program else 'on PATH'})"
        )


def build(options, widget, config) -> Command:
    shell = options.bool("shell", False)
    argv = _read_argv(options, shell)
    cwd = config.resolve_path(options.str("cwd", "."))
    if not cwd.is_dir():
        raise options.error("cwd", f"not a directory: {str(cwd)!r}")
    env = options.environment("env")
    parse = options.str("parse", "auto", choices=PARSERS)
    if not shell:
        _check_program(options, argv[0], cwd, env)
    return Command(argv, cwd, env, parse, name=os.path.basename(argv[0]) if not shell else "the shell command")
