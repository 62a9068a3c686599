"""Every page of the bundled config.toml, as shipped, in a real browser: no console
error, no failed request, no Content-Security-Policy violation, live values."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dashboard.config import load_config
from tests.browser.browsing import csp_violations, wait_live, watched_page

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.gen_test(timeout=120)
async def test_every_bundled_page_loads_clean_and_goes_live(servers, browser, tmp_path):
    directory = tmp_path / "bundled"
    directory.mkdir()
    shutil.copy(ROOT / "config.toml", directory / "config.toml")
    config_text = (directory / "config.toml").read_text()
    server = await servers.start(config_text, directory=directory, port=0)
    config = load_config(directory / "config.toml")

    paths = ["/"] + [f"/d/{d.id}" for d in config.dashboards] + [f"/d/{config.dashboards[0].id}?kiosk=1"]
    paths.append("/w/usd_eur")  # one widget's page (it ticks every second)
    for path in paths:
        for scheme in ("light", "dark"):
            page, log = await watched_page(browser, server.url(path), color_scheme=scheme)
            if await page.query_selector("#dashboard-data") is None:
                links = await page.eval_on_selector_all(
                    ".dashboard-list a", "els => els.map(a => a.getAttribute('href'))"
                )
                assert links == [f"/d/{d.id}" for d in config.dashboards]
            else:
                await wait_live(page)
                # A value arrives live (the bundled sources tick every few seconds).
                seen = await page.evaluate(
                    "Object.fromEntries([...document.querySelectorAll('.widget')]"
                    ".map(el => [el.id, el.dataset.eventId]))"
                )
                await page.wait_for_function(
                    "seen => [...document.querySelectorAll('.widget')].some(el => el.dataset.eventId !== seen[el.id])",
                    arg=seen,
                    timeout=15_000,
                )
            assert await csp_violations(page) == [], path
            assert log.problems() == [], path
            assert log.dialogs == [], path
            await page.context.close()
