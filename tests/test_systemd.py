"""Running under systemd: sd_notify (READY, WATCHDOG, STOPPING), the watchdog's
health rule, journal-friendly logging, the stream access line, and the unit file."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import unicodedata
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tornado.httpclient import AsyncHTTPClient

from dashboard.config import load_config
from dashboard.service.logs import LineFormatter
from dashboard.service.systemd import JournalFormatter, Notifier, logs_to_journal, watchdog_interval
from tests.configs import dashboard, loopback_server, push_widgets, widget
from tests.helpers import StreamClient, wait_until, write_config
from tests.process import ROOT, NotifySocket, ServerProcess

TICKING = (
    loopback_server(grace="2s")
    + dashboard("main", ["rate", "note"])
    + widget(
        "rate", "number", every="100ms", source={"kind": "random_walk", "start": 1.0, "volatility": 0.01, "decimals": 6}
    )
    + push_widgets(note="text")
)


# --- the notify protocol, in process --------------------------------------------------


def test_notifier_sends_one_datagram_per_call_to_an_abstract_socket():
    listener = NotifySocket()
    try:
        notifier = Notifier(listener.name)
        assert notifier.address.startswith("\0")
        assert notifier.notify("READY=1", "STATUS=up")
        assert listener.socket.recv(4096) == b"READY=1\nSTATUS=up"
        assert notifier.watchdog()
        assert listener.socket.recv(4096) == b"WATCHDOG=1"
        notifier.close()
    finally:
        listener.close()


def test_notifier_to_a_socket_file(tmp_path):
    # A short directory: AF_UNIX paths are limited to 108 bytes.
    directory = Path("/tmp") / f"dn-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    try:
        path = directory / "notify"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(str(path))
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(path)})
        assert notifier.stopping()
        assert listener.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
        listener.close()
        notifier.close()
    finally:
        shutil.rmtree(directory)


def test_without_systemd_notifying_is_a_quiet_no_op():
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.ready("up") is False


def test_a_vanished_notify_socket_is_logged_not_raised(caplog):
    notifier = Notifier(f"@dashboard-test-nobody-{uuid.uuid4().hex}")
    with caplog.at_level(logging.WARNING, "dashboard.systemd"):
        assert notifier.watchdog() is False
    assert "cannot notify systemd" in caplog.text


@pytest.mark.parametrize(
    "environ, interval",
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "200000"}, 0.1),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),  # our pid
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # inherited: not ours
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(environ, interval):
    assert watchdog_interval(environ, pid=4242) == interval


def test_journal_stream_must_be_our_stderr_not_just_a_variable(tmp_path):
    with open(tmp_path / "stderr", "w") as stream:
        stat = os.fstat(stream.fileno())
        assert logs_to_journal({"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}, stream)
        assert not logs_to_journal({"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino + 1}"}, stream)
        assert not logs_to_journal({}, stream)


def test_journal_lines_carry_a_priority_and_no_time():
    formatter = JournalFormatter()
    record = logging.LogRecord("dashboard.scheduler", logging.WARNING, __file__, 1, "widget %s failing", ("cpu",), None)
    assert formatter.format(record) == "<4>WARNING dashboard.scheduler: widget cpu failing"
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("dashboard", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    lines = formatter.format(record).split("\n")
    assert len(lines) > 2 and all(line.startswith("<3>") for line in lines)


@given(name=st.text(alphabet=st.characters(codec=None, exclude_categories=())))
def test_what_a_client_sends_cannot_make_a_log_line_of_its_own(name):
    # A name from a request (an acknowledger, a path, a header) in a message stays on its line.
    record = logging.LogRecord("dashboard.alerts", logging.INFO, __file__, 1, "acknowledged by %s", (name,), None)
    for formatter in (LineFormatter("%(levelname)s %(name)s: %(message)s"), JournalFormatter()):
        text = formatter.format(record)
        assert text.splitlines() == [text]  # every kind of line break, \u2028 and \x85 too
        assert "\x00" not in text and "\x1b" not in text
        assert not any(unicodedata.category(c) == "Cc" for c in text)


def test_a_line_break_in_a_message_is_written_as_an_escape():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "by %s", ("bob\n<3>ERROR forged\x00",), None)
    assert LineFormatter("%(message)s").format(record) == "by bob\\x0a<3>ERROR forged\\x00"
    assert JournalFormatter().format(record) == "<6>INFO x: by bob\\x0a<3>ERROR forged\\x00"


# --- the watchdog's rule, on a server in this process ----------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_watchdog_pings_come_from_the_event_loop(servers):
    listener = NotifySocket()
    try:
        await servers.start(TICKING, notifier=Notifier(listener.name), watchdog_interval=0.02)
        assert (await listener.wait_for("READY"))["STATUS"].startswith("1 dashboard(s), 2 widget(s) on http://")
        await listener.wait_for("WATCHDOG")
        listener.pending()
        time.sleep(0.5)  # a stuck loop: ~25 pings would be due meanwhile
        assert [m for m in listener.pending() if "WATCHDOG" in m] == []
        await listener.wait_for("WATCHDOG")  # the loop runs again: so do the pings
    finally:
        listener.close()


@pytest.mark.gen_test(timeout=30)
async def test_watchdog_pings_stop_when_the_tickers_stop(servers, caplog):
    listener = NotifySocket()
    try:
        server = await servers.start(TICKING, notifier=Notifier(listener.name), watchdog_interval=0.02)
        watchdog = server.server.watchdog
        await listener.wait_for("WATCHDOG")
        with caplog.at_level(logging.INFO, "dashboard.systemd"):
            await server.runtime.scheduler.stop()
            listener.pending()
            checks = watchdog.checks
            await wait_until(lambda: watchdog.checks >= checks + 5, message="five more watchdog rounds")
        assert [m for m in listener.pending() if "WATCHDOG" in m] == []
        assert "unhealthy: watchdog pings stop" in caplog.text
    finally:
        listener.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_stream_is_logged_once_when_it_closes_with_what_it_sent(servers, caplog):
    server = await servers.start()
    with caplog.at_level(logging.INFO, "tornado.access"):
        client = await StreamClient.open(server.url("/events/main"))
        await client.next_event()  # hello
        for value in (1, 2, 3):
            await server.record("a", value)
        await client.collect(3)
        client.close()

        def stream_lines():
            return [
                r.getMessage()
                for r in caplog.records
                if r.name == "tornado.access" and "/events/main" in r.getMessage()
            ]

        await wait_until(stream_lines, message="the stream's access line")
    (line,) = stream_lines()
    assert re.fullmatch(r"200 GET /events/main \(127\.0\.0\.1\) [0-9.]+ms stream: (\d+) events, (\d+) bytes", line)
    events, size = map(int, re.search(r"(\d+) events, (\d+) bytes", line).groups())
    assert events >= 4 and size == len(client.raw)


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/nowhere", 404),
        ("/d/missing", 404),
        ("/api/widgets/missing", 404),
        ("/static/missing.js", 404),
        ("/healthz?x", 200),
    ],
)
async def test_a_client_error_is_one_access_line_at_info(servers, caplog, path, status):
    """A wrong address is the client's mistake, not the server's: one line, at INFO, so
    `journalctl -p warning` shows only what an operator must look at."""
    server = await servers.start()
    with caplog.at_level(logging.DEBUG):
        response = await AsyncHTTPClient().fetch(server.url(path), raise_error=False)
        assert response.code == status
        await wait_until(lambda: any(r.name == "tornado.access" for r in caplog.records), message="the access line")
    lines = [(r.name, r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("tornado")]
    level = "INFO" if status != 200 else "DEBUG"  # a probe's success is quieter still
    assert lines == [("tornado.access", level, lines[0][2])]
    assert lines[0][2].startswith(f"{status} GET {path} (127.0.0.1) ")


# --- the real thing: run.py serve as systemd would start it -----------------------------


@pytest.mark.gen_test(timeout=60)
async def test_ready_then_watchdog_then_stopping_on_sigterm_and_exit_0(tmp_path):
    server = ServerProcess(tmp_path, TICKING, watchdog_usec=200_000)
    server.start()
    try:
        ready = await server.ready()
        assert ready["MAINPID"] == str(server.process.pid)
        for _ in range(3):
            await server.notify.wait_for("WATCHDOG")
        client = await StreamClient.open(server.url("/events/main"))
        assert (await client.next_event()).type == "hello"
        server.send(signal.SIGTERM)
        await server.notify.wait_for("STOPPING")
        await client.read_until_closed(timeout=10)
        assert 1000 <= client.decoder.retry <= 5000  # jittered: screens come back spread out
        assert await server.exit_status() == 0
        log = server.log()
        assert "stopped" in log and "Traceback" not in log
        assert "/events/main" in log and " events, " in log  # the stream's one access line
    finally:
        await server.stop()


# --- the unit file ------------------------------------------------------------------------

UNIT = ROOT / "deploy" / "dashboard.service"


def test_the_unit_file_passes_systemd_analyze_verify(tmp_path):
    """ExecStart= names /opt/dashboard/bin/dashboard, the console script of the installed
    package; verify checks that the binaries exist, so the copy under test points at this
    virtualenv's instead."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    text = UNIT.read_text()
    assert "/opt/dashboard/bin/dashboard" in text
    # This virtualenv's console script, as pip installs it into /opt/dashboard/bin.
    local = text.replace("/opt/dashboard/bin/dashboard", str(Path(sys.executable).parent / "dashboard"))
    unit = tmp_path / "dashboard.service"
    unit.write_text(local)
    result = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys and bad values, and only says so: any output is a finding.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_unit_file_says_what_the_server_relies_on():
    lines = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert lines["Type"] == "notify"
    assert lines["ExecReload"] == "/bin/kill -HUP $MAINPID"  # the last one wins in this dict: the signal
    assert lines["Restart"] == "on-failure"
    assert lines["RestartPreventExitStatus"] == "2"  # a config error: a restart would fail the same way
    assert lines["DynamicUser"] == "yes" and lines["StateDirectory"] == "dashboard"
    assert lines["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    assert lines["ExecStart"] == "/opt/dashboard/bin/dashboard serve --config /etc/dashboard/config.toml"


def test_the_database_goes_to_the_state_directory_systemd_names(tmp_path):
    """The config the README gives for the service: $STATE_DIRECTORY under systemd,
    and a fallback for `run.py check` from a shell."""
    text = TICKING.replace(
        'url = "sqlite+aiosqlite:///data/test.db"',
        'url = "sqlite+aiosqlite:///${STATE_DIRECTORY:-/var/lib/dashboard}/dashboard.db"',
    )
    path = write_config(tmp_path, text)
    under_systemd = load_config(path, env={"STATE_DIRECTORY": "/var/lib/dashboard"})
    assert under_systemd.storage.url == "sqlite+aiosqlite:////var/lib/dashboard/dashboard.db"
    assert load_config(path, env={}).storage.url == under_systemd.storage.url


def test_a_full_notification_queue_never_blocks_the_sender():
    # Nobody reads this socket: its queue fills after a few datagrams. A blocking send
    # would hang here (and, in the server, stall the event loop with the watchdog in it).
    listener = NotifySocket()
    notifier = Notifier(listener.name)
    try:
        sent = [notifier.watchdog() for _ in range(1000)]
        assert sent[0] is True
        assert sent[-1] is False
    finally:
        notifier.close()
        listener.close()
