from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

import markupsafe
import tornado.httputil
import tornado.web

from ..core import auth
from .runtime import Runtime
from .security import QuietErrorsMixin, redact_uri, set_page_headers
from .sessions import viewers_of

access_log = logging.getLogger("tornado.access")
# Every JSON answer: json.dumps() with these options would build an encoder per call.
_JSON_ANSWER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))
# Probes and scrapes come every few seconds: their successes are logged at debug only.
QUIET_PATHS = ("/healthz", "/metrics")


def log_access(status: int, method: str, path: str, uri: str, client: str, seconds: float, details: str = "") -> None:
    """One access line. No secret from a query (a kiosk link's ?token=) goes in it.
    A client error (4xx) is the client's mistake, not the server's: INFO, like a success,
    so that `journalctl -p warning` holds only what an operator must look at."""
    level = logging.INFO if status < 500 else logging.ERROR
    if status < 400 and path in QUIET_PATHS:
        level = logging.DEBUG
    if access_log.isEnabledFor(level):
        access_log.log(
            level,
            "%d %s %s (%s) %.2fms%s",
            status,
            method,
            redact_uri(uri),
            client,
            1000.0 * seconds,
            f" {details}" if details else "",
        )


def parse_bearer(authorization: str) -> str | None:
    """The token of an "Authorization: Bearer <token>" header (RFC 6750), or None."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def bearer_token(headers: tornado.httputil.HTTPHeaders) -> bytes | None:
    """The bearer token of the Authorization header, as the bytes the client sent
    (header values arrive decoded as Latin-1: encoding back gives them), or None.
    Tokens are taken from this header only, never from the URL, which is logged."""
    token = parse_bearer(headers.get("Authorization", ""))
    return token.encode("latin-1", "replace") if token is not None else None


def client_ip(request: tornado.httputil.HTTPServerRequest, trusted_proxies: tuple[auth.Network, ...]) -> str:
    """The client's address: the peer's, or the one a trusted proxy ([server]
    trusted_proxies) forwarded (never Tornado's xheaders, which would believe any client)."""
    peer = request.remote_ip or ""  # None only for a request not from a socket
    if not trusted_proxies:
        return peer
    forwarded = ",".join(request.headers.get_list("X-Forwarded-For"))
    return auth.client_address(peer, forwarded, trusted_proxies)


class BaseHandler(QuietErrorsMixin):
    # Handlers that take bearer tokens (the API, the stream) name their realm: a 401 then
    # says which scheme it wants.
    bearer_realm: str | None = None
    runtime: Runtime  # set by initialize(), from the URL table
    _viewers = None

    def initialize(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.set_default_headers()  # Tornado ran it once already, before the runtime was here

    def set_default_headers(self) -> None:
        # Also runs again when an error clears the headers: error pages get them too.
        if getattr(self, "runtime", None) is not None:
            set_page_headers(self, self.config.server.frame_ancestors)

    @property
    def config(self):
        return self.runtime.config

    @property
    def client_ip(self) -> str:
        return client_ip(self.request, self.config.server.trusted_proxies)

    @property
    def is_https(self) -> bool:
        if self.request.protocol == "https":
            return True
        networks = self.config.server.trusted_proxies
        proto = self.request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
        return proto == "https" and auth.is_trusted(self.request.remote_ip or "", networks)

    def bearer_token(self) -> bytes | None:
        return bearer_token(self.request.headers)

    @property
    def viewers(self):
        """Who the request says it is, by kind (see core/auth.py); read once."""
        if self._viewers is None:
            self._viewers = viewers_of(self)
        return self._viewers

    def render(self, template_name: str, **context: Any) -> None:  # type: ignore[override]  # Jinja, not Tornado's templates
        template = self.runtime.templates.get_template(template_name)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        context.setdefault("account", self.account())
        self.finish(template.render(static_url=self._static_url, xsrf_form_html=self._xsrf_field, **context))

    def _static_url(self, path: str) -> str:
        # The version is in the path already (web/app.py static_tag): no ?v= digest per file.
        return self.static_url(path, include_version=False)

    def _xsrf_field(self) -> markupsafe.Markup:
        # A call sets the _xsrf cookie: only pages with a form make one.
        return markupsafe.Markup(self.xsrf_form_html())

    def account(self) -> dict | None:
        """The signed-in user and a way out, or a way in: shown while any dashboard
        takes passwords."""
        config = self.config
        session = self.viewers.get(auth.PASSWORD)
        if session is None and not any(d.auth == auth.PASSWORD for d in config.dashboards):
            return None
        return {"user": session.name if session else None}

    def log_client(self) -> str:
        return self.client_ip

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(_JSON_ANSWER.encode(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 401 and self.bearer_realm is not None:  # RFC 7235: a 401 says which scheme it wants
            self.set_header("WWW-Authenticate", f'Bearer realm="{self.bearer_realm}"')
        reason = kwargs.get("reason") or self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message and status_code < 500:
            reason = exc.log_message % exc.args  # without args, Tornado doubled each "%": this undoes it
        if self.request.path.startswith("/api/"):
            self.write_json({"error": reason}, status_code)
        else:
            self.render(
                "error.html",
                status=status_code,
                reason=reason,
                title=HTTPStatus(status_code).phrase if status_code in HTTPStatus._value2member_map_ else "Error",
            )


class NotFoundHandler(BaseHandler):
    def check_xsrf_cookie(self) -> None:
        pass  # nothing is here to change: a POST learns that it is a 404, not that it lacks _xsrf

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, "There is no page at this address.")
