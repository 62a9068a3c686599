"""Viewers of a request: the session cookie and the proxy's user header; the
kiosk-link exchange; and what a page, an API call or a stream answers to a
viewer who may not see what was asked for.

The cookie is signed with [auth] secret as the config has it now (Tornado's
create_signed_value / decode_signed_value rather than the fixed cookie_secret
setting), so that a reload with a new secret ends every session at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

import tornado.web

from ..core import auth
from ..core.auth import Viewer

log = logging.getLogger("dashboard.auth")

COOKIE = "dashboard_session"
MAX_PROXY_NAME = 256


def read_session(handler) -> Viewer | None:
    config = handler.config.auth
    raw = handler.get_cookie(COOKIE)
    if raw is None or not config.secret:
        return None
    # The signature's own age check backs up the expiry inside the value.
    value = tornado.web.decode_signed_value(
        config.secret, COOKIE, raw, max_age_days=config.session_lifetime / 86400 + 1 / 1440
    )
    viewer = auth.decode_session(value)
    if viewer is None or not auth.session_valid(config, viewer, time.time()):
        return None
    return viewer


def write_session(handler, viewer: Viewer) -> None:
    config = handler.config.auth
    value = tornado.web.create_signed_value(config.secret, COOKIE, auth.encode_session(viewer))
    handler.set_cookie(
        COOKIE, value, expires=viewer.expires, path="/", httponly=True, secure=handler.is_https, samesite="Strict"
    )


def clear_session(handler) -> None:
    handler.clear_cookie(COOKIE, path="/", httponly=True, secure=handler.is_https, samesite="Strict")


def proxy_viewer(handler) -> Viewer | None:
    """The user the proxy vouches for, when the request comes straight from a trusted
    proxy; a header from anybody else is ignored."""
    server = handler.config.server
    if not server.trusted_proxies or not auth.is_trusted(handler.request.remote_ip, server.trusted_proxies):
        return None
    name = handler.request.headers.get(handler.config.auth.proxy_header, "").strip()
    if not name or len(name) > MAX_PROXY_NAME or not name.isprintable():
        return None
    return Viewer(name, auth.PROXY)


def reader_viewer(handler) -> Viewer | None:
    """The reader whose token the Authorization header carries ([auth] readers); never
    a token from the URL."""
    readers = handler.config.auth.readers
    if not readers:
        return None
    offered = handler.bearer_token()
    return auth.reader_of(readers, offered) if offered is not None else None


def viewers_of(handler) -> Mapping[str, Viewer]:
    """Each identity the request carries, by kind: at most a session, a proxy user and
    a reader (a script's read token)."""
    found = {}
    session = read_session(handler)
    if session is not None:
        found[session.kind] = session
    proxied = proxy_viewer(handler)
    if proxied is not None:
        found[auth.PROXY] = proxied
    reader = reader_viewer(handler)
    if reader is not None:
        found[auth.READER] = reader
    return found


def still_valid(config, viewer: Viewer, remote_ip: str) -> Viewer | None:
    """A viewer of an open stream, checked against a reloaded config: as it is now (a
    reader's dashboards may have changed), or None when it no longer holds."""
    if viewer.kind == auth.PROXY:
        return viewer if auth.is_trusted(remote_ip, config.server.trusted_proxies) else None
    if viewer.kind == auth.READER:
        return auth.reader_now(config.auth.readers, viewer)
    return viewer if auth.session_valid(config.auth, viewer, time.time()) else None


def renew(handler, viewer: Viewer) -> Viewer:
    """A kiosk's session is renewed while its screen is on (each page load and stream
    connect, at least every stream lifetime), once half of it has passed: a wall
    screen stays signed in for as long as its token is valid. A password session
    ends session_lifetime after the login, whatever happens."""
    now = time.time()
    lifetime = handler.config.auth.session_lifetime
    if viewer.kind != auth.TOKEN or viewer.expires is None or viewer.expires - now > lifetime / 2:
        return viewer
    renewed = auth.new_session(handler.config.auth, auth.TOKEN, viewer.name, now)
    write_session(handler, renewed)
    return renewed


def url_without_token(handler) -> str:
    query = [(k, v) for k, v in parse_qsl(handler.request.query, keep_blank_values=True) if k != "token"]
    return handler.request.path + (f"?{urlencode(query)}" if query else "")


def exchange_kiosk_token(handler) -> bool:
    """A page asked for with ?token=: swap a good token for a session cookie and send the
    browser to the same address without it (303), so that the token leaves the address
    bar and the history. True when the answer was sent."""
    offered = handler.get_query_argument("token", None)
    config = handler.config.auth
    if offered is None or not config.tokens:
        return False  # no kiosk token is set up: a stray ?token= opens nothing and closes nothing
    name = auth.match_token(config.tokens, offered) if config.secret else None
    if name is None:
        log.warning("invalid kiosk token from %s", handler.client_ip)
        raise tornado.web.HTTPError(401, "This kiosk link is not valid (any more): ask for a new one.")
    write_session(handler, auth.new_session(config, auth.TOKEN, name, time.time()))
    log.info("kiosk token %s opened a session from %s", name, handler.client_ip)
    handler.set_header("Cache-Control", "no-store")
    handler.redirect(url_without_token(handler), status=303)
    return True


def login_url(handler) -> str:
    return "/login?" + urlencode({"next": url_without_token(handler)})


def guard_page(handler, dashboard) -> bool:
    """True when the viewer may see the dashboard (a kiosk session is renewed on the
    way); otherwise the answer is sent (a redirect to the login page) and False is
    returned, or an HTTPError says 401 or 403."""
    viewers = handler.viewers
    if auth.may_see(dashboard, viewers):
        viewer = viewers.get(dashboard.auth)
        if viewer is not None:
            renew(handler, viewer)
            handler.set_header("Cache-Control", "no-store")  # a page for one viewer only
        return True
    if dashboard.auth in auth.SESSION_KINDS and dashboard.auth not in viewers and came_from_another_site(handler):
        handler.set_header("Cache-Control", "no-store")
        handler.render("bounce.html", title=dashboard.title, url=url_without_token(handler), account=None)
        return False
    if dashboard.auth == auth.PASSWORD and auth.PASSWORD not in viewers:
        handler.redirect(login_url(handler), status=303)
        return False
    raise denied(handler, dashboard)


def came_from_another_site(handler) -> bool:
    """A link followed from another site (a chat, a mail): the browser sends no
    SameSite=Strict cookie with it, nor after our own redirect of it (the kiosk-link
    exchange). Asked again from this site (bounce.html), the cookie comes along; that
    second request is same-origin, so it never bounces twice."""
    headers = handler.request.headers
    return headers.get("Sec-Fetch-Site") == "cross-site" and headers.get("Sec-Fetch-Mode") == "navigate"


def denied(handler, dashboard) -> tornado.web.HTTPError:
    viewer = handler.viewers.get(dashboard.auth)
    if viewer is not None:
        return tornado.web.HTTPError(403, "%s", f"{viewer.name} may not see this dashboard.")
    if dashboard.auth == auth.TOKEN:
        return tornado.web.HTTPError(401, "This dashboard opens with its kiosk link (an address ending in ?token=...).")
    return tornado.web.HTTPError(
        401, "This dashboard is shown through a signing-in proxy; no user came with this request."
    )


def api_denied(handler) -> tornado.web.HTTPError:
    if not handler.viewers:
        if handler.request.headers.get("Authorization") is not None:
            return tornado.web.HTTPError(
                401, "invalid read token: expected Authorization: Bearer <token> of [auth] readers"
            )
        return tornado.web.HTTPError(401, "sign in first: this widget is on a dashboard that needs a viewer")
    return tornado.web.HTTPError(403, "this widget is on no dashboard you may see")
