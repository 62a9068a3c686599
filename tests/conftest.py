import pytest

from tests.helpers import ServerFactory


@pytest.fixture
def servers(tmp_path, io_loop):
    """Start real servers with `await servers.start(...)`; all are stopped at teardown."""
    factory = ServerFactory(tmp_path)
    yield factory
    io_loop.run_sync(factory.stop_all)
