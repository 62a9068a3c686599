"""make_app: the one URL table. Builds the Application; its only I/O is reading the
static files once per process, for the version in their URLs."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import jinja2
import tornado.web

from .. import __version__
from ..core.resources import resource_dir
from .api import HistoryHandler
from .base import BaseHandler, NotFoundHandler, log_access
from .health import HealthHandler, MetricsHandler
from .login import LoginHandler, LogoutHandler
from .pages import DashboardHandler, IndexHandler
from .push import WidgetPushHandler, WidgetsPushHandler
from .ratelimit import RateLimiter
from .runtime import Runtime
from .security import SecureStaticFileHandler
from .stream import StreamHandler

ID = r"([A-Za-z0-9_-]+)"


@functools.cache
def static_tag(directory: Path) -> str:
    """The version in every static URL, /static/<tag>/page.js: the release, and a digest
    of the files, which changes with any of them even between releases.

    In the path, not in a ?v= query: page.js imports "./stream.js", and a relative
    import inherits the path but not the query. So every module of a page comes from
    the same tag, and a page loaded before an upgrade never mixes in newer modules
    (nor a newer page older ones from a cache); the server serves only its own tag.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{__version__}-{digest.hexdigest()[:10]}"


def make_templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
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
    static = resource_dir("static")
    defaults = dict(
        static_path=str(static),
        static_url_prefix=f"/static/{static_tag(static)}/",
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
    """Tornado's access line (an open stream writes its own when it closes)."""
    request = handler.request
    # No secret from a query (a kiosk link's ?token=) in the log; the client behind a trusted proxy.
    client = handler.client_ip if isinstance(handler, BaseHandler) and handler.runtime else request.remote_ip
    log_access(handler.get_status(), request.method, request.path, request.uri, client, request.request_time())
