"""Cross-origin reads ([server] cors_origins): pages of other origins may read the
streams and the read API (GET), nothing else.

Deliberately never with credentials (no Access-Control-Allow-Credentials): a page
of another origin cannot make a browser send this origin's session cookie along,
so it reads only what anybody may read, or what a read token it holds itself
(Authorization, allowed in a preflight) lets it read. Origins are echoed one by
one, never "*" with credentials, and `Vary: Origin` keeps caches from handing
one origin's answer to another. With cors_origins empty (the default) nothing
here adds a header, and OPTIONS stays 405.
"""

from __future__ import annotations

import tornado.web

from .runtime import Runtime

PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight answer
# Request headers a cross-origin reader may send: its read token, and what an
# EventSource polyfill sends on a reconnect.
ALLOWED_HEADERS = "Authorization, Last-Event-ID, Cache-Control"
READ_METHODS = ("GET", "HEAD", "OPTIONS")


def allowed_origin(origins: tuple[str, ...], origin: str | None) -> str | None:
    """The value of Access-Control-Allow-Origin for a request from `origin`, or None."""
    if not origin or not origins:
        return None
    if origin in origins:
        return origin
    return "*" if "*" in origins else None


class CorsMixin(tornado.web.RequestHandler):
    """For handlers that serve reads (GET): CORS headers on every answer to an allowed
    origin (errors included, so that a page can read why), and the preflight."""

    runtime: Runtime  # BaseHandler's, given by the URL table

    def set_default_headers(self) -> None:
        super().set_default_headers()
        runtime = getattr(self, "runtime", None)  # None on the first call, before initialize()
        if runtime is None or self.request.method not in READ_METHODS:
            return
        origins = runtime.config.server.cors_origins
        if not origins:
            return
        self.set_header("Vary", "Origin")
        allowed = allowed_origin(origins, self.request.headers.get("Origin"))
        if allowed is not None:
            self.set_header("Access-Control-Allow-Origin", allowed)

    def options(self, *args: str) -> None:
        """A preflight: a GET with Authorization (a read token) or Last-Event-ID."""
        origins = self.runtime.config.server.cors_origins
        if not origins:
            raise tornado.web.HTTPError(405)
        if allowed_origin(origins, self.request.headers.get("Origin")) is not None:
            self.set_header("Access-Control-Allow-Methods", "GET")
            self.set_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
            self.set_header("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE))
        self.set_status(204)
        self.finish()
