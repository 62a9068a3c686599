import shutil
from pathlib import Path

import pytest

from tests.helpers import ServerFactory

ROOT = Path(__file__).resolve().parent.parent

# The fixtures of the optional backends (a private Redis, a fresh PostgreSQL database,
# run.py processes), for every test module that names them.
pytest_plugins = ("tests.backends", "tests.alerting")


@pytest.fixture
def servers(tmp_path, io_loop):
    """Start real servers with `await servers.start(...)`; all are stopped at teardown."""
    factory = ServerFactory(tmp_path)
    yield factory
    io_loop.run_sync(factory.stop_all)


@pytest.fixture
def bundled_config(tmp_path) -> Path:
    """A copy of the bundled config.toml in a directory of its own: tests read the file
    as shipped, never the checkout's in place (which its user may be editing), and what
    it makes (data/) lands in the temp dir."""
    directory = tmp_path / "bundled"
    directory.mkdir()
    return Path(shutil.copy(ROOT / "config.toml", directory / "config.toml"))
