"""Each authentication mode in headless Chromium, signed in and out; no page breaks
its Content-Security-Policy; hostile values pushed over the API show as text."""

from __future__ import annotations

import json

import pytest

from tests.browser.browsing import csp_violations, wait_for_text, wait_for_value, wait_live, watched_page
from tests.configs import dashboard, push_widgets
from tests.helpers import TOKEN
from tests.test_auth import ALICE_PASSWORD, AUTH_CONFIG, BOB_PASSWORD, LOBBY_TOKEN, with_lifetime
from tests.webclient import WebClient

# The browser is on 127.0.0.1 like the proxy would be: for the proxy-mode test only.
PROXIED_CONFIG = AUTH_CONFIG.replace('trusted_proxies = ["127.0.0.2"]', 'trusted_proxies = ["127.0.0.1"]')


async def sign_in_form(page, name: str, password: str) -> None:
    await page.fill("#name", name)
    await page.fill("#password", password)
    async with page.expect_navigation():
        await page.click("button[type=submit]")


@pytest.mark.gen_test(timeout=120)
async def test_password_mode_signs_in_shows_live_values_and_signs_out(servers, browser):
    server = await servers.start(AUTH_CONFIG)
    page, log = await watched_page(browser, server.url("/d/ops"))
    assert page.url == server.url("/login?next=%2Fd%2Fops")
    assert await csp_violations(page) == []

    await sign_in_form(page, "alice", "wrong password")
    assert await page.text_content(".login-error") == "Wrong user name or password."
    assert await page.input_value("#name") == "alice"
    assert await csp_violations(page) == []

    await sign_in_form(page, "alice", ALICE_PASSWORD)
    assert page.url == server.url("/d/ops")
    await wait_live(page)
    await server.record("c", 1234)
    await wait_for_value(page, "c", "1,234")
    assert (await page.text_content(".account")).split() == ["Signed", "in", "as", "alice", "Sign", "out"]
    # The bar names the dashboards alice may open, and none other.
    links = await page.eval_on_selector_all(".bar nav a", "els => els.map(a => a.getAttribute('href'))")
    assert links == ["/d/open", "/d/ops", "/d/boss"]
    # The session cookie is out of the page's reach.
    assert "dashboard_session" not in await page.evaluate("document.cookie")
    assert await csp_violations(page) == []

    async with page.expect_navigation():
        await page.click(".account button")
    assert page.url == server.url("/login")
    await page.goto(server.url("/d/ops"))
    assert page.url.startswith(server.url("/login"))
    assert await csp_violations(page) == []
    problems = [p for p in log.problems() if "401" not in p]  # the wrong password answered 401
    assert problems == [] and log.dialogs == []


@pytest.mark.gen_test(timeout=120)
async def test_a_page_whose_session_ends_reloads_into_the_login_page(servers, browser):
    server = await servers.start(with_lifetime("4s"))
    page, _log = await watched_page(browser, server.url("/login?next=%2Fd%2Fops"))
    await sign_in_form(page, "bob", BOB_PASSWORD)
    await wait_live(page)
    # The stream sends `reload` when the session ends; the page reloads, the server redirects.
    await page.wait_for_url(server.url("/login?next=%2Fd%2Fops"), timeout=20_000)
    assert await page.is_visible("#password")
    assert await csp_violations(page) == []


@pytest.mark.gen_test(timeout=120)
async def test_a_kiosk_link_opens_the_dashboard_and_leaves_no_token_behind(servers, browser):
    server = await servers.start(AUTH_CONFIG)
    page, log = await watched_page(browser, server.url(f"/d/lobby?kiosk=1&token={LOBBY_TOKEN}"))
    assert page.url == server.url("/d/lobby?kiosk=1")
    await wait_live(page)
    await server.record("b", 7)
    await wait_for_value(page, "b", "7")
    assert LOBBY_TOKEN not in await page.evaluate("location.href + document.documentElement.outerHTML")
    # The address with the token never became a history entry: one back is where the tab began.
    await page.go_back()
    assert page.url == "about:blank"
    await page.go_forward()
    assert page.url == server.url("/d/lobby?kiosk=1")
    assert await page.is_hidden(".account") if await page.query_selector(".account") else True
    assert await csp_violations(page) == []
    assert log.problems() == []
    # A reload, and a new stream, need nothing but the cookie.
    await page.reload()
    await wait_live(page)

    stranger, _stranger_log = await watched_page(browser, server.url("/d/lobby"))
    assert "opens with its kiosk link" in await stranger.text_content("main")
    assert await csp_violations(stranger) == []


async def follow_link_from_another_site(page, server, target: str) -> None:
    """Click a link to `target` on a page of another site: localhost is not 127.0.0.1."""
    await page.goto(f"http://localhost:{server.port}/d/open")
    await page.evaluate(
        """href => { const a = document.createElement("a"); a.href = href; a.id = "away";
                                     a.textContent = "away"; document.body.append(a); }""",
        server.url(target),
    )
    async with page.expect_navigation():
        await page.click("#away")


@pytest.mark.gen_test(timeout=120)
async def test_a_kiosk_link_followed_from_another_site_still_opens(servers, browser):
    server = await servers.start(AUTH_CONFIG)
    page, log = await watched_page(browser)
    await follow_link_from_another_site(page, server, f"/d/lobby?token={LOBBY_TOKEN}")
    await page.wait_for_url(server.url("/d/lobby"))
    await wait_live(page)
    assert await csp_violations(page) == [] and log.problems() == []


@pytest.mark.gen_test(timeout=120)
async def test_a_signed_in_user_following_a_link_from_another_site_stays_signed_in(servers, browser):
    server = await servers.start(AUTH_CONFIG)
    page, log = await watched_page(browser, server.url("/login?next=%2Fd%2Fopen"))
    await sign_in_form(page, "alice", ALICE_PASSWORD)
    await follow_link_from_another_site(page, server, "/d/boss")
    await page.wait_for_url(server.url("/d/boss"))
    await wait_live(page)
    assert await csp_violations(page) == [] and log.problems() == []


@pytest.mark.gen_test(timeout=120)
async def test_proxy_mode_shows_the_dashboard_to_the_user_the_proxy_names(servers, browser):
    server = await servers.start(PROXIED_CONFIG)
    page, log = await watched_page(
        browser, server.url("/d/sso"), extra_http_headers={"X-Forwarded-User": "carol@example.org"}
    )
    await wait_live(page)
    await server.record("e", 5)
    await wait_for_value(page, "e", "5")
    assert await csp_violations(page) == [] and log.problems() == []
    nobody, _ = await watched_page(browser, server.url("/d/sso"))
    assert "signing-in proxy" in await nobody.text_content("main")
    someone_else, _ = await watched_page(browser, server.url("/d/sso"), extra_http_headers={"X-Forwarded-User": "dave"})
    assert "dave may not see this dashboard." in await someone_else.text_content("main")


@pytest.mark.gen_test(timeout=120)
async def test_a_public_dashboard_beside_protected_ones_needs_nothing(servers, browser):
    server = await servers.start(AUTH_CONFIG)
    page, log = await watched_page(browser, server.url("/"))
    links = await page.eval_on_selector_all(".dashboard-list a", "els => els.map(a => a.getAttribute('href'))")
    assert links == ["/d/open"]
    assert await page.get_attribute(".account a", "href") == "/login"
    await page.goto(server.url("/d/open"))
    await wait_live(page)
    assert await csp_violations(page) == [] and log.problems() == []
    for path in ("/nowhere", "/d/lobby?token=not-a-valid-token"):  # error pages keep the policy too
        await page.goto(server.url(path))
        assert await page.is_visible("main.error")
        assert await csp_violations(page) == []


HOSTILE = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=1</script>",
    '"><svg onload=window.__pwned=1>',
    "</textarea></script><b>bold</b>\r\nline two\u2028three",
    "javascript:window.__pwned=1",
]


@pytest.mark.gen_test(timeout=120)
async def test_hostile_values_pushed_over_the_api_render_as_text(servers, browser):
    server = await servers.start(
        AUTH_CONFIG
        + dashboard("hostile", ["t", "l", "s"], auth="password")
        + push_widgets(t="text", l="list", s="status")
    )
    api = WebClient(server.port, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})

    async def push(widget: str, body: dict) -> None:
        reply = await api.request("POST", f"/api/widgets/{widget}", body=json.dumps(body).encode())
        assert reply.status == 200, reply.text

    page, log = await watched_page(browser, server.url("/login?next=%2Fd%2Fhostile"))
    await sign_in_form(page, "alice", ALICE_PASSWORD)
    await wait_live(page)
    scripts = await page.evaluate("document.scripts.length")
    for value in HOSTILE:
        await push("t", {"value": value})
        await wait_for_value(page, "t", value)
        await push("l", {"value": [{"label": value, "value": value[:10]}]})
        await wait_for_text(page, "#w-l .label", value)
        await push("s", {"value": {"state": "down", "detail": value}})
        await wait_for_text(page, "#w-s [data-role=detail]", value)
        await push("t", {"status": "error", "message": value})
        await wait_for_text(page, "#w-t [data-role=message]", value)
    # Rendered by the server too, on a fresh load.
    await page.reload()
    await wait_live(page)
    assert await page.text_content("#w-l .label") == HOSTILE[-1]
    assert await page.evaluate("window.__pwned") is None
    assert await page.evaluate("document.scripts.length") == scripts
    assert await page.eval_on_selector_all(".widget img, .widget script, .widget svg[onload]", "els => els.length") == 0
    assert await csp_violations(page) == []
    assert log.dialogs == [] and [p for p in log.problems() if "401" not in p] == []
