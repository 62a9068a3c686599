from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import tornado.web

from ..runtime import Runtime


class BaseHandler(tornado.web.RequestHandler):
    def initialize(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def config(self):
        return self.runtime.config

    def render(self, template_name: str, **context: Any) -> None:  # Jinja, not Tornado's templates
        template = self.runtime.templates.get_template(template_name)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(template.render(static_url=self.static_url, **context))

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(data, ensure_ascii=True, separators=(",", ":")))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = kwargs.get("reason") or self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message and status_code < 500:
            reason = exc.log_message % exc.args if exc.args else exc.log_message
        if self.request.path.startswith("/api/"):
            self.write_json({"error": reason}, status_code)
        else:
            self.render("error.html", status=status_code, reason=reason,
                        title=HTTPStatus(status_code).phrase if status_code in HTTPStatus._value2member_map_ else "Error")


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, "There is no page at this address.")
