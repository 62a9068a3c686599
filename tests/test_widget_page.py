"""/w/<widget> (one widget, full size, live) and /badge/<widget>.svg on a real server:
what they show, who may see them, and the headers that let them be embedded or cached."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from dashboard.web.badge import COLOURS, GREY, INFO, MAX_TEXT, render_badge
from tests.configs import LOBBY_TOKEN, SECRET, dashboard, loopback_server, push_widget, push_widgets, table
from tests.helpers import BASE_CONFIG, StreamClient, page_data
from tests.webclient import WebClient

READ_TOKEN = "read-token-grafana-0123456789"
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "a <b>&\"'\r\nc\x00d\u2028e </svg><script>alert(1)</script>"

CONFIG = (
    loopback_server(grace="2s", frame_ancestors=["'self'", "https://wiki.example.org"])
    + table("auth", secret=SECRET, tokens={"lobby": LOBBY_TOKEN})
    + table("auth.readers.grafana", token=READ_TOKEN, dashboards=["lobby"])
    + dashboard("open", ["load", "chart", "note", "up"], theme="dark")
    + dashboard("lobby", ["secret"], auth="token")
    + push_widget("load", "number", title="Load", unit="%", warn=70, crit=90)
    + push_widget("chart", "graph", title="Chart")
    + push_widget("note", "text", title=HOSTILE.replace("\x00", ""))  # check refuses NUL in config text
    + push_widget("up", "status", title="Site")
    + push_widgets(secret="number")
)


async def badge(server, widget: str, headers: dict | None = None):
    return await WebClient(server.port).get(f"/badge/{widget}.svg", headers)


def svg_texts(body: bytes) -> list[str]:
    root = ET.fromstring(body)  # well-formed XML, or this raises
    assert root.tag == f"{SVG}svg"
    assert not list(root.iter(f"{SVG}script"))
    return [t.text or "" for t in root.iter(f"{SVG}text")]


# --- the page ---------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_the_widget_page_shows_one_widget_and_streams_only_it(servers):
    server = await servers.start(CONFIG)
    points = [await server.record("chart", v) for v in (1, 2, 3)]
    await server.record("load", 42)
    reply = await WebClient(server.port).get("/w/chart")
    assert reply.status == 200
    html = reply.text
    assert html.count('class="widget ') == 1 and 'id="w-chart"' in html
    assert '<html lang="en" class="theme-dark">' in html  # the theme of its dashboard
    data = page_data(html)
    assert data["events"] == "/events?widgets=chart"
    assert data["lastEventId"] >= points[-1].id
    # Its history, as the dashboard page draws it: the series holds the three points.
    assert sum(data["series"]["chart"]["n"]) == len(points)
    assert [w["id"] for w in data["widgets"]] == ["chart"]
    # Embeddable where [server] frame_ancestors says, like every page.
    assert reply.headers["Content-Security-Policy"].endswith("frame-ancestors 'self' https://wiki.example.org")
    # Its stream resumes exactly after what the page holds.
    client = await StreamClient.open(server.url(f"{data['events']}&last_event_id={data['lastEventId']}"))
    assert (await client.next_event()).type == "hello"
    await server.record("load", 50)  # another widget: not on this stream
    live = await server.record("chart", 4)
    event = await client.next_widget_event()
    assert (event.type, int(event.last_event_id)) == ("chart", live.id)
    client.close()


@pytest.mark.gen_test(timeout=20)
async def test_the_widget_page_in_kiosk_mode(servers):
    server = await servers.start(CONFIG)
    reply = await WebClient(server.port).get("/w/load?kiosk=1")
    assert reply.status == 200
    assert '<html lang="en" class="theme-dark kiosk">' in reply.text
    assert page_data(reply.text)["kiosk"] is True


@pytest.mark.gen_test(timeout=20)
async def test_the_widget_page_answers_like_its_dashboard_to_whoever_may_not_see_it(servers):
    server = await servers.start(CONFIG)
    assert (await WebClient(server.port).get("/w/nope")).status == 404
    stranger = await WebClient(server.port).get("/w/secret")
    assert stranger.status == 401 and "kiosk link" in stranger.text
    kiosk = WebClient(server.port)
    swapped = await kiosk.get(f"/w/secret?kiosk=1&token={LOBBY_TOKEN}")  # a kiosk link works here too
    assert swapped.status == 303 and swapped.headers["Location"] == "/w/secret?kiosk=1"
    reply = await kiosk.get("/w/secret?kiosk=1")
    assert reply.status == 200 and reply.headers["Cache-Control"] == "no-store"
    reader = await WebClient(server.port).get("/w/secret", {"Authorization": f"Bearer {READ_TOKEN}"})
    assert reader.status == 200


# --- the badge ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text", "colour"),
    [
        (42, "42%", COLOURS["ok"]),
        (75.5, "75.5%", COLOURS["warn"]),
        (95, "95%", COLOURS["crit"]),
        (None, "no data", GREY),
    ],
)
@pytest.mark.gen_test(timeout=20)
async def test_a_badge_shows_label_and_value_coloured_by_the_level(servers, value, text, colour):
    server = await servers.start(CONFIG)
    if value is not None:
        await server.record("load", value)
    reply = await badge(server, "load")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "image/svg+xml; charset=utf-8"
    assert svg_texts(reply.body) == ["Load", text]
    assert f'fill="{colour}"' in reply.text


@pytest.mark.gen_test(timeout=20)
async def test_a_badge_of_a_status_and_of_a_failing_source(servers):
    server = await servers.start(CONFIG)
    await server.record("up", {"state": "down", "latency_ms": 3})
    reply = await badge(server, "up")
    assert svg_texts(reply.body) == ["Site", "down"] and f'fill="{COLOURS["crit"]}"' in reply.text
    await server.record("up", None, "error", "timed out")
    reply = await badge(server, "up")
    assert svg_texts(reply.body) == ["Site", "error"] and f'fill="{GREY}"' in reply.text


@pytest.mark.gen_test(timeout=20)
async def test_a_badge_escapes_every_text_and_stays_valid_xml(servers):
    server = await servers.start(CONFIG)
    await server.record("note", "😀 \ud800 " + HOSTILE + "x" * 200)
    reply = await badge(server, "note")
    assert reply.status == 200
    label, value = svg_texts(reply.body)
    for text in (label, value):
        assert "\x00" not in text and "\r" not in text and "\n" not in text and "\u2028" not in text
        assert len(text) <= MAX_TEXT
    assert label.startswith("a <b>&\"'") and value.startswith("😀 \ufffd a <b>")
    assert b"<script>" not in reply.body and b"<b>" not in reply.body
    assert f'fill="{INFO}"' in reply.text  # text has no level: informational


@pytest.mark.gen_test(timeout=20)
async def test_a_badge_is_cached_briefly_and_answers_304_when_unchanged(servers):
    server = await servers.start(CONFIG)
    await server.record("load", 42)
    first = await badge(server, "load")
    assert first.headers["Cache-Control"] == "public, max-age=5"
    etag = first.headers["Etag"]
    assert etag
    again = await badge(server, "load", {"If-None-Match": etag})
    assert again.status == 304 and again.body == b""
    await server.record("load", 43)
    changed = await badge(server, "load", {"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["Etag"] != etag
    # Under the page's Content-Security-Policy, as every answer.
    assert "script-src 'self'" in changed.headers["Content-Security-Policy"]


@pytest.mark.gen_test(timeout=20)
async def test_a_badge_nobody_may_see_anonymously_is_a_404_like_one_that_does_not_exist(servers):
    server = await servers.start(CONFIG)
    await server.record("secret", 1234)
    hidden, missing = await badge(server, "secret"), await badge(server, "nope")
    assert hidden.status == missing.status == 404
    assert hidden.body == missing.body and b"1234" not in hidden.body
    wrong = await badge(server, "secret", {"Authorization": "Bearer not-a-read-token-at-all"})
    assert wrong.status == 404
    reader = await badge(server, "secret", {"Authorization": f"Bearer {READ_TOKEN}"})
    assert reader.status == 200 and svg_texts(reader.body)[1] == "1,234"
    assert reader.headers["Cache-Control"] == "private, max-age=5"


def test_a_badge_grows_with_its_text():
    short, long = render_badge("cpu", "1", INFO), render_badge("cpu", "1,234,567 requests", INFO)
    width = lambda svg: int(ET.fromstring(svg).get("width"))  # noqa: E731
    assert width(long) > width(short) + 50


@pytest.mark.gen_test(timeout=20)
async def test_badge_and_page_of_a_public_config_with_a_widget_on_no_dashboard(servers):
    server = await servers.start(BASE_CONFIG + push_widgets(loose="number"))
    await server.record("loose", 3)
    assert svg_texts((await badge(server, "loose")).body) == ["loose", "3"]
    assert (await WebClient(server.port).get("/w/loose")).status == 200
