#!/usr/bin/env python3
"""The floor for bench/fanout.py: the least a server can spend when it writes
every event to every client, whatever it is written in.

No framework and no bookkeeping: raw non-blocking sockets on the asyncio loop,
a request read up to its blank line and answered with fixed headers, and for
each event one chunk-framed `send()` per client in a plain loop. It keeps no
backlog: a client whose socket does not take a whole event is dropped (the
bench then reports streams closed by the server). What it spends per delivered
event is the kernel's cost of a loopback TCP send (which includes waking the
reader) plus a few hundred nanoseconds of Python; a real server can only add
to that, unless it writes several events at once.

Same events as the other two servers: the widget ids, layout, size and fixed
grid of bench/clock_source.py.

    python bench/floor_send.py --port 0 --rate 10 --widget w0
prints "listening on http://127.0.0.1:<port>/" on stdout once it accepts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket

from clock_source import event_bytes, publish_until_stopped, stand_in_main

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
MAX_REQUEST = 16384


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class Floor:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.streams: set[socket.socket] = set()
        self.next_id = 1

    def accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request = bytearray()
            self.loop.add_reader(sock.fileno(), self.read_request, sock, request)

    def read_request(self, sock: socket.socket, request: bytearray) -> None:
        try:
            data = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        request += data
        if not data or len(request) > MAX_REQUEST:
            self.drop(sock)
        elif b"\r\n\r\n" in request:
            self.loop.remove_reader(sock.fileno())
            if not request.startswith(b"GET /events/"):
                self.say(sock, NOT_FOUND)
                self.drop(sock)
                return
            self.say(sock, HEAD + chunk(b'retry: 3000\n\nevent: hello\ndata: {"server": "floor"}\n\n'))
            self.streams.add(sock)
            self.loop.add_reader(sock.fileno(), self.read_goodbye, sock)

    def say(self, sock: socket.socket, data: bytes) -> None:
        with contextlib.suppress(OSError):
            sock.send(data)

    def read_goodbye(self, sock: socket.socket) -> None:
        try:
            if sock.recv(4096):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self.drop(sock)

    def drop(self, sock: socket.socket) -> None:
        self.streams.discard(sock)
        self.loop.remove_reader(sock.fileno())
        sock.close()

    def publish(self, widget: str, value: float) -> None:
        data = chunk(event_bytes(widget, value, self.next_id))
        self.next_id += 1
        size = len(data)
        full = []
        for sock in self.streams:
            try:
                if sock.send(data) != size:
                    full.append(sock)
            except OSError:
                full.append(sock)
        for sock in full:
            self.drop(sock)


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    floor = Floor(loop)
    listener = socket.create_server((args.host, args.port), backlog=args.backlog)
    listener.setblocking(False)
    loop.add_reader(listener.fileno(), floor.accept, listener)
    print(f"listening on http://{args.host}:{listener.getsockname()[1]}/", flush=True)
    await publish_until_stopped(args, floor.publish)
    loop.remove_reader(listener.fileno())
    listener.close()
    for sock in list(floor.streams):
        floor.drop(sock)


if __name__ == "__main__":
    stand_in_main(__doc__.splitlines()[0], serve)
