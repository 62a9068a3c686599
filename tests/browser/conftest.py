"""Headless Chromium, driven by Playwright's async API in the test's own event loop,
against the real server from the `servers` fixture.

Without a Chromium these tests skip, saying so; with CI=true they fail instead,
so that a CI image that lost its browser cannot pass by skipping."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    explicit = os.environ.get("DASHBOARD_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def _missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run, not skip)")
    pytest.skip(reason)


@pytest.fixture
def browser(io_loop):
    """A launched Chromium; closed at teardown. Runs in the test's io_loop, so a
    gen_test can await the page and the server alike."""
    executable = find_chromium()
    if executable is None:
        _missing("no Chromium found (install Debian's chromium, or set DASHBOARD_CHROMIUM)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("the playwright package is not installed")

    async def launch():
        playwright = await async_playwright().start()
        try:
            return playwright, await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except Exception:
            await playwright.stop()
            raise

    playwright, chromium = io_loop.run_sync(launch, timeout=60)

    async def close():
        await chromium.close()
        await playwright.stop()

    yield chromium
    io_loop.run_sync(close, timeout=30)
