"""Text with NUL and lone surrogates, pushed through the API: an open page (the stream
and the renderers) and a freshly rendered one show the same characters in Chromium.

The HTML parser drops U+0000 and a lone surrogate has no UTF-8 form; textContent keeps
both. Each is stored as U+FFFD (core/values.py), so both pages show that."""

from __future__ import annotations

import json

import pytest

from tests.browser.browsing import open_live, open_page, wait_for_text
from tests.configs import dashboard, loopback_server, push_widget, table
from tests.helpers import TOKEN
from tests.webclient import WebClient

CONFIG = (
    loopback_server(grace="1s")
    + table("api", tokens={"test": TOKEN})
    + dashboard("main", ["note", "rows", "state"], title="Main")
    + push_widget("note", "text", every="1h")
    + push_widget("rows", "list", every="1h")
    + push_widget("state", "status", every="1h")
)
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
# (what is pushed, what both pages show)
TEXTS = [
    ("a\x00b", "a\ufffdb"),
    ("\x00", "\ufffd"),
    ("lone \ud800 high", "lone \ufffd high"),
    ("\udfff\ud83d two", "\ufffd\ufffd two"),
    ("pair 😀, NUL \x00, CR\r\nLF", "pair 😀, NUL \ufffd, CR\r\nLF"),
]
SELECTORS = {
    "value": "#w-note [data-role=value]",
    "label": "#w-rows .label",
    "detail": "#w-state [data-role=detail]",
    "message": "#w-note [data-role=message]",
}


async def push(port: int, widget: str, document: dict) -> None:
    reply = await WebClient(port).request("POST", f"/api/widgets/{widget}", HEADERS, json.dumps(document).encode())
    assert reply.status == 200, reply.text


async def shown(page) -> dict[str, str]:
    return {name: await page.eval_on_selector(selector, "el => el.textContent") for name, selector in SELECTORS.items()}


@pytest.mark.gen_test(timeout=90)
async def test_an_open_page_and_a_fresh_one_show_the_same_text(servers, browser):
    server = await servers.start(CONFIG)
    await push(server.port, "note", {"value": "first"})
    live, live_log = await open_live(browser, server.url("/d/main"))
    for sent, expected in TEXTS:
        await push(server.port, "rows", {"value": [[sent, 1]]})
        await push(server.port, "state", {"value": {"state": "ok", "detail": sent}})
        await push(server.port, "note", {"value": sent})
        await wait_for_text(live, SELECTORS["value"], expected)
        await push(server.port, "note", {"status": "error", "message": sent})
        await wait_for_text(live, SELECTORS["message"], expected)
        on_the_open_page = await shown(live)
        fresh, fresh_log = await open_page(browser, server.url("/d/main"))
        assert await shown(fresh) == on_the_open_page == dict.fromkeys(SELECTORS, expected), repr(sent)
        assert fresh_log.problems() == []
        await fresh.context.close()
    assert live_log.problems() == []
