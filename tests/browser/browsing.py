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


async def open_live(browser, url: str, **context_options):
    """open_page(), then wait until its stream is live. Returns (page, log)."""
    page, log = await open_page(browser, url, **context_options)
    await wait_live(page)
    return page, log


# Records what the Content-Security-Policy blocked (an inline script or style, a foreign frame...).
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(`${e.violatedDirective}: ${e.blockedURI}`));
"""


async def watched_page(browser, url: str | None = None, **context_options):
    """open_page() with CSP violations recorded from the first document on; see csp_violations()."""
    page, log = await open_page(browser, **context_options)
    await page.context.add_init_script(WATCH_CSP)
    if url is not None:
        await page.goto(url)
    return page, log


async def csp_violations(page) -> list[str]:
    return await page.evaluate("window.__csp")


async def wait_for_text(page, selector: str, text: str, timeout: float = 5000) -> None:
    await page.wait_for_function(
        "([selector, text]) => document.querySelector(selector)?.textContent === text",
        arg=[selector, text],
        timeout=timeout,
    )


async def wait_for_value(page, widget: str, text: str, timeout: float = 5000) -> None:
    await wait_for_text(page, f"#w-{widget} [data-role=value]", text, timeout)
