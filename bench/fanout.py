#!/usr/bin/env python3
"""Fan-out at scale: C open dashboards on one server process, measured.

Starts the real server (`run.py serve --config <generated config>`), the
tutorial baseline (bench/baseline_tornado.py) or the floor (bench/floor_send.py:
one bare send() per client per event) as a subprocess, opens C SSE
streams from K client processes, measures for T seconds and prints what was
delivered, how late, and at what CPU and memory cost on the server.

    .venv/bin/python bench/fanout.py --clients 200 --rate 10 --duration 10
    .venv/bin/python bench/fanout.py --clients 5000 --rate 10 --compare --floor --runs 2
    .venv/bin/python bench/fanout.py --clients 10000 --rate 0          # idle streams: memory
    .venv/bin/python bench/fanout.py --clients 1000 --slow 100 --compare

--rate is the events per second that each client receives: every dashboard
publishes that many events per second in total, from --widgets widgets (each
ticking every widgets/rate seconds, `on_change = false`), and every client
reads one dashboard. Delivered events per second are clients x rate when
nothing is lost. See bench/README.md for every figure printed.
"""

from __future__ import annotations

import argparse
import http.client
import math
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import sse_client
from clock_source import slots_between
from ports import free_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGESIZE")
TARGET_CPU_PER_MILLION = 12.0
TARGET_RATIO = 3.0
TARGET_IDLE_KB = 12.0
MIN_SHARE = 0.999


# --- the server under test -------------------------------------------------------


def widget_ids(dashboard: int, count: int, event_size: int) -> list[str]:
    """Widget ids padded so that an encoded event is about event_size bytes
    (the id and event name both carry the widget id)."""
    from dashboard.core.samples import Sample
    from dashboard.hub.memory import encode_sample

    def size(widget: str) -> int:
        return len(encode_sample(Sample(1_000_000, widget, datetime.now(UTC), time.time())))

    ids = []
    for i in range(count):
        base = f"d{dashboard}w{i}_"
        pad = max(0, min(64 - len(base), (event_size - size(base)) // 2))
        ids.append(base + "x" * pad)
    return ids


def widget_table(widget: str, index: int, args) -> list[str]:
    """A widget whose value is its publish time (bench/clock_source.py), on a fixed
    grid; the dashboard's widgets take turns, evenly spread over each period."""
    if args.rate <= 0:  # idle streams: one value at start, then nothing
        timing, source = ['every = "1d"'], 'function = "clock_source:now"'
    else:
        period = args.widgets / args.rate
        timing = ['every = "1ms"', f'timeout = "{max(10.0, 2 * period):.3f}s"']
        source = (
            f'function = "clock_source:tick", '
            f'args = {{ name = "{widget}", period = {period!r}, phase = {index * period / args.widgets!r} }}'
        )
    return [
        f"[widgets.{widget}]",
        'view = "number"',
        *timing,
        "on_change = false",
        f'source = {{ kind = "python", {source} }}',
        "",
    ]


def bench_config(port: int, args, widgets: dict[str, list[str]], directory: Path) -> str:
    limit = args.clients + 1000
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        'keepalive = "15s"',
        'log_level = "warning"',
        f'batch = "{args.batch:.3f}ms"',
        f"max_streams = {limit}",
        f"max_streams_per_ip = {limit}",
        "",
        "[storage]",
        f'url = "sqlite+aiosqlite:///{directory}/bench.db"',
        "",
    ]
    for dashboard, ids in widgets.items():
        lines += ["[[dashboards]]", f'id = "{dashboard}"', f"widgets = {ids!r}".replace("'", '"'), ""]
    for ids in widgets.values():
        for index, widget in enumerate(ids):
            lines += widget_table(widget, index, args)
    return "\n".join(lines)


class ServerProcess:
    def __init__(self, kind: str, args, directory: Path):
        self.kind = kind
        self.port = free_port()
        self.log = directory / f"{kind}.log"
        dashboards = {f"bench{d}": widget_ids(d, args.widgets, args.event_size) for d in range(args.dashboards)}
        self.paths = [f"/events/{name}" for name in dashboards]
        if kind == "ours":
            config = directory / "bench.toml"
            config.write_text(bench_config(self.port, args, dashboards, directory))
            command = [sys.executable, str(ROOT / "run.py"), "serve", "--config", str(config)]
        else:
            # The stand-ins serve one event set; every dashboard path gets it (one dashboard is the default).
            script, backlog = ("baseline_tornado.py", "128") if kind == "baseline" else ("floor_send.py", "1024")
            command = [
                sys.executable,
                str(ROOT / "bench" / script),
                "--port",
                str(self.port),
                "--rate",
                str(args.rate),
                "--backlog",
                backlog,
            ]
            for widget in next(iter(dashboards.values())):
                command += ["--widget", widget]
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "bench"), os.environ.get("PYTHONPATH")]))
        )
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.pid = self.process.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        path = "/healthz" if self.kind == "ours" else "/nowhere"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited: {self.log.read_text()[-2000:]}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", path)
                connection.getresponse().read()
                connection.close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.kind} server did not answer within {timeout}s")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    def rss_bytes(self) -> int:
        return int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * PAGE

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


# --- one run ------------------------------------------------------------------------


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def start_profiler(args, server: ServerProcess, seconds: float):
    if not args.profile or server.kind != "ours":
        return None
    py_spy = Path(sys.executable).with_name("py-spy")
    command = [
        str(py_spy) if py_spy.exists() else "py-spy",
        "record",
        "--pid",
        str(server.pid),
        "--duration",
        str(max(1, int(seconds))),
        "--rate",
        "200",
        "--format",
        "raw",
        "--output",
        args.profile,
        "--nonblocking",
    ]
    try:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:
        print(f"  (no profile: {exc}; pip install py-spy into the venv)")
        return None


def run_once(kind: str, args, directory: Path) -> dict:
    server = ServerProcess(kind, args, directory)
    workers = []
    try:
        server.wait_ready()
        time.sleep(1.0)
        rss_before = server.rss_bytes()
        ctx = multiprocessing.get_context("spawn")
        for share, slow in zip(split(args.clients, args.processes), split(args.slow, args.processes), strict=True):
            parent_end, child_end = ctx.Pipe()
            spec = {
                "host": "127.0.0.1",
                "port": server.port,
                "paths": server.paths,
                "clients": share,
                "slow": slow,
                "connect_timeout": 30.0,
                "root": str(ROOT),
                "uvloop": not args.no_uvloop,
            }
            process = ctx.Process(target=sse_client.worker_main, args=(child_end, spec), daemon=True)
            process.start()
            workers.append((process, parent_end))
        ramp_started = time.monotonic()
        ramp_deadline = ramp_started + 60 + args.clients / 100
        ramps = [receive(conn, ramp_deadline, "ramp") for _, conn in workers]
        ramp_seconds = time.monotonic() - ramp_started
        t0, t1 = open_window(args, workers)
        cpu0, rss0 = server.cpu_seconds(), server.rss_bytes()
        profiler = start_profiler(args, server, args.duration)
        time.sleep(max(0.0, t1 - time.time()))
        cpu1, rss1 = server.cpu_seconds(), server.rss_bytes()
        results = [
            receive(conn, t1 + args.drain + 60 - time.time() + time.monotonic(), "result") for _, conn in workers
        ]
        due = expected_per_client(args, t0, t1)
        if profiler is not None:
            _, err = profiler.communicate(timeout=60)
            if profiler.returncode:
                print(f"  (py-spy failed: {err.decode(errors='replace').strip()[-300:]})")
        return summarise(kind, args, ramps, results, due, cpu1 - cpu0, rss_before, rss0, rss1, ramp_seconds)
    finally:
        stop_workers(workers)
        server.stop()


def open_window(args, workers) -> tuple[float, float]:
    """After the settle time, tell every client process the window (wall-clock start
    and end) and wait until it opens; the window's bounds."""
    time.sleep(args.settle)
    t0 = time.time() + 0.5
    t1 = t0 + args.duration
    for _, conn in workers:
        conn.send({"t0": t0, "t1": t1, "drain": args.drain})
    time.sleep(max(0.0, t0 - time.time()))
    return t0, t1


def stop_workers(workers) -> None:
    """Wait a little for each client process, then kill what is left."""
    for process, conn in workers:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
        conn.close()


def expected_per_client(args, t0: float, t1: float) -> int:
    """Events each client's dashboard publishes in [t0, t1]: the slots of its widgets' grids."""
    if args.rate <= 0:
        return 0
    period = args.widgets / args.rate
    return sum(slots_between(t0, t1, period, i * period / args.widgets) for i in range(args.widgets))


def receive(conn, deadline: float, key: str) -> dict:
    left = deadline - time.monotonic()
    if left <= 0 or not conn.poll(left):
        raise RuntimeError(f"a client process sent no {key!r} in time")
    return conn.recv()[key]


def summarise(kind, args, ramps, results, due, cpu, rss_before, rss0, rss1, ramp_seconds) -> dict:
    hist = Counter()
    for r in results:
        hist.update({int(ms): count for ms, count in r["hist"].items()})
    published = len(set().union(*(r["window_ids"] for r in results)))
    fast = sum(r["fast"] for r in results)
    connected = sum(r["connected"] for r in results)
    received = sum(r["received"] for r in results)
    delivered = sum(r["window_delivered"] for r in results)
    p50, p90, p99 = quantiles(hist, (0.50, 0.90, 0.99))
    client_cpu = [r["cpu"] / args.duration for r in results]
    errors = Counter()
    for r in ramps + results:
        errors.update(r["errors"])
    return {
        "server": kind,
        "connected": connected,
        "failed": sum(r["failed"] for r in ramps),
        "closed": sum(r["closed_by_server"] for r in results),
        "errors": dict(errors),
        "ramp_s": ramp_seconds,
        "published_per_s": published / args.duration,
        "delivered_per_s": received / args.duration,
        "share": delivered / (due * fast) if due and fast else None,
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "max": max(r["max_latency"] for r in results) * 1000 if sum(hist.values()) else None,
        "cpu_per_million": cpu / received * 1e6 if received else None,
        "server_cpu": cpu / args.duration,
        "rss_per_client_kb": (rss0 - rss_before) / connected / 1024 if connected else None,
        "rss_growth_mb": (rss1 - rss0) / 2**20,
        "rss_mb": rss1 / 2**20,
        "event_bytes": sum(r["bytes_received"] for r in results) / received if received else None,
        "client_cpu_max": max(client_cpu, default=0.0),
        "client_cpu_total": sum(client_cpu),
        "slow_events": sum(r["slow_events"] for r in results),
    }


def quantiles(hist: Counter, qs) -> list[float | None]:
    total = sum(hist.values())
    if not total:
        return [None for _ in qs]
    out = []
    ordered = sorted(hist.items())
    for q in qs:
        seen, rank = 0, q * total
        for ms, count in ordered:
            seen += count
            if seen >= rank:
                out.append(float(ms))
                break
    return out


# --- printing -------------------------------------------------------------------------

COLUMNS = [
    ("server", "server", "{}"),
    ("connected", "conn", "{:.0f}"),
    ("failed", "fail", "{:.0f}"),
    ("delivered_per_s", "deliv/s", "{:.0f}"),
    ("share", "share", "{:.2%}"),
    ("p50", "p50ms", "{:.0f}"),
    ("p90", "p90ms", "{:.0f}"),
    ("p99", "p99ms", "{:.0f}"),
    ("max", "maxms", "{:.0f}"),
    ("cpu_per_million", "cpu s/M", "{:.1f}"),
    ("server_cpu", "srv cpu", "{:.0%}"),
    ("rss_per_client_kb", "KB/client", "{:.1f}"),
    ("rss_growth_mb", "rss +MB", "{:+.1f}"),
    ("client_cpu_max", "client cpu", "{:.0%}"),
]


def fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def print_header() -> None:
    print("  ".join(f"{title:>10}" for _, title, _ in COLUMNS))


def print_row(row: dict, label: str = "") -> None:
    cells = "  ".join(f"{fmt(row.get(key), pattern):>10}" for key, _, pattern in COLUMNS)
    print(cells + (f"  {label}" if label else ""))


def median_row(rows: list[dict]) -> dict:
    out = dict(rows[0])
    for key, _, _ in COLUMNS[1:]:
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    return out


def notes(row: dict, args) -> list[str]:
    out = []
    cores = os.cpu_count() or 1
    if row["client_cpu_max"] >= 0.9:
        out.append(f"client-bound: a client process used {row['client_cpu_max']:.0%} of its core")
    busy = row["server_cpu"] + row["client_cpu_total"]
    if busy >= 0.9 * cores:
        out.append(f"machine saturated: server + clients used {busy:.2f} of {cores} cores")
    if row["errors"]:
        out.append(f"errors: {row['errors']}")
    if row["closed"]:
        out.append(f"{row['closed']} stream(s) closed by the server during the run")
    return out


def verdicts(ours: dict, baseline: dict | None, floor: dict | None, args) -> list[str]:
    def check(name: str, value, target, better_low: bool, unit: str) -> str:
        if value is None:
            return f"{name}: not measured"
        ok = value <= target if better_low else value >= target
        if ok:
            return f"{name}: {value:.3g}{unit} meets the target ({'<=' if better_low else '>='} {target:g}{unit})"
        miss = value - target if better_low else target - value
        return f"{name}: {value:.3g}{unit} MISSES the target {target:g}{unit} by {miss:.3g}{unit} ({miss / target:.0%})"

    lines = []
    if args.rate > 0:
        lines.append(check("CPU per million delivered", ours["cpu_per_million"], TARGET_CPU_PER_MILLION, True, " s"))
        if baseline and baseline["cpu_per_million"] and ours["cpu_per_million"]:
            ratio = baseline["cpu_per_million"] / ours["cpu_per_million"]
            lines.append(check("CPU vs the tutorial baseline", ratio, TARGET_RATIO, False, "x"))
        if floor and floor["cpu_per_million"] and ours["cpu_per_million"]:
            lines.append(
                f"the floor (one bare send() per client per event) spends {floor['cpu_per_million']:.3g} s "
                f"per million: ours spends {ours['cpu_per_million'] / floor['cpu_per_million']:.2f}x that"
            )
            if baseline and baseline["cpu_per_million"]:
                lines.append(
                    f"so no server that writes each event to each client separately can beat the baseline "
                    f"by more than {baseline['cpu_per_million'] / floor['cpu_per_million']:.2f}x here"
                )
        lines.append(check("delivered", (ours["share"] or 0) * 100, MIN_SHARE * 100, False, " %"))
        lines.append(check("p99 publish->receive", ours["p99"], args.p99_target, True, " ms"))
    else:
        lines.append(check("RSS per idle stream", ours["rss_per_client_kb"], TARGET_IDLE_KB, True, " KB"))
    return lines


def ratios(medians: dict[str, dict]) -> str:
    parts = []
    for top, bottom in (("baseline", "ours"), ("ours", "floor"), ("baseline", "floor")):
        if top not in medians or bottom not in medians:
            continue
        for key, label in (("cpu_per_million", "CPU/M"), ("p99", "p99"), ("rss_per_client_kb", "KB/client")):
            if medians[top].get(key) and medians[bottom].get(key):
                parts.append(f"{label} {top}/{bottom} = {medians[top][key] / medians[bottom][key]:.2f}x")
    ours, baseline = medians.get("ours"), medians.get("baseline")
    if ours and baseline and ours.get("share") is not None and baseline.get("share") is not None:
        parts.append(f"delivered {ours['share']:.1%} vs {baseline['share']:.1%}")
    return "; ".join(parts)


# --- main -----------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="SSE fan-out benchmark (see bench/README.md).")
    parser.add_argument("--clients", type=int, default=200, help="concurrent streams (default 200)")
    parser.add_argument(
        "--rate",
        type=float,
        default=10.0,
        help="events per second each client receives = each dashboard's publish rate (default 10; 0: idle)",
    )
    parser.add_argument(
        "--widgets",
        type=int,
        default=None,
        help="widgets per dashboard sharing that rate (default: one per 10 events/s)",
    )
    parser.add_argument("--dashboards", type=int, default=1, help="clients are spread over this many dashboards")
    parser.add_argument(
        "--event-size", type=int, default=200, help="bytes per encoded event (approximate, default 200)"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured (default 20)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds between ramp-up and measuring (default 5)")
    parser.add_argument(
        "--drain", type=float, default=3.0, help="seconds after the window in which late events still count (default 3)"
    )
    parser.add_argument("--processes", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--slow", type=int, default=0, help="clients that stop reading after their first event")
    parser.add_argument("--server", choices=("ours", "baseline", "floor"), default="ours")
    parser.add_argument("--compare", action="store_true", help="run ours and the baseline back to back, print ratios")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run the floor (bench/floor_send.py: one bare send() per client per event)",
    )
    parser.add_argument("--runs", type=int, default=1, help="repeat, print each run and the median")
    parser.add_argument("--batch", type=float, default=0.0, help="[server] batch window in ms (ours; default 0)")
    parser.add_argument("--p99-target", type=float, default=150.0, help="p99 target in ms (default 150)")
    parser.add_argument("--no-uvloop", action="store_true", help="plain asyncio loops in the client processes")
    parser.add_argument("--profile", metavar="FILE", help="py-spy record our server during the first run (raw format)")
    args = parser.parse_args(argv)
    if args.widgets is None:
        args.widgets = max(1, math.ceil(args.rate / 10))
    if args.dashboards > 1 and (args.compare or args.floor or args.server != "ours"):
        parser.error("the baseline and the floor serve one dashboard: use --dashboards 1 with them")
    if args.slow >= args.clients:
        parser.error("--slow must be below --clients")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sse_client.raise_fd_limit()
    kinds = ["ours", "baseline"] if args.compare else [args.server]
    if args.floor and "floor" not in kinds:
        kinds.append("floor")
    print(
        f"# fanout {datetime.now().strftime('%Y-%m-%d %H:%M')}: {args.clients} clients ({args.slow} slow) x "
        f"{args.rate:g} events/s, {args.widgets} widget(s) x {args.dashboards} dashboard(s), "
        f"{args.event_size} B events, {args.duration:g}s x {args.runs} run(s), {args.processes} client processes, "
        f"batch {args.batch:g} ms, {os.cpu_count()} cores"
    )
    print(f"# command: {' '.join(sys.argv)}")
    rows = {kind: [] for kind in kinds}
    print_header()
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp:
        for run in range(args.runs):
            for kind in kinds:
                directory = Path(tmp) / f"{kind}-{run}"
                directory.mkdir()
                row = run_once(kind, args, directory)
                rows[kind].append(row)
                print_row(
                    row,
                    f"run {run + 1}, ramp {row['ramp_s']:.1f}s, {row['published_per_s']:.1f} published/s, "
                    f"{row['event_bytes'] or 0:.0f} B/event",
                )
                for note in notes(row, args):
                    print(f"    note: {note}")
                if args.profile and kind == "ours" and run == 0:
                    print_profile(args.profile)
    medians = {kind: median_row(kind_rows) for kind, kind_rows in rows.items()}
    if args.runs > 1 or len(kinds) > 1:
        print(f"# medians of {args.runs} run(s)")
        print_header()
        for row in medians.values():
            print_row(row, "median")
    if len(kinds) > 1:
        print(f"# ratios: {ratios(medians)}")
    if "ours" in medians:
        for line in verdicts(medians["ours"], medians.get("baseline"), medians.get("floor"), args):
            print(f"# {line}")
    return 0


def print_profile(path: str, top: int = 20) -> None:
    """Self and inclusive time per function from py-spy's raw (collapsed stack) output."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return
    own, inclusive, total = Counter(), Counter(), 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [
            frame.split(" (")[0] + " (" + frame.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
            if " (" in frame
            else frame
            for frame in stack.split(";")[2:]
        ]
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return
    print(f"# profile ({total} samples, {path}): self time")
    for frame, n in own.most_common(top):
        print(f"#   {n / total:6.1%}  {frame}")
    print("# inclusive time")
    for frame, n in inclusive.most_common(top):
        print(f"#   {n / total:6.1%}  {frame}")


if __name__ == "__main__":
    sys.exit(main())
