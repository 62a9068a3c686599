"""Driving a page: open it with its problems recorded, wait for the live stream."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PageLog:
    """What a page did that a user would call broken."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    bad_responses: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        # Leaving a page (a reload, a rotation) aborts its event stream: that is no failure.
        failed = [f for f in self.failed_requests if not ("/events/" in f and f.endswith("net::ERR_ABORTED"))]
        return self.console_errors + self.page_errors + failed + self.bad_responses


async def open_page(browser, url: str | None = None, *, log: PageLog | None = None, **context_options):
    """A page in a new context, with its errors, failed requests and dialogs recorded
    in a PageLog; goes to `url` when given. Returns (page, log)."""
    context = await browser.new_context(**context_options)
    page = await context.new_page()
    log = log or PageLog()
    page.on("console", lambda m: m.type == "error" and log.console_errors.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: log.page_errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: log.failed_requests.append(f"failed: {r.method} {r.url} {r.failure}"))
    page.on("response", lambda r: r.status >= 400 and log.bad_responses.append(f"{r.status}: {r.url}"))

    async def on_dialog(dialog):
        log.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    if url is not None:
        await page.goto(url)
    return page, log


async def wait_live(page, timeout: float = 10_000) -> None:
    await page.wait_for_function("() => document.documentElement.dataset.connection === 'live'", timeout=timeout)
