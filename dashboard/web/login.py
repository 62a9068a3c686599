"""GET/POST /login and POST /logout, for dashboards with auth = "password".

Both forms carry Tornado's XSRF field (xsrf_cookies is on for the whole app), and
the session cookie is SameSite=Strict besides. Password checks run scrypt in a
thread: some 50 ms of CPU that must not stop every stream meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

import tornado.web

from ..core import auth
from .base import BaseHandler
from .ratelimit import RateLimiter, retry_after
from .runtime import Runtime
from .sessions import clear_session, write_session

log = logging.getLogger("dashboard.auth")

# Attempts per client address: a burst for typos, then one every 6 seconds.
LOGIN_RATE, LOGIN_BURST = 10 / 60, 10
MAX_NAME, MAX_PASSWORD = 64, 1024
# Only a path on this site: "//evil.example" or "/\\evil.example" would leave it.
_LOCAL_PATH = re.compile(r"/(?![/\\])[^\\\s]*")


def safe_next(target: str | None) -> str:
    return target if target and _LOCAL_PATH.fullmatch(target) else "/"


class LoginHandler(BaseHandler):
    # Tornado hands each handler its own arguments from the URL table.
    def initialize(self, runtime: Runtime, limiter: RateLimiter) -> None:  # type: ignore[override]
        super().initialize(runtime)
        self.limiter = limiter

    def prepare(self) -> None:
        if not self.config.auth.users:
            raise tornado.web.HTTPError(404, "There is no page at this address.")
        self.set_header("Cache-Control", "no-store")

    def get(self) -> None:
        self._form(safe_next(self.get_query_argument("next", None)))

    async def post(self) -> None:
        target = safe_next(self.get_body_argument("next", None))
        wait = self.limiter.take(self.client_ip, LOGIN_RATE, LOGIN_BURST)
        if wait:
            self.set_header("Retry-After", str(retry_after(wait)))
            self._form(target, "Too many attempts: wait a minute, then try again.", status=429)
            return
        name = self.get_body_argument("name", "")
        password = self.get_body_argument("password", "")
        config = self.config.auth
        stored = config.users.get(name) if len(name) <= MAX_NAME else None
        if len(password) > MAX_PASSWORD:
            stored = None
        loop = asyncio.get_running_loop()
        stand_in = next(iter(config.users.values()))
        if not await loop.run_in_executor(None, auth.verify_password, password[:MAX_PASSWORD], stored, stand_in):
            who = f"user {name}" if stored is not None else "an unknown user name"
            log.warning("failed login for %s from %s", who, self.client_ip)
            self._form(target, "Wrong user name or password.", status=401, name=name)
            return
        # The config may have been reloaded while scrypt ran: the session is made from what holds now.
        if self.config.auth.users.get(name) != stored:
            self._form(target, "Wrong user name or password.", status=401, name=name)
            return
        write_session(self, auth.new_session(self.config.auth, auth.PASSWORD, name, time.time()))
        log.info("user %s signed in from %s", name, self.client_ip)
        self.redirect(target, status=303)

    def _form(self, target: str, error: str | None = None, *, status: int = 200, name: str = "") -> None:
        self.set_status(status)
        session = self.viewers.get(auth.PASSWORD)
        self.render(
            "login.html",
            title="Sign in",
            next=target,
            error=error,
            name=name[:MAX_NAME],
            user=session.name if session else None,
            account=None,
        )


class LogoutHandler(BaseHandler):
    def post(self) -> None:
        session = self.viewers.get(auth.PASSWORD)
        clear_session(self)
        if session is not None:
            log.info("user %s signed out", session.name)
        self.set_header("Cache-Control", "no-store")
        self.redirect("/login" if self.config.auth.users else "/", status=303)
