"""The HTML pages and the JSON reads of the API, on a real server."""

import html
import json
import re

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.configs import dashboard, loopback_server, push_widget
from tests.helpers import page_data

ONE_DASHBOARD = (
    loopback_server()
    + dashboard("solo", ["rate"], title="Only One")
    + push_widget("rate", "number", title="Rate", decimals=2)
)

HOSTILE = "<script>alert(1)</script>"


async def get(server, path: str):
    return await AsyncHTTPClient().fetch(server.url(path), raise_error=False)


async def get_json(server, path: str):
    response = await get(server, path)
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    return response.code, json.loads(response.body)


def widget_section(body: str, widget: str) -> str:
    match = re.search(rf'<section[^>]* id="w-{widget}".*?</section>', body, re.S)
    assert match, f"widget {widget} is on the page"
    return match[0]


# --- pages ---------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_index_with_one_dashboard_renders_it(servers):
    server = await servers.start(ONE_DASHBOARD)
    await server.record("rate", 1.23456)
    response = await get(server, "/")
    assert response.code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    body = response.body.decode()
    assert page_data(body)["dashboard"] == "solo"
    assert "<title>Only One</title>" in body
    assert ">1.23<" in widget_section(body, "rate")


@pytest.mark.gen_test(timeout=20)
async def test_index_with_several_dashboards_lists_them(servers):
    server = await servers.start()
    response = await get(server, "/")
    assert response.code == 200
    body = response.body.decode()
    assert 'href="/d/main"' in body and 'href="/d/other"' in body
    assert ">Main<" in body and ">Other<" in body
    assert 'id="dashboard-data"' not in body


@pytest.mark.gen_test(timeout=20)
async def test_dashboard_page_has_current_values_server_rendered(servers):
    server = await servers.start()
    await server.record("a", 41.5)
    a = await server.record("a", 42.25)
    b = await server.record("b", HOSTILE)
    c = await server.record("c", 7)
    response = await get(server, "/d/main")
    assert response.code == 200
    body = response.body.decode()
    assert "42.25" in widget_section(body, "a")
    # The hostile text is on the page, escaped; nowhere as markup.
    assert html.escape(HOSTILE, quote=False) in widget_section(body, "b")
    assert HOSTILE not in body
    assert 'id="w-c"' not in body  # another dashboard's widget
    block = page_data(body)
    assert block["dashboard"] == "main"
    assert block["lastEventId"] == b.id  # c came later, but not on this dashboard
    assert c.id > block["lastEventId"]
    assert [w["id"] for w in block["widgets"]] == ["a", "b"]
    # a's history, downsampled: both samples in the buckets of its series; its value for
    # the change arrow; the arrow itself, from the value before.
    series = block["series"]["a"]
    assert sum(series["n"]) == 2 and min(series["min"]) == 41.5 and max(series["max"]) == a.value
    assert set(block["series"]) == {"a"}  # text has no history to draw
    assert block["values"] == {"a": a.value}
    assert "▲ +1.81%" in widget_section(body, "a")


@pytest.mark.gen_test(timeout=20)
async def test_dashboard_page_with_no_data_yet(servers):
    server = await servers.start()
    response = await get(server, "/d/other")
    assert response.code == 200
    block = page_data(response.body.decode())
    assert block["lastEventId"] == 0
    assert block["events"] == "/events/other"


@pytest.mark.gen_test(timeout=20)
async def test_an_error_sample_shows_its_message_escaped(servers):
    server = await servers.start()
    await server.record("a", 3, "error", "<b>down</b>")
    section = widget_section((await get(server, "/d/main")).body.decode(), "a")
    assert "is-error" in section
    assert "&lt;b&gt;down&lt;/b&gt;" in section and "<b>down</b>" not in section


@pytest.mark.parametrize("path", ["/d/nope", "/nowhere", "/d/main/extra"])
@pytest.mark.gen_test(timeout=20)
async def test_unknown_page_is_a_404_html_page(servers, path):
    server = await servers.start()
    response = await get(server, path)
    assert response.code == 404
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    body = response.body.decode()
    assert body.lstrip().lower().startswith("<!doctype html>")
    assert "404" in body


# --- the JSON API, reading -----------------------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_api_widgets_lists_every_widget_with_its_latest_sample(servers):
    server = await servers.start()
    await server.record("a", 1)
    a = await server.record("a", 2)
    b = await server.record("b", "down", "error", "no route")
    code, body = await get_json(server, "/api/widgets")
    assert code == 200
    widgets = {w["id"]: w for w in body["widgets"]}
    assert list(widgets) == ["a", "b", "c"]
    assert widgets["a"]["sample"]["id"] == a.id and widgets["a"]["sample"]["value"] == 2
    assert widgets["a"]["view"] == "number" and widgets["a"]["dashboards"] == ["main"]
    assert widgets["b"]["dashboards"] == ["main", "other"]
    assert widgets["b"]["sample"] == {
        "id": b.id,
        "widget": "b",
        "value": "down",
        "ts": widgets["b"]["sample"]["ts"],
        "status": "error",
        "message": "no route",
    }
    assert widgets["c"]["sample"] is None


@pytest.mark.gen_test(timeout=20)
async def test_api_one_widget(servers):
    server = await servers.start()
    sample = await server.record("c", 5)
    code, body = await get_json(server, "/api/widgets/c")
    assert code == 200
    assert (body["id"], body["sample"]["id"], body["sample"]["value"]) == ("c", sample.id, 5)
    code, body = await get_json(server, "/api/widgets/nope")
    assert code == 404
    assert body == {"error": "unknown widget 'nope'"}


@pytest.mark.gen_test(timeout=20)
async def test_api_history_since_and_limit(servers):
    server = await servers.start()
    samples = [await server.record("a", n) for n in range(6)]
    await server.record("c", 99)
    values = lambda body: [s["value"] for s in body["samples"]]  # noqa: E731
    code, body = await get_json(server, "/api/widgets/a/history")
    assert code == 200 and body["widget"] == "a"
    assert values(body) == [0, 1, 2, 3, 4, 5]
    assert [s["id"] for s in body["samples"]] == [s.id for s in samples]
    _, body = await get_json(server, f"/api/widgets/a/history?since={samples[3].id}")
    assert values(body) == [4, 5]
    _, body = await get_json(server, "/api/widgets/a/history?limit=2")
    assert values(body) == [4, 5]  # the newest two, oldest first
    _, body = await get_json(server, f"/api/widgets/a/history?since={samples[0].id}&limit=1000")
    assert values(body) == [1, 2, 3, 4, 5]
    _, body = await get_json(server, "/api/widgets/c/history?since=0&limit=1")
    assert values(body) == [99]
    _, body = await get_json(server, "/api/widgets/c/history?since=" + "0" * 30 + "&limit=" + "0" * 30 + "1")
    assert values(body) == [99]  # leading zeros count for nothing, also past 18 digits
    code, body = await get_json(server, "/api/widgets/nope/history")
    assert code == 404 and "error" in body


@pytest.mark.parametrize(
    "query, message",
    [
        ("limit=0", "limit: expected a number from 1 to 1000, got 0"),
        ("limit=1001", "limit: expected a number from 1 to 1000, got 1001"),
        ("limit=abc", "limit: expected a whole number, got 'abc'"),
        ("limit=-1", "limit: expected a whole number, got '-1'"),
        ("limit=", "limit: expected a whole number, got ''"),
        ("limit=1.5", "limit: expected a whole number, got '1.5'"),
        ("limit=5%25", "limit: expected a whole number, got '5%'"),
        ("since=-1", "since: expected a whole number, got '-1'"),
        ("since=abc", "since: expected a whole number, got 'abc'"),
        (
            "since=99999999999999999999",
            "since: expected a number from 0 to 999999999999999999, got 99999999999999999999",
        ),
        ("limit=0000000000000000000", "limit: expected a number from 1 to 1000, got 0"),  # zeros count for nothing
        ("since=%D9%A3", "since: expected a whole number, got '\u0663'"),  # an Arabic-Indic digit
    ],
)
@pytest.mark.gen_test(timeout=20)
async def test_api_history_rejects_bad_parameters_with_400_json(servers, query, message):
    server = await servers.start()
    code, body = await get_json(server, f"/api/widgets/a/history?{query}")
    assert code == 400
    assert body == {"error": message}
