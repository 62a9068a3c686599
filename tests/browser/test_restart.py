"""A server restart under an open page: it says so, resumes through Last-Event-ID,
and its graph ends up with every sample, none missing, none twice (its buckets count
each sample once)."""

from __future__ import annotations

import pytest

from dashboard.storage.store import Store
from tests.browser.browsing import open_live, wait_for_value, wait_live
from tests.configs import dashboard, loopback_server, push_widget
from tests.helpers import store_sample

CONFIG = (
    loopback_server(grace="1s")
    + dashboard("main", ["chart", "level"], title="Main")
    + push_widget("chart", "graph", title="Chart", every="1h", history="10m", width=2)
    + push_widget("level", "number", title="Level", every="1h")
)

# What a widget's buckets hold: samples, their sum, the smallest and the largest.
SERIES = """id => {
  const s = window.dashboard.widgets.series.get(id);
  return [s.n.reduce((a, b) => a + b, 0), s.avg.reduce((a, v, i) => a + v * s.n[i], 0),
          Math.min(...s.min), Math.max(...s.max)];
}"""


@pytest.mark.gen_test(timeout=90)
async def test_a_restart_resumes_through_last_event_id_with_no_sample_lost_or_doubled(servers, browser):
    server = await servers.start(CONFIG)
    for value in (1, 2, 3):
        await server.record("chart", value)
    page, log = await open_live(browser, server.url("/d/main"))
    level = await server.record("level", 10)  # arrives live: the browser now has a Last-Event-ID
    await wait_for_value(page, "level", "10")
    streams = []
    page.on("request", lambda request: "/events/" in request.url and streams.append(request))

    port, url = server.port, server.server.config.storage.url
    await server.stop()
    await page.wait_for_function(
        "() => document.getElementById('connection').textContent.startsWith('reconnecting since ')", timeout=10_000
    )
    assert await page.evaluate("document.documentElement.dataset.connection") == "reconnecting"

    # While the server is away, samples keep arriving in its database (another
    # process, say): the page must get every one of them when it comes back.
    store = Store(url)
    await store.open(migrate=False)
    for value in (4, 5, 6, 7, 8):
        await store_sample(store, "chart", value)
    await store.close()

    server = await servers.start(CONFIG, port=port)
    await wait_live(page, timeout=20_000)
    await wait_for_value(page, "chart", "8", timeout=10_000)
    await server.record("chart", 9)
    await wait_for_value(page, "chart", "9", timeout=10_000)

    # Nine samples, 1 to 9: none missing, none twice.
    assert await page.evaluate(SERIES, "chart") == [9, 45, 1, 9]
    # The replay came through Last-Event-ID: the id of the last event the page received.
    resumed = [await r.all_headers() for r in streams]
    assert {h.get("last-event-id") for h in resumed} == {str(level.id)}
    # The graph also asked the series API again for its range: still each sample once.
    await page.wait_for_function("() => window.dashboard.state.backfills >= 1", timeout=5000)
    await page.wait_for_function("() => window.dashboard.widgets.fetching.size === 0", timeout=5000)
    assert await page.evaluate(SERIES, "chart") == [9, 45, 1, 9]
    assert await page.evaluate(SERIES, "level") == [1, 10, 10, 10]
    # While the server was away the browser's reconnect attempts may fail: nothing else may.
    assert log.page_errors == [] and log.bad_responses == []
    assert [e for e in log.console_errors + log.failed_requests if "/events/" not in e] == []


@pytest.mark.gen_test(timeout=90)
async def test_a_reconnect_that_opens_with_a_gap_fetches_the_graphs_once(servers, browser, tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    server = await servers.start(CONFIG, directory=first)
    for value in (1, 2, 3):
        await server.record("chart", value)
    page, log = await open_live(browser, server.url("/d/main"))
    port = server.port
    await server.stop()
    # A server on a fresh database: the page's last id was never issued there, so the
    # stream opens with `gap` and the newest values (here: none yet).
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    server = await servers.start(CONFIG, directory=fresh, port=port)
    await wait_live(page, timeout=20_000)
    await server.record("level", 7)  # the first sample of the new stream
    await wait_for_value(page, "level", "7", timeout=10_000)
    await page.wait_for_function("() => window.dashboard.widgets.fetching.size === 0", timeout=5000)
    assert await page.evaluate("window.dashboard.state.backfills") == 1  # the reconnect's, not a second for the gap
    assert log.page_errors == []
