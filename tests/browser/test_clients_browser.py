"""A browser's own EventSource (headless Chromium) reads the stream through a server
restart, with hostile values, every id checked against the database: the scenario
of tests/clients.py, which Node's `eventsource` and httpx-sse also pass."""

from __future__ import annotations

import pytest

from tests.browser.browsing import open_page
from tests.clients import WIDGETS, read_through_restart

COLLECT = """([url, names]) => {
  window.__events = [];
  window.__opened = false;
  const source = new EventSource(url);
  source.addEventListener("open", () => { window.__opened = true; });
  for (const name of names) {
    source.addEventListener(name, (e) => window.__events.push([e.type, e.lastEventId, e.data]));
  }
  window.__source = source;
}"""


class ChromiumClient:
    """An EventSource in a page of the server's own origin (same-origin: no CORS needed)."""

    def __init__(self, browser):
        self.browser = browser
        self.page = None

    async def start(self, url: str) -> None:
        origin = url.split("/events/")[0]
        self.page, _ = await open_page(self.browser, f"{origin}/login")
        await self.page.evaluate(COLLECT, [url, list(WIDGETS)])

    async def connected(self) -> bool:
        return await self.page.evaluate("window.__opened")

    async def received(self) -> list[tuple[str, str, str]]:
        return [tuple(event) for event in await self.page.evaluate("window.__events")]

    async def stop(self) -> None:
        if self.page is not None:
            await self.page.context.close()


@pytest.mark.gen_test(timeout=120)
async def test_chromium_eventsource_reads_every_event_through_a_restart(servers, browser):
    client = ChromiumClient(browser)
    try:
        await read_through_restart(servers, client)
    finally:
        await client.stop()
