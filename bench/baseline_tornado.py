#!/usr/bin/env python3
"""The "tutorial" Tornado SSE server, as a baseline for bench/fanout.py.

This is the shape most Tornado SSE examples take, kept that way on purpose:
a coroutine handler per client, an unbounded asyncio.Queue per client, and
`write()` + `await flush()` for every single event. The publishers put each
event, encoded once, on every client's queue.

It serves the same events as the real server's bench config: the same widget
ids, the same event layout (`id`, `event`, `data` with a JSON object whose
"value" is the publish time) and so the same size, at the same rate, on the
same fixed grid (bench/clock_source.py). Plain asyncio loop (no uvloop), as in
the tutorials.

    python bench/baseline_tornado.py --port 0 --rate 10 --widget w0 --widget w1
prints "listening on http://127.0.0.1:<port>/" on stdout once it accepts.
"""

from __future__ import annotations

import argparse
import asyncio

import tornado.httpserver
import tornado.netutil
import tornado.web
from clock_source import event_bytes, publish_until_stopped, stand_in_main
from tornado.iostream import StreamClosedError


class Events:
    """Every client's queue, and the publishers that fill them."""

    def __init__(self):
        self.queues: set[asyncio.Queue] = set()
        self.next_id = 1

    def publish(self, widget: str, value: float) -> None:
        chunk = event_bytes(widget, value, self.next_id)
        self.next_id += 1
        for queue in self.queues:
            queue.put_nowait(chunk)


class EventsHandler(tornado.web.RequestHandler):
    def initialize(self, events: Events) -> None:
        self.events = events

    async def get(self, _dashboard: str) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        queue: asyncio.Queue = asyncio.Queue()
        self.events.queues.add(queue)
        try:
            self.write('retry: 3000\n\nevent: hello\ndata: {"server": "baseline"}\n\n')
            await self.flush()
            while True:
                chunk = await queue.get()
                self.write(chunk)
                await self.flush()
        except StreamClosedError:
            pass
        finally:
            self.events.queues.discard(queue)


async def serve(args: argparse.Namespace) -> None:
    events = Events()
    app = tornado.web.Application([(r"/events/(\w+)", EventsHandler, dict(events=events))])
    server = tornado.httpserver.HTTPServer(app)
    sockets = tornado.netutil.bind_sockets(args.port, args.host, backlog=args.backlog)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    print(f"listening on http://{args.host}:{port}/", flush=True)
    await publish_until_stopped(args, events.publish)
    server.stop()


if __name__ == "__main__":
    stand_in_main(__doc__.splitlines()[0], serve)
