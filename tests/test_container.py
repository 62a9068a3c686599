"""The container: the image built and run where a container engine works (page, live
stream, health, a graceful stop on SIGTERM); everywhere, the parts that run without
one: the image's health check command against a real server, and the compose
example's config checked for both of its roles."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from tornado.httpclient import AsyncHTTPClient

from tests.helpers import StreamClient, wait_until

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"


def instructions(name: str) -> list[str]:
    """The arguments of every `name` instruction of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [line.split(None, 1)[1] for line in text.splitlines() if line.split(None, 1)[:1] == [name]]


def health_command(port: int) -> list[str]:
    """The image's HEALTHCHECK command, to run here: this Python, the test server's port."""
    (healthcheck,) = instructions("HEALTHCHECK")
    command = json.loads(healthcheck.split("CMD", 1)[1])
    assert command[0] == "python" and "curl" not in healthcheck  # the image has no curl
    return [sys.executable, *(part.replace("127.0.0.1:8888", f"127.0.0.1:{port}") for part in command[1:])]


async def run(command: list[str], timeout: float = 30) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode, output.decode()


def test_the_image_is_built_in_two_stages_and_runs_unprivileged_with_its_data_in_a_volume():
    assert len(instructions("FROM")) == 2  # the build stage (pip, the wheel) stays behind
    assert instructions("USER") == ["dashboard"]
    assert instructions("VOLUME") == ['["/srv/dashboard/data"]']
    assert instructions("STOPSIGNAL") == ["SIGTERM"]
    assert json.loads(instructions("ENTRYPOINT")[0]) == ["dashboard"]
    assert json.loads(instructions("CMD")[-1])[:1] == ["serve"]


@pytest.mark.gen_test(timeout=60)
async def test_the_health_check_command_says_healthy_then_why_not(servers):
    server = await servers.start()
    assert await run(health_command(server.port)) == (0, "")
    await server.stop()  # nothing listens there now
    status, output = await run(health_command(server.port))
    assert status == 1 and output.startswith("unhealthy: <urlopen error [Errno 111] Connection refused>"), output


def test_the_compose_example_runs_web_processes_and_one_worker_on_its_config():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    roles = {
        name: service["command"][service["command"].index("--role") + 1]
        for name, service in services.items()
        if "command" in service and "--role" in service["command"]
    }
    assert roles == {"web": "web", "worker": "worker"}
    for name in roles:
        assert "./compose.toml:/srv/dashboard/config.toml:ro" in services[name]["volumes"]
        assert services[name]["build"]["context"] == ".."
    assert {"redis", "postgres"} <= set(services)


@pytest.mark.parametrize("role", ["web", "worker"])
def test_the_compose_config_checks_for_its_role(tmp_path, role):
    config = Path(shutil.copy(ROOT / "deploy" / "compose.toml", tmp_path / "config.toml"))
    env = {"POSTGRES_PASSWORD": "compose-secret", "DASHBOARD_TOKEN": "a-token-for-the-compose-test"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "check", "--config", str(config), "--role", role],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{config}: ok (1 dashboard(s), 5 widget(s))")
    assert "compose-secret" not in result.stdout + result.stderr


# --- the image itself, where a container engine runs ----------------------------------------


def container_engine() -> str:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no container engine: the docker client is not installed")
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        said = next((line.strip() for line in info.stderr.splitlines() if line.strip()), "no reason given")
        pytest.skip(f"no container engine: `docker info` exits {info.returncode}: {said}")
    return docker


@pytest.mark.slow
@pytest.mark.gen_test(timeout=1200)
async def test_the_image_serves_a_live_page_is_healthy_and_stops_cleanly_on_sigterm():
    docker = container_engine()
    tag = f"dashboard-test:{uuid.uuid4().hex[:12]}"
    name = f"dashboard-test-{uuid.uuid4().hex[:12]}"
    status, output = await run([docker, "build", "-t", tag, str(ROOT)], timeout=1100)
    assert status == 0, output
    try:
        status, output = await run(
            [docker, "run", "-d", "--name", name, "-p", "127.0.0.1::8888", "--health-interval", "1s", tag]
        )
        assert status == 0, output
        _, published = await run([docker, "port", name, "8888/tcp"])
        port = int(published.strip().splitlines()[0].rsplit(":", 1)[1])
        http = AsyncHTTPClient()

        async def health_status():
            _, state = await run([docker, "inspect", "--format", "{{.State.Health.Status}}", name])
            return state.strip() == "healthy"

        await wait_until(health_status, timeout=120, interval=0.5, message="the container to be healthy")
        page = await http.fetch(f"http://127.0.0.1:{port}/")
        assert page.code == 200 and b"dashboard-data" in page.body
        client = await StreamClient.open(f"http://127.0.0.1:{port}/events/main")
        try:
            assert (await client.next_event(timeout=10)).type == "hello"
            await client.next_widget_event(timeout=10)
        finally:
            client.close()
        _, user = await run([docker, "exec", name, "id", "-un"])
        assert user.strip() == "dashboard"
        status, output = await run([docker, "stop", "--time", "20", name], timeout=60)
        assert status == 0, output
        _, exit_code = await run([docker, "inspect", "--format", "{{.State.ExitCode}}", name])
        _, logs = await run([docker, "logs", name])
        assert exit_code.strip() == "0", logs
        assert "stopped" in logs and "Traceback" not in logs
    finally:
        await run([docker, "rm", "-f", name])
        await run([docker, "rmi", "-f", tag])
