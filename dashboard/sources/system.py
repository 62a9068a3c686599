"""Host metrics from psutil. psutil calls can block for milliseconds (walking
/proc for processes), so they run in a worker thread."""

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


class SystemMetric:
    def __init__(self, metric: str, path: str, count: int):
        self.metric = metric
        self.path = path
        self.count = count
        self._last_net: tuple[float, int] | None = None
        self._processes: dict[int, psutil.Process] = {}

    async def fetch(self):
        try:
            return await asyncio.to_thread(getattr(self, f"_{self.metric}"))
        except (OSError, psutil.Error) as exc:
            raise SourceError(f"{self.metric}: {exc}") from exc

    def _cpu_percent(self) -> float:
        # interval=None compares with the previous call: the first one says 0.0.
        return psutil.cpu_percent(interval=None)

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

    def _net_rate(self, field: str) -> float:
        now, total = time.monotonic(), getattr(psutil.net_io_counters(), field)
        last, self._last_net = self._last_net, (now, total)
        if last is None or now <= last[0]:
            return 0.0
        return round((total - last[1]) / (now - last[0]), 1)

    def _net_recv_bytes_per_s(self) -> float:
        return self._net_rate("bytes_recv")

    def _net_sent_bytes_per_s(self) -> float:
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
    return SystemMetric(metric, path, count)
