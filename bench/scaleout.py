#!/usr/bin/env python3
"""Scale-out: delivered events per second with 1, 2 and 4 web processes.

For each process count N, starts (all on 127.0.0.1, all stopped afterwards):
a redis-server of its own, one `run.py serve --role worker` that ticks the
widgets and publishes through Redis, and `run.py serve --role web --processes N`
(N processes on one port, SO_REUSEPORT). Then C SSE clients from K client
processes (bench/sse_client.py, shared with bench/fanout.py) read one dashboard
for T seconds, and it prints what was delivered, how late, and the CPU the web
processes used.

    .venv/bin/python bench/scaleout.py                          # 1, 2, 4 web processes
    .venv/bin/python bench/scaleout.py --clients 3000 --rate 100 --duration 10
    .venv/bin/python bench/scaleout.py --webs 1 2 --database postgresql+asyncpg://postgres@127.0.0.1/bench

The machine bounds the result: web processes, the worker, Redis and the client
processes share its cores, so delivered/s can grow with N only while a core is
idle. The last lines say how many cores there are and how busy they were.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import fanout
import psutil
import sse_client
from ports import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent


def bench_config(args, web_port: int, redis_port: int, widgets: list[str], directory: Path) -> str:
    limit = args.clients + 1000
    database = args.database or f"sqlite+aiosqlite:///{directory}/bench.db"
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        f"port = {web_port}",
        'log_level = "warning"',
        f"max_streams = {limit}",
        f"max_streams_per_ip = {limit}",
        "",
        "[storage]",
        f'url = "{database}"',
        "",
        "[hub]",
        'backend = "redis"',
        f'url = "redis://127.0.0.1:{redis_port}/0"',
        'lease = "2s"',
        "",
        "[[dashboards]]",
        'id = "bench0"',
        "widgets = [" + ", ".join(f'"{w}"' for w in widgets) + "]",
        "",
    ]
    for index, widget in enumerate(widgets):
        # The value is the publish time (bench/clock_source.py), on an exact grid: the clients measure latency.
        lines += fanout.widget_table(widget, index, args)
    return "\n".join(lines)


class Stack:
    """redis-server, the worker, and N web processes behind one port."""

    def __init__(self, args, webs: int, directory: Path):
        self.directory = directory
        self.web_port, worker_port, redis_port = free_port(), free_port(), free_port()
        self.procs: list[subprocess.Popen] = []
        self.logs = []
        widgets = fanout.widget_ids(0, args.widgets, args.event_size)
        config = directory / "bench.toml"
        config.write_text(bench_config(args, self.web_port, redis_port, widgets, directory))
        self.redis = self._start(
            "redis",
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
        wait_port(redis_port, self.redis)
        run = [sys.executable, str(ROOT / "run.py"), "serve", "--config", str(config)]
        # Source kind `python` finds clock_source on the path.
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "bench"), os.environ.get("PYTHONPATH")]))
        )
        self.worker = self._start("worker", [*run, "--role", "worker", "--port", str(worker_port)], env)
        wait_port(worker_port, self.worker)
        self.web = self._start("web", [*run, "--role", "web", "--processes", str(webs)], env)  # it checks them too
        self.webs = webs

    def _start(self, name: str, command: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.directory / f"{name}.log", "wb")  # noqa: SIM115 (closed in stop())
        self.logs.append(log)
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs.append(process)
        return process

    def wait_webs(self, timeout: float = 60.0) -> list[psutil.Process]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            parent = psutil.Process(self.web.pid)
            children = parent.children() if self.webs > 1 else [parent]  # --processes 1 runs in place
            if len(children) == self.webs and all(listens(child, self.web_port) for child in children):
                return children
            if self.web.poll() is not None:
                raise RuntimeError(f"the web processes exited: {(self.directory / 'web.log').read_text()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.webs} web process(es) not listening within {timeout}s")

    def stop(self) -> None:
        for process in reversed(self.procs):  # web, worker, then redis
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for log in self.logs:
            log.close()


def listens(process: psutil.Process, port: int) -> bool:
    try:
        return any(
            c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
            for c in process.net_connections(kind="tcp")
        )
    except (psutil.Error, AttributeError):
        return False


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def run_once(args, webs: int, directory: Path) -> dict:
    stack = Stack(args, webs, directory)
    workers = []
    try:
        web_processes = stack.wait_webs()
        others = [psutil.Process(stack.worker.pid), psutil.Process(stack.redis.pid)]
        ctx = multiprocessing.get_context("spawn")
        for share in fanout.split(args.clients, args.client_processes):
            parent_end, child_end = ctx.Pipe()
            spec = {
                "host": "127.0.0.1",
                "port": stack.web_port,
                "paths": ["/events/bench0"],
                "clients": share,
                "slow": 0,
                "connect_timeout": 30.0,
                "root": str(ROOT),
                "uvloop": True,
            }
            process = ctx.Process(target=sse_client.worker_main, args=(child_end, spec), daemon=True)
            process.start()
            workers.append((process, parent_end))
        ramp_deadline = time.monotonic() + 60 + args.clients / 100
        ramps = [fanout.receive(conn, ramp_deadline, "ramp") for _, conn in workers]
        _t0, t1 = fanout.open_window(args, workers)
        web0, other0, machine0 = cpu_seconds(web_processes), cpu_seconds(others), psutil.cpu_times()
        time.sleep(max(0.0, t1 - time.time()))
        web1, other1, machine1 = cpu_seconds(web_processes), cpu_seconds(others), psutil.cpu_times()
        results = [fanout.receive(conn, time.monotonic() + args.drain + 60, "result") for _, conn in workers]
    finally:
        fanout.stop_workers(workers)
        stack.stop()
    busy = (sum(machine1) - machine1.idle - machine1.iowait) - (sum(machine0) - machine0.idle - machine0.iowait)
    return summarise(
        args,
        webs,
        ramps,
        results,
        (web1 - web0) / args.duration,
        (other1 - other0) / args.duration,
        busy / args.duration,
    )


def summarise(args, webs, ramps, results, web_cpu, other_cpu, machine_busy) -> dict:
    hist = Counter()
    for r in results:
        hist.update({int(ms): count for ms, count in r["hist"].items()})
    published = len(set().union(*(r["window_ids"] for r in results)))
    connected = sum(r["connected"] for r in results)
    p50, p99 = fanout.quantiles(hist, (0.50, 0.99))
    errors = Counter()
    for r in ramps + results:
        errors.update(r["errors"])
    delivered = sum(r["window_delivered"] for r in results)
    return {
        "webs": webs,
        "connected": connected,
        "failed": sum(r["failed"] for r in ramps),
        "published_per_s": published / args.duration,
        "delivered_per_s": sum(r["received"] for r in results) / args.duration,
        "share": delivered / (published * connected) if published and connected else None,
        "p50": p50,
        "p99": p99,
        "web_cpu": web_cpu,
        "other_cpu": other_cpu,
        "client_cpu": sum(r["cpu"] for r in results) / args.duration,
        "machine_busy": machine_busy,
        "errors": dict(errors),
    }


COLUMNS = [
    ("webs", "webs", "{}"),
    ("connected", "conn", "{}"),
    ("published_per_s", "publ/s", "{:.0f}"),
    ("delivered_per_s", "deliv/s", "{:.0f}"),
    ("share", "share", "{:.2%}"),
    ("p50", "p50ms", "{:.0f}"),
    ("p99", "p99ms", "{:.0f}"),
    ("web_cpu", "web cpu", "{:.2f}"),
    ("other_cpu", "wrk+redis", "{:.2f}"),
    ("client_cpu", "clients", "{:.2f}"),
    ("machine_busy", "busy", "{:.2f}"),
]


def print_row(row: dict) -> None:
    print("  ".join(f"{fanout.fmt(row.get(key), pattern):>9}" for key, _, pattern in COLUMNS))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Scale-out benchmark: N web processes behind one port.")
    parser.add_argument("--webs", type=int, nargs="+", default=[1, 2, 4], help="web process counts (default 1 2 4)")
    parser.add_argument("--clients", type=int, default=2000, help="concurrent streams (default 2000)")
    parser.add_argument("--rate", type=float, default=50.0, help="events per second on the dashboard (default 50)")
    parser.add_argument("--widgets", type=int, default=None, help="widgets sharing that rate (default: rate/10)")
    parser.add_argument("--event-size", type=int, default=200, help="bytes per encoded event (default 200)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per count (default 8)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds between ramp-up and measuring")
    parser.add_argument("--drain", type=float, default=2.0, help="seconds in which late events still count")
    parser.add_argument("--client-processes", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--database", help="a postgresql+asyncpg:// URL (default: a SQLite file in a temp dir)")
    args = parser.parse_args(argv)
    if args.rate <= 0:
        parser.error("--rate must be above 0")
    if args.widgets is None:
        args.widgets = max(1, math.ceil(args.rate / 10))
    if not all(1 <= n <= 16 for n in args.webs):
        parser.error("--webs: counts from 1 to 16")
    if args.clients > 20000 or args.duration > 120:
        parser.error("keep it bounded: at most 20000 clients and 120 seconds")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sse_client.raise_fd_limit()
    cores = os.cpu_count() or 1
    print(
        f"# scaleout {datetime.now().strftime('%Y-%m-%d %H:%M')}: {args.clients} clients x {args.rate:g} events/s, "
        f"{args.widgets} widget(s), {args.duration:g}s per count, {args.client_processes} client processes, "
        f"{cores} cores"
    )
    print("  ".join(f"{title:>9}" for _, title, _ in COLUMNS))
    rows = []
    with tempfile.TemporaryDirectory(prefix="scaleout-") as tmp:
        for webs in args.webs:
            directory = Path(tmp) / f"webs-{webs}"
            directory.mkdir()
            row = run_once(args, webs, directory)
            rows.append(row)
            print_row(row)
            if row["errors"] or row["failed"]:
                print(f"    note: {row['failed']} failed, errors {row['errors']}")
    base = rows[0]["delivered_per_s"] or 1.0
    print(
        "# delivered/s relative to the first: "
        + ", ".join(f"{r['webs']} web: {r['delivered_per_s'] / base:.2f}x" for r in rows)
    )
    busiest = max(rows, key=lambda r: r["machine_busy"])
    print(
        f"# this machine has {cores} core(s); at most {busiest['machine_busy']:.2f} were busy "
        f"(web {busiest['web_cpu']:.2f}, worker + redis {busiest['other_cpu']:.2f}, clients "
        f"{busiest['client_cpu']:.2f})."
    )
    if busiest["machine_busy"] >= 0.85 * cores:
        print(
            "# the machine is saturated: past this point more web processes only share the same cores, "
            "and the clients compete with them. Run the clients on another machine to see more."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
