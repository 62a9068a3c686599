import pytest

from tests.helpers import ServerFactory

# The fixtures of the optional backends (a private Redis, a fresh PostgreSQL database,
# run.py processes), for every test module that names them.
pytest_plugins = ("tests.backends",)


@pytest.fixture
def servers(tmp_path, io_loop):
    """Start real servers with `await servers.start(...)`; all are stopped at teardown."""
    factory = ServerFactory(tmp_path)
    yield factory
    io_loop.run_sync(factory.stop_all)
