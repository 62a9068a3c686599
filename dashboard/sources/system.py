"""Host metrics from psutil. psutil calls can block for milliseconds (walking
/proc for processes), so they run in a worker thread.

Rates (CPU busy share, network bytes per second, each process's CPU) are measured
between two readings of the same source object, never with psutil's process-wide
cpu_percent(interval=None): two widgets on it (a meter and a graph, say) would each
measure from the other's last call, a few milliseconds earlier, and read 0.
The first fetch of a rate has nothing to measure from: it takes a reading, waits
a short interval (a quarter of the widget's timeout, at most half a second) and
reads again, so the first value shown was measured too.
"""

from __future__ import annotations

import asyncio
import os
import time

import psutil

from . import SourceError

METRICS = (
    "cpu_percent",
    "memory_percent",
    "disk_percent",
    "load1",
    "load5",
    "load15",
    "net_recv_bytes_per_s",
    "net_sent_bytes_per_s",
    "top_processes",
)


# Measured between two readings: the first fetch primes (see the module's docstring).
RATES = ("cpu_percent", "net_recv_bytes_per_s", "net_sent_bytes_per_s", "top_processes")
FIRST_INTERVAL_MAX = 0.5


def cpu_busy_and_total(times) -> tuple[float, float]:
    """Seconds of CPU time spent busy, and in all, across CPUs since boot; as psutil
    counts them: on Linux guest time is already inside user and nice, and waiting
    for I/O is idle."""
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


class SystemMetric:
    def __init__(self, metric: str, path: str, count: int, first_interval: float = FIRST_INTERVAL_MAX):
        self.metric = metric
        self.path = path
        self.count = count
        self.first_interval = first_interval
        self._primed = metric not in RATES
        self._last_cpu: tuple[float, float] | None = None
        self._cpu: float | None = None
        self._last_net: tuple[float, int] | None = None
        self._net: float | None = None
        self._processes: dict[int, psutil.Process] = {}

    async def fetch(self):
        read = getattr(self, f"_{self.metric}")
        try:
            if not self._primed:
                await asyncio.to_thread(read)  # only primes: there is nothing to measure from yet
                self._primed = True
                await asyncio.sleep(self.first_interval)
            return await asyncio.to_thread(read)
        except (OSError, psutil.Error) as exc:
            raise SourceError(f"{self.metric}: {exc}") from exc

    def _cpu_percent(self) -> float | None:
        now = cpu_busy_and_total(psutil.cpu_times())
        last, self._last_cpu = self._last_cpu, now
        if last is None:
            return None
        busy, total = now[0] - last[0], now[1] - last[1]
        if total > 0:  # else no clock tick passed since the last reading: it still stands
            self._cpu = round(min(100.0, max(0.0, busy / total * 100)), 1)
        return self._cpu

    def _memory_percent(self) -> float:
        return psutil.virtual_memory().percent

    def _disk_percent(self) -> float:
        return psutil.disk_usage(self.path).percent

    def _load(self, index: int) -> float:
        return round(os.getloadavg()[index], 2)

    def _load1(self) -> float:
        return self._load(0)

    def _load5(self) -> float:
        return self._load(1)

    def _load15(self) -> float:
        return self._load(2)

    def _net_rate(self, field: str) -> float | None:
        now, total = time.monotonic(), getattr(psutil.net_io_counters(), field)
        last, self._last_net = self._last_net, (now, total)
        if last is not None and now > last[0]:
            self._net = round((total - last[1]) / (now - last[0]), 1)
        return self._net  # None only from the priming call

    def _net_recv_bytes_per_s(self) -> float | None:
        return self._net_rate("bytes_recv")

    def _net_sent_bytes_per_s(self) -> float | None:
        return self._net_rate("bytes_sent")

    def _top_processes(self) -> list[dict]:
        # Keep the Process objects: cpu_percent() of a process is measured since its previous call.
        seen = {}
        for fresh in psutil.process_iter(["name"]):
            proc = self._processes.get(fresh.pid, fresh)
            try:
                seen[fresh.pid] = (proc, proc.cpu_percent(None), fresh.info["name"])
            except psutil.Error:
                continue
        self._processes = {pid: entry[0] for pid, entry in seen.items()}
        top = sorted(seen.values(), key=lambda entry: entry[1], reverse=True)[: self.count]
        return [{"label": name or "?", "value": round(cpu, 1)} for _, cpu, name in top]


def build(options, widget, config) -> SystemMetric:
    metric = options.str("metric", choices=METRICS)
    path = str(config.resolve_path(options.str("path", "/")))
    count = options.int("count", 5, min=1, max=50)
    if metric == "top_processes" and widget.view != "list":
        raise options.error("metric", f'top_processes gives rows: use view = "list", not "{widget.view}"')
    return SystemMetric(metric, path, count, first_interval=min(FIRST_INTERVAL_MAX, widget.timeout / 4))
