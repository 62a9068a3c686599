"""/w/<widget> in headless Chromium: one widget, live through its own subset stream,
no CSP violation, and embeddable in another site's iframe exactly where [server]
frame_ancestors allows."""

from __future__ import annotations

import pytest
import tornado.web

from tests.browser.browsing import csp_violations, open_page, wait_for_value, wait_live, watched_page
from tests.configs import dashboard, loopback_server, push_widget
from tests.peers import serving


def config(frame_ancestors: list[str]) -> str:
    return (
        loopback_server(grace="1s", frame_ancestors=frame_ancestors)
        + dashboard("main", ["level", "other"], title="Main")
        + push_widget("level", "number", title="Level", every="1h")
        + push_widget("other", "number", title="Other", every="1h")
    )


class Embedding(tornado.web.RequestHandler):
    """A page of another origin (a wiki, say) with the widget in an iframe."""

    def get(self) -> None:
        self.finish(f'<!doctype html><title>wiki</title><iframe src="{self.settings["target"]}"></iframe>')


@pytest.fixture
def wiki(io_loop):
    with serving(io_loop, [(r"/page", Embedding)]) as peer:
        yield peer


@pytest.mark.gen_test(timeout=60)
async def test_the_widget_page_is_live_on_its_own_stream(servers, browser):
    server = await servers.start(config(["'self'"]))
    await server.record("level", 1)
    page, log = await watched_page(browser, server.url("/w/level"))
    await wait_live(page)
    await wait_for_value(page, "level", "1")
    assert await page.evaluate("window.dashboard.source.url") == server.url("/events?widgets=level&last_event_id=1")
    await server.record("other", 5)  # not this page's widget
    await server.record("level", 2)
    await wait_for_value(page, "level", "2")
    assert await page.locator("section.widget").count() == 1
    assert await csp_violations(page) == []
    assert log.problems() == []


@pytest.mark.gen_test(timeout=60)
async def test_another_site_may_embed_the_widget_only_where_frame_ancestors_allows(servers, browser, wiki):
    origin = wiki.url("/").rstrip("/")
    server = await servers.start(config(["'self'", origin]))
    await server.record("level", 7)
    wiki.settings["target"] = server.url("/w/level?kiosk=1")
    page, _ = await open_page(browser, wiki.url("/page"))
    frame = next(f for f in page.frames if "/w/level" in f.url)
    await frame.wait_for_function("() => document.documentElement.dataset.connection === 'live'", timeout=10_000)
    assert await frame.text_content("#w-level [data-role=value]") == "7"
    await page.context.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_site_not_in_frame_ancestors_cannot_embed_it(servers, browser, wiki):
    server = await servers.start(config(["'self'"]))
    await server.record("level", 7)
    wiki.settings["target"] = server.url("/w/level")
    page, _ = await open_page(browser, wiki.url("/page"))
    await page.wait_for_load_state("load")
    frame = page.frames[1]
    assert await frame.evaluate("document.querySelector('#w-level')") is None
    await page.context.close()
