"""run.py as a user runs it: a real subprocess, its exit code and what it prints."""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

from tests.backends import free_port
from tests.configs import dashboard, loopback_server, push_widgets, table, widget
from tests.helpers import head_revision, write_config

REPO = Path(__file__).resolve().parent.parent

GOOD = (
    loopback_server(port=8888, storage="sqlite+aiosqlite:///data/cli.db", grace="1s")
    + dashboard("main", ["rate", "notice"])
    + widget("rate", "number", every="100ms", source={"kind": "random_walk", "start": 1.0, "volatility": 0.01})
    + push_widgets(notice="text")
)


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_check_accepts_the_bundled_config(bundled_config):
    result = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "check", "--config", "config.toml"],
        cwd=bundled_config.parent,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config.toml: ok (")
    assert "Traceback" not in result.stderr


def test_check_touches_no_file(tmp_path):
    path = write_config(tmp_path, GOOD)
    result = run("check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: ok (1 dashboard(s), 2 widget(s))\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


BAD_CONFIGS = [
    (
        "bad duration",
        GOOD.replace('every = "100ms"', 'every = "fast"'),
        'widgets.rate.every: expected a duration like "5s", "2m" or "1h30m", got "fast"',
    ),
    ("unknown key", GOOD.replace('grace = "1s"', 'grace = "1s"\ncolour = "red"'), 'server: unknown key "colour"'),
    (
        "missing widget",
        GOOD.replace('widgets = ["rate", "notice"]', 'widgets = ["rate", "nope"]'),
        'dashboards[0].widgets: unknown widget "nope"',
    ),
    ("reserved id", GOOD.replace("notice", "hello"), 'widgets.hello: "hello" is reserved for control events'),
    (
        "bad source kind",
        GOOD.replace('kind = "random_walk", start = 1.0, volatility = 0.01', 'kind = "pigeon"'),
        "widgets.rate.source.kind: unknown source kind 'pigeon'",
    ),
    (
        "bad source option",
        GOOD.replace('kind = "random_walk", start = 1.0, volatility = 0.01', 'kind = "system", metric = "nope"'),
        "widgets.rate.source.metric: expected one of: cpu_percent",
    ),
    (
        "unknown source option",
        GOOD.replace("volatility = 0.01", "volatility = 0.01, wobble = 2"),
        'widgets.rate.source: unknown key "wobble"',
    ),
    ("TOML syntax", GOOD.replace('id = "main"', 'id = "main'), "invalid TOML"),
    (
        "unknown time zone",
        GOOD.replace('every = "100ms"', 'every = "100ms"\ntimezone = "Mars/Olympus"'),
        'widgets.rate.timezone: unknown time zone "Mars/Olympus" (expected an IANA name like "Europe/Berlin")',
    ),
    (
        "bad port",
        GOOD.replace("port = 8888", "port = 70000"),
        "server.port: expected an integer from 0 to 65535, got 70000",
    ),
    (
        "no dashboards",
        GOOD[: GOOD.index("[[dashboards]]")] + GOOD[GOOD.index("[widgets.rate]") :],
        "dashboards: expected at least one [[dashboards]] table",
    ),
    (
        "unset variable",
        GOOD.replace('id = "main"', 'id = "${DASHBOARD_TEST_UNSET_VARIABLE}"'),
        "environment variable DASHBOARD_TEST_UNSET_VARIABLE is not set",
    ),
    # What used to pass `check` and then fail at run time (a page that never goes live; a
    # command source failing every run with a traceback in the log).
    (
        "max = inf",
        GOOD.replace('every = "100ms"', 'every = "100ms"\nmax = inf'),
        "widgets.rate.max: expected a finite number, got inf",
    ),
    (
        "NUL in a command's environment",
        GOOD + widget("kernel", "text", source={"kind": "command", "argv": ["uname"], "env": {"LANG": "C\x00"}}),
        "widgets.kernel.source.env.LANG: expected text without NUL",
    ),
    (
        "bad storage url",
        GOOD.replace("sqlite+aiosqlite:///data/cli.db", "mysql://user:secret@db/x"),
        'storage.url: expected a URL starting with sqlite+aiosqlite:// or postgresql+asyncpg://, got "mysql://..."',
    ),
]


def one_line_error(tmp_path, text: str, message: str, command: str) -> None:
    path = write_config(tmp_path, text)
    result = run(command, "--config", str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr and "secret" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("text, message", [case[1:] for case in BAD_CONFIGS], ids=[case[0] for case in BAD_CONFIGS])
def test_a_bad_config_is_one_line_and_exit_code_2(tmp_path, text, message):
    one_line_error(tmp_path, text, message, "check")


@pytest.mark.parametrize("command", ["migrate", "serve"])
@pytest.mark.parametrize("case", [BAD_CONFIGS[0], BAD_CONFIGS[5]], ids=lambda case: case[0])
def test_serve_and_migrate_check_the_config_first(tmp_path, command, case):
    one_line_error(tmp_path, case[1], case[2], command)


def test_a_missing_config_file(tmp_path):
    path = tmp_path / "absent.toml"
    result = run("check", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr == f"error: {path}: cannot read: No such file or directory\n"


def test_a_bad_port_option():
    result = run("check", "--port", "70000")
    assert result.returncode == 2
    assert result.stderr == "error: --port: expected a port from 0 to 65535, got 70000\n"


@pytest.mark.parametrize("host", ["::zz", "a b"])
def test_a_bad_host_option_is_named_as_the_option(host):
    result = run("check", "--host", host)
    assert result.returncode == 2
    assert result.stderr == f"error: --host: expected an IP address or a host name that resolves, got {host!r}\n"


def test_migrate_creates_the_database_and_can_run_again(tmp_path):
    path = write_config(tmp_path, GOOD)
    for _ in range(2):
        result = run("migrate", "--config", str(path))
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stdout
        assert "Traceback" not in result.stderr
    with closing(sqlite3.connect(tmp_path / "data" / "cli.db")) as db, db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
        assert db.execute("SELECT count(*) FROM samples").fetchone() == (0,)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, json.loads(response.read())


def wait_for_health(url: str, process: subprocess.Popen, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, process.communicate()[1]
        try:
            status, body = get_json(url)
            if status == 200:
                return body
        except (urllib.error.URLError, ConnectionError):
            pass
        assert time.monotonic() < deadline, "the server did not become healthy"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_answers_and_stops_cleanly_on_a_signal(tmp_path, sig):
    path = write_config(tmp_path, GOOD)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "run.py", "serve", "--config", str(path), "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        health = wait_for_health(f"http://127.0.0.1:{port}/healthz", process)
        assert health["ready"] is True and health["database"] is True
        # The ticker writes: the value shows up through the API.
        deadline = time.monotonic() + 10
        while get_json(f"http://127.0.0.1:{port}/api/widgets/rate")[1]["sample"] is None:
            assert time.monotonic() < deadline, "no sample from the ticker"
            time.sleep(0.05)
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "stopped" in stderr
    assert (tmp_path / "data" / "cli.db").exists()


# --- what keeps the server from starting: one line, what to do, exit 1 ----------------------


def cannot_start_line(result: subprocess.CompletedProcess) -> str:
    """The one line a failed start writes (after the log's time, level and logger)."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert " ERROR dashboard.server: cannot start: " in line, line
    return line.split("cannot start: ", 1)[1]


def test_serve_on_a_port_in_use_says_which_and_exits_1(tmp_path):
    path = write_config(tmp_path, GOOD)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--config", str(path), "--port", str(port), timeout=30)
    assert cannot_start_line(result) == (
        f"cannot listen on 127.0.0.1:{port}: the address is already in use (another server?): stop that one, "
        "or choose another port with --port or [server] port"
    )


def without_root_privilege() -> list[str]:
    """A command prefix that takes away root's license to write anywhere (CAP_DAC_OVERRIDE):
    file modes then hold for this process as they do for any service user."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, and setpriv (util-linux) is not there to drop CAP_DAC_OVERRIDE")
    return [setpriv, "--bounding-set=-dac_override", "--inh-caps=-dac_override"]


def run_unprivileged(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*without_root_privilege(), sys.executable, "run.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_a_data_directory_that_is_not_writable_is_named_with_what_to_do(tmp_path, command):
    path = write_config(tmp_path, GOOD.replace("port = 8888", "port = 0"))
    data = tmp_path / "data"
    data.mkdir(mode=0o555)
    try:
        result = run_unprivileged(command, "--config", str(path))
    finally:
        data.chmod(0o755)
    assert cannot_start_line(result) == (
        f"cannot write the database {data / 'cli.db'}: its directory {data} is not writable by user "
        f"{pwd.getpwuid(os.geteuid()).pw_name}: make it writable, or point [storage] url elsewhere"
    )


def test_a_data_directory_that_cannot_be_made_is_named_with_what_to_do(tmp_path):
    path = write_config(tmp_path, GOOD.replace("port = 8888", "port = 0"))
    tmp_path.chmod(0o555)  # data/ does not exist, and cannot be made here
    try:
        result = run_unprivileged("serve", "--config", str(path))
    finally:
        tmp_path.chmod(0o755)
    message = cannot_start_line(result)
    assert message.startswith(f"cannot create the database directory {tmp_path / 'data'} (Permission denied): ")
    assert message.endswith("or point [storage] url elsewhere")


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_a_corrupt_database_file_is_named_with_what_to_do(tmp_path, command):
    path = write_config(tmp_path, GOOD.replace("port = 8888", "port = 0"))
    database = tmp_path / "data" / "cli.db"
    database.parent.mkdir()
    database.write_bytes(b"not a database, whatever wrote it " * 100)
    result = run(command, "--config", str(path))
    assert cannot_start_line(result) == (
        f"the database {database} is damaged or not a SQLite database (file is not a database): move it aside "
        "(a new one is made at the next start) or put a backup in its place"
    )


def test_under_systemd_every_line_of_a_failed_start_carries_a_journal_priority(tmp_path):
    """journald reads a "<3>" prefix as the line's priority: `journalctl -p err` must show
    why the service did not start, and a config error or a warning are no plain text either."""
    path = write_config(tmp_path, GOOD + table("api", tokens={"ci": "written-in-the-file-0123"}))
    path.chmod(0o644)  # readable by all, with a push token in it: a warning
    stderr_path = tmp_path / "stderr"

    def run_under_journal(*args: str) -> list[str]:
        with open(stderr_path, "w") as stderr:
            stat = os.fstat(stderr.fileno())
            env = {**os.environ, "JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
            subprocess.run(
                [sys.executable, "run.py", *args],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                timeout=30,
            )
        return stderr_path.read_text().splitlines()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        lines = run_under_journal("serve", "--config", str(path), "--port", str(port))
    assert lines[-1].startswith(f"<3>ERROR dashboard.server: cannot start: cannot listen on 127.0.0.1:{port}: ")
    assert all(re.match(r"<[0-7]>", line) for line in lines), lines
    assert any(line.startswith("<4>warning: ") for line in lines), lines
    broken = write_config(tmp_path, GOOD.replace('every = "100ms"', 'every = "fast"'), name="broken.toml")
    (line,) = run_under_journal("check", "--config", str(broken))
    assert line.startswith(f"<3>error: {broken}: widgets.rate.every: ")


@pytest.mark.parametrize("argv", [["--port", "0", "tail"], ["--config", "config.toml", "tail", "main"]])
def test_tail_after_an_option_is_refused_rather_than_serving(argv):
    # `tail` has options of its own, so it must come first; after another option it
    # used to start the server (or take "main" for an import file).
    result = run(*argv, timeout=15)
    assert result.returncode == 2
    assert "tail comes first" in result.stderr and "Traceback" not in result.stderr
