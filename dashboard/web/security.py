"""Response headers every answer carries, static files included, and log lines
with no secret in them.

The page runs no inline script and no inline style (values go in with
textContent; the page's data is a `type="application/json"` block, which is never
executed), so the policy needs no 'unsafe-inline' anywhere.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import unquote_plus

import tornado.web
from tornado.log import app_log

# Query parameters whose value never reaches a log line (a kiosk link's token).
SECRET_PARAMETERS = frozenset({"token", "access_token", "password", "secret", "_xsrf"})
REDACTED = "[redacted]"

PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"
)
# A script, stylesheet or JSON answer is no document: nothing in it may load anything.
ASSET_POLICY = "default-src 'none'; frame-ancestors 'none'"


def content_security_policy(frame_ancestors: tuple[str, ...]) -> str:
    return f"{PAGE_POLICY}; frame-ancestors {' '.join(frame_ancestors)}"


def frame_options(frame_ancestors: tuple[str, ...]) -> str | None:
    """X-Frame-Options for browsers without frame-ancestors; it can say only these two."""
    if frame_ancestors == ("'none'",):
        return "DENY"
    if frame_ancestors == ("'self'",):
        return "SAMEORIGIN"
    return None


class HeaderSetter(Protocol):
    """A handler, or what stands for one where an answer is made without it."""

    def set_header(self, name: str, value: str) -> None: ...

    def clear_header(self, name: str) -> None: ...


def set_common_headers(handler: HeaderSetter) -> None:
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Referrer-Policy", "no-referrer")


def set_page_headers(handler: HeaderSetter, frame_ancestors: tuple[str, ...]) -> None:
    set_common_headers(handler)
    handler.set_header("Content-Security-Policy", content_security_policy(frame_ancestors))
    options = frame_options(frame_ancestors)
    if options is not None:
        handler.set_header("X-Frame-Options", options)
    else:
        handler.clear_header("X-Frame-Options")


class QuietErrorsMixin(tornado.web.RequestHandler):
    """How every handler, static files included, logs its errors: a 4xx is said once,
    by the access line (INFO: the client's mistake), and no line holds a secret from
    the query. Tornado's own lines would add a WARNING per 4xx with the raw URI."""

    def log_client(self) -> str:
        return self.request.remote_ip or ""

    def _request_summary(self) -> str:
        return f"{self.request.method} {redact_uri(self.request.uri or '')} ({self.log_client()})"

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, tornado.web.HTTPError):
            if value.status_code >= 500:
                super().log_exception(typ, value, tb)
        else:  # Tornado's own line adds repr(request), which holds the raw URI
            app_log.error("Uncaught exception %s", self._request_summary(), exc_info=(typ, value, tb))

    def check_xsrf_cookie(self) -> None:
        method = (self.request.method or "").lower()
        if getattr(type(self), method, None) is getattr(tornado.web.RequestHandler, method, None):
            return  # a method not served here: the answer is 405, and there is nothing to forge
        super().check_xsrf_cookie()


class SecureStaticFileHandler(QuietErrorsMixin, tornado.web.StaticFileHandler):
    def set_default_headers(self) -> None:  # also runs for its 404s
        set_common_headers(self)
        self.set_header("Content-Security-Policy", ASSET_POLICY)

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        # No file here has a NUL in its name, and the OS would refuse to look one up
        # with a ValueError (a 500) rather than say it is not there.
        if "\0" in absolute_path:
            raise tornado.web.HTTPError(404)
        return super().validate_absolute_path(root, absolute_path)

    def get_cache_time(self, path: str, modified, mime_type: str) -> int:
        # The URL carries the version (/static/<tag>/...): what it names never changes.
        return self.CACHE_MAX_AGE

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", f"public, max-age={self.CACHE_MAX_AGE}, immutable")


def redact_uri(uri: str) -> str:
    """The URI with the value of every secret query parameter replaced, for logs.
    Names are compared decoded ("%74oken" is "token" to the handler, too), and the
    query is split as the handler splits it: at "&" only ("#" in a request's URI is
    data, never a fragment: a browser does not send one)."""
    path, mark, query = uri.partition("?")
    if not mark or "=" not in query:
        return uri
    parts = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        if equals and unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
            part = f"{name}={REDACTED}"
        parts.append(part)
    return f"{path}?{'&'.join(parts)}"
