#!/usr/bin/env python3
"""Writes at scale: single pushes, batch pushes and MQTT messages into stored
samples, measured against a bare Tornado handler in the same run.

    .venv/bin/python bench/ingest.py                       # every scenario, 3 runs, medians
    .venv/bin/python bench/ingest.py --scenarios push --runs 1 --duration 5

Scenarios (each run starts a fresh server on a fresh SQLite file):
- push:  single-value pushes (POST /api/widgets/<id>) from --connections keep-alive
         connections (default 16), each answered once committed; the same requests
         against bench/baseline_push.py (a bare Tornado handler that parses the JSON
         and answers JSON) right after. The ratio ours / bare is the figure.
- batch: POST /api/widgets with --batch-size values (default 100, one per widget),
         samples per second; the bare handler too, for the ceiling HTTP sets.
- mqtt:  --topics mqtt widgets (default 10) subscribed to a private mosquitto; a
         publisher writes raw MQTT PUBLISH packets (QoS 0) as fast as the server
         stores them (at most --in-flight messages beyond the newest stored id);
         messages per second stored, and streamed to one client of the dashboard
         that reads as fast as it can (a process of its own). A stream that falls
         more than [hub] buffer events behind gets each widget's newest value
         instead of the backlog: --hub-buffer (default 8192) sets it.

CPU per sample is the server process's user + system CPU (psutil, every thread)
over the measuring window, divided by the samples it stored in it; loop CPU per
sample is its main thread's (the event loop: HTTP, the push checks, publishing),
the rest being the database writer's thread. The clients run
in their own process (uvloop when installed) and print their own CPU: the machine's
two cores are shared, so a client near 100 % means the figure is the client's.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psutil
from fanout import print_profile
from ports import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789"
TARGETS = {"push_ratio": 0.8, "batch_samples_per_s": 50_000, "mqtt_per_s": 10_000}
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


# --- the servers ------------------------------------------------------------------------------


def server_config(
    port: int, directory: Path, widgets: list[str], mqtt_port: int | None = None, buffer: int = 1024
) -> str:
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        'log_level = "warning"',
        "",
        "[storage]",
        f'url = "sqlite+aiosqlite:///{directory}/bench.db"',
        "",
        "[hub]",
        f"buffer = {buffer}",
        "",
        "[api]",
        f'tokens = {{ bench = "{TOKEN}" }}',
        'rate = "1000000/s"',
        "burst = 1000000",
        "",
        "[[dashboards]]",
        'id = "bench"',
        "widgets = [" + ", ".join(f'"{w}"' for w in widgets) + "]",
        "",
    ]
    for widget in widgets:
        if mqtt_port is None:
            source = '{ kind = "push" }'
        else:
            source = f'{{ kind = "mqtt", port = {mqtt_port}, topic = "bench/{widget}", format = "number" }}'
        lines += [f"[widgets.{widget}]", 'view = "number"', f"source = {source}", ""]
    return "\n".join(lines)


class Server:
    """Ours (run.py serve) or the bare handler, as a subprocess; its CPU through psutil."""

    def __init__(
        self,
        kind: str,
        directory: Path,
        widgets: list[str],
        mqtt_port: int | None = None,
        buffer: int = 1024,
        root: Path = ROOT,
    ):
        self.kind = kind
        self.port = free_port()
        self.directory = directory
        log = open(directory / f"{kind}.log", "wb")  # noqa: SIM115 (closed with the process)
        if kind == "ours":
            config = directory / "bench.toml"
            config.write_text(server_config(self.port, directory, widgets, mqtt_port, buffer))
            command = [sys.executable, str(root / "run.py"), "serve", "--config", str(config)]
        else:
            command = [sys.executable, str(ROOT / "bench" / "baseline_push.py"), "--port", str(self.port)]
        self.process = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT)
        self.log = log
        self.ps = psutil.Process(self.process.pid)

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_port(self.port, self.process, timeout, log=self.directory / f"{self.kind}.log")

    def transactions(self) -> tuple[int, float] | None:
        """Write transactions so far and the seconds they took (our /metrics)."""
        if self.kind != "ours":
            return None
        import urllib.request

        found = {}
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as answer:
            for line in answer.read().decode().splitlines():
                for key in ("count", "sum"):
                    if line.startswith(f"dashboard_db_write_duration_seconds_{key}"):
                        found[key] = float(line.split()[-1])
        return (int(found["count"]), found["sum"]) if len(found) == 2 else None

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    def loop_cpu(self) -> float:
        """The CPU of the process's main thread, where the event loop runs (the rest is the
        database writer's thread, and sources' threads)."""
        return sum(t.user_time + t.system_time for t in self.ps.threads() if t.id == self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()


# --- the HTTP clients (a process of their own) -----------------------------------------------


class Pusher(asyncio.Protocol):
    """One keep-alive connection: a request, its whole answer, the next request."""

    def __init__(self, spec: dict, index: int, tally: dict):
        self.spec = spec
        self.index = index
        self.tally = tally
        self.buffer = b""
        self.n = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.send()

    def request(self) -> bytes:
        self.n += 1
        value = self.index * 10_000_000 + self.n
        if self.spec["batch"]:
            path = "/api/widgets"
            body = '{"values": {' + ", ".join(f'"{w}": {value}' for w in self.spec["widgets"]) + "}}"
        else:
            widgets = self.spec["widgets"]
            path = f"/api/widgets/{widgets[self.index % len(widgets)]}"
            body = f'{{"value": {value}}}'
        return (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    def send(self) -> None:
        self.transport.write(self.request())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
        if len(self.buffer) < end + 4 + length:
            return
        status = int(self.buffer[9:12])
        self.buffer = self.buffer[end + 4 + length :]
        now = time.time()
        if self.tally["t0"] <= now <= self.tally["t1"]:
            self.tally["done" if status == 200 else "errors"] += 1
        if now < self.tally["t1"]:
            self.send()

    def connection_lost(self, exc) -> None:
        self.tally["lost"] += 1


def client_main(conn, spec: dict) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_client(conn, spec))


async def _client(conn, spec: dict) -> None:
    loop = asyncio.get_running_loop()
    tally = {"t0": float("inf"), "t1": float("inf"), "done": 0, "errors": 0, "lost": 0}
    conn.send("ready")
    window = await loop.run_in_executor(None, conn.recv)
    tally.update(t0=window["t0"], t1=window["t1"])
    cpu0 = time.process_time()
    transports = []
    for index in range(spec["connections"]):
        transport, _ = await loop.create_connection(lambda i=index: Pusher(spec, i, tally), "127.0.0.1", spec["port"])
        transports.append(transport)
    await asyncio.sleep(max(0.0, tally["t1"] - time.time()) + 0.5)
    for transport in transports:
        transport.close()
    conn.send({**tally, "cpu": time.process_time() - cpu0})


def run_http(kind: str, args, directory: Path, batch: bool) -> dict:
    widgets = [f"b{i}" for i in range(args.batch_size)] if batch else [f"p{i}" for i in range(args.connections)]
    server = Server(kind, directory, widgets, root=args.root)
    try:
        server.wait_ready()
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        spec = {"port": server.port, "connections": args.connections, "widgets": widgets, "batch": batch}
        process = ctx.Process(target=client_main, args=(child, spec), daemon=True)
        process.start()
        parent.recv()
        t0 = time.time() + args.warmup
        t1 = t0 + args.duration
        parent.send({"t0": t0, "t1": t1})
        time.sleep(max(0.0, t0 - time.time()))
        cpu0, loop0, tx0 = server.cpu(), server.loop_cpu(), server.transactions()
        profiler = start_profiler(args, server, args.duration)
        time.sleep(max(0.0, t1 - time.time()))
        cpu1, loop1, tx1 = server.cpu(), server.loop_cpu(), server.transactions()
        if profiler is not None:
            profiler.wait(60)
            print_profile(args.profile)
            args.profile = None  # the first run only
        if not parent.poll(60):
            raise RuntimeError("the client process sent nothing")
        result = parent.recv()
        process.join(10)
        per_request = args.batch_size if batch else 1
        samples = result["done"] * per_request
        return {
            "scenario": "batch" if batch else "push",
            "server": kind,
            "requests_per_s": result["done"] / args.duration,
            "samples_per_s": samples / args.duration,
            "cpu_us_per_sample": (cpu1 - cpu0) / samples * 1e6 if samples else None,
            "loop_us_per_sample": (loop1 - loop0) / samples * 1e6 if samples else None,
            "server_cpu": (cpu1 - cpu0) / args.duration,
            "client_cpu": result["cpu"] / (args.duration + args.warmup),
            **per_transaction(samples, tx0, tx1),
            "errors": result["errors"],
        }
    finally:
        server.stop()


def per_transaction(samples: int, before, after) -> dict:
    """Samples per write transaction and the mean time of one, from two /metrics readings."""
    if before is None or after is None or after[0] <= before[0]:
        return {"per_tx": None, "tx_ms": None}
    count = after[0] - before[0]
    return {"per_tx": samples / count, "tx_ms": (after[1] - before[1]) / count * 1000}


def start_profiler(args, server: Server, seconds: float):
    if not args.profile or server.kind != "ours":
        return None
    py_spy = Path(sys.executable).with_name("py-spy")
    command = [str(py_spy) if py_spy.exists() else "py-spy", "record", "--pid", str(server.process.pid)]
    command += ["--duration", str(max(1, int(seconds))), "--rate", "200", "--format", "raw", "--output", args.profile]
    try:
        return subprocess.Popen([*command, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as exc:
        print(f"  (no profile: {exc}; pip install py-spy into the venv)")
        return None


# --- MQTT ---------------------------------------------------------------------------------------


def mqtt_packet(kind: int, body: bytes) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        digit, length = length % 128, length // 128
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            break
    return bytes([kind]) + bytes(encoded) + body


def mqtt_string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def mqtt_connect(client_id: str) -> bytes:
    # MQTT 3.1.1: protocol "MQTT" level 4, clean session, keep-alive 600 s
    return mqtt_packet(0x10, mqtt_string("MQTT") + bytes([4, 0x02]) + (600).to_bytes(2, "big") + mqtt_string(client_id))


def count_stream(port: int, streamed) -> None:
    """A process of its own: read the dashboard's event stream and count the sample
    events (those with an id) into the shared `streamed`."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /events/bench HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    tail = b""
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return
        data = tail + chunk
        streamed.value += data.count(b"\nid: ")
        tail = data[-4:]  # "\nid: " cut in two by recv is counted with the next chunk
        streamed.value -= tail.count(b"\nid: ")


def stored(database: sqlite3.Connection) -> int:
    return database.execute("SELECT coalesce(max(id), 0) FROM samples").fetchone()[0]


async def publish_mqtt(port: int, topics: list[str], counter: dict, database: sqlite3.Connection, ahead: int) -> None:
    """Publish as fast as the server stores: at most `ahead` messages beyond its last id."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(mqtt_connect("bench-publisher"))
    await reader.readexactly(4)  # CONNACK
    value = 0
    while time.time() < counter["t1"] + 0.5:
        if counter["published"] - stored(database) >= ahead:
            await asyncio.sleep(0.002)
            continue
        packets = []
        for _ in range(100):
            for topic in topics:
                value += 1
                packets.append(mqtt_packet(0x30, mqtt_string(topic) + str(value).encode()))
        writer.write(b"".join(packets))
        counter["published"] += len(packets)
        await writer.drain()
    writer.close()


def run_mqtt(args, directory: Path) -> dict:
    mqtt_port = free_port()
    broker = subprocess.Popen([MOSQUITTO, "-p", str(mqtt_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    widgets = [f"m{i}" for i in range(args.topics)]
    server = None
    try:
        wait_port(mqtt_port, broker, timeout=10)
        server = Server("ours", directory, widgets, mqtt_port, args.hub_buffer, root=args.root)
        server.wait_ready()
        time.sleep(1.0)  # the mqtt sources subscribe
        database = sqlite3.connect(directory / "bench.db")

        ctx = multiprocessing.get_context("spawn")
        streamed = ctx.RawValue("q", 0)
        reader = ctx.Process(target=count_stream, args=(server.port, streamed), daemon=True)
        reader.start()

        async def drive() -> dict:
            counter = {"published": 0}
            counter["t0"] = time.time() + args.warmup
            counter["t1"] = counter["t0"] + args.duration
            await asyncio.sleep(0.3)
            publishing = asyncio.create_task(
                publish_mqtt(mqtt_port, [f"bench/{w}" for w in widgets], counter, database, args.in_flight)
            )
            await asyncio.sleep(max(0.0, counter["t0"] - time.time()))
            before = (server.cpu(), server.loop_cpu(), server.transactions(), stored(database), streamed.value)
            await asyncio.sleep(max(0.0, counter["t1"] - time.time()))
            after = (server.cpu(), server.loop_cpu(), server.transactions(), stored(database), streamed.value)
            await publishing
            return {**counter, "before": before, "after": after}

        counter = asyncio.run(drive())
        database.close()
        reader.kill()
        (cpu0, loop0, tx0, stored0, streamed0) = counter["before"]
        (cpu1, loop1, tx1, stored1, streamed1) = counter["after"]
        samples = stored1 - stored0
        return {
            "scenario": "mqtt",
            "server": "ours",
            "requests_per_s": None,
            "samples_per_s": samples / args.duration,
            "streamed_per_s": (streamed1 - streamed0) / args.duration,
            "cpu_us_per_sample": (cpu1 - cpu0) / samples * 1e6 if samples else None,
            "loop_us_per_sample": (loop1 - loop0) / samples * 1e6 if samples else None,
            "server_cpu": (cpu1 - cpu0) / args.duration,
            "client_cpu": None,
            **per_transaction(samples, tx0, tx1),
            "errors": 0,
        }
    finally:
        if server is not None:
            server.stop()
        broker.terminate()
        broker.wait(10)


# --- printing ---------------------------------------------------------------------------------

COLUMNS = [
    ("scenario", "scenario", "{}"),
    ("server", "server", "{}"),
    ("requests_per_s", "req/s", "{:,.0f}"),
    ("samples_per_s", "samples/s", "{:,.0f}"),
    ("streamed_per_s", "streamed/s", "{:,.0f}"),
    ("cpu_us_per_sample", "cpu us/smp", "{:.1f}"),
    ("loop_us_per_sample", "loop us/smp", "{:.1f}"),
    ("server_cpu", "srv cpu", "{:.0%}"),
    ("client_cpu", "client cpu", "{:.0%}"),
    ("per_tx", "smp/tx", "{:.1f}"),
    ("tx_ms", "tx ms", "{:.2f}"),
    ("errors", "errors", "{:.0f}"),
]


def fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def print_row(row: dict, label: str = "") -> None:
    print(
        "  ".join(f"{fmt(row.get(key), pattern):>10}" for key, _, pattern in COLUMNS) + (f"  {label}" if label else "")
    )


def median_row(rows: list[dict]) -> dict:
    out = dict(rows[0])
    for key, _, _ in COLUMNS[2:]:
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    return out


def verdict(name: str, value: float | None, target: float, unit: str = "") -> str:
    if value is None:
        return f"{name}: not measured"
    if value >= target:
        return f"{name}: {value:,.3g}{unit} meets the target (>= {target:,g}{unit})"
    return f"{name}: {value:,.3g}{unit} MISSES the target {target:,g}{unit} by {(target - value) / target:.0%}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Ingest benchmark (see bench/README.md).")
    parser.add_argument("--scenarios", default="push,batch,mqtt", help="comma-separated: push, batch, mqtt")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per scenario (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections (default 16)")
    parser.add_argument("--batch-size", type=int, default=100, help="values per batch push (default 100)")
    parser.add_argument("--topics", type=int, default=10, help="MQTT topics, one widget each (default 10)")
    parser.add_argument(
        "--in-flight", type=int, default=5000, help="MQTT messages published ahead of what is stored (default 5000)"
    )
    parser.add_argument(
        "--hub-buffer",
        type=int,
        default=8192,
        help="[hub] buffer for the mqtt scenario (default 8192: a second of a flood; 1024 is the server's default)",
    )
    parser.add_argument("--no-bare", action="store_true", help="skip the bare Tornado handler")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose run.py is measured as ours")
    parser.add_argument("--profile", metavar="FILE", help="py-spy record our server in the first run's window")
    args = parser.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    print(
        f"# ingest {datetime.now().strftime('%Y-%m-%d %H:%M')}: {args.connections} connections, batches of "
        f"{args.batch_size}, {args.topics} MQTT topics ([hub] buffer {args.hub_buffer}), "
        f"{args.duration:g}s x {args.runs} run(s), {os.cpu_count()} cores"
    )
    print(f"# command: {' '.join(sys.argv)}")
    print("  ".join(f"{title:>10}" for _, title, _ in COLUMNS))
    rows: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="ingest-") as tmp:
        for run in range(args.runs):
            for scenario in scenarios:
                kinds = ["ours"] if scenario == "mqtt" or args.no_bare else ["ours", "bare"]
                for kind in kinds:
                    directory = Path(tmp) / f"{scenario}-{kind}-{run}"
                    directory.mkdir()
                    if scenario == "mqtt":
                        row = run_mqtt(args, directory)
                    else:
                        row = run_http(kind, args, directory, batch=scenario == "batch")
                    rows.setdefault((scenario, kind), []).append(row)
                    print_row(row, f"run {run + 1}")
    medians = {key: median_row(value) for key, value in rows.items()}
    print(f"# medians of {args.runs} run(s)")
    for row in medians.values():
        print_row(row, "median")
    push, bare = medians.get(("push", "ours")), medians.get(("push", "bare"))
    if push and bare and bare["samples_per_s"]:
        print(
            "# "
            + verdict("single pushes, ours / bare Tornado", push["samples_per_s"] / bare["samples_per_s"], 0.8, "x")
        )
        print(
            f"#   CPU per push: ours {push['cpu_us_per_sample']:.0f} us, bare {bare['cpu_us_per_sample']:.0f} us "
            f"({push['cpu_us_per_sample'] / bare['cpu_us_per_sample']:.2f}x)"
        )
    if ("batch", "ours") in medians:
        print("# " + verdict("batch pushes", medians[("batch", "ours")]["samples_per_s"], 50_000, " samples/s"))
    if ("mqtt", "ours") in medians:
        mqtt = medians[("mqtt", "ours")]
        both = min(mqtt["samples_per_s"], mqtt["streamed_per_s"] or 0)  # the slower of the two
        print("# " + verdict("mqtt stored and streamed", both, 10_000, " msg/s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
