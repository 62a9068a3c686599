"""The python source: a user's module next to the config, async and plain functions,
errors at check time and at run time, and examples/ running through the real server."""

import itertools
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dashboard.config import ConfigError
from dashboard.sources import SourceError
from tests.configs import one_widget
from tests.helpers import StreamClient, build_widget_source, data, write_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

JOBS = """
import asyncio
import functools
import threading

from dashboard.sources import SourceError

VALUE = 3


async def rate(base=1.0, step=0.5):
    await asyncio.sleep(0)
    return base + step


async def thread_name():
    return threading.current_thread().name


def thread_name_sync():
    return threading.current_thread().name


def count_after_append(items):
    items.append("x")  # must not change what the next call gets
    return len(items)


def fails(message="bad value"):
    raise ValueError(message)


async def fails_async():
    raise KeyError("EUR")


def gives_up():
    raise SourceError("the queue server said no")


def exits():
    import sys

    sys.exit(4)


async def exits_async():
    raise SystemExit("bye")


class Poller:
    async def __call__(self, n=1):
        return n * 2


poller = Poller()
rate_plus_one = functools.partial(rate, step=1)


class Queue:
    @staticmethod
    def depth():
        return 7
"""

_names = itertools.count()


@pytest.fixture
def jobs(tmp_path, monkeypatch):
    """A module of jobs next to the config, under a name no other test uses
    (imports are cached for the whole session); sys.path is restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    name = f"jobs_{next(_names)}_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(JOBS)
    return name


def make_source(tmp_path, source: str):
    return build_widget_source(tmp_path, one_widget("w", "number", source), "w")


async def call(tmp_path, module: str, function: str, args: str = "{}"):
    return await make_source(
        tmp_path, f'{{ kind = "python", function = "{module}:{function}", args = {args} }}'
    ).fetch()


@pytest.mark.gen_test(timeout=20)
async def test_functions_and_their_values(tmp_path, jobs):
    assert await call(tmp_path, jobs, "rate") == 1.5
    assert await call(tmp_path, jobs, "rate", "{ base = 2, step = 0.25 }") == 2.25
    assert await call(tmp_path, jobs, "rate_plus_one", "{ base = 2 }") == 3
    assert await call(tmp_path, jobs, "poller", "{ n = 21 }") == 42
    assert await call(tmp_path, jobs, "Queue.depth") == 7


@pytest.mark.gen_test(timeout=20)
async def test_async_runs_on_the_loop_and_plain_in_a_thread(tmp_path, jobs):
    assert await call(tmp_path, jobs, "thread_name") == threading.current_thread().name
    assert await call(tmp_path, jobs, "thread_name_sync") != threading.current_thread().name


@pytest.mark.gen_test(timeout=20)
async def test_each_call_gets_fresh_arguments(tmp_path, jobs):
    source = make_source(
        tmp_path, f'{{ kind = "python", function = "{jobs}:count_after_append", args = {{ items = ["a"] }} }}'
    )
    assert [await source.fetch(), await source.fetch()] == [2, 2]


@pytest.mark.parametrize(
    "function, args, message",
    [
        ("fails", "{}", "ValueError: bad value"),
        ("fails", '{ message = "rate limit" }', "ValueError: rate limit"),
        ("fails_async", "{}", "KeyError: 'EUR'"),
        ("gives_up", "{}", "the queue server said no"),
        # SystemExit would end the server, from the loop or from a worker thread alike.
        ("exits", "{}", "the function called sys.exit(4)"),
        ("exits_async", "{}", "the function called sys.exit('bye')"),
    ],
)
@pytest.mark.gen_test(timeout=20)
async def test_exceptions_become_source_errors(tmp_path, jobs, function, args, message):
    with pytest.raises(SourceError) as info:
        await call(tmp_path, jobs, function, args)
    assert str(info.value) == message


CONFIG_ERRORS = [
    (
        'function = "{jobs}"',
        'widgets.w.source.function: expected "module:function" like "jobs:queue_depth", got "{jobs}"',
    ),
    (
        'function = "{jobs}:rate()"',
        'widgets.w.source.function: expected "module:function" like "jobs:queue_depth", got "{jobs}:rate()"',
    ),
    (
        'function = "nosuch_module_zz:f"',
        "widgets.w.source.function: cannot import module \"nosuch_module_zz\": No module named 'nosuch_module_zz'",
    ),
    ('function = "{jobs}:nope"', 'widgets.w.source.function: module "{jobs}" has no attribute "nope"'),
    ('function = "{jobs}:Queue.nope"', 'widgets.w.source.function: module "{jobs}" has no attribute "Queue.nope"'),
    ('function = "{jobs}:VALUE"', 'widgets.w.source.function: "{jobs}:VALUE" is not callable'),
    (
        'function = "{jobs}:rate", args = {{ bass = 1 }}',
        'widgets.w.source.args: "{jobs}:rate" does not take these arguments: '
        "got an unexpected keyword argument 'bass'",
    ),
    (
        'function = "{jobs}:count_after_append"',
        'widgets.w.source.args: "{jobs}:count_after_append" does not take these arguments: '
        "missing a required argument: 'items'",
    ),
    ('function = "{jobs}:rate", args = 1', "widgets.w.source.args: expected a table, got 1"),
    ("function = 1", "widgets.w.source.function: expected a string, got 1"),
    (
        'function = "{jobs}:rate", every = "5s"',
        'widgets.w.source: unknown key "every" (expected one of: function, import_timeout, args)',
    ),
]


@pytest.mark.parametrize("options, message", CONFIG_ERRORS, ids=[str(i) for i in range(len(CONFIG_ERRORS))])
def test_config_errors_name_the_key(tmp_path, jobs, options, message):
    with pytest.raises(ConfigError) as info:
        make_source(tmp_path, '{ kind = "python", ' + options.format(jobs=jobs) + " }")
    assert str(info.value) == f"{tmp_path / 'config.toml'}: " + message.format(jobs=jobs)


@pytest.mark.parametrize(
    "module_text, message",
    [
        ("1 / 0\n", "ZeroDivisionError: division by zero"),
        ("import nosuch_dependency_zz\n", "No module named 'nosuch_dependency_zz'"),
        ("def f(:\n", "SyntaxError: "),
    ],
)
def test_a_module_that_fails_to_import_is_a_config_error(tmp_path, monkeypatch, module_text, message):
    monkeypatch.setattr(sys, "path", list(sys.path))
    name = f"broken_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(module_text)
    with pytest.raises(ConfigError) as info:
        make_source(tmp_path, f'{{ kind = "python", function = "{name}:f" }}')
    prefix = f'{tmp_path / "config.toml"}: widgets.w.source.function: cannot import module "{name}": {message}'
    assert str(info.value).startswith(prefix)


def test_a_module_that_exits_while_imported_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    name = f"exits_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text("import sys\n\nsys.exit(3)\n")
    with pytest.raises(ConfigError) as info:
        make_source(tmp_path, f'{{ kind = "python", function = "{name}:f" }}')
    assert str(info.value) == (
        f'{tmp_path / "config.toml"}: widgets.w.source.function: module "{name}" called sys.exit(3) while being '
        'imported (a script\'s own code belongs under if __name__ == "__main__":)'
    )


def test_a_module_that_hangs_while_imported_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    name = f"hangs_{tmp_path.name}".replace("-", "_")
    release = tmp_path / "release"
    (tmp_path / f"{name}.py").write_text(
        f"import os\nimport time\n\nwhile not os.path.exists({str(release)!r}):\n    time.sleep(0.01)\n"
    )
    try:
        with pytest.raises(ConfigError) as info:
            make_source(tmp_path, f'{{ kind = "python", function = "{name}:f", import_timeout = "200ms" }}')
        assert str(info.value) == (
            f'{tmp_path / "config.toml"}: widgets.w.source.function: importing module "{name}" '
            "took longer than 0.2s (import_timeout)"
        )
    finally:
        release.touch()  # the import, left running in its thread, ends
        sys.modules.pop(name, None)


def run_check(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "check", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_py_check_reports_a_missing_module(tmp_path):
    config = write_config(tmp_path, one_widget("w", "number", '{ kind = "python", function = "foo:bar" }'))
    result = run_check(config)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {config}: widgets.w.source.function: cannot import module \"foo\": No module named 'foo'"
    )


@pytest.mark.parametrize(
    "module_text, import_timeout, message",
    [
        ("import sys\n\nsys.exit(3)\n", "10s", 'module "{name}" called sys.exit(3) while being imported'),
        # argparse at import time, as in a script: its usage goes to stderr, then exit 2
        (
            "import argparse\n\nargparse.ArgumentParser().parse_args(['--nope'])\n",
            "10s",
            'module "{name}" called sys.exit(2) while being imported',
        ),
        ("import time\n\ntime.sleep(3600)\n", "500ms", 'importing module "{name}" took longer than 0.5s'),
    ],
    ids=["sys.exit", "argparse", "hang"],
)
def test_run_py_check_names_a_module_that_exits_or_hangs_and_exits_2(tmp_path, module_text, import_timeout, message):
    name = f"script_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(module_text)
    source = f'{{ kind = "python", function = "{name}:f", import_timeout = "{import_timeout}" }}'
    config = write_config(tmp_path, one_widget("w", "number", source))
    result = run_check(config)
    assert result.returncode == 2, (result.returncode, result.stderr)
    last = result.stderr.splitlines()[-1]  # argparse prints its usage before it exits
    assert last.startswith(f"error: {config}: widgets.w.source.function: " + message.format(name=name)), last
    assert "Traceback" not in result.stderr


def test_run_py_check_passes_the_examples():
    result = run_check(EXAMPLES / "config.toml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{EXAMPLES / 'config.toml'}: ok (1 dashboard(s), 2 widget(s))"


@pytest.mark.gen_test(timeout=30)
async def test_the_examples_reach_the_stream(servers, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "jobs", raising=False)
    shutil.copy(EXAMPLES / "jobs.py", tmp_path / "jobs.py")
    (tmp_path / "big.bin").write_bytes(b"x" * 3 * 1024 * 1024)
    server = await servers.start((EXAMPLES / "config.toml").read_text(), port=0)
    client = await StreamClient.open(server.url("/events/jobs"))
    try:
        seen = {}
        while set(seen) != {"countdown", "big_files"}:
            event = await client.next_widget_event(timeout=10)
            if data(event)["value"] is not None:
                seen[event.type] = data(event)
        assert seen["countdown"]["status"] == "ok" and isinstance(seen["countdown"]["value"], int)
        rows = seen["big_files"]["value"]
        assert seen["big_files"]["status"] == "ok"
        assert {"label": "big.bin", "value": 3072.0} in rows
        assert [row["value"] for row in rows] == sorted((row["value"] for row in rows), reverse=True)
    finally:
        client.close()
        sys.modules.pop("jobs", None)
