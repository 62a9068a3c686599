"""Is a URL up? The state ("ok", "warn", "down"), the HTTP status code and the
latency of one request, for a widget with view = "status".

A site that is down is a value, not a failure of the source: the widget shows
"down" with the reason, and stays green-or-red rather than greyed out. The
request gets a little less time than the widget's timeout so that a slow site
is reported as down by the check, not cut off by the scheduler.
"""

from __future__ import annotations

import time
from typing import Any

from tornado.httpclient import HTTPRequest

from . import SourceError
from .http_json import HttpClient, fetch_answer, read_headers, read_url

METHODS = ("GET", "HEAD")
_TIMEOUT_SHARE = 0.9


class HttpCheck:
    def __init__(
        self,
        url: str,
        method: str,
        headers: dict[str, str],
        expect_status: tuple[int, ...] | None,
        expect_body: str | None,
        warn_latency: float | None,
        timeout: float,
    ):
        self.url = url
        self.method = method
        self.headers = headers
        self.expect_status = expect_status
        self.expect_body = expect_body
        self.warn_latency = warn_latency
        self.timeout = timeout
        self.client = HttpClient()

    async def fetch(self) -> dict[str, Any]:
        # Redirects are not followed: a check reports what the URL itself answers.
        request = HTTPRequest(
            self.url,
            method=self.method,
            headers=self.headers,
            follow_redirects=False,
            connect_timeout=self.timeout,
            request_timeout=self.timeout,
        )
        started = time.perf_counter()
        try:
            response, body = await fetch_answer(self.client, request, self.url, self.timeout)
        except SourceError as exc:  # a site that does not answer is a value: down, and why
            return _down(str(exc))
        latency_ms = round((time.perf_counter() - started) * 1000)
        result = {"state": "ok", "code": response.code, "latency_ms": latency_ms}
        problem = self._problem(response.code, body)
        if problem:
            return {**result, "state": "down", "detail": problem}
        if self.warn_latency is not None and latency_ms > self.warn_latency * 1000:
            return {
                **result,
                "state": "warn",
                "detail": f"slow: {latency_ms} ms (warn above {self.warn_latency * 1000:g} ms)",
            }
        return result

    def _problem(self, code: int, body: bytes) -> str | None:
        if self.expect_status is None:
            if not 200 <= code < 400:
                return f"HTTP {code} (expected 2xx or 3xx)"
        elif code not in self.expect_status:
            return f"HTTP {code} (expected {' or '.join(map(str, self.expect_status))})"
        if self.expect_body is not None and self.expect_body not in body.decode("utf-8", "replace"):
            return f"the response does not contain {self.expect_body!r}"
        return None

    async def close(self) -> None:
        await self.client.close()


def _down(detail: str) -> dict[str, Any]:
    return {"state": "down", "detail": detail}


def _read_expect_status(options) -> tuple[int, ...] | None:
    value = options.raw("expect_status", None)
    if value is None:
        return None
    codes = value if isinstance(value, list) else [value]
    if not codes or not all(isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes):
        raise options.error("expect_status", "expected a status code from 100 to 599, or an array of them")
    return tuple(codes)


def build(options, widget, config) -> HttpCheck:
    if widget.view != "status":
        raise options.error("kind", f'http_check gives a status: use view = "status", not "{widget.view}"')
    url = read_url(options, config)
    method = options.str("method", "GET", choices=METHODS)
    headers = read_headers(options)
    expect_status = _read_expect_status(options)
    expect_body = options.str("expect_body", None)
    if expect_body is not None and method == "HEAD":
        raise options.error("expect_body", 'a HEAD response has no body: use method = "GET"')
    return HttpCheck(
        url=url,
        method=method,
        headers=headers,
        expect_status=expect_status,
        expect_body=expect_body,
        warn_latency=options.duration("warn_latency", None, positive=True),
        timeout=widget.timeout * _TIMEOUT_SHARE,
    )
