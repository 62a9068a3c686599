"""make_app: the one URL table. Builds the Application and does no I/O."""

from __future__ import annotations

from pathlib import Path

import jinja2
import tornado.web

from .runtime import Runtime
from .web.api import HistoryHandler, WidgetHandler, WidgetsHandler
from .web.base import NotFoundHandler
from .web.health import HealthHandler
from .web.pages import DashboardHandler, IndexHandler
from .web.stream import StreamHandler

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"

ID = r"([A-Za-z0-9_-]+)"


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
    routes = [
        (r"/", IndexHandler, handler_args),
        (rf"/d/{ID}", DashboardHandler, handler_args),
        (rf"/events/{ID}", StreamHandler, handler_args),
        (r"/api/widgets", WidgetsHandler, handler_args),
        (rf"/api/widgets/{ID}", WidgetHandler, handler_args),
        (rf"/api/widgets/{ID}/history", HistoryHandler, handler_args),
        (r"/healthz", HealthHandler, handler_args),
    ]
    return tornado.web.Application(
        routes,
        static_path=str(STATIC),
        default_handler_class=NotFoundHandler,
        default_handler_args=handler_args,
        xheaders=False,
        **settings,
    )
