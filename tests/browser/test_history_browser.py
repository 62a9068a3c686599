"""Long ranges in headless Chromium: a graph whose widget holds 30 days shows 30 days;
zooming fetches a finer series and "back" returns; the range buttons fetch theirs; a
wall screen keeps its configured range; the uptime bar matches the stored states."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from dashboard.storage.importer import import_file
from tests.browser.browsing import open_live
from tests.configs import dashboard, loopback_server, push_widget, table
from tests.helpers import TOKEN

DAY = 86400
CONFIG = (
    loopback_server(grace="1s")
    + table("api", tokens={"test": TOKEN})
    + dashboard("main", ["month", "up"], title="History", columns=2)
    + push_widget("month", "graph", title="Month", every="10m", history="30d", width=2, height=2)
    + push_widget("up", "status", title="Up", every="1m", history="1h", width=2)
)
# One state a minute for the last hour: 35 ok, 10 warn, 5 down, 10 ok.
STATES = ["ok"] * 35 + ["warn"] * 10 + ["down"] * 5 + ["ok"] * 10


async def thirty_days(server, tmp_path) -> float:
    """A value every 10 minutes for 30 days, imported; the time of the first."""
    now = time.time()
    first = now - 30 * DAY + 600
    data = tmp_path / "month.csv"
    rows = [f"month,{first + 600 * i:.0f},{(i % 144) / 1.44:.2f}" for i in range(int((now - first) // 600))]
    data.write_text("widget,ts,value\n" + "\n".join(rows) + "\n")
    assert await import_file(server.runtime.store, server.runtime.config, data) == len(rows)
    return first


async def chart_window(page) -> tuple[float, float, float]:
    """The drawn chart's start, end and bucket step, in seconds."""
    start, end, step = await page.eval_on_selector(
        "#w-month [data-role=chart]", "el => [el.dataset.start, el.dataset.end, el.dataset.step].map(Number)"
    )
    return start / 1000, end / 1000, step / 1000


async def series_answer(page, action):
    async with page.expect_response(lambda r: "/api/widgets/month/series" in r.url) as info:
        await action()
    response = await info.value
    assert response.status == 200
    return json.loads(await response.body())


@pytest.mark.gen_test(timeout=120)
async def test_a_graph_of_thirty_days_shows_thirty_days_and_zooms_in_and_back(servers, browser, tmp_path):
    server = await servers.start(CONFIG, directory=tmp_path)
    first = await thirty_days(server, tmp_path)
    page, log = await open_live(browser, server.url("/d/main"), viewport={"width": 1400, "height": 900})
    start, end, step = await chart_window(page)
    assert end - start == pytest.approx(30 * DAY, abs=60)
    assert step >= 3600  # from the hourly rollups: hundreds of buckets, not 4,300 samples
    series = await page.evaluate("window.dashboard.widgets.series.get('month')")
    assert series["t"][0] / 1000 <= first + step and sum(series["n"]) > 4000
    # Day labels under a month, and a band with its line across the whole width.
    labels = await page.eval_on_selector_all("#w-month .x-label", "els => els.map(e => e.textContent)")
    assert len(labels) >= 3
    left, right = await page.eval_on_selector(
        "#w-month [data-role=chart]",
        "el => { const b = el.querySelector('path.line').getBBox(); return [b.x, b.x + b.width]; }",
    )
    width = await page.eval_on_selector("#w-month [data-role=chart]", "el => el.getBoundingClientRect().width")
    assert right - left > 0.85 * width

    # Drag across the middle of the chart: a finer series for that stretch.
    box = await (await page.query_selector("#w-month [data-role=chart]")).bounding_box()
    y = box["y"] + box["height"] / 2

    async def drag():
        await page.mouse.move(box["x"] + box["width"] * 0.45, y)
        await page.mouse.down()
        await page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
        await page.mouse.up()

    zoomed = await series_answer(page, drag)
    assert zoomed["step"] < series["step"]
    await page.wait_for_function("() => document.querySelector('#w-month [data-role=back]').hidden === false")
    zoom_start, zoom_end, zoom_step = await chart_window(page)
    assert zoom_end - zoom_start < 3 * DAY and zoom_step * 1000 == zoomed["step"]
    assert start < zoom_start < zoom_end < end
    # And back to the month.
    await series_answer(page, lambda: page.click("#w-month [data-role=back]"))
    await page.wait_for_function("() => document.querySelector('#w-month [data-role=back]').hidden === true")
    again_start, again_end, _ = await chart_window(page)
    assert again_end - again_start == pytest.approx(30 * DAY, abs=120)

    # A range button: the last 24 hours, finer again.
    day = await series_answer(page, lambda: page.click("#w-month button[data-range='86400']"))
    assert day["step"] <= 300_000
    assert await page.get_attribute("#w-month button[data-range='86400']", "aria-pressed") == "true"
    day_start, day_end, _ = await chart_window(page)
    assert day_end - day_start == pytest.approx(DAY, abs=60)
    assert log.problems() == []


@pytest.mark.gen_test(timeout=120)
async def test_a_wall_screen_keeps_the_configured_range(servers, browser, tmp_path):
    server = await servers.start(CONFIG, directory=tmp_path)
    await thirty_days(server, tmp_path)
    page, log = await open_live(browser, server.url("/d/main?kiosk=1"), viewport={"width": 1400, "height": 900})
    assert await page.query_selector("#w-month [data-role=ranges]") is None
    fetched = []
    page.on("request", lambda r: "/series" in r.url and fetched.append(r.url))
    box = await (await page.query_selector("#w-month [data-role=chart]")).bounding_box()
    await page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2, steps=5)
    await page.mouse.up()
    await page.evaluate("() => new Promise(r => setTimeout(r, 300))")  # a fetch would have started by now
    assert fetched == []
    start, end, _ = await chart_window(page)
    assert end - start == pytest.approx(30 * DAY, abs=60)
    assert log.problems() == []


@pytest.mark.gen_test(timeout=120)
async def test_the_uptime_bar_matches_the_stored_states(servers, browser, tmp_path):
    server = await servers.start(CONFIG, directory=tmp_path)
    # The bar's hour ends at the page's "now", read by the browser's clock, which a test
    # cannot drive: a minute that turns between the import and the page would take the
    # oldest sample out of the hour. Late in a minute, the next one is waited for.
    if time.time() % 60 > 40:
        await asyncio.sleep(60.5 - time.time() % 60)
    minute = int(time.time()) // 60 * 60
    data = tmp_path / "up.ndjson"
    data.write_text(
        "".join(
            json.dumps({"widget": "up", "ts": minute - 60 * (60 - i) + 30, "value": {"state": state, "latency_ms": i}})
            + "\n"
            for i, state in enumerate(STATES)
        )
    )
    assert await import_file(server.runtime.store, server.runtime.config, data) == len(STATES)
    page, log = await open_live(browser, server.url("/d/main"))
    segments = "els => els.map(e => [e.getAttribute('class'), e.querySelector('title').textContent])"
    shown = await page.eval_on_selector_all("#w-up [data-role=uptime] rect", segments)
    # A segment a minute, coloured by its state, its ok share on hover.
    assert [cls for cls, _ in shown][-len(STATES) :] == [f"seg seg--{state}" for state in STATES]
    assert all(
        title.startswith("100.0 % ok · " if state == "ok" else "0.0 % ok · ")
        for state, (_, title) in zip(STATES, shown[-len(STATES) :], strict=True)
    )
    # A live "down" joins the newest minute, which turns down.
    await server.record("up", {"state": "down"})
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#w-up [data-role=uptime] rect')].pop().getAttribute('class') === 'seg seg--down'"
    )
    assert log.problems() == []
