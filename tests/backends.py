"""Real services for the scale-out tests: a private redis-server and mosquitto, a fresh
PostgreSQL database, nginx, and dashboard processes started through run.py. Each fixture
kills and waits for what it started, whatever the test did.

tests/conftest.py loads this module as a plugin: a test names a fixture (`redis_server`, `mosquitto`,
`pg_url`, `processes`) as an argument, no import needed.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = os.environ.get("DASHBOARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_SERVER = shutil.which("redis-server")
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    # The kernel picks a port nobody holds; the small window until the server binds
    # it again is the price of handing a fixed port to a subprocess.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(
    port: int, timeout: float = 30.0, process: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    """Until 127.0.0.1:port accepts; fails at once if `process` exits first (with its `log`)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if process is not None and process.poll() is not None:
                said = f":\n{log.read_text(errors='replace')}" if log is not None and log.exists() else ""
                raise AssertionError(
                    f"{process.args[0]} exited with {process.returncode} before listening{said}"
                ) from None
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on port {port} after {timeout}s") from None
            time.sleep(0.02)


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def kill_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


# --- redis-server -----------------------------------------------------------------


class RedisServer:
    """A redis-server of our own on a free port: never the shared one, so a test may
    stop and restart it."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self.process)

    def kill(self) -> None:
        if self.process is not None:
            kill_process(self.process)
            self.process = None


@pytest.fixture
def redis_server(tmp_path):
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


# --- mosquitto ----------------------------------------------------------------------


class Mosquitto:
    """A mosquitto of our own on a free port, to stop and start again."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen | None = None

    def start(self, tls: tuple[Path, Path] | None = None) -> None:
        """Listen on 127.0.0.1:port; over TLS only with `tls` = (certificate, key)."""
        command = [MOSQUITTO, "-p", str(self.port)]
        if tls is not None:
            conf = self.log.with_name("mosquitto.conf")
            # As root, mosquitto would become user "mosquitto", who cannot read a test's files.
            user = pwd.getpwuid(os.geteuid()).pw_name
            conf.write_text(
                f"user {user}\nlistener {self.port} 127.0.0.1\nallow_anonymous true\n"
                f"certfile {tls[0]}\nkeyfile {tls[1]}\n"
            )
            command = [MOSQUITTO, "-c", str(conf)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, process=self.process, log=self.log)

    def kill(self) -> None:
        if self.process is not None:
            kill_process(self.process)
            self.process = None


@pytest.fixture
def mosquitto(tmp_path):
    """Not started: the test starts it (with TLS, or again after a kill())."""
    if MOSQUITTO is None:
        pytest.skip("the mosquitto binary is not installed (Debian: apt-get install mosquitto)")
    broker = Mosquitto(tmp_path)
    yield broker
    broker.kill()


# --- Prometheus ---------------------------------------------------------------------


class Prometheus:
    """Debian's prometheus on a free loopback port, its storage in a temp dir, scraping
    the targets it is given (and itself) every second."""

    def __init__(self, directory: Path, targets: dict[str, str]):
        self.directory = directory
        self.port = free_port()
        self.log = directory / "prometheus.log"
        directory.mkdir(parents=True, exist_ok=True)
        jobs = {"prometheus": f"127.0.0.1:{self.port}", **targets}
        config = "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n" + "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: [{json.dumps(address)}]\n"
            for job, address in jobs.items()
        )
        (directory / "prometheus.yml").write_text(config)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={directory / 'prometheus.yml'}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, timeout=30, process=self.process, log=self.log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture
def prometheus_for(tmp_path):
    """Start a Prometheus with `prometheus_for({"job": "127.0.0.1:port"})`; stopped at teardown.
    Skips without the binary, and fails so under CI=true: the Prometheus tests must run there."""
    if PROMETHEUS is None:
        reason = "the prometheus binary is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the Prometheus tests must run, not skip)")
        pytest.skip(reason)
    started = []

    def start(targets: dict[str, str]) -> Prometheus:
        started.append(Prometheus(tmp_path / "prometheus", targets))
        return started[-1]

    yield start
    for server in started:
        server.stop()


# --- PostgreSQL ---------------------------------------------------------------------


async def _admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _run(coro):
    # Fixtures run outside the test's loop; a private loop in a thread keeps them apart.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for one test (dropped after it): its SQLAlchemy URL."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        pytest.skip("asyncpg is not installed")
    name = f"dash_test_{uuid.uuid4().hex[:12]}"
    try:
        _run(_admin(f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_DSN}: {exc}")
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    yield f"{base}/{name}"
    _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- dashboard processes ----------------------------------------------------------------


class DashboardProcess:
    """`run.py serve` in a subprocess, on a port of its own; its log goes to a file."""

    def __init__(self, config: Path, role: str, port: int, log: Path, extra: tuple[str, ...] = ()):
        self.config = config
        self.role = role
        self.port = port
        self.log = log
        self.extra = extra
        self.process: subprocess.Popen | None = None

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "run.py"),
                    "serve",
                    "--config",
                    str(self.config),
                    "--role",
                    self.role,
                    "--port",
                    str(self.port),
                    *self.extra,
                ],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 20.0) -> dict:
        """Poll /healthz until it answers (any status): the process is listening."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.role} on :{self.port} exited with {self.process.returncode}:\n"
                    + self.log.read_text()[-3000:]
                )
            health = self.health()
            if health is not None:
                return health
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.role} on :{self.port} not up after {timeout}s:\n" + self.log.read_text()[-3000:]
                )
            time.sleep(0.05)

    def health(self) -> dict | None:
        import http.client

        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/healthz")
            body = conn.getresponse().read()
            conn.close()
            return json.loads(body)
        except (OSError, ValueError, http.client.HTTPException):
            return None

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def kill(self) -> None:
        if self.process is not None:
            kill_process(self.process)


class ProcessGroup:
    def __init__(self, directory: Path):
        self.directory = directory
        self.processes: list[DashboardProcess] = []

    def start(
        self, config: Path, role: str, *, port: int | None = None, extra: tuple[str, ...] = (), wait: bool = True
    ) -> DashboardProcess:
        port = port or free_port()
        log = self.directory / f"{role}-{port}.log"
        process = DashboardProcess(config, role, port, log, extra)
        self.processes.append(process)
        process.start()
        if wait:
            process.wait_ready()
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()


@pytest.fixture
def processes(tmp_path):
    group = ProcessGroup(tmp_path)
    yield group
    group.stop_all()


# --- a page's stream, followed across reconnects ---------------------------------------------


class Follower:
    """One page's event stream, read in a task: the ids of its widget events, across
    reconnects that send Last-Event-ID as a browser does."""

    def __init__(self, widgets: tuple[str, ...]):
        self.widgets = widgets
        self.ids: list[int] = []
        self.connections = 0
        self.hello_server = ""  # the instance id in the last hello: which process serves the stream
        self._client = None
        self._task: asyncio.Task | None = None

    async def connect(self, url: str, *, last_event_id: int | None = None) -> None:
        from tests.helpers import StreamClient

        if last_event_id is None and self.ids:
            last_event_id = self.ids[-1]
        self._client = await StreamClient.open(url, last_event_id=last_event_id)
        assert self._client.status == 200, self._client.status
        hello = await self._client.next_event(timeout=10)
        assert hello.type == "hello", hello
        self.hello_server = json.loads(hello.data)["server"]
        self.connections += 1
        self._task = asyncio.create_task(self._read(self._client))

    async def _read(self, client) -> None:
        try:
            while True:
                event = await client.next_event(timeout=3600)
                # Control events (hello, reload) repeat the last id by the spec's rules: not samples.
                if event.type in self.widgets:
                    self.ids.append(int(event.last_event_id))
        except (EOFError, OSError, asyncio.IncompleteReadError):
            pass  # the server went away; the test reconnects

    @property
    def ended(self) -> bool:
        return self._task is not None and self._task.done()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            self._client.close()


async def pg_ids(url: str, widgets: tuple[str, ...]) -> list[int]:
    from dashboard.storage.store import Store

    store = Store(url)
    await store.open(migrate=False)
    try:
        return [s.id for s in await store.since(widgets, 0, limit=1_000_000)]
    finally:
        await store.close()
