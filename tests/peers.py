"""A Tornado app on a loopback port for a source to fetch from, and a URL that
refuses connections."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from pathlib import Path

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
def serving(io_loop, handlers: list, *, ssl_options=None, **settings):
    """Serves `handlers` on 127.0.0.1 until exit (over TLS with `ssl_options`). Handlers
    that hang wait on settings["release"], which is set at exit so that none is left pending."""
    release = asyncio.Event()
    app = tornado.web.Application(handlers, release=release, **settings)
    sock, port = bind_unused_port()
    server = HTTPServer(app, ssl_options=ssl_options)
    server.add_sockets([sock])
    try:
        yield Peer(port, app.settings)
    finally:
        release.set()
        server.stop()
        io_loop.run_sync(server.close_all_connections)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, signed by itself, and its key (openssl)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def refused_url(path: str = "/") -> str:
    """A loopback port nobody listens on: bound, then closed."""
    sock, port = bind_unused_port()
    sock.close()
    return f"http://127.0.0.1:{port}{path}"
