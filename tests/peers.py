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


class RawPeer:
    """An HTTP peer on a loopback port that answers with bytes of its own making (an
    async generator per path, given the request head), for upstreams Tornado would not
    serve: endless headers, a body without end, a gzip bomb. Counts the connections it
    has seen end; at exit it ends the ones still open."""

    def __init__(self, answers: dict):
        self.answers = answers
        self.closed = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._release = asyncio.Event()
        self._open: set[asyncio.Future] = set()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def __aenter__(self) -> RawPeer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._server is not None
        self._server.close()
        self._release.set()
        await asyncio.gather(*self._open, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = asyncio.get_running_loop().create_future()
        self._open.add(done)
        talk = asyncio.ensure_future(self._talk(reader, writer))
        release = asyncio.ensure_future(self._release.wait())
        try:
            await asyncio.wait([talk, release], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (talk, release):
                task.cancel()
            await asyncio.gather(talk, release, return_exceptions=True)
            writer.close()
            self.closed += 1
            self._open.discard(done)
            done.set_result(None)

    async def _talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode().split("?", 1)[0]
            async for piece in self.answers[path](head):
                writer.write(piece)
                await writer.drain()
            await reader.read()  # until the client closes
        except (OSError, asyncio.IncompleteReadError):
            pass
