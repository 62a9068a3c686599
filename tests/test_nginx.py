"""The shipped nginx site (deploy/nginx-dashboard.conf), run by a real nginx in front
of two web processes and a worker (Redis hub, PostgreSQL store): a page through
nginx receives every event, and resumes with Last-Event-ID when the web process
serving it is killed."""

import json
import re
import subprocess
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient

from dashboard.config import parse_duration
from tests.backends import NGINX, ROOT, Follower, free_port, kill_process, pg_ids, stop_process, wait_for_port
from tests.configs import dashboard, loopback_server, push_widgets
from tests.helpers import TOKEN, StreamClient, wait_until
from tests.test_roles import config_text, redis_hub

SITE = ROOT / "deploy" / "nginx-dashboard.conf"


def site_for(upstreams: list[int], listen: int) -> str:
    """The shipped site with its example ports replaced: nothing else changes."""
    text = SITE.read_text()
    servers = re.findall(r"^    server 127\.0\.0\.1:\d+ (.*);$", text, flags=re.M)
    assert len(servers) == 2, "the example upstream lists two web processes"
    text = re.sub(r"^    server 127\.0\.0\.1:\d+ .*;\n", "", text, flags=re.M)
    lines = "".join(f"    server 127.0.0.1:{port} {servers[0]};\n" for port in upstreams)
    text = text.replace("upstream dashboard_web {\n", "upstream dashboard_web {\n" + lines, 1)
    assert "    listen 80;\n" in text
    return text.replace("    listen 80;\n", f"    listen 127.0.0.1:{listen};\n", 1)


def main_config(directory: Path) -> str:
    temp = "".join(
        f"    {kind}_temp_path {directory / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        (
            "user root;\n"  # only as root, where the default user could not enter the test's 0700 temp dir
            if subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() == "0"
            else ""
        )
        + f"""worker_processes 1;
events {{ worker_connections 512; }}
http {{
    access_log {directory / "access.log"};
{temp}    include {directory / "site.conf"};
}}
"""
    )


class Nginx:
    def __init__(self, directory: Path, upstreams: list[int]):
        self.directory = directory
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "site.conf").write_text(site_for(upstreams, self.port))
        (directory / "nginx.conf").write_text(main_config(directory))
        self.log = open(directory / "nginx.log", "wb")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [
                NGINX,
                "-p",
                str(directory),
                "-c",
                str(directory / "nginx.conf"),
                "-g",
                f"daemon off; pid {directory / 'nginx.pid'}; error_log stderr;",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, process=self.process)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


@pytest.fixture
def nginx_for(tmp_path):
    if NGINX is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    started = []

    def start(upstreams: list[int]) -> Nginx:
        server = Nginx(tmp_path / "nginx", upstreams)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def location_block(text: str, prefix: str) -> str:
    return re.search(r"location " + re.escape(prefix) + r" \{(.*?)\n    \}", text, flags=re.S).group(1)


def test_the_site_proxies_streams_unbuffered_with_a_timeout_above_the_keepalive():
    text = SITE.read_text()
    events = location_block(text, "/events")
    assert re.search(r"^\s*proxy_buffering off;$", events, flags=re.M)
    timeout = re.search(r"^\s*proxy_read_timeout (\d+s);$", events, flags=re.M).group(1)
    assert parse_duration(timeout) > parse_duration("15s")  # the default [server] keepalive
    assert "proxy_http_version 1.1;" in text and 'proxy_set_header Connection "";' in text


@pytest.mark.gen_test(timeout=60)
async def test_a_client_cannot_send_the_proxy_user_header_through_the_site(servers, nginx_for):
    # The server believes X-Forwarded-User from nginx (a trusted proxy): the site must
    # drop a client's own, or anyone could name themselves on an auth = "proxy" dashboard.
    text = (
        loopback_server(trusted_proxies=["127.0.0.1"])
        + dashboard("sso", ["a"], auth="proxy", users=["alice"])
        + push_widgets(a="number")
    )
    server = await servers.start(text)
    site = nginx_for([server.port])
    http = AsyncHTTPClient()
    direct = await http.fetch(server.url("/d/sso"), headers={"X-Forwarded-User": "alice"}, raise_error=False)
    assert direct.code == 200  # what the header opens when a trusted proxy sends it
    forged = await http.fetch(site.url("/d/sso"), headers={"X-Forwarded-User": "alice"}, raise_error=False)
    assert forged.code in (401, 403), forged.code
    assert "alice" not in forged.body.decode()


@pytest.mark.gen_test(timeout=60)
async def test_nginx_accepts_the_shipped_site(tmp_path, nginx_for):
    server = nginx_for([free_port(), free_port()])
    result = subprocess.run(
        [
            NGINX,
            "-t",
            "-p",
            str(server.directory),
            "-c",
            str(server.directory / "nginx.conf"),
            "-g",
            f"pid {server.directory / 'nginx-t.pid'}; error_log stderr;",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.gen_test(timeout=180)
async def test_a_page_behind_nginx_gets_every_event_and_resumes_after_a_web_process_dies(
    tmp_path, redis_server, pg_url, processes, nginx_for
):
    config = tmp_path / "config.toml"
    config.write_text(config_text(hub=redis_hub(redis_server.url), storage=pg_url, every="50ms"))
    webs = [processes.start(config, "web", wait=False), processes.start(config, "web", wait=False)]
    for web in webs:
        web.wait_ready()
    processes.start(config, "worker")
    nginx = nginx_for([web.port for web in webs])
    instances = {web.health()["instance"]: web for web in webs}
    widgets = ("walk", "note")
    followers = [Follower(widgets) for _ in range(2)]
    try:
        # The stream's headers survive the proxy: an event stream, not compressed.
        probe = await StreamClient.open(nginx.url("/events/main"), headers={"Accept-Encoding": "gzip"})
        assert (probe.status, probe.headers["content-type"]) == (200, "text/event-stream; charset=utf-8")
        assert "content-encoding" not in probe.headers
        hello = await probe.next_event()
        probe.close()
        assert hello.type == "hello" and json.loads(hello.data)["server"] in instances
        # A stream of some widgets goes through the same location, unbuffered.
        subset = await StreamClient.open(nginx.url("/events?widgets=note"))
        assert subset.status == 200 and (await subset.next_event()).type == "hello"
        subset.close()

        for follower in followers:
            await follower.connect(nginx.url("/events/main"), last_event_id=0)
        await wait_until(lambda: all(len(f.ids) >= 20 for f in followers), timeout=30, message="ticks via nginx")
        pushed = await AsyncHTTPClient().fetch(
            nginx.url("/api/widgets/note"),
            method="POST",
            body=json.dumps({"value": "through nginx"}),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        pushed_id = json.loads(pushed.body)["id"]

        # Kill the web process behind the first page; its pages reconnect through nginx.
        victim = instances[followers[0].hello_server]
        survivor = next(web for web in webs if web is not victim)
        on_victim = [f for f in followers if instances[f.hello_server] is victim]
        kill_process(victim.process)
        await wait_until(lambda: all(f.ended for f in on_victim), timeout=10, message="the streams ending")
        for follower in on_victim:
            await follower.connect(nginx.url("/events/main"))
            assert instances[follower.hello_server] is survivor
        mark = max(len(f.ids) for f in followers)
        await wait_until(
            lambda: all(len(f.ids) >= mark + 10 for f in followers), timeout=30, message="ticks after resuming"
        )

        processes.processes[-1].stop()  # the worker: a finite history to compare with
        expected = await pg_ids(pg_url, widgets)
        await wait_until(
            lambda: all(f.ids[-1:] == expected[-1:] for f in followers),
            timeout=30,
            message="the pages reaching the last event",
        )
        for follower in followers:
            assert follower.ids == expected  # every event, in order, none twice, across the kill
        assert pushed_id in expected
        assert followers[0].connections == 2
    finally:
        for follower in followers:
            await follower.close()
