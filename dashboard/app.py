"""make_app: the one URL table. Builds the Application and does no I/O."""

from __future__ import annotations

import logging
from pathlib import Path

import jinja2
import tornado.web

from .ratelimit import RateLimiter
from .runtime import Runtime
from .web.api import HistoryHandler
from .web.auth import LoginHandler, LogoutHandler
from .web.base import BaseHandler, NotFoundHandler
from .web.health import HealthHandler, MetricsHandler
from .web.pages import DashboardHandler, IndexHandler
from .web.push import WidgetPushHandler, WidgetsPushHandler
from .web.security import SecureStaticFileHandler, redact_uri
from .web.stream import StreamHandler

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"

ID = r"([A-Za-z0-9_-]+)"

access_log = logging.getLogger("tornado.access")
# Probes and scrapes come every few seconds: their successes are logged at debug only.
QUIET_PATHS = ("/healthz", "/metrics")


def make_templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def make_app(runtime: Runtime, **settings) -> tornado.web.Application:
    handler_args = dict(runtime=runtime)
    push_args = dict(runtime=runtime, push_limiter=RateLimiter())  # [api] rate, per token
    routes = [
        (r"/", IndexHandler, handler_args),
        (rf"/d/{ID}", DashboardHandler, handler_args),
        (rf"/events/{ID}", StreamHandler, handler_args),
        # GET reads (web/api.py), POST pushes with a bearer token (web/push.py)
        (r"/api/widgets", WidgetsPushHandler, push_args),
        (rf"/api/widgets/{ID}", WidgetPushHandler, push_args),
        (rf"/api/widgets/{ID}/history", HistoryHandler, handler_args),
        (r"/healthz", HealthHandler, handler_args),
        (r"/metrics", MetricsHandler, handler_args),
        (r"/login", LoginHandler, dict(runtime=runtime, limiter=RateLimiter())),  # attempts per client address
        (r"/logout", LogoutHandler, handler_args),
    ]
    defaults = dict(
        static_path=str(STATIC),
        default_handler_class=NotFoundHandler,
        default_handler_args=handler_args,
        # Never Tornado's xheaders: it believes X-Forwarded-For from anybody. The client's
        # address is worked out per request, from [server] trusted_proxies (BaseHandler.client_ip).
        xheaders=False,
        # Cookie-authenticated changes (sign in, sign out) need the form's _xsrf field;
        # the push API takes bearer tokens only and opts out (web/push.py).
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"httponly": True, "samesite": "Strict"},
        static_handler_class=SecureStaticFileHandler,
        log_function=log_request,
    )
    return tornado.web.Application(routes, **{**defaults, **settings})


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access line, and for a stream (logged when it closes) what it sent."""
    status = handler.get_status()
    request = handler.request
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if status < 400 and request.path in QUIET_PATHS:
        level = logging.DEBUG
    if not access_log.isEnabledFor(level):
        return
    details = getattr(handler, "access_details", None)
    # No secret from a query (a kiosk link's ?token=) in the log; the client behind a trusted proxy.
    client = handler.client_ip if isinstance(handler, BaseHandler) and handler.runtime else request.remote_ip
    access_log.log(level, "%d %s %s (%s) %.2fms%s", status, request.method, redact_uri(request.uri), client,
                   1000.0 * request.request_time(), f" {details()}" if details else "")
