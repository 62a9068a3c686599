"""Alerts in headless Chromium: the alerts view and the widget's mark update live; a page
opened late shows what is open; rotation stops on the dashboard holding a crit alert
and moves on once it resolves or is acknowledged; the Ack button works for a signed-in
viewer and is absent for an anonymous one; a browser notification (and a beep) when
the dashboard opts in and the viewer allowed it."""

from __future__ import annotations

import json

import pytest

from tests.alerting import alert_table
from tests.browser.browsing import csp_violations, open_live, open_page, wait_live, watched_page
from tests.configs import dashboard, loopback_server, push_widget, table, widget
from tests.test_auth import ALICE_HASH, ALICE_PASSWORD, PUSH_TOKEN, SECRET
from tests.webclient import WebClient


def config_text(*, main: dict | None = None, auth: str = "public", extra: str = "") -> str:
    return (
        loopback_server(grace="1s")
        + table("api", tokens={"test": PUSH_TOKEN})
        + table("auth", secret=SECRET, users={"alice": ALICE_HASH})
        + dashboard("main", ["cpu", "notes", "board"], title="Main", auth=auth, **(main or {}))
        + dashboard("other", ["notes"], title="Other")
        + push_widget("cpu", "number", title="CPU", warn=70, crit=90, unit="%", every="1h")
        + alert_table("cpu")
        + push_widget("notes", "text", title="Notes", every="1h")
        + widget("board", "alerts", title="Alerts")
        + extra
    )


async def text(page, selector: str) -> str:
    return await page.eval_on_selector(selector, "el => el.textContent")


async def rows(page) -> list[str]:
    return await page.eval_on_selector_all(
        "#w-board .alert-row",
        "els => els.map(e => e.querySelector('.alert-severity').textContent + ' ' + e.querySelector('.alert-title').textContent)",
    )


async def wait_rows(page, expected: list[str]) -> None:
    await page.wait_for_function(
        """(expected) => JSON.stringify([...document.querySelectorAll('#w-board .alert-row')].map(
            e => e.querySelector('.alert-severity').textContent + ' ' + e.querySelector('.alert-title').textContent)
            ) === JSON.stringify(expected)""",
        arg=expected,
        timeout=10_000,
    )


@pytest.mark.gen_test(timeout=90)
async def test_the_alerts_view_and_the_widget_mark_update_live(servers, browser):
    server = await servers.start(config_text())
    page, log = await watched_page(browser, server.url("/d/main"))
    await wait_live(page)
    assert await page.is_visible("#w-board .alert-none")
    await server.record("cpu", 80)
    await wait_rows(page, ["▲ WARN CPU"])
    assert await text(page, "#w-cpu [data-role=alert-mark]") == "▲ WARN"
    await server.record("cpu", 95)
    await wait_rows(page, ["▲ CRIT CPU"])  # its warn fires too, but the crit says more
    classes = await page.get_attribute("#w-cpu", "class")
    assert "has-alert" in classes and "alert--crit" in classes
    assert await text(page, "#w-cpu [data-role=alert-mark]") == "▲ CRIT"
    assert "CPU 95 % is above crit (90 %)" in await text(page, "#w-board .alert-row")
    assert await page.is_hidden("#w-board .alert-none")
    assert await page.locator("button[data-ack]").count() == 0  # an anonymous viewer: no Ack button
    await server.record("cpu", 10)
    await wait_rows(page, [])
    assert "has-alert" not in await page.get_attribute("#w-cpu", "class")
    assert await text(page, "#w-cpu [data-role=alert-mark]") == ""
    assert await page.is_visible("#w-board .alert-none")
    assert await csp_violations(page) == []
    assert log.problems() == []


@pytest.mark.gen_test(timeout=90)
async def test_a_page_opened_late_shows_what_fires_even_without_javascript(servers, browser):
    server = await servers.start(config_text())
    await server.record("cpu", 95)
    client = WebClient(server.port)
    headers = {"Authorization": f"Bearer {PUSH_TOKEN}"}

    async def firing() -> bool:
        return bool((await client.get("/api/alerts?state=firing", headers)).json()["firing"])

    from tests.helpers import wait_until

    await wait_until(firing, message="the alerts to fire")
    page, _ = await open_page(browser, server.url("/d/main"), java_script_enabled=False)
    assert await text(page, "#w-cpu [data-role=alert-mark]") == "▲ CRIT"
    assert "alert--crit" in await page.get_attribute("#w-cpu", "class")
    assert await rows(page) == ["▲ CRIT CPU"]
    live, log = await open_live(browser, server.url("/d/main"))
    await wait_rows(live, ["▲ CRIT CPU"])
    assert log.problems() == []


@pytest.mark.gen_test(timeout=120)
async def test_rotation_stops_on_a_crit_alert_and_moves_on_once_resolved_or_acknowledged(servers, browser):
    server = await servers.start(config_text(main={"rotate": "1s"}))
    await server.record("cpu", 95)
    page, log = await open_live(browser, server.url("/d/main?kiosk=1"))
    await page.wait_for_function("() => document.documentElement.dataset.rotation === 'held'", timeout=10_000)
    await page.wait_for_timeout(1500)  # well past the rotation's second: still here
    assert page.url == server.url("/d/main?kiosk=1")
    await server.record("cpu", 50)  # resolved
    await page.wait_for_url("**/d/other?kiosk=1", timeout=10_000)

    # Again, and this time it is acknowledged.
    await server.record("cpu", 96)
    await page.goto(server.url("/d/main?kiosk=1"))
    await wait_live(page)
    await page.wait_for_function("() => document.documentElement.dataset.rotation === 'held'", timeout=10_000)
    body = (
        await WebClient(server.port).get(
            "/api/alerts?state=firing&widget=cpu", {"Authorization": f"Bearer {PUSH_TOKEN}"}
        )
    ).json()
    crit = next(a for a in body["alerts"] if a["condition"] == "crit")
    acked = await WebClient(server.port).request(
        "POST",
        f"/api/alerts/{crit['id']}/ack",
        {"Authorization": f"Bearer {PUSH_TOKEN}", "Content-Type": "application/json"},
        json.dumps({"by": "bob"}).encode(),
    )
    assert acked.status == 200
    await page.wait_for_url("**/d/other?kiosk=1", timeout=10_000)
    assert log.problems() == []


@pytest.mark.gen_test(timeout=120)
async def test_the_ack_button_works_for_a_signed_in_viewer(servers, browser):
    server = await servers.start(config_text(auth="password"))
    await server.record("cpu", 95)
    page, log = await watched_page(browser, server.url("/login?next=%2Fd%2Fmain"))
    await page.fill("#name", "alice")
    await page.fill("#password", ALICE_PASSWORD)
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    await wait_live(page)
    await wait_rows(page, ["▲ CRIT CPU"])
    # A second page of the same viewer, open before the acknowledgement.
    other = await page.context.new_page()
    await other.goto(server.url("/d/main"))
    await wait_live(other)
    await wait_rows(other, ["▲ CRIT CPU"])
    crit = page.locator("#w-board .alert-row--crit")
    await crit.locator("button[data-ack]").click()
    await page.wait_for_function(
        "() => document.querySelector('#w-board .alert-row--crit .alert-note')?.textContent.startsWith('acknowledged by alice')",
        timeout=10_000,
    )
    assert await crit.locator("button[data-ack]").count() == 0
    assert await text(page, "#w-cpu [data-role=alert-mark]") == "✓ CRIT · acked"
    assert "is-acked" in await page.get_attribute("#w-cpu", "class")
    # The other page hears it from the stream.
    await other.wait_for_function(
        "() => document.querySelector('#w-cpu [data-role=alert-mark]')?.textContent === '✓ CRIT · acked'",
        timeout=10_000,
    )
    assert await other.locator("button[data-ack]").count() == 0
    assert await csp_violations(page) == []
    assert log.problems() == []


@pytest.mark.gen_test(timeout=90)
async def test_a_browser_notification_and_a_beep_when_the_dashboard_opts_in(servers, browser):
    server = await servers.start(config_text(main={"alert_sound": True, "alert_notifications": True}))
    page, log = await open_page(browser, permissions=["notifications"])
    # Record what the page shows, and still show it.
    await page.context.add_init_script(
        """window.__shown = [];
        const Real = window.Notification;
        window.Notification = class extends Real {
          constructor(title, options) { super(title, options); window.__shown.push([title, options.body]); }
        };"""
    )
    await page.goto(server.url("/d/main"))
    await wait_live(page)
    assert await page.evaluate("Notification.permission") == "granted"
    assert await page.is_hidden("#alert-permission")  # nothing left to ask
    await server.record("cpu", 95)
    await page.wait_for_function("() => window.__shown.length === 1", timeout=10_000)
    await wait_rows(page, ["▲ CRIT CPU"])  # the warn fired too, and was kept quiet
    assert await page.evaluate("window.__shown") == [["CRIT: CPU", "CPU 95 % is above crit (90 %)"]]
    assert await page.evaluate("window.dashboard.alerts.beeps") == 1
    assert log.problems() == []


@pytest.mark.gen_test(timeout=90)
async def test_without_permission_the_page_offers_to_ask_for_it(servers, browser):
    server = await servers.start(config_text(main={"alert_notifications": True}))
    page, _ = await open_live(browser, server.url("/d/main"))
    assert await page.evaluate("Notification.permission") == "default"
    assert await page.is_visible("#alert-permission")
    await server.record("cpu", 95)
    await wait_rows(page, ["▲ CRIT CPU"])
    assert await page.evaluate("window.dashboard.alerts.notified") == []  # never without permission
