"""A Tornado app on a loopback port for a source to fetch from, and a URL that
refuses connections."""

from __future__ import annotations

import asyncio
import contextlib

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port


class Peer:
    def __init__(self, port: int, settings: dict):
        self.port = port
        self.settings = settings

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextlib.contextmanager
def serving(io_loop, handlers: list, **settings):
    """Serves `handlers` on 127.0.0.1 until exit. Handlers that hang wait on
    settings["release"], which is set at exit so that none is left pending."""
    release = asyncio.Event()
    app = tornado.web.Application(handlers, release=release, **settings)
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    try:
        yield Peer(port, app.settings)
    finally:
        release.set()
        server.stop()
        io_loop.run_sync(server.close_all_connections)


def refused_url(path: str = "/") -> str:
    """A loopback port nobody listens on: bound, then closed."""
    sock, port = bind_unused_port()
    sock.close()
    return f"http://127.0.0.1:{port}{path}"
