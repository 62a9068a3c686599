"""The package as a user gets it: `python -m build` makes a wheel and an sdist; the
wheel, installed with its dependencies into a fresh virtualenv, serves from another
directory through its `dashboard` command (page, live stream, migrated database),
and a broken install says so in one line.

Slow (a build, an install from the package index or pip's cache): marked `slow`,
and part of the default run all the same."""

from __future__ import annotations

import email
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import venv
import zipfile
from contextlib import closing
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient

from dashboard import __version__
from tests.backends import free_port
from tests.helpers import StreamClient, data, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DIST = "sse_dashboard"
RESOURCES = ("templates", "static", "migrations")


def resource_files() -> list[str]:
    """Every file of the checkout's templates/, static/ and migrations/, as the wheel must hold it."""
    return sorted(
        f"dashboard/{path.relative_to(ROOT).as_posix()}"
        for folder in RESOURCES
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )


def head_revision() -> str:
    revisions = [
        re.search(r'^revision = "([^"]+)"', path.read_text(), re.M)[1]
        for path in (ROOT / "migrations" / "versions").glob("*.py")
    ]
    return max(revisions)


def run(argv: list, *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", out, ROOT], timeout=600)
    return out


@pytest.fixture(scope="module")
def installed(dist, tmp_path_factory) -> Path:
    """A fresh virtualenv (no system site-packages, no checkout on its path) with the wheel
    and its dependencies in it; its directory."""
    directory = tmp_path_factory.mktemp("venv")
    venv.create(directory, with_pip=True)
    (wheel,) = dist.glob("*.whl")
    run([directory / "bin" / "pip", "install", "--quiet", wheel], timeout=900, env=clean_env())
    return directory


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def test_the_wheel_carries_templates_static_files_migrations_and_the_licence(dist):
    (wheel,) = dist.glob(f"{DIST}-{__version__}-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = email.message_from_bytes(archive.read(f"{DIST}-{__version__}.dist-info/METADATA"))
        entry_points = archive.read(f"{DIST}-{__version__}.dist-info/entry_points.txt").decode()
    missing = [name for name in resource_files() if name not in names]
    assert not missing, f"the wheel lacks {missing}: see [tool.setuptools] package-data in pyproject.toml"
    assert f"{DIST}-{__version__}.dist-info/licenses/LICENSE" in names
    assert metadata["Name"] == "sse-dashboard" and metadata["License-Expression"] == "MIT"
    assert "dashboard = dashboard.service.cli:main" in entry_points
    assert not any(name.startswith(("tests/", "templates/", "static/", "migrations/")) for name in names)


def test_the_sdist_builds_the_same_wheel_and_brings_the_bundled_config(dist):
    (sdist,) = dist.glob(f"{DIST}-{__version__}.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    wanted = [f.removeprefix("dashboard/") for f in resource_files()]
    wanted += ["LICENSE", "README.md", "pyproject.toml", "config.toml", "run.py", "deploy/dashboard.service"]
    missing = [name for name in wanted if name not in names]
    assert not missing, f"the sdist lacks {missing}: see MANIFEST.in"


@pytest.mark.gen_test(timeout=900)
async def test_the_installed_wheel_serves_from_another_directory(installed, bundled_config, tmp_path):
    elsewhere = bundled_config.parent  # a copy of the bundled config.toml, far from the checkout
    command = installed / "bin" / "dashboard"
    env = clean_env()
    where = run(
        [installed / "bin" / "python", "-c", "import dashboard; print(dashboard.__file__)"],
        timeout=60,
        cwd=elsewhere,
        env=env,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed), "the installed package, not the checkout"
    check = run([command, "check"], timeout=60, cwd=elsewhere, env=env)
    assert check.stdout.startswith("config.toml: ok (")

    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [str(command), "serve", "--port", str(port)], cwd=elsewhere, env=env, stdout=stderr, stderr=stderr
        )
    http = AsyncHTTPClient()
    try:

        async def healthy():
            assert process.poll() is None, f"the installed server exited:\n{log.read_text()}"
            try:
                return (await http.fetch(f"http://127.0.0.1:{port}/healthz", raise_error=False)).code == 200
            except OSError:
                return False

        await wait_until(healthy, timeout=60, interval=0.1, message="the installed server's /healthz")
        page = await http.fetch(f"http://127.0.0.1:{port}/")
        assert page.code == 200 and b"dashboard-data" in page.body
        script = re.search(rb'<script type="module" src="([^"]+)"', page.body)[1].decode()
        assert (await http.fetch(f"http://127.0.0.1:{port}{script}")).code == 200
        client = await StreamClient.open(f"http://127.0.0.1:{port}/events/main")
        try:
            assert client.status == 200
            assert (await client.next_event(timeout=10)).type == "hello"
            # A live value: the bundled rate ticks every second, after the current values.
            first = await client.next_widget_event(timeout=10)
            while int((event := await client.next_widget_event(timeout=10)).last_event_id) <= int(first.last_event_id):
                pass
            assert data(event)["widget"] == event.type
        finally:
            client.close()

        async def self_check():
            widget = await http.fetch(f"http://127.0.0.1:{port}/api/widgets/self_check")
            return json.loads(widget.body)["sample"]

        sample = await wait_until(self_check, timeout=30, interval=0.2, message="the self check")
        assert sample["value"]["state"] == "ok", sample
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text()
    with closing(sqlite3.connect(elsewhere / "data" / "dashboard.db")) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
        assert db.execute("SELECT count(*) FROM samples").fetchone()[0] > 0


def test_python_m_dashboard_is_the_same_command(installed, tmp_path):
    result = run([installed / "bin" / "python", "-m", "dashboard", "--help"], timeout=60, cwd=tmp_path, env=clean_env())
    assert result.stdout.startswith("usage: python -m dashboard ")


def test_an_install_missing_its_templates_says_so_in_one_line(installed, bundled_config, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(installed, broken, symlinks=True)
    (package,) = (broken / "lib").glob("python3*/site-packages/dashboard")
    shutil.rmtree(package / "templates")
    # The copied venv's scripts name the original's python: run the package with the copy's.
    result = subprocess.run(
        [str(broken / "bin" / "python"), "-m", "dashboard", "serve", "--port", str(free_port())],
        cwd=bundled_config.parent,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.endswith(
        f"cannot start: the templates folder is missing: not in the package ({package / 'templates'}) nor in "
        f"a checkout ({package.parent / 'templates'}); install the package again (pip install --force-reinstall)"
    ), line
