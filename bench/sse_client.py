"""A lean SSE load client: many raw HTTP/1.1 streams in one process, each an
asyncio Protocol (no task per connection), decoding chunked transfer encoding
and the event stream, and measuring publish -> receive latency.

Latency: every event's data is a JSON object whose "value" is the time it was
published (Unix seconds, bench/clock_source.py). The publish time is decoded
once per event id, since all streams of a process receive the same events.

The event-stream decoding takes a bytes fast path while the stream holds no CR
(neither server sends one); on the first CR a stream switches for good to the
project's spec-exact dashboard.core.sse.Decoder, so the counts stay correct for any
conforming stream.

Run by bench/fanout.py as worker processes (multiprocessing, spawn); the
parent talks to each worker over a Pipe:
  worker -> {"ramp": {...}}            after connecting its share
  parent -> {"t0": .., "t1": .., "drain": ..}
  worker -> {"result": {...}}          after t1 + drain, then exits
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import sys
import time

HIST_MS = 120_000  # latency histogram: 1 ms buckets up to two minutes, one overflow bucket
CONNECT_CONCURRENCY = 64


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def use_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def publish_time(data: str) -> float | None:
    try:
        value = json.loads(data)["value"]
    except (ValueError, KeyError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class Tally:
    """What one worker measured, shared by all its streams."""

    def __init__(self, t0: float = float("inf"), t1: float = float("inf")):
        self.t0 = t0
        self.t1 = t1
        self.published_at: dict[str, float | None] = {}  # event id -> publish time
        self.hist = [0] * (HIST_MS + 1)
        self.max_latency = 0.0
        self.received = 0  # events received inside [t0, t1] (by receive time)
        self.bytes_received = 0  # payload bytes received inside [t0, t1]
        self.window_delivered = 0  # events published inside [t0, t1] and received
        self.window_ids: set[str] = set()  # ids published inside [t0, t1]
        self.connected = 0
        self.failed = 0
        self.refused = 0  # answered 200 + retry + close before any widget event
        self.errors: dict[str, int] = {}

    def error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1

    def event(self, last_id: str, data: str, now: float) -> None:
        published = self.published_at.get(last_id, -1.0)
        if published == -1.0:
            published = self.published_at[last_id] = publish_time(data) if last_id else None
        if published is None:
            return  # hello, retry-only messages: not a published event
        if self.t0 <= now <= self.t1:
            self.received += 1
        if self.t0 <= published <= self.t1:
            self.window_delivered += 1
            self.window_ids.add(last_id)
            latency = now - published
            self.hist[min(max(int(latency * 1000), 0), HIST_MS)] += 1
            if latency > self.max_latency:
                self.max_latency = latency


class StreamProtocol(asyncio.Protocol):
    """One SSE stream. Slow streams stop reading after their first bytes."""

    __slots__ = (
        "chunk_left",
        "chunk_size_line",
        "chunk_trailer",
        "chunked",
        "decoder",
        "done",
        "events",
        "head",
        "last_id",
        "opened",
        "pending",
        "request",
        "slow",
        "status",
        "tally",
        "transport",
    )

    def __init__(self, tally: Tally, request: bytes, slow: bool, opened: asyncio.Future):
        self.tally = tally
        self.request = request
        self.slow = slow
        self.opened = opened  # resolves True when the stream delivered its first event, else False
        self.transport = None
        self.head = b""
        self.status = 0
        self.chunked = False
        self.chunk_left = 0  # data bytes left in the current chunk
        self.chunk_trailer = 0  # CRLF bytes left after the current chunk's data
        self.chunk_size_line = b""
        self.pending = b""  # the unfinished event
        self.last_id = ""
        self.decoder = None  # the spec decoder, once a CR was seen
        self.events = 0
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc) -> None:
        if not self.opened.done():
            self.opened.set_result(False)
        if not self.done.done():
            self.done.set_result(exc)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self.status == 0:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > 65536:
                    self.transport.abort()
                return
            self._parse_head(self.head[:end])
            data, self.head = self.head[end + 4 :], b""
            if self.status != 200:
                self.tally.error(f"status {self.status}")
                self.transport.abort()
                return
        payload = self._dechunk(data) if self.chunked else data
        if payload:
            if self.tally.t0 <= now <= self.tally.t1 and not self.slow:
                self.tally.bytes_received += len(payload)
            self._parse_events(payload, now)

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        try:
            self.status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            self.status = -1
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
                self.chunked = True

    def _dechunk(self, data: bytes) -> bytes:
        out = []
        i, n = 0, len(data)
        while i < n:
            if self.chunk_left:
                take = min(self.chunk_left, n - i)
                out.append(data[i : i + take])
                i += take
                self.chunk_left -= take
                if not self.chunk_left:
                    self.chunk_trailer = 2
            elif self.chunk_trailer:
                skip = min(self.chunk_trailer, n - i)
                i += skip
                self.chunk_trailer -= skip
            else:
                end = data.find(b"\r\n", i)
                if end < 0:
                    self.chunk_size_line += data[i:]
                    break
                line = self.chunk_size_line + data[i:end]
                self.chunk_size_line = b""
                i = end + 2
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    break  # the last chunk: the server ends the stream
                self.chunk_left = size
        return out[0] if len(out) == 1 else b"".join(out)

    def _parse_events(self, payload: bytes, now: float) -> None:
        if self.decoder is None and b"\r" in payload:
            self._switch_to_spec_decoder()
        if self.decoder is not None:
            for event in self.decoder.feed(payload):
                self._dispatch(event.last_event_id, event.data, now)
            return
        blocks = (self.pending + payload).split(b"\n\n")
        self.pending = blocks.pop()
        for block in blocks:
            self._block(block, now)

    def _block(self, block: bytes, now: float) -> None:
        """The lines of one event (an empty line inside means an event with no data)."""
        data = []
        for line in block.split(b"\n"):
            if not line:
                if data:
                    self._dispatch(self.last_id, "\n".join(data), now)
                data = []
                continue
            name, colon, value = line.partition(b":")
            if not name:
                continue  # a comment
            if colon and value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value.decode("utf-8", "replace"))
            elif name == b"id" and b"\0" not in value:
                self.last_id = value.decode("utf-8", "replace")
        if data:
            self._dispatch(self.last_id, "\n".join(data), now)

    def _switch_to_spec_decoder(self) -> None:
        from dashboard.core.sse import Decoder

        self.decoder = Decoder()
        self.decoder.last_event_id = self.last_id
        if self.pending:
            self.decoder.feed(self.pending)  # an unfinished event: no dispatch can come of it
            self.pending = b""

    def _dispatch(self, last_id: str, data: str, now: float) -> None:
        self.events += 1
        if not self.opened.done():
            self.opened.set_result(True)
            if self.slow:
                self.transport.pause_reading()  # and never again: the kernel buffers fill up
        if not self.slow:
            self.tally.event(last_id, data, now)


async def open_stream(loop, tally: Tally, host: str, port: int, path: str, slow: bool, timeout: float):
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    ).encode("ascii")
    opened = loop.create_future()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if slow:
            # A small receive window, so a reader that stopped is felt by the server soon.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        _, protocol = await loop.create_connection(lambda: StreamProtocol(tally, request, slow, opened), sock=sock)
    except (TimeoutError, OSError) as exc:
        sock.close()
        tally.error(type(exc).__name__)
        return None
    try:
        ok = await asyncio.wait_for(asyncio.shield(opened), timeout)
    except TimeoutError:
        tally.error("no first event")
        protocol.transport.abort()
        return None
    if not ok:
        tally.refused += 1
        return None
    return protocol


async def ramp(tally: Tally, spec: dict) -> list[StreamProtocol]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    paths = spec["paths"]

    async def one(index: int):
        async with gate:
            return await open_stream(
                loop,
                tally,
                spec["host"],
                spec["port"],
                paths[index % len(paths)],
                index < spec["slow"],
                spec["connect_timeout"],
            )

    results = await asyncio.gather(*(one(i) for i in range(spec["clients"])))
    streams = [s for s in results if s is not None]
    tally.connected = len(streams)
    tally.failed = spec["clients"] - len(streams)
    return streams


async def worker_main_async(conn, spec: dict) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally()
    streams = await ramp(tally, spec)
    conn.send(
        {
            "ramp": {
                "connected": tally.connected,
                "failed": tally.failed,
                "refused": tally.refused,
                "errors": tally.errors,
            }
        }
    )
    message = await loop.run_in_executor(None, conn.recv)
    tally.t0, tally.t1 = message["t0"], message["t1"]
    cpu = {}

    def sample_cpu(key: str) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu[key] = usage.ru_utime + usage.ru_stime

    loop.call_later(max(0.0, tally.t0 - time.time()), sample_cpu, "t0")
    loop.call_later(max(0.0, tally.t1 - time.time()), sample_cpu, "t1")
    await asyncio.sleep(max(0.0, tally.t1 + message["drain"] - time.time()))
    closed = sum(1 for s in streams if s.done.done())
    slow_streams = [s for s in streams if s.slow]
    result = {
        "connected": tally.connected,
        "fast": tally.connected - len(slow_streams),
        "slow": len(slow_streams),
        "failed": tally.failed,
        "refused": tally.refused,
        "closed_by_server": closed,
        "errors": tally.errors,
        "received": tally.received,
        "bytes_received": tally.bytes_received,
        "window_delivered": tally.window_delivered,
        "window_ids": sorted(tally.window_ids),
        "hist": {i: c for i, c in enumerate(tally.hist) if c},
        "max_latency": tally.max_latency,
        "cpu": cpu.get("t1", 0.0) - cpu.get("t0", 0.0),
        "slow_events": sum(s.events for s in slow_streams),
    }
    conn.send({"result": result})
    for stream in streams:
        stream.transport.abort()


def worker_main(conn, spec: dict) -> None:
    raise_fd_limit()
    if spec.get("uvloop", True):
        use_uvloop()
    sys.path.insert(0, spec["root"])  # for dashboard.core.sse, should a stream ever need the spec decoder
    try:
        asyncio.run(worker_main_async(conn, spec))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        conn.close()
    os._exit(0)  # do not wait for the default executor's idle thread
