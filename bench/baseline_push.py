#!/usr/bin/env python3
"""The bare Tornado push handler, as a baseline for bench/ingest.py.

What HTTP itself costs a push: a Tornado handler that parses the same JSON body
and answers JSON of the same shape, and does nothing else (no token, no widget,
no database, no hub). Plain asyncio loop, Tornado's defaults, no logging, as
our server runs in the bench.

    python bench/baseline_push.py --port 0
prints "listening on http://127.0.0.1:<port>/" on stdout once it accepts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from datetime import UTC, datetime

import tornado.httpserver
import tornado.netutil
import tornado.web


def now_text() -> str:
    when = datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


class Counter:
    def __init__(self) -> None:
        self.next_id = 1

    def take(self, count: int = 1) -> int:
        first = self.next_id
        self.next_id += count
        return first


class OneHandler(tornado.web.RequestHandler):
    def initialize(self, ids: Counter) -> None:
        self.ids = ids

    def post(self, widget: str) -> None:
        body = json.loads(self.request.body)
        if not isinstance(body, dict) or "value" not in body:
            raise tornado.web.HTTPError(400)
        self.write({"id": self.ids.take(), "widget": widget, "ts": now_text()})


class ManyHandler(tornado.web.RequestHandler):
    def initialize(self, ids: Counter) -> None:
        self.ids = ids

    def post(self) -> None:
        body = json.loads(self.request.body)
        values = body.get("values") if isinstance(body, dict) else None
        if not isinstance(values, dict) or not values:
            raise tornado.web.HTTPError(400)
        first = self.ids.take(len(values))
        self.write({"ids": {widget: first + i for i, widget in enumerate(values)}, "ts": now_text()})


async def serve(args: argparse.Namespace) -> None:
    ids = Counter()
    app = tornado.web.Application(
        [(r"/api/widgets/(\w+)", OneHandler, dict(ids=ids)), (r"/api/widgets", ManyHandler, dict(ids=ids))]
    )
    server = tornado.httpserver.HTTPServer(app)
    sockets = tornado.netutil.bind_sockets(args.port, args.host, backlog=1024)
    server.add_sockets(sockets)
    print(f"listening on http://{args.host}:{sockets[0].getsockname()[1]}/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args()))
