"""Roles and processes: which backends a role needs (run.py check), what a worker
serves, exactly one ticker process among several (the lock in Redis, with real
worker processes killed mid-run), and --processes N on one port."""

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis.asyncio
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from dashboard.core.resources import resource_dir
from dashboard.hub.redis_hub import message_sample
from dashboard.service.lease import TickerLease
from dashboard.web.app import static_tag
from tests.backends import ROOT, Follower, free_port, kill_process, pg_ids
from tests.configs import TEST_DB, dashboard, loopback_server, push_widgets, table, widget
from tests.helpers import TOKEN, wait_until
from tests.process import NotifySocket


def config_text(*, hub: str = "", storage: str = TEST_DB, every: str = "50ms", port: int = 0) -> str:
    """`hub` is the text of the [hub] table."""
    return (
        loopback_server(port=port, storage=storage, grace="1s")
        + f"\n[hub]\n{hub}\n"
        + table("api", tokens={"test": TOKEN})
        + dashboard("main", ["walk", "note"])
        + widget("walk", "number", every=every, source={"kind": "random_walk", "start": 1.0, "volatility": 0.1})
        + push_widgets(note="text")
    )


def redis_hub(url: str, lease: str = "1s") -> str:
    return f'backend = "redis"\nurl = "{url}"\nlease = "{lease}"'


def run_check(tmp_path, text: str, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "check", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


# --- run.py check: a role that cannot work is one clear line and exit 2 ----------------

REDIS = redis_hub("redis://127.0.0.1:6379/0")
POSTGRES = "postgresql+asyncpg://dash@db.internal/dash"
SQLITE_WARNING = (
    "storage.url: SQLite shared by several processes works on one machine only and its writers "
    "wait on each other; use postgresql+asyncpg:// to scale out"
)


@pytest.mark.parametrize(
    "hub, storage, args, code, message",
    [
        (
            "",
            None,
            ("--role", "web"),
            2,
            'error: {file}: hub.backend: --role web needs backend = "redis": with the memory hub web processes and '
            "a separate worker would never see each other's events",
        ),
        (
            "",
            None,
            ("--role", "worker"),
            2,
            'error: {file}: hub.backend: --role worker needs backend = "redis": with the memory hub web processes '
            "and a separate worker would never see each other's events",
        ),
        (
            "",
            None,
            ("--processes", "3", "--port", "8000"),
            2,
            'error: {file}: hub.backend: --processes 3 needs backend = "redis": with the memory hub each process '
            "would see only the events it made itself",
        ),
        (
            REDIS,
            None,
            ("--processes", "2"),
            2,
            "error: --processes: needs a fixed port ([server] port or --port), not 0: each process would listen on "
            "a port of its own",
        ),
        (REDIS, None, ("--processes", "0"), 2, "error: --processes: expected a number from 1 to 64, got 0"),
        (REDIS, None, ("--role", "web"), 0, "warning: {file}: " + SQLITE_WARNING),
        (REDIS, None, ("--role", "worker"), 0, "warning: {file}: " + SQLITE_WARNING),
        (REDIS, POSTGRES, ("--role", "web"), 0, ""),
        (REDIS, POSTGRES, ("--processes", "4", "--port", "8000"), 0, ""),
        ("", None, ("--role", "all"), 0, ""),
        ("", None, (), 0, ""),
    ],
)
def test_check_tells_when_a_role_needs_a_backend(tmp_path, hub, storage, args, code, message):
    text = config_text(hub=hub, **({"storage": storage} if storage else {}))
    result = run_check(tmp_path, text, *args)
    assert result.returncode == code, result.stderr
    assert result.stderr.strip() == message.format(file=tmp_path / "config.toml")
    if code == 0:
        assert result.stdout.startswith(f"{tmp_path / 'config.toml'}: ok")


# --- what each role runs -----------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_worker_serves_health_and_nothing_else(servers, redis_server):
    worker = await servers.start(config_text(hub=redis_hub(redis_server.url)), role="worker")
    client = AsyncHTTPClient()
    health = json.loads((await client.fetch(worker.url("/healthz"))).body)
    assert health["ready"] is True
    await wait_until(lambda: worker.runtime.scheduler is not None, timeout=10, message="the worker's tickers")
    static = f"/static/{static_tag(resource_dir('static'))}/app.css"
    for path in ("/", "/d/main", "/events/main", "/api/widgets", static):
        with pytest.raises(HTTPClientError) as info:
            await client.fetch(worker.url(path))
        assert info.value.code == 404, path
    metrics = await client.fetch(worker.url("/metrics"))
    assert metrics.headers["Content-Type"].startswith("text/plain")


@pytest.mark.gen_test(timeout=30)
async def test_a_web_process_runs_no_tickers(servers, redis_server):
    web = await servers.start(config_text(hub=redis_hub(redis_server.url), every="50ms"), role="web")
    assert web.runtime.scheduler is None and web.server.lease is None
    # It still stores and publishes what is pushed to it.
    sample = await web.record("note", "hello")
    await wait_until(lambda: web.runtime.hub.last_id == sample.id, timeout=10, message="the push, via Redis")
    assert await web.runtime.store.last_id() == sample.id  # and nothing ticked meanwhile


# --- the ticker lock -------------------------------------------------------------------------


class Tickers:
    def __init__(self):
        self.running = False
        self.starts = 0

    async def start(self):
        self.running = True
        self.starts += 1

    async def stop(self):
        self.running = False


@pytest.fixture
def leases(io_loop):
    started = []

    def make(url: str, ttl: float = 1.0) -> tuple[TickerLease, Tickers]:
        tickers = Tickers()
        lease = TickerLease(
            url, "dashboard:events:tickers", ttl, start_tickers=tickers.start, stop_tickers=tickers.stop
        )
        started.append(lease)
        return lease, tickers

    yield make
    for lease in started:
        io_loop.run_sync(lease.stop)


@pytest.mark.gen_test(timeout=30)
async def test_one_lease_holder_and_a_handover_on_stop(redis_server, leases):
    (one, one_tickers), (two, two_tickers) = leases(redis_server.url), leases(redis_server.url)
    await one.start()
    await wait_until(lambda: one.held, timeout=20, message="the first lease")
    await two.start()
    # The second tries every ttl/3; several tries later it still waits, and the first renewed meanwhile.
    await wait_until(lambda: two.attempts >= 5, timeout=10, message="the standby's tries")
    assert (one.held, two.held, one_tickers.running, two_tickers.running) == (True, False, True, False)
    assert one_tickers.starts == 1
    await one.stop()
    assert not one_tickers.running
    await wait_until(lambda: two.held, timeout=20, message="the standby taking over")
    assert two_tickers.running and two_tickers.starts == 1


@pytest.mark.gen_test(timeout=40)
async def test_a_holder_cut_off_from_redis_stops_its_tickers_then_resumes(redis_server, leases):
    lease, tickers = leases(redis_server.url)
    await lease.start()
    await wait_until(lambda: tickers.running, timeout=20, message="the lease")
    redis_server.kill()
    # Before the key could expire (it is gone with Redis, but a partition looks the same
    # from here), the holder stops its own tickers.
    await wait_until(lambda: not tickers.running, timeout=lease.ttl * 3, message="the fence")
    assert not lease.held
    redis_server.start()
    await wait_until(lambda: tickers.running, timeout=15, message="taking the lock again")
    assert tickers.starts == 2


async def channel_messages(url: str, seen: list, ready: asyncio.Event) -> None:
    client = redis.asyncio.Redis.from_url(url)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe("dashboard:events")
        ready.set()
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                sample, origin = message_sample(message["data"])
                seen.append((origin, sample.id))
    finally:
        await pubsub.aclose()
        await client.aclose()


@pytest.mark.gen_test(timeout=120)
async def test_two_workers_one_publishes_and_the_other_takes_over_when_it_dies(tmp_path, redis_server, processes):
    config = tmp_path / "config.toml"
    config.write_text(config_text(hub=redis_hub(redis_server.url, lease="1s"), every="50ms"))
    seen: list[tuple[str, int]] = []
    ready = asyncio.Event()
    listener = asyncio.create_task(channel_messages(redis_server.url, seen, ready))
    try:
        await ready.wait()
        first = processes.start(config, "worker")
        await wait_until(lambda: len(seen) >= 5, timeout=20, message="the first worker publishing")
        second = processes.start(config, "worker")
        instances = {first.health()["instance"]: first, second.health()["instance"]: second}
        assert first.health()["scheduler"] == "running" and second.health()["scheduler"] == "off"
        # The second worker is up and trying for the lock; the first keeps publishing alone.
        mark = len(seen)
        await wait_until(lambda: len(seen) >= mark + 20, timeout=20, message="more events")
        assert {origin for origin, _ in seen} == {first.health()["instance"]}

        kill_process(first.process)
        second_origin = second.health()["instance"]
        await wait_until(
            lambda: sum(origin == second_origin for origin, _ in seen) >= 10,
            timeout=30,
            message="the second worker taking over",
        )
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    origins = [origin for origin, _ in seen]
    switch = origins.index(second_origin)
    # One switch, no interleaving: never both at once.
    assert set(origins[:switch]) == {origins[0]} and set(origins[switch:]) == {second_origin}
    assert instances[origins[0]] is first
    ids = [event_id for _, event_id in seen]
    assert ids == sorted(set(ids))  # none twice, in order
    assert second.health()["scheduler"] == "running"


# --- --processes N on one port ------------------------------------------------------------


@pytest.mark.gen_test(timeout=120)
async def test_processes_share_one_port_and_are_restarted_and_stopped(tmp_path, redis_server):
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(config_text(hub=redis_hub(redis_server.url), port=port))
    log = open(tmp_path / "supervisor.log", "wb")  # noqa: SIM115 (closed at the end)
    # As under a Type=notify unit: the parent alone may talk to systemd.
    notify = NotifySocket()
    env = {**os.environ, "NOTIFY_SOCKET": notify.name, "WATCHDOG_USEC": "200000"}
    parent = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "serve", "--config", str(config), "--role", "web", "--processes", "2"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    everyone = []
    try:
        ready = await notify.wait_for("READY", timeout=60)
        assert ready["MAINPID"] == str(parent.pid)
        await notify.wait_for("WATCHDOG")
        client = AsyncHTTPClient(force_instance=True)
        seen = set()

        async def instances_seen(count: int) -> bool:
            try:
                # A new connection each time: the kernel picks the process per connection.
                response = await client.fetch(f"http://127.0.0.1:{port}/healthz", headers={"Connection": "close"})
                seen.add(json.loads(response.body)["instance"])
            except (OSError, HTTPClientError):
                pass
            return len(seen) >= count

        await wait_until(lambda: instances_seen(2), timeout=30, interval=0.02, message="both processes answering")
        children = psutil.Process(parent.pid).children()
        everyone = [*children]
        assert len(children) == 2
        # A child that dies is started again.
        children[0].kill()
        await wait_until(lambda: instances_seen(3), timeout=30, interval=0.02, message="a replacement process")
        everyone += psutil.Process(parent.pid).children()
        assert len(psutil.Process(parent.pid).children()) == 2
        client.close()
        parent.send_signal(signal.SIGTERM)
        await notify.wait_for("STOPPING")
        assert parent.wait(20) == 0
        _gone, alive = psutil.wait_procs(everyone, timeout=10)
        assert alive == []
        assert {m.get("MAINPID") for m in notify.received + notify.pending() if "MAINPID" in m} == {str(parent.pid)}
    finally:
        notify.close()
        kill_process(parent)
        for child in everyone:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        log.close()


# --- two web processes and a worker on Redis and PostgreSQL --------------------------------


async def push(web, value: str) -> int:
    response = await AsyncHTTPClient().fetch(
        web.url("/api/widgets/note"),
        method="POST",
        body=json.dumps({"value": value}),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    return json.loads(response.body)["id"]


@pytest.mark.gen_test(timeout=180)
async def test_two_web_processes_and_a_worker_deliver_every_event_and_survive_a_web_death(
    tmp_path, redis_server, pg_url, processes
):
    config = tmp_path / "config.toml"
    config.write_text(config_text(hub=redis_hub(redis_server.url), storage=pg_url, every="50ms"))
    webs = [processes.start(config, "web", wait=False), processes.start(config, "web", wait=False)]
    for web in webs:
        web.wait_ready()
    worker = processes.start(config, "worker")
    widgets = ("walk", "note")
    # Two pages on each web process, from the very first event (Last-Event-ID 0).
    followers = [Follower(widgets) for _ in range(4)]
    try:
        for n, follower in enumerate(followers):
            await follower.connect(webs[n // 2].url("/events/main"), last_event_id=0)
        await wait_until(lambda: all(len(f.ids) >= 20 for f in followers), timeout=30, message="ticks everywhere")
        pushed = [await push(webs[0], "from web 0"), await push(webs[1], "from web 1")]

        kill_process(webs[0].process)
        await wait_until(lambda: all(f.ended for f in followers[:2]), timeout=10, message="web 0's streams ending")
        for follower in followers[:2]:  # the browser reconnects; nginx or DNS sends it to web 1
            await follower.connect(webs[1].url("/events/main"))
        pushed.append(await push(webs[1], "after the death of web 0"))
        mark = max(len(f.ids) for f in followers)
        await wait_until(
            lambda: all(len(f.ids) >= mark + 10 for f in followers),
            timeout=30,
            message="more ticks after the reconnect",
        )
        worker.stop()  # a finite history to compare with
        expected = await pg_ids(pg_url, widgets)
        await wait_until(
            lambda: all(f.ids[-1:] == expected[-1:] for f in followers),
            timeout=30,
            message="every page reaching the last event",
        )
        for follower in followers:
            assert follower.ids == expected  # every event, in order, the same ids, none twice
        assert set(pushed) <= set(expected)
        assert [f.connections for f in followers] == [2, 2, 1, 1]
    finally:
        for follower in followers:
            await follower.close()


# --- the systemd units ----------------------------------------------------------------------

UNITS = {"dashboard-web@.service": "dashboard-web@8001.service", "dashboard-worker.service": "dashboard-worker.service"}


def test_the_scale_out_units_pass_systemd_analyze_verify(tmp_path):
    import shutil

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    paths = []
    for name, instance in UNITS.items():
        # verify checks that the binaries exist: the copies point at this virtualenv's console script.
        text = (
            (ROOT / "deploy" / name)
            .read_text()
            .replace("/opt/dashboard/bin/dashboard", str(Path(sys.executable).parent / "dashboard"))
        )
        paths.append(tmp_path / instance)
        paths[-1].write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", *map(str, paths)], capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def unit_lines(name: str) -> dict[str, str]:
    return {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in (ROOT / "deploy" / name).read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }


def test_the_web_unit_takes_its_port_from_the_instance_name_and_the_worker_runs_the_tickers():
    web, worker = unit_lines("dashboard-web@.service"), unit_lines("dashboard-worker.service")
    assert web["ExecStart"].endswith("serve --config /etc/dashboard/config.toml --role web --port %i")
    assert "--role worker" in worker["ExecStart"]
    for unit in (web, worker):
        assert unit["Type"] == "notify" and unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
        assert unit["RestartPreventExitStatus"] == "2"  # a config error is not mended by restarting
    # The nginx example proxies to the ports the web units are shown with.
    site = (ROOT / "deploy" / "nginx-dashboard.conf").read_text()
    assert "server 127.0.0.1:8001 " in site and "server 127.0.0.1:8002 " in site
    assert "dashboard-web@8001 dashboard-web@8002" in (ROOT / "deploy" / "dashboard-web@.service").read_text()
