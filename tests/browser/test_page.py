"""The dashboard page in headless Chromium: first paint, live updates, hostile
values, error and stale states, reload, several dashboards, layout."""

from __future__ import annotations

import json

import pytest

from dashboard.core.events import Reload
from tests.browser.browsing import open_live, open_page, wait_for_text, wait_for_value, wait_live
from tests.configs import dashboard, loopback_server, push_widget, table, widget
from tests.helpers import TOKEN

CONFIG = (
    loopback_server(grace="1s")
    + table("api", tokens={"test": TOKEN})
    + dashboard("main", ["price", "note", "chart", "state", "rows", "gauge", "clock"], title="Main", columns=4)
    + dashboard("other", ["note", "solo"], title="Other", theme="dark")
    + dashboard("pulse", ["beat"], title="Pulse")
    + push_widget("price", "number", title="Price", every="1h", unit="EUR")
    + push_widget("note", "text", title="Note", every="1h")
    + push_widget("chart", "graph", title="Chart", every="1h", history="10m", width=2)
    + push_widget("state", "status", title="State", every="1h")
    + push_widget("rows", "list", title="Rows", every="1h")
    + push_widget("gauge", "meter", title="Gauge", every="1h", min=0, max=100, warn=70, crit=90)
    + widget("clock", "clock", title="Clock", timezone="UTC")
    + push_widget("solo", "number", title="Solo", every="1h")
    + push_widget("beat", "number", title="Beat", every="300ms")
)

HOSTILE = [
    '<img src=x onerror="window.__pwned=1;alert(1)">',
    "</script><script>window.__pwned=1</script>",
    "two\nlines\r\nand a CRLF",
    "a lone\rCR",
    "emoji 🎉👩\u200d💻 and ünïcödé",
    "".join(chr(0x20 + i % 90) for i in range(10 * 1024)),  # 10 KB, with <, >, & and quotes among them
]


async def text_of(page, selector: str) -> str:
    return await page.eval_on_selector(selector, "el => el.textContent")


async def record_all(server) -> None:
    await server.record("price", 1234.5)
    await server.record("note", "hello, world")
    for v in (10, 30, 20):
        await server.record("chart", v)
    await server.record("state", {"state": "warn", "latency_ms": 812, "detail": "slow"})
    await server.record("rows", [{"label": "alpha", "value": 3}, {"label": "beta", "value": 1.5}])
    await server.record("gauge", 75)


@pytest.mark.gen_test(timeout=60)
async def test_first_paint_shows_the_server_rendered_values_without_javascript(servers, browser):
    server = await servers.start(CONFIG)
    await record_all(server)
    page, log = await open_page(browser, server.url("/d/main"), java_script_enabled=False)
    assert await text_of(page, "#w-price [data-role=value]") == "1,234.5"
    assert await text_of(page, "#w-price .unit") == "EUR"
    assert await text_of(page, "#w-note [data-role=value]") == "hello, world"
    assert await text_of(page, "#w-chart [data-role=value]") == "20"
    assert await page.get_attribute("#w-chart polyline", "points") != ""
    assert (await text_of(page, "#w-state [data-role=state-word]")) == "warn"
    assert "812 ms" in await text_of(page, "#w-state [data-role=detail]")
    assert await page.eval_on_selector_all("#w-rows li .label", "els => els.map(e => e.textContent)") == [
        "alpha",
        "beta",
    ]
    assert await text_of(page, "#w-gauge [data-role=value]") == "75"
    assert await page.get_attribute("#w-gauge [data-role=fill]", "stroke-dasharray") == "75.0 100"
    assert "level--warn" in await page.get_attribute("#w-gauge", "class")
    assert "level--warn" in await page.get_attribute("#w-state", "class")
    assert not await page.is_visible("#connection")  # no script, no stream: it would only claim "connecting"
    assert await page.is_visible(".bar noscript .connection")
    assert log.dialogs == []


@pytest.mark.gen_test(timeout=60)
async def test_first_paint_needs_no_stream(servers, browser):
    server = await servers.start(CONFIG)
    await record_all(server)
    page, _ = await open_page(browser)
    await page.route("**/events/**", lambda route: route.abort())
    await page.goto(server.url("/d/main"))
    await page.wait_for_function("() => window.dashboard !== undefined")
    assert await text_of(page, "#w-price [data-role=value]") == "1,234.5"
    assert await text_of(page, "#w-note [data-role=value]") == "hello, world"
    assert await text_of(page, "#w-gauge [data-role=value]") == "75"
    # The script took over the graph: drawn in pixels, with a time axis and a value grid.
    assert await page.eval_on_selector_all("#w-chart .x-label", "els => els.length") >= 2
    assert await page.eval_on_selector_all("#w-chart .y-label", "els => els.length") >= 2
    # Its history from the page's own JSON: the buckets of the configured range, drawn as
    # a band from min to max and a line through the averages.
    series = await page.evaluate("window.dashboard.widgets.series.get('chart')")
    assert sum(series["n"]) == 3 and (min(series["min"]), max(series["max"])) == (10, 30)
    assert await page.eval_on_selector_all("#w-chart path.band", "els => els.length") == 1
    assert await page.eval_on_selector_all("#w-chart path.line", "els => els.length") == 1


@pytest.mark.gen_test(timeout=60)
async def test_a_new_sample_shows_within_a_second_in_its_own_widget_only(servers, browser):
    server = await servers.start(CONFIG)
    await record_all(server)
    page, log = await open_live(browser, server.url("/d/main"))
    before = await page.evaluate(
        "[...document.querySelectorAll('.widget:not(.view-clock)')]"
        ".map(el => [el.id, el.dataset.eventId, el.querySelector('.body').textContent])"
    )
    sample = await server.record("price", 99.5)
    await wait_for_value(page, "price", "99.5", timeout=1000)
    after = await page.evaluate(
        "[...document.querySelectorAll('.widget:not(.view-clock)')]"
        ".map(el => [el.id, el.dataset.eventId, el.querySelector('.body').textContent])"
    )
    changed = [a[0] for a, b in zip(after, before, strict=True) if a != b]
    assert changed == ["w-price"]
    assert await page.get_attribute("#w-price", "data-event-id") == str(sample.id)
    assert await text_of(page, "#w-price [data-role=change]") == "▼ -91.94%"
    assert log.problems() == []


@pytest.mark.gen_test(timeout=90)
async def test_hostile_values_are_shown_as_text_and_never_run(servers, browser):
    server = await servers.start(CONFIG)
    # Rendered by the server: with scripts off, so that what shows is the markup alone.
    for value in HOSTILE:
        await server.record("note", value)
        page, log = await open_page(browser, server.url("/d/main"), java_script_enabled=False)
        assert await text_of(page, "#w-note [data-role=value]") == value
        assert await page.eval_on_selector_all("#w-note img, #w-note script", "els => els.length") == 0
        await page.context.close()

    # Arriving live, through the stream and the renderers.
    page, log = await open_live(browser, server.url("/d/main"))
    scripts = await page.evaluate("document.scripts.length")
    for value in HOSTILE:
        await server.record("note", value)
        await wait_for_value(page, "note", value)
        await server.record("rows", [{"label": value, "value": value[:20]}])
        await wait_for_text(page, "#w-rows .label", value)
        await server.record("state", {"state": "down", "detail": value})
        await wait_for_text(page, "#w-state [data-role=detail]", value)
        await server.record("price", None, status="error", message=value)
        await wait_for_text(page, "#w-price [data-role=message]", value)
    assert await page.evaluate("window.__pwned") is None
    assert await page.evaluate("document.scripts.length") == scripts
    assert await page.eval_on_selector_all(".widget img, .widget script", "els => els.length") == 0
    assert log.dialogs == []

    # And rendered by the server again, now with the script running over it.
    page, log = await open_live(browser, server.url("/d/main"))
    assert await text_of(page, "#w-note [data-role=value]") == HOSTILE[-1]
    assert await text_of(page, "#w-rows .label") == HOSTILE[-1]
    assert await page.evaluate("window.__pwned") is None
    assert log.dialogs == []


@pytest.mark.gen_test(timeout=60)
async def test_a_failing_source_shows_its_error_then_recovers(servers, browser):
    server = await servers.start(CONFIG)
    await server.record("price", 5)
    page, log = await open_live(browser, server.url("/d/main"))
    assert "is-error" not in await page.get_attribute("#w-price", "class")

    await server.record("price", 5, status="error", message="upstream timed out")
    await page.wait_for_function(
        "() => document.querySelector('#w-price').classList.contains('is-error')", timeout=5000
    )
    assert await text_of(page, "#w-price [data-role=message]") == "upstream timed out"
    assert await text_of(page, "#w-price [data-role=badge]") == "error"
    assert await text_of(page, "#w-price [data-role=value]") == "5"  # the last good value stays
    assert await page.is_visible("#w-price [data-role=message]")

    await server.record("price", 6)
    await page.wait_for_function(
        "() => !document.querySelector('#w-price').classList.contains('is-error')", timeout=5000
    )
    assert await text_of(page, "#w-price [data-role=message]") == ""
    assert await text_of(page, "#w-price [data-role=badge]") == ""
    assert await text_of(page, "#w-price [data-role=value]") == "6"
    assert not await page.is_visible("#w-price [data-role=message]")
    assert log.problems() == []


@pytest.mark.gen_test(timeout=60)
async def test_a_widget_silent_for_three_intervals_is_stale_until_it_updates(servers, browser):
    server = await servers.start(CONFIG)
    await server.record("beat", 1)
    page, log = await open_live(browser, server.url("/d/pulse"))
    stale = "document.querySelector('#w-beat').classList.contains('is-stale')"
    stale_now = f"() => {stale}"
    await page.wait_for_function(stale_now, timeout=5000)  # 300ms interval: stale after 0.9 s of silence
    assert await text_of(page, "#w-beat [data-role=badge]") == "stale"
    assert (await text_of(page, "#w-beat [data-role=updated]")).startswith("updated ")

    await server.record("beat", 2)
    await page.wait_for_function(f"() => !{stale}", timeout=1000)
    assert await text_of(page, "#w-beat [data-role=badge]") == ""
    assert await text_of(page, "#w-beat [data-role=value]") == "2"
    assert log.problems() == []


@pytest.mark.gen_test(timeout=60)
async def test_a_reload_event_reloads_the_page_once(servers, browser):
    server = await servers.start(CONFIG)
    await server.record("price", 1)
    page, log = await open_live(browser, server.url("/d/main"))
    loads = []
    page.on("load", lambda _: loads.append(1))
    await page.evaluate("window.__before_reload = true")

    server.runtime.hub.send_control("main", Reload())
    await page.wait_for_function(
        "() => window.__before_reload === undefined && window.dashboard !== undefined", timeout=5000
    )
    await wait_live(page)
    assert len(loads) == 1

    # The reloaded page was rendered after the reload event, which its stream replays:
    # it must skip it. A sample sent after it arriving proves the skip happened.
    await page.evaluate("window.__after_reload = true")
    await server.record("price", 2)
    await wait_for_value(page, "price", "2")
    assert await page.evaluate("window.__after_reload") is True
    assert len(loads) == 1
    assert log.problems() == []


@pytest.mark.gen_test(timeout=60)
async def test_a_reload_sent_to_another_dashboard_leaves_this_one_alone(servers, browser):
    server = await servers.start(CONFIG)
    page, _ = await open_live(browser, server.url("/d/main"))
    await page.evaluate("window.__kept = true")
    server.runtime.hub.send_control("other", Reload())
    await server.record("price", 3)
    await wait_for_value(page, "price", "3")
    assert await page.evaluate("window.__kept") is True


@pytest.mark.gen_test(timeout=60)
async def test_the_index_links_every_dashboard_and_each_streams_only_its_widgets(servers, browser):
    server = await servers.start(CONFIG)
    index, log = await open_page(browser, server.url("/"))
    links = await index.eval_on_selector_all(
        ".dashboard-list a", "els => els.map(a => [a.getAttribute('href'), a.querySelector('.name').textContent])"
    )
    assert links == [["/d/main", "Main"], ["/d/other", "Other"], ["/d/pulse", "Pulse"]]
    await index.click("text=Other")
    await index.wait_for_url("**/d/other")
    await wait_live(index)
    other = index

    main, main_log = await open_live(browser, server.url("/d/main"))
    assert await main.query_selector("#w-solo") is None
    await main.evaluate("window.dashboard.source.addEventListener('solo', () => { window.__got_solo = true; })")

    await server.record("solo", 7)
    await wait_for_value(other, "solo", "7")
    await server.record("note", "on both")  # sent after solo: when it arrives, solo would have
    await wait_for_value(main, "note", "on both")
    await wait_for_value(other, "note", "on both")
    assert await main.evaluate("window.__got_solo") is None
    assert log.problems() == [] and main_log.problems() == []


@pytest.mark.gen_test(timeout=60)
async def test_layout_follows_the_config_and_a_phone_gets_one_column(servers, browser):
    server = await servers.start(CONFIG)
    page, _ = await open_page(browser, server.url("/d/main"), viewport={"width": 1600, "height": 900})
    order = await page.eval_on_selector_all(".grid > .widget", "els => els.map(e => e.dataset.widget)")
    assert order == ["price", "note", "chart", "state", "rows", "gauge", "clock"]
    boxes = {
        w: await page.eval_on_selector(
            f"#w-{w}", "e => { const r = e.getBoundingClientRect(); return [r.x, r.width]; }"
        )
        for w in ("price", "note", "chart")
    }
    gap = boxes["note"][0] - (boxes["price"][0] + boxes["price"][1])
    assert boxes["chart"][1] == pytest.approx(2 * boxes["price"][1] + gap, abs=1.5)  # width = 2
    assert await page.eval_on_selector("html", "e => e.className") == "theme-auto"

    phone, _ = await open_page(browser, server.url("/d/main"), viewport={"width": 390, "height": 844})
    lefts = await phone.eval_on_selector_all(
        ".grid > .widget", "els => els.map(e => Math.round(e.getBoundingClientRect().x))"
    )
    assert len(set(lefts)) == 1
    widths = await phone.eval_on_selector_all(
        ".grid > .widget", "els => els.map(e => Math.round(e.getBoundingClientRect().width))"
    )
    assert len(set(widths)) == 1

    # A dashboard's theme wins over the browser's preference.
    dark, _ = await open_page(browser, server.url("/d/other"), color_scheme="light")
    background = await dark.evaluate("getComputedStyle(document.body).backgroundColor")
    light, _ = await open_page(browser, server.url("/d/main"), color_scheme="light")
    assert background != await light.evaluate("getComputedStyle(document.body).backgroundColor")
    auto_dark, _ = await open_page(browser, server.url("/d/main"), color_scheme="dark")
    assert background == await auto_dark.evaluate("getComputedStyle(document.body).backgroundColor")


@pytest.mark.gen_test(timeout=60)
async def test_kiosk_mode_hides_the_chrome_and_rotation_keeps_it(servers, browser):
    config = CONFIG.replace('id = "main"\ntitle = "Main"\n', 'id = "main"\ntitle = "Main"\nrotate = "1s"\n')
    server = await servers.start(config)
    page, log = await open_live(browser, server.url("/d/main?kiosk=1"))
    assert not await page.is_visible(".bar")
    assert not await page.is_visible("#offline")
    await page.wait_for_url("**/d/other?kiosk=1", timeout=10_000)
    assert not await page.is_visible(".bar")
    assert await page.evaluate("window.dashboard.data.rotate") == 0  # "other" does not rotate on
    assert log.problems() == []


@pytest.mark.gen_test(timeout=60)
async def test_the_page_data_block_is_json_and_the_only_inline_script(servers, browser):
    server = await servers.start(CONFIG)
    await server.record("note", "</script><script>window.__pwned=1</script>")
    page, _ = await open_live(browser, server.url("/d/main"))
    inline = await page.eval_on_selector_all("script:not([src])", "els => els.map(e => [e.type, e.id])")
    assert inline == [["application/json", "dashboard-data"]]
    data = json.loads(await page.eval_on_selector("#dashboard-data", "e => e.textContent"))
    assert data["dashboard"] == "main" and isinstance(data["lastEventId"], int)
    handlers = await page.evaluate(
        "[...document.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name))"
        ".filter(n => n.startsWith('on') || n === 'style')"
    )
    assert handlers == []


@pytest.mark.gen_test(timeout=60)
async def test_change_colours_follow_the_widgets_thresholds_and_a_percentage_changes_by_points(servers, browser):
    config = (
        loopback_server(grace="1s")
        + table("api", tokens={"test": TOKEN})
        + dashboard("main", ["load", "free", "queue"])
        + push_widget("load", "number", every="1h", unit="%", decimals=0, warn=70, crit=90)  # high is bad
        + push_widget("free", "number", every="1h", unit="GB", warn=20, crit=10)  # low is bad
        + push_widget("queue", "number", every="1h")  # no thresholds: no judgement
    )
    server = await servers.start(config)
    for widget_id, value in (("load", 50), ("free", 100), ("queue", 10)):
        await server.record(widget_id, value)
    page, log = await open_live(browser, server.url("/d/main"))

    async def change(widget_id: str) -> tuple[str, str]:
        selector = f"#w-{widget_id} [data-role=change]"
        return await text_of(page, selector), await page.get_attribute(selector, "class")

    await server.record("load", 40)  # falling load: good news, in points
    await wait_for_value(page, "load", "40")
    assert await change("load") == ("▼ -10.0 pts", "change change--down change--good")
    await server.record("free", 80)  # falling free space: bad news
    await wait_for_value(page, "free", "80")
    assert await change("free") == ("▼ -20.00%", "change change--down change--bad")
    await server.record("queue", 20)
    await wait_for_value(page, "queue", "20")
    assert await change("queue") == ("▲ +100.00%", "change change--up change--neutral")
    # A fresh page says the same as the live one.
    fresh, _ = await open_live(browser, server.url("/d/main"))
    for widget_id in ("load", "free", "queue"):
        selector = f"#w-{widget_id} [data-role=change]"
        assert (await text_of(fresh, selector), await fresh.get_attribute(selector, "class")) == await change(widget_id)
    assert log.problems() == []
