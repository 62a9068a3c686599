"""The prometheus source against a real Prometheus (Debian's), which scrapes this
server's own /metrics: a scalar and a one-series vector give a number, several
series give list rows, a refused query gives Prometheus's reason; and http_json
reads the same API's string values as numbers."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from tornado.httpclient import AsyncHTTPClient

from dashboard.config import ConfigError
from dashboard.core.views import accept
from dashboard.sources import SourceError
from tests.configs import dashboard, loopback_server, one_widget, widget
from tests.helpers import build_widget_source, wait_until


@pytest.fixture
def scraped(servers, prometheus_for, io_loop):
    """(the dashboard server, the Prometheus scraping it), once both series of `up` are 1."""
    server = io_loop.run_sync(servers.start)
    prometheus = prometheus_for({"dashboard": f"127.0.0.1:{server.port}"})
    http = AsyncHTTPClient()

    async def both_up():
        try:
            response = await http.fetch(f"{prometheus.url}/api/v1/query?query=up", raise_error=False)
        except OSError:
            return False
        result = json.loads(response.body).get("data", {}).get("result", []) if response.code == 200 else []
        return len(result) == 2 and all(series["value"][1] == "1" for series in result)

    io_loop.run_sync(
        lambda: wait_until(both_up, timeout=60, interval=0.2, message="Prometheus to scrape itself and the server"),
        timeout=90,
    )
    return server, prometheus


async def query(tmp_path, prometheus, view: str = "number", **options):
    source = build_widget_source(
        tmp_path, one_widget("w", view, {"kind": "prometheus", "url": prometheus.url, **options}), "w"
    )
    try:
        return await source.fetch()
    finally:
        await source.close()


@pytest.mark.slow
@pytest.mark.gen_test(timeout=120)
async def test_numbers_rows_and_refusals_from_a_real_prometheus(scraped, tmp_path):
    server, prometheus = scraped
    # A scalar.
    assert await query(tmp_path, prometheus, query="6 * 7") == 42
    # A vector of one series: the server's own process, scraped from its /metrics.
    memory = await query(tmp_path, prometheus, query='process_resident_memory_bytes{job="dashboard"}')
    assert isinstance(memory, (int, float)) and memory > 1024 * 1024
    assert await query(tmp_path, prometheus, query='dashboard_build_info{job="dashboard"}') == 1
    # Several series: rows in the order the query chose, labelled by the label named.
    rows = await query(tmp_path, prometheus, "list", query='sort_desc(count by (job) ({__name__=~".+"}))', label="job")
    assert {row["label"] for row in rows} == {"dashboard", "prometheus"}
    assert [row["value"] for row in rows] == sorted((row["value"] for row in rows), reverse=True)
    assert all(isinstance(row["value"], int) and row["value"] > 10 for row in rows)
    # No label named: the series as PromQL writes it.
    rows = await query(tmp_path, prometheus, "list", query='up{job="dashboard"}')
    assert rows == [{"label": f'up{{instance="127.0.0.1:{server.port}",job="dashboard"}}', "value": 1}]


REFUSED = [
    ("number", "up", 'the query gives 2 series: narrow it (sum(...), a label matcher) or show them as view = "list"'),
    ("number", 'up{job="nobody"}', "the query matches no series"),
    ("number", "up[1m]", "the query gives a matrix, not an instant vector or a scalar"),
    ("number", "0 / 0", "the scalar is NaN, not a number a widget can show"),
    ("list", "1", "the query gives a scalar, not an instant vector"),
]


@pytest.mark.slow
@pytest.mark.gen_test(timeout=120)
async def test_answers_a_widget_cannot_show_and_refused_queries_say_why(scraped, tmp_path):
    _, prometheus = scraped
    for view, promql, message in REFUSED:
        with pytest.raises(SourceError) as info:
            await query(tmp_path, prometheus, view, query=promql)
        assert str(info.value) == message, promql
    # A query Prometheus itself refuses: its reason, and the endpoint without the query.
    with pytest.raises(SourceError) as info:
        await query(tmp_path, prometheus, query="up{")
    message = str(info.value)
    assert message.startswith(f"Prometheus at {prometheus.url}/api/v1/query says bad_data: "), message
    assert "parse error" in message
    # A status widget: up's "1" is the number 1, which its map turns into a state.
    text = (
        one_widget("s", "status", {"kind": "prometheus", "url": prometheus.url, "query": 'up{job="dashboard"}'})
        + 'map = { "1" = "ok", "0" = "down" }\n'
    )
    source = build_widget_source(tmp_path, text, "s")
    try:
        value = await source.fetch()
    finally:
        await source.close()
    assert value == 1
    assert accept("status", value, {"1": "ok", "0": "down"}) == {"state": "ok"}


@pytest.mark.slow
@pytest.mark.gen_test(timeout=120)
async def test_http_json_reads_the_apis_string_values_as_numbers_and_scales_them(scraped, tmp_path):
    """The issue's case: Prometheus's HTTP API sends "1", which http_json refused."""
    _, prometheus = scraped
    promql = quote('up{job="dashboard"}')
    url = f"{prometheus.url}/api/v1/query?query={promql}"
    path = "data.result.0.value.1"
    text = one_widget("plain", "number", {"kind": "http_json", "url": url, "path": path})
    plain = build_widget_source(tmp_path, text, "plain")
    text = one_widget("pct", "meter", {"kind": "http_json", "url": url, "path": path, "scale": 100})
    scaled = build_widget_source(tmp_path, text, "pct")
    try:
        raw = await plain.fetch()
        assert raw == "1"  # as the API sent it; the view reads it as a number
        assert accept("number", raw) == 1
        assert await scaled.fetch() == 100
    finally:
        await plain.close()
        await scaled.close()


@pytest.mark.slow
@pytest.mark.gen_test(timeout=120)
async def test_a_prometheus_widget_reaches_the_page_through_the_server(scraped, servers, tmp_path):
    _, prometheus = scraped
    (tmp_path / "shown").mkdir()
    shown = await servers.start(
        loopback_server()
        + dashboard("main", ["targets", "memory"])
        + widget(
            "targets",
            "list",
            every="1s",
            source={"kind": "prometheus", "url": prometheus.url, "query": "sort(up)", "label": "job"},
        )
        + widget(
            "memory",
            "number",
            every="1s",
            source={
                "kind": "prometheus",
                "url": prometheus.url,
                "query": 'process_resident_memory_bytes{job="dashboard"}',
            },
        ),
        directory=tmp_path / "shown",
    )
    latest = await wait_until(
        lambda: len(shown.runtime.hub.latest("main")) == 2 and shown.runtime.hub.latest("main"),
        timeout=30,
        message="both prometheus widgets",
    )
    assert latest["memory"].status == "ok" and latest["memory"].value > 1024 * 1024
    assert sorted(row["label"] for row in latest["targets"].value) == ["dashboard", "prometheus"]


@pytest.mark.parametrize(
    ("options", "view", "message"),
    [
        ({"url": "http://127.0.0.1:9090"}, "number", "widgets.w.source.query: missing"),
        (
            {"url": "http://127.0.0.1:9090", "query": " "},
            "number",
            "widgets.w.source.query: expected a PromQL expression, got an empty string",
        ),
        (
            {"url": "http://127.0.0.1:9090", "query": "up", "label": "job"},
            "number",
            'widgets.w.source.label: labels the rows of a list: use view = "list", not "number"',
        ),
        (
            {"url": "ftp://x", "query": "up"},
            "number",
            'widgets.w.source.url: expected an http:// or https:// URL with a host, got "ftp://..."',
        ),
    ],
)
def test_config_errors_name_the_key(tmp_path, options, view, message):
    with pytest.raises(ConfigError) as info:
        build_widget_source(tmp_path, one_widget("w", view, {"kind": "prometheus", **options}), "w")
    assert str(info.value) == f"{tmp_path / 'config.toml'}: {message}"
