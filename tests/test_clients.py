"""Clients this project did not write read our stream through a server restart, with
hostile values, and every event id is checked against the database (tests/clients.py):
Python's httpx-sse here, Node's `eventsource` package from npm (pinned in
tests/package.json and its lockfile, installed with `npm ci`), and a browser's own
EventSource in tests/browser/test_clients_browser.py.

Without node or npm the Node test skips, saying so; with CI=true it fails instead."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.clients import HttpxSseClient, NodeEventSourceClient, read_through_restart

TESTS = Path(__file__).resolve().parent
NODE_SCRIPT = TESTS / "clients" / "eventsource.mjs"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """tests/node_modules, from tests/package-lock.json (`npm ci`), once per session."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        reason = f"{' and '.join(missing)} not found (install Debian's nodejs)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: this test must run, not skip)")
        pytest.skip(reason)
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return TESTS / "node_modules"


@pytest.mark.gen_test(timeout=120)
async def test_httpx_sse_reads_every_event_through_a_restart(servers):
    client = HttpxSseClient()
    try:
        await read_through_restart(servers, client)
    finally:
        await client.stop()


@pytest.mark.gen_test(timeout=120)
async def test_node_eventsource_reads_every_event_through_a_restart(servers, node_modules):
    client = NodeEventSourceClient(str(NODE_SCRIPT), str(TESTS), env={**os.environ})
    try:
        await read_through_restart(servers, client)
    finally:
        await client.stop()
