"""The command source with real subprocesses: parsing, failures with exit code and
stderr, the output cap, and no process left behind after a timeout or a daemon."""

import asyncio
import os
from pathlib import Path

import psutil
import pytest

from dashboard.config import ConfigError
from dashboard.sources import SourceError
from dashboard.sources.command import MAX_STDOUT, parse_output
from tests.configs import loopback_server, one_widget
from tests.helpers import StreamClient, build_widget_source, data, wait_until


def make_source(tmp_path, options: dict, *, view: str = "text"):
    return build_widget_source(tmp_path, one_widget("w", view, {"kind": "command", **options}), "w")


async def run(tmp_path, options: dict):
    return await make_source(tmp_path, options).fetch()


def gone(pid: int) -> bool:
    """Not running any more. A killed grandchild is reparented to PID 1, which reaps it
    when it gets to it (or never, in a container whose PID 1 does not): a zombie is dead."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def read_pids(path: Path, count: int) -> list[int]:
    def complete():
        lines = path.read_text().split() if path.exists() else []
        return len(lines) >= count and all(line.isdigit() for line in lines[:count])

    await wait_until(complete, timeout=10, message=f"{count} pids in {path.name}")
    return [int(line) for line in path.read_text().split()[:count]]


# --- parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "parse, output, expected",
    [
        ("auto", "42\n", 42),
        ("auto", " -3.5 \n", -3.5),
        ("auto", "1e3", 1000.0),
        ("auto", '{"state": "ok"}\n', {"state": "ok"}),
        ("auto", '["a", "b"]', ["a", "b"]),
        ("auto", "true", True),
        ("auto", "NaN", "NaN"),  # not JSON, not a finite number: text
        ("auto", "inf", "inf"),
        ("auto", "1_000", "1_000"),
        ("auto", "  all good \n", "all good"),
        ("auto", "", ""),
        ("number", "0.9231\n", 0.9231),
        ("number", "+7", 7),
        ("json", ' "quoted" ', "quoted"),
        ("json", "12", 12),
        ("text", "  42  \n", "42"),
        ("text", "line 1\nline 2\n", "line 1\nline 2"),
        ("lines", "a\n\n  b  \r\nc", ["a", "b", "c"]),
        ("lines", "\n\n", []),
    ],
)
def test_parse_output(parse, output, expected):
    assert parse_output(parse, output) == expected


@pytest.mark.parametrize(
    "parse, output, message",
    [
        ("number", "fast\n", "expected a number on standard output, got 'fast'"),
        ("number", "", "expected a number on standard output, got ''"),
        ("number", "nan", "expected a number on standard output, got 'nan'"),
        (
            "json",
            "{oops",
            "invalid JSON on standard output: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        ("json", "NaN", "invalid JSON on standard output: NaN is not JSON"),
    ],
)
def test_parse_failures(parse, output, message):
    with pytest.raises(SourceError) as info:
        parse_output(parse, output)
    assert str(info.value) == message


# --- running programs -----------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_programs_and_their_output(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("x")
    (tmp_path / "sub" / "a.txt").write_text("x")
    script = tmp_path / "sub" / "answer.sh"
    script.write_text("#!/bin/sh\necho 42\n")
    script.chmod(0o755)
    assert await run(tmp_path, {"argv": ["echo", "0.9231"]}) == 0.9231
    assert await run(tmp_path, {"argv": ["printf", "b\\n\\na\\n"], "parse": "lines"}) == ["b", "a"]
    assert await run(tmp_path, {"argv": ["ls"], "cwd": "sub", "parse": "lines"}) == ["a.txt", "answer.sh", "b.txt"]
    assert await run(tmp_path, {"argv": ["./answer.sh"], "cwd": "sub"}) == 42
    assert (
        await run(tmp_path, {"argv": ["sh", "-c", 'echo "$GREETING, $HOME"'], "env": {"GREETING": "hi"}})
        == f"hi, {os.environ['HOME']}"
    )
    assert await run(tmp_path, {"argv": "echo 3 | tr 3 4", "shell": True}) == 4
    assert await run(tmp_path, {"argv": ["echo", '{"state": "warn"}'], "parse": "text"}) == '{"state": "warn"}'


# (options, expected message)
FAILURES = [
    (
        {"argv": ["sh", "-c", "echo first >&2; echo '  disk not found ' >&2; echo >&2; exit 3"]},
        "sh failed: exit code 3: disk not found",
    ),
    ({"argv": ["sh", "-c", "exit 1"]}, "sh failed: exit code 1"),
    ({"argv": ["false"]}, "false failed: exit code 1"),
    ({"argv": "echo oops >&2; exit 2", "shell": True}, "the shell command failed: exit code 2: oops"),
    ({"argv": ["sh", "-c", "kill -TERM $$"]}, "sh failed: killed by SIGTERM"),
    ({"argv": ["echo", "fast"], "parse": "number"}, "expected a number on standard output, got 'fast'"),
    (
        {"argv": ["echo", "{"], "parse": "json"},
        "invalid JSON on standard output: Expecting property name enclosed in double quotes: line 2 column 1 (char 2)",
    ),
    ({"argv": ["yes", "a chatty program"]}, f"yes wrote more than {MAX_STDOUT // 1024} KiB to standard output"),
]


@pytest.mark.parametrize("options, message", FAILURES, ids=[m[:30] for _, m in FAILURES])
@pytest.mark.gen_test(timeout=30)
async def test_failures(tmp_path, options, message):
    with pytest.raises(SourceError) as info:
        await run(tmp_path, options)
    assert str(info.value) == message


@pytest.mark.gen_test(timeout=30)
async def test_a_program_gone_since_the_check_is_a_source_error(tmp_path):
    script = tmp_path / "probe.sh"
    script.write_text("#!/bin/sh\necho 1\n")
    script.chmod(0o755)
    source = make_source(tmp_path, {"argv": ["./probe.sh"]})
    script.unlink()
    with pytest.raises(SourceError, match=r"^cannot run probe\.sh: No such file or directory$"):
        await source.fetch()


@pytest.mark.gen_test(timeout=30)
async def test_cancelling_kills_the_whole_process_group(tmp_path):
    pids = tmp_path / "pids"
    source = make_source(tmp_path, {"argv": ["sh", "-c", f"sleep 60 & echo $! > {pids}; echo $$ >> {pids}; wait"]})
    task = asyncio.create_task(source.fetch())
    grandchild, child = await read_pids(pids, 2)
    assert not gone(grandchild) and not gone(child)
    task.cancel()  # what the scheduler's wait_for does on the widget timeout
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not psutil.pid_exists(child) or gone(child)
    with pytest.raises(psutil.NoSuchProcess):  # reaped by us: not even a zombie
        psutil.Process(child).status()
    await wait_until(lambda: gone(grandchild), message="the grandchild to be killed")


def running_with(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(process.info["cmdline"] or ()):
            found.append(process)
    return found


@pytest.mark.gen_test(timeout=60)
async def test_cancelled_at_any_moment_of_the_start_leaves_nothing(tmp_path):
    # a sleep length nobody else uses marks our grandchildren among all processes
    marker = f"60.{os.getpid()}{len(str(tmp_path))}"
    source = make_source(tmp_path, {"argv": ["sh", "-c", f"sleep {marker} & sleep {marker}"]})
    for turns in range(12):
        task = asyncio.create_task(source.fetch())
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await wait_until(lambda: not running_with(f"sleep {marker}"), message="no sleep left running")


@pytest.mark.gen_test(timeout=30)
async def test_a_daemon_left_behind_is_killed_when_the_program_exits(tmp_path):
    source = make_source(tmp_path, {"argv": "sleep 60 >/dev/null 2>&1 & echo $!", "shell": True}, view="number")
    daemon = await source.fetch()
    assert isinstance(daemon, int)
    await wait_until(lambda: gone(daemon), message="the daemon to be killed")


# --- config errors ---------------------------------------------------------------

CONFIG_ERRORS = [
    ({}, "widgets.w.source.argv: missing"),
    (
        {"argv": "uptime"},
        'widgets.w.source.argv: expected an array like ["df", "-h"]; a string is run only with shell = true',
    ),
    ({"argv": []}, "widgets.w.source.argv: expected the program and its arguments, got an empty array"),
    ({"argv": ["echo", 1]}, "widgets.w.source.argv[1]: expected a string, got 1"),
    (
        {"argv": ["echo"], "shell": True},
        "widgets.w.source.argv: expected a shell command line (a string) with shell = true",
    ),
    (
        {"argv": "  ", "shell": True},
        "widgets.w.source.argv: expected a shell command line (a string) with shell = true",
    ),
    (
        {"argv": ["no-such-program-here"]},
        "widgets.w.source.argv: no executable program 'no-such-program-here' (on PATH)",
    ),
    ({"argv": ["./missing.sh"]}, "widgets.w.source.argv: no executable program './missing.sh' (relative to cwd)"),
    ({"argv": ["ls"], "env": {"PATH": "/nowhere"}}, "widgets.w.source.argv: no executable program 'ls' (on PATH)"),
    ({"argv": ["ls"], "cwd": "nowhere"}, "widgets.w.source.cwd: not a directory: '{dir}/nowhere'"),
    ({"argv": ["ls"], "env": {"N": 1}}, "widgets.w.source.env.N: expected a string, got 1"),
    # What the OS refuses at every run: NUL in an argument, a variable or a path; "=" in a name.
    ({"argv": ["ls", "a\x00b"]}, "widgets.w.source.argv[1]: expected text without NUL (\\u0000)"),
    ({"argv": ["ls"], "env": {"N": "a\x00"}}, "widgets.w.source.env.N: expected text without NUL (\\u0000)"),
    ({"argv": ["ls"], "cwd": "\x00"}, "widgets.w.source.cwd: expected text without NUL (\\u0000)"),
    ({"argv": "ls\x00", "shell": True}, "widgets.w.source.argv: expected text without NUL (\\u0000)"),
    (
        {"argv": ["ls"], "env": {"A=B": "x"}},
        'widgets.w.source.env."A=B": expected a variable name (not empty, without "=")',
    ),
    (
        {"argv": ["ls"], "env": {"": "x"}},
        'widgets.w.source.env."": expected a variable name (not empty, without "=")',
    ),
    ({"argv": ["ls"], "env": {"A": "x\u0000y"}}, "widgets.w.source.env.A: expected text without NUL (\\u0000)"),
    ({"argv": ["ls"], "shell": "yes"}, 'widgets.w.source.shell: expected true or false, got "yes"'),
    (
        {"argv": ["ls"], "parse": "yaml"},
        'widgets.w.source.parse: expected one of: auto, number, json, text, lines, got "yaml"',
    ),
    (
        {"argv": ["ls"], "timeout": "1s"},
        'widgets.w.source: unknown key "timeout" (expected one of: shell, argv, cwd, env, parse)',
    ),
]


@pytest.mark.parametrize("options, message", CONFIG_ERRORS, ids=[str(i) for i in range(len(CONFIG_ERRORS))])
def test_config_errors_name_the_key(tmp_path, options, message):
    with pytest.raises(ConfigError) as info:
        make_source(tmp_path, options)
    assert str(info.value) == f"{tmp_path / 'config.toml'}: " + message.format(dir=tmp_path)


# --- through the real server --------------------------------------------------------


def server_config(view: str, options: dict, *, every: str, timeout: str) -> str:
    return loopback_server() + one_widget("w", view, {"kind": "command", **options}, every=every, timeout=timeout)


@pytest.mark.gen_test(timeout=30)
async def test_output_reaches_the_stream(servers, tmp_path):
    (tmp_path / "value").write_text("17\n")
    server = await servers.start(server_config("number", {"argv": ["cat", "value"]}, every="50ms", timeout="5s"))
    client = await StreamClient.open(server.url("/events/main"))
    try:
        first = data(await client.next_widget_event(timeout=10))
        assert (first["status"], first["value"]) == ("ok", 17)
        (tmp_path / "value").write_text("18.5\n")
        second = data(await client.next_widget_event(timeout=10))
        assert (second["status"], second["value"]) == ("ok", 18.5)
    finally:
        client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_timeout_through_the_scheduler_leaves_no_process(servers, tmp_path):
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $! >> {pids}; echo $$ >> {pids}; wait"
    server = await servers.start(server_config("text", {"argv": script, "shell": True}, every="1h", timeout="2s"))
    client = await StreamClient.open(server.url("/events/main"))
    try:
        failed = data(await client.next_widget_event(timeout=10))
        assert (failed["status"], failed["message"]) == ("error", "timed out after 2s")
    finally:
        client.close()
    grandchild, child = await read_pids(pids, 2)
    await wait_until(lambda: gone(grandchild) and gone(child), message="both processes to be killed")
