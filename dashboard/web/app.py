"""make_app: the one URL table. Builds the Application; its only I/O is reading the
static files once per process, for the version in their URLs."""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import Any

import jinja2
import tornado.httputil
import tornado.web

from .. import __version__
from ..alerts.engine import AlertEngine
from ..alerts.store import AlertStore
from ..config import Config
from ..core.events import Alert
from ..core.resources import resource_dir
from ..hub import Hub
from ..storage.recorder import Recorder
from ..storage.store import Store
from .alerts import AckHandler, AlertHandler, AlertsHandler, SilenceHandler, SilencesHandler
from .api import HistoryHandler
from .badge import BadgeHandler
from .base import BaseHandler, NotFoundHandler, log_access
from .fast_push import SINGLE_PUSH_PATH, AnswerHeaders, FastPush
from .health import HealthHandler, MetricsHandler
from .login import LoginHandler, LogoutHandler
from .metrics import Metrics
from .pages import DashboardHandler, IndexHandler
from .push import WidgetPushHandler, WidgetsPushHandler
from .ratelimit import RateLimiter
from .runtime import Runtime
from .security import SecureStaticFileHandler
from .series import SeriesHandler
from .stream import LiveStream, StreamHandler, topic_settings
from .widget_page import WidgetPageHandler

ID = r"([A-Za-z0-9_-]+)"
# Any one path segment: the API's handlers answer a widget id that cannot exist with the
# documented JSON 404 (after the token check for a push), not the app's XSRF 403.
ANY_ID = r"([^/]+)"
# The push routes below: their handlers keep a body limit of their own ([api] max_body).
_PUSH_PATH = re.compile(r"/api/widgets(?:/[^/]+)?")


def own_body_limit(path: str) -> bool:
    """Whether the handler of this path sets its own request's body limit and answers a
    body over it (the push handlers, after checking the token: web/push.py)."""
    return _PUSH_PATH.fullmatch(path) is not None


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


def make_runtime(config: Config, hub: Hub, store: Store, instance: str) -> Runtime:
    """Everything the handlers share, in one pass: the metrics read the open streams and
    the hub; the hub's topics feed streams as stream.py says (before any topic exists:
    the hub is seeded after this); every sample is stored, then published to the hub and
    handed to the alert engine (which only queues it: a ticker or a push never waits for
    alerting); the engine tells the pages of its alerts through the hub."""
    streams: set[LiveStream] = set()
    metrics = Metrics(streams_open=lambda: len(streams), published=lambda: hub.published)
    hub.apply(topic_settings(config.server, metrics.stream_wrote))

    def send_alert(topics, event: Alert) -> None:
        for topic in topics:
            hub.send_control(topic, event)

    alerts = AlertEngine(config, AlertStore(store), send_control=send_alert)
    metrics.watch_alerts(alerts.firing_by_severity, alerts.delivery.counts)

    def publish(samples) -> None:
        hub.publish_all(samples)
        alerts.observe(samples)

    recorder = Recorder(store, publish, on_write=metrics.wrote)
    return Runtime(
        config=config,
        hub=hub,
        store=store,
        recorder=recorder,
        metrics=metrics,
        templates=make_templates(),
        instance=instance,
        streams=streams,
        alerts=alerts,
    )


def make_app(runtime: Runtime, **settings: Any) -> tornado.web.Application:
    handler_args = dict(runtime=runtime)
    push_limiter = RateLimiter()  # [api] rate, per token
    push_args = dict(runtime=runtime, push_limiter=push_limiter)
    # Tornado tries the routes in order, one regex each: the busiest (pushes) come first.
    routes: list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]] = [
        # GET reads (web/api.py), POST pushes with a bearer token (web/push.py)
        (rf"/api/widgets/{ANY_ID}", WidgetPushHandler, push_args),
        (r"/api/widgets", WidgetsPushHandler, push_args),
        (r"/", IndexHandler, handler_args),
        (rf"/d/{ID}", DashboardHandler, handler_args),
        (r"/events", StreamHandler, handler_args),  # ?widgets=a,b of any dashboards
        (rf"/events/{ID}", StreamHandler, handler_args),
        (rf"/w/{ID}", WidgetPageHandler, handler_args),
        (rf"/badge/{ID}\.svg", BadgeHandler, handler_args),
        (rf"/api/widgets/{ANY_ID}/history", HistoryHandler, handler_args),
        (rf"/api/widgets/{ANY_ID}/series", SeriesHandler, handler_args),
        # the alerts and their silences (web/alerts.py)
        (r"/api/alerts", AlertsHandler, handler_args),
        (r"/api/alerts/([0-9]+)", AlertHandler, handler_args),
        (r"/api/alerts/([0-9]+)/ack", AckHandler, handler_args),
        (r"/api/silences", SilencesHandler, handler_args),
        (r"/api/silences/([0-9]+)", SilenceHandler, handler_args),
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
    return DashboardApplication(routes, runtime, push_limiter, **{**defaults, **settings})


class DashboardApplication(tornado.web.Application):
    """The URL table, with single pushes taken below the RequestHandler when plain
    (web/fast_push.py). The setting fast_push=False turns that off (tests compare)."""

    def __init__(self, routes: Any, runtime: Runtime, push_limiter: RateLimiter, **settings: Any):
        super().__init__(routes, **settings)
        self.runtime = runtime
        self.push_limiter = push_limiter
        self.answer_headers = AnswerHeaders()
        self.fast_pushes = 0

    def find_handler(self, request: tornado.httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        if request.method == "POST" and not self.transforms and self.settings.get("fast_push", True):
            match = SINGLE_PUSH_PATH.fullmatch(request.path)
            if match is not None:
                route = super().find_handler
                return FastPush(self, request, match.group(1), lambda: route(request, **kwargs))
        return super().find_handler(request, **kwargs)


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access line (an open stream writes its own when it closes)."""
    request = handler.request
    # No secret from a query (a kiosk link's ?token=) in the log; the client behind a trusted proxy.
    client = (
        handler.client_ip
        if isinstance(handler, BaseHandler) and getattr(handler, "runtime", None)
        else request.remote_ip
    )
    log_access(
        handler.get_status(),
        request.method or "",
        request.path,
        request.uri or "",
        client or "",
        request.request_time(),
    )
