"""GET /metrics: Prometheus text from a registry per server, and GET /healthz."""

from __future__ import annotations

import json
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient

from dashboard import __version__
from tests.configs import dashboard, loopback_server, push_widgets, table, widget
from tests.helpers import BASE_CONFIG, TOKEN, StreamClient, health, wait_until

TICKERS = (
    loopback_server(grace="2s")
    + table("api", tokens={"test": TOKEN})
    + dashboard("main", ["rate", "broken", "note"])
    + widget("rate", "number", every="50ms", on_change=False, source={"kind": "random_walk", "start": 1.0})
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    + widget(
        "broken",
        "number",
        every="50ms",
        timeout="2s",
        source={"kind": "http_json", "url": "http://127.0.0.1:1/", "path": "x"},
    )
    + push_widgets(note="text")
)

SMALL_BUFFER = BASE_CONFIG.replace("[storage]", "[hub]\nbuffer = 16\n\n[storage]")


async def scrape(server) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one scrape."""
    response = await AsyncHTTPClient().fetch(server.url("/metrics"))
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.body.decode())
        for sample in family.samples
    }


@pytest.mark.gen_test(timeout=30)
async def test_metrics_count_streams_events_sources_and_writes(servers):
    server = await servers.start(TICKERS)
    client = await StreamClient.open(server.url("/events/main"))
    await client.next_event()  # hello
    await server.record("note", "one")
    await server.record("note", "two")
    while [e.type for e in client.events].count("note") < 2:
        await client.next_event()

    async def both_sources_ran():
        metrics = await scrape(server)
        return (
            metrics.get(("dashboard_source_runs_total", (("outcome", "ok"), ("widget", "rate")))),
            0,
        ) and metrics.get(("dashboard_source_errors_total", (("widget", "broken"),)), 0)

    await wait_until(both_sources_ran, timeout=10, message="a run of each source")
    metrics = await scrape(server)
    assert metrics[("dashboard_streams_open", ())] == 1
    published = metrics[("dashboard_events_published_total", ())]
    assert published >= 2 + metrics[("dashboard_source_runs_total", (("outcome", "ok"), ("widget", "rate")))] - 1
    assert metrics[("dashboard_events_sent_total", ())] >= 3  # hello and the two notes at least
    assert metrics[("dashboard_stream_sent_bytes_total", ())] >= len(client.raw)
    assert metrics[("dashboard_source_runs_total", (("outcome", "error"), ("widget", "broken")))] >= 1
    assert metrics[("dashboard_source_duration_seconds_count", (("widget", "rate"),))] >= 1
    assert metrics[("dashboard_db_write_duration_seconds_count", ())] >= 3  # two notes, a first rate
    assert ("dashboard_source_runs_total", (("outcome", "ok"), ("widget", "note"))) not in metrics  # pushed

    for token in ("wrong-token-0123456789", TOKEN):
        await AsyncHTTPClient().fetch(
            server.url("/api/widgets/note"),
            method="POST",
            raise_error=False,
            body=json.dumps({"value": "three"}),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
    metrics = await scrape(server)
    assert metrics[("dashboard_push_requests_total", (("status", "401"),))] == 1
    assert metrics[("dashboard_push_requests_total", (("status", "200"),))] == 1

    client.close()
    await wait_until(lambda: not server.runtime.streams, message="the stream to close")
    assert (await scrape(server))[("dashboard_streams_open", ())] == 0


@pytest.mark.gen_test(timeout=30)
async def test_metrics_carry_the_process_series_and_the_version(servers):
    server = await servers.start()
    metrics = await scrape(server)
    assert metrics[("dashboard_build_info", (("version", __version__),))] == 1
    # This very process: its resident memory and open files are real, and counted.
    assert metrics[("process_resident_memory_bytes", ())] > 1024 * 1024
    assert metrics[("process_open_fds", ())] >= 3
    assert metrics[("process_max_fds", ())] >= metrics[("process_open_fds", ())]
    assert metrics[("process_cpu_seconds_total", ())] > 0
    assert any(name == "python_info" for name, _ in metrics)


@pytest.mark.gen_test(timeout=30)
async def test_each_server_counts_only_its_own(servers, tmp_path):
    first = await servers.start()
    (tmp_path / "second").mkdir()
    second = await servers.start(directory=tmp_path / "second")
    for value in range(5):
        await first.record("a", value)
    assert (await scrape(first))[("dashboard_events_published_total", ())] == 5
    assert (await scrape(second))[("dashboard_events_published_total", ())] == 0


@pytest.mark.gen_test(timeout=60)
async def test_a_client_that_fell_behind_counts_as_a_snapshot(servers):
    server = await servers.start(SMALL_BUFFER)
    slow = await StreamClient.open_from(server.url("/events/main"), receive_buffer=4096)
    assert (await slow.next_event()).type == "hello"
    stream = await server.stream_of(slow)
    # Small kernel buffers, whatever the host's TCP tuning: the client then falls behind soon.
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    big = "x" * 4000
    for batch in range(100):
        last = (await server.runtime.recorder.record_many([("b", f"{big} {batch}.{n}", "ok", None) for n in range(8)]))[
            -1
        ]
    while not slow.events or slow.events[-1].last_event_id != str(last.id):
        await slow.next_event(timeout=10)
    assert (await scrape(server))[("dashboard_snapshots_sent_total", ())] >= 1


@pytest.mark.gen_test(timeout=30)
async def test_healthz_reports_database_scheduler_sources_and_clients(servers):
    server = await servers.start(TICKERS)
    client = await StreamClient.open(server.url("/events/main"))
    await client.next_event()

    async def both_reported():
        sources = (await health(server))[1]["sources"]
        return sources["rate"]["last_success"] and sources["broken"]["last_error"]

    await wait_until(both_reported, timeout=10, message="a run of each source")
    code, body = await health(server)
    assert code == 200
    assert (body["status"], body["ready"], body["database"], body["scheduler"], body["clients"]) == (
        "ok",
        True,
        True,
        "running",
        1,
    )
    rate, broken = body["sources"]["rate"], body["sources"]["broken"]
    assert rate["status"] == "ok" and rate["last_error"] is None and rate["runs"] >= 1
    assert broken["status"] == "error" and broken["failures"] >= 1 and broken["last_success"] is None
    assert "127.0.0.1:1" in broken["message"]
    assert body["sources"].keys() == {"rate", "broken"}  # a push widget has no ticker
    assert body["hub"] == {"backend": "memory"}  # one process: nothing between processes

    # A ticker loop that ended makes the server unready (and stops the watchdog pings).
    await server.runtime.scheduler.stop()
    code, body = await health(server)
    assert (code, body["status"], body["scheduler"]) == (503, "unavailable", "stopped")


@pytest.mark.gen_test(timeout=30)
async def test_healthz_is_503_when_the_database_is_gone(servers):
    server = await servers.start()
    assert (await health(server))[1]["scheduler"] == "idle"  # push widgets only: no ticker
    await server.runtime.store.close()  # every query fails from now on
    code, body = await health(server)
    assert (code, body["database"], body["ready"]) == (503, False, False)


@pytest.mark.gen_test(timeout=30)
async def test_openmetrics_when_the_scraper_asks_for_it(servers):
    server = await servers.start()
    response = await AsyncHTTPClient().fetch(
        server.url("/metrics"), headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.body.endswith(b"# EOF\n")


PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        (PROMETHEUS_ACCEPT, True),
        ("application/openmetrics-text", True),
        ('Application/OpenMetrics-Text; version="1.0.0"', True),
        ("", False),
        ("text/plain", False),
        ("*/*", False),
        # Versions it does not know, or cannot parse: the text format, never a 500 or an echo.
        ("application/openmetrics-text; version=x", False),
        ("application/openmetrics-text; version=9.9.9", False),
        ("application/openmetrics-text; version=1.a", False),
        ("text/plain; version=abc", False),
        ("text/plain; version=1.0.0; escaping=allow-utf-8", False),
        ("application/openmetrics-text; version=\u00ff", False),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_any_accept_header_gets_one_of_the_two_formats(servers, accept, openmetrics):
    server = await servers.start()
    response = await AsyncHTTPClient().fetch(server.url("/metrics"), headers={"Accept": accept})
    expected = (
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
        if openmetrics
        else "text/plain; version=0.0.4; charset=utf-8"
    )
    assert response.code == 200 and response.headers["Content-Type"] == expected
    assert response.body.endswith(b"# EOF\n") == openmetrics
