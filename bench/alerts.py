"""What alerting costs a push: the push API's latency and the server's CPU with and
without alert rules, on the real server (`run.py serve` as a subprocess) and SQLite.

Three configurations of the same widgets, pushed to by one client over loopback:

- `off`: no alert rules (the baseline, measured in the same run);
- `steady`: a warn and a crit rule on every widget, values that never cross a line
  (every sample is judged, nothing changes);
- `flapping`: the same rules, values that cross the crit line on every push (every
  sample is a transition: rows written by the engine in the same SQLite file as the
  samples, and a notification to a loopback receiver).

It prints, per configuration, the median and p99 push latency (ms, request sent to
answer received) and the server's CPU seconds per 1000 pushes, medians of --runs runs,
and the ratio to `off`.

    .venv/bin/python bench/alerts.py --pushes 2000 --widgets 20 --runs 3
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ports import free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789"


def config(widgets: int, port: int, hook: int, alerts: bool) -> str:
    text = [
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nlog_level = "warning"\n',
        '[storage]\nurl = "sqlite+aiosqlite:///data/bench.db"\n',
        f'[api]\ntokens = {{ bench = "{TOKEN}" }}\nrate = "1000000/s"\nburst = 1000000\n',
        f'[[dashboards]]\nid = "main"\nwidgets = {json.dumps([f"w{i}" for i in range(widgets)])}\n',
    ]
    if alerts:
        text.append(
            f'[alerts]\nnotify = ["hook"]\ngroup_window = "0s"\n[notifiers.hook]\nkind = "webhook"\nurl = "http://127.0.0.1:{hook}/"\n'
        )
    for i in range(widgets):
        text.append(f'[widgets.w{i}]\nview = "number"\nwarn = 70\ncrit = 90\nsource = {{ kind = "push" }}\n')
        if alerts:
            text.append(f"[widgets.w{i}.alert]\n")
    return "\n".join(text)


class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start (exit {process.poll()})") from None
            time.sleep(0.05)


def run(kind: str, widgets: int, pushes: int, hook: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        path = Path(directory) / "config.toml"
        path.write_text(config(widgets, port, hook, alerts=kind != "off"))
        path.chmod(0o600)
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), "serve", "--config", str(path)],
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening(port, process)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            latencies = []
            cpu_before = cpu_seconds(process.pid)
            for n in range(pushes):
                widget = f"w{n % widgets}"
                value = (95 if (n // widgets) % 2 else 50) if kind == "flapping" else 50 + n % 10
                body = json.dumps({"value": value})
                started = time.perf_counter()
                conn.request("POST", f"/api/widgets/{widget}", body, headers)
                response = conn.getresponse()
                response.read()
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status != 200:
                    raise SystemExit(f"push answered {response.status}")
            time.sleep(0.5)  # let the engine finish the last round before CPU is read
            cpu = cpu_seconds(process.pid) - cpu_before
            conn.close()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1], cpu / pushes * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=2000)
    parser.add_argument("--widgets", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not (1 <= args.pushes <= 20000 and 1 <= args.widgets <= 500 and 1 <= args.runs <= 10):
        raise SystemExit("--pushes 1-20000, --widgets 1-500, --runs 1-10")
    hook_port = free_port()
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", hook_port), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    figures: dict[str, list[tuple[float, float, float]]] = {"off": [], "steady": [], "flapping": []}
    for _ in range(args.runs):
        for kind in figures:  # interleaved, so that a busy moment of the machine hits all three
            figures[kind].append(run(kind, args.widgets, args.pushes, hook_port))
    sink.shutdown()
    base = [statistics.median(column) for column in zip(*figures["off"], strict=True)]
    print(f"{args.pushes} pushes to {args.widgets} widgets, medians of {args.runs} runs")
    print(f"{'alerts':<10}{'p50 ms':>9}{'p99 ms':>9}{'CPU s/1000':>12}   ratio to off (p50, p99, CPU)")
    for kind, runs in figures.items():
        p50, p99, cpu = (statistics.median(column) for column in zip(*runs, strict=True))
        ratios = f"{p50 / base[0]:.2f}, {p99 / base[1]:.2f}, {cpu / base[2]:.2f}"
        print(f"{kind:<10}{p50:>9.2f}{p99:>9.2f}{cpu:>12.3f}   {ratios}")


if __name__ == "__main__":
    main()
