"""The system source on this host: every cpu widget measures its own interval, so
two of them (the bundled meter and graph) read the same load side by side, and
no widget's first reading is a 0 that was never measured."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import psutil
import pytest

from tests.configs import dashboard, loopback_server, widget
from tests.helpers import build_widget_source, wait_until

# The bundled pair: a meter and a graph of the same metric, every 2 s.
TWO_CPU_WIDGETS = (
    dashboard("main", ["cpu", "cpu_graph", "top"])
    + widget("cpu", "meter", every="2s", source={"kind": "system", "metric": "cpu_percent"})
    + widget("cpu_graph", "graph", every="2s", source={"kind": "system", "metric": "cpu_percent"})
    + widget("top", "list", every="2s", source={"kind": "system", "metric": "top_processes", "count": 50})
)


@pytest.fixture
def busy_core():
    """One process spinning on a CPU for the test's length: the host is busy at least
    one core's worth, whatever else runs on it."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


async def spinning(process: subprocess.Popen) -> None:
    busy = psutil.Process(process.pid)
    await wait_until(lambda: sum(busy.cpu_times()[:2]) > 0.3, timeout=30, message="the busy process to spin")


def lowest_share() -> float:
    """What one busy core is, at least, of the whole host: half of it, for the time the
    scheduler gives other work on a shared machine."""
    return 100 / psutil.cpu_count() / 2


@pytest.mark.gen_test(timeout=60)
async def test_two_cpu_widgets_read_the_load_side_by_side(tmp_path, busy_core):
    meter = build_widget_source(tmp_path, TWO_CPU_WIDGETS, "cpu")
    graph = build_widget_source(tmp_path, TWO_CPU_WIDGETS, "cpu_graph")
    await spinning(busy_core)
    readings = {"cpu": [], "cpu_graph": []}
    # Fetched one right after the other, as their tickers of the same interval do: with a
    # process-wide baseline the second would measure a few milliseconds and read 0.
    for _ in range(6):
        readings["cpu"].append(await meter.fetch())
        readings["cpu_graph"].append(await graph.fetch())
        await asyncio.sleep(0.25)  # the interval each reading measures
    floor = lowest_share()
    for name, values in readings.items():
        assert all(isinstance(v, float) and floor <= v <= 100 for v in values), (name, values, floor)


@pytest.mark.gen_test(timeout=60)
async def test_the_first_reading_is_measured_not_zero(tmp_path, busy_core):
    await spinning(busy_core)
    first_cpu = await build_widget_source(tmp_path, TWO_CPU_WIDGETS, "cpu").fetch()
    assert lowest_share() <= first_cpu <= 100
    rows = await build_widget_source(tmp_path, TWO_CPU_WIDGETS, "top").fetch()
    # A process's share is of one core. Unmeasured, every row would read 0; measured, the
    # listed processes together hold at least a quarter core while one spins, however many
    # others share the host with it.
    assert rows[0]["value"] > 0 and sum(row["value"] for row in rows) >= 25, rows


@pytest.mark.gen_test(timeout=60)
async def test_the_first_rate_of_the_network_is_measured(tmp_path):
    text = dashboard("main", ["rx"]) + widget(
        "rx", "number", every="2s", source={"kind": "system", "metric": "net_recv_bytes_per_s"}
    )
    value = await build_widget_source(tmp_path, text, "rx").fetch()
    assert isinstance(value, float) and value >= 0


@pytest.mark.gen_test(timeout=60)
async def test_the_first_sample_a_page_gets_is_a_measured_load(servers, busy_core):
    await spinning(busy_core)
    server = await servers.start(loopback_server() + TWO_CPU_WIDGETS)
    for name in ("cpu", "cpu_graph"):
        first = await wait_until(
            lambda name=name: server.runtime.hub.latest("main").get(name), message=f"the first {name}"
        )
        assert first.status == "ok" and lowest_share() <= first.value <= 100, first
