"""Values already in the database that cannot be shown (stored before the values were
checked, or written by another program), and error answers on every path: the server
starts, the page renders, the widget says what is wrong, the rest carries on."""

from __future__ import annotations

import json
import logging
import re
import sqlite3

import pytest

from dashboard.web.pages import widget_body
from tests.configs import dashboard, loopback_server, push_widget, push_widgets, table
from tests.helpers import TOKEN, StreamClient, data
from tests.webclient import WebClient

CONFIG = (
    loopback_server(grace="2s")
    + table("api", tokens={"test": TOKEN})
    + dashboard("main", ["nan", "huge", "graph", "text", "list", "deep", "big", "latin", "note", "fine"])
    + push_widgets(nan="number", graph="graph", text="text", list="list", deep="status", big="text")
    + push_widgets(latin="text", note="text", fine="number")
    + push_widget("huge", "meter", min=0, max=10)
)

# (widget, the value column as SQL, the message column as SQL, status); each row as
# another program could have written it.
ROWS = [
    ("nan", "'NaN'", "NULL", "ok"),
    ("huge", "'" + "9" * 400 + "'", "NULL", "ok"),  # the column's numeric affinity makes it inf
    ("graph", "'1'", "NULL", "ok"),
    ("graph", "'Infinity'", "NULL", "ok"),
    ("graph", "'2'", "NULL", "ok"),
    ("graph", """'"not a number"'""", "NULL", "ok"),  # written for another view
    ("text", """'"a\\ud800b\\u0000c"'""", "NULL", "ok"),
    ("list", "'not JSON'", "NULL", "ok"),
    ("deep", "'" + "[" * 50 + "]" * 50 + "'", "NULL", "ok"),
    ("big", """'"' || hex(zeroblob(140000)) || '"'""", "NULL", "ok"),  # 280,000 characters
    ("latin", "CAST(X'22E92022' AS TEXT)", "NULL", "ok"),  # "é " in Latin-1: not UTF-8
    ("note", "NULL", "CAST(X'6261642066FF' AS TEXT)", "error"),
    ("fine", "'5'", "NULL", "ok"),
]

SHOWN = {  # widget -> what its message says (an error), or its value (ok)
    "nan": "the stored value cannot be shown: expected a finite number, got nan",
    "huge": "the stored value cannot be shown: expected a finite number, got inf",
    "graph": "the stored value cannot be shown by this graph: expected a number, got text 'not a number'",
    "list": "the stored value cannot be shown: not JSON: Expecting value: line 1 column 1 (char 0)",
    "deep": "the stored value cannot be shown: nested too deeply: at most 8 levels of lists and objects",
    "big": "the stored value cannot be shown: too large: more than 256 KiB as JSON",
    "note": "bad f\ufffd",
}


def write_rows(database) -> None:
    connection = sqlite3.connect(database)
    try:
        for widget_id, value, message, status in ROWS:
            connection.execute(
                "INSERT INTO samples (widget, ts, value, status, message) "
                f"VALUES (?, strftime('%Y-%m-%d %H:%M:%f000', 'now'), {value}, ?, {message})",
                (widget_id, status),
            )
        connection.commit()
    finally:
        connection.close()


def section_of(page: str, widget_id: str) -> str:
    match = re.search(rf'<section[^>]* id="w-{widget_id}".*?</section>', page, re.S)
    assert match, widget_id
    return match[0]


@pytest.mark.gen_test(timeout=60)
async def test_rows_another_program_wrote_show_as_errors_on_their_widgets_and_the_rest_renders(servers, tmp_path):
    server = await servers.start(CONFIG)
    await server.stop()
    write_rows(tmp_path / "data" / "test.db")
    server = await servers.start(CONFIG)  # a NaN in the database used to stop the server starting

    for path in ("/", "/d/main", "/api/widgets", "/api/widgets/graph/history", "/api/widgets/note"):
        reply = await WebClient(server.port).get(path)
        assert reply.status == 200, (path, reply.text[:300])
        reply.body.decode("utf-8")  # whole, and UTF-8
    page = (await WebClient(server.port).get("/d/main")).body.decode()
    stream = await StreamClient.open(server.url("/events/main"))
    snapshot = {event.type: data(event) for event in [await stream.next_widget_event() for _ in range(10)]}

    for widget_id, message in SHOWN.items():
        section = section_of(page, widget_id)
        assert "is-error" in section.split(">", 1)[0], widget_id
        assert message.replace("'", "&#39;") in section, (widget_id, section)
        assert snapshot[widget_id]["message"] == message  # the stream says the same
        assert snapshot[widget_id]["status"] == "error"
    assert ">a\ufffdb\ufffdc<" in section_of(page, "text")  # no NUL for the HTML parser to drop
    assert snapshot["text"]["value"] == "a\ufffdb\ufffdc"
    assert ">\ufffd <" in section_of(page, "latin")
    assert ">5<" in section_of(page, "fine") and snapshot["fine"]["value"] == 5
    graph = json.loads(re.search(r'id="dashboard-data">(.*?)</script>', page, re.S)[1])["series"]["graph"]
    # The points that can be drawn: the graph's series counts the two numbers, nothing else.
    assert (sum(graph["n"]), min(graph["min"]), max(graph["max"])) == (2, 1, 2)

    # New values replace the bad ones as usual.
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    reply = await WebClient(server.port).request("POST", "/api/widgets/nan", headers, b'{"value": 3}')
    assert reply.status == 200
    assert data(await stream.next_widget_event()) | {"ts": None} == {
        "widget": "nan",
        "value": 3,
        "ts": None,
        "status": "ok",
    }
    stream.close()


def test_a_widget_whose_macro_fails_says_so_and_the_page_goes_on(caplog):
    class Widget:
        id = "w"

    def broken_macro(widget, sample, graph):
        return 1 / 0

    with caplog.at_level(logging.ERROR, "dashboard.pages"):
        body = widget_body(broken_macro, Widget(), None, None)
    assert "this value cannot be shown" in body
    assert "widget w could not be rendered" in caplog.text


# --- error answers on every path ------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path, status, answer",
    [
        ("GET", "/static/page.js%00.css", 404, None),
        ("GET", "/static/%00", 404, None),
        ("GET", "/static/" + "a" * 5000 + ".js", 404, None),
        # Static files live under /static/<version tag>/: any other path there is a 404.
        ("GET", "/static/%ff.js", 404, None),
        ("GET", "/static/../config.toml", 404, None),
        ("POST", "/api/widgets/a%20b", 404, {"error": 'unknown widget "a b"'}),
        ("POST", "/api/widgets/a%00b", 404, {"error": 'unknown widget "a\\u0000b"'}),
        ("GET", "/api/widgets/a%20b", 404, {"error": "unknown widget 'a b'"}),
        ("GET", "/api/widgets/a%20b/history", 404, {"error": "unknown widget 'a b'"}),
        # A "%" is shown as sent, once (Tornado doubles it in a message given without arguments).
        ("GET", "/api/widgets/a%25b", 404, {"error": "unknown widget 'a%b'"}),
        ("GET", "/api/widgets/%25s%25%25/series", 404, {"error": "unknown widget '%s%%'"}),
        ("POST", "/api/widgets/a%25b", 404, {"error": 'unknown widget "a%b"'}),
        ("POST", "/api/widgets/%ff", 400, None),
        ("POST", "/nowhere", 404, None),
        ("POST", "/api/nowhere", 404, {"error": "There is no page at this address."}),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_bad_addresses_get_the_documented_4xx(servers, method, path, status, answer):
    server = await servers.start(CONFIG)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    reply = await WebClient(server.port).request(method, path, headers, b'{"value": 1}' if method == "POST" else None)
    assert reply.status == status, reply.text[:200]
    if answer is not None:
        assert reply.json() == answer


@pytest.mark.gen_test(timeout=60)
async def test_a_value_stored_for_another_view_is_an_error_everywhere_it_is_shown(servers):
    before = loopback_server(grace="1s") + dashboard("main", ["w"]) + push_widget("w", "text")
    server = await servers.start(before)
    await server.record("w", "hello")
    await server.stop()
    # The widget now shows numbers: the stored text cannot be one.
    server = await servers.start(before.replace('view = "text"', 'view = "number"'))
    expected = "the stored value cannot be shown by this number"
    client = WebClient(server.port)
    page = (await client.get("/d/main")).text
    assert expected in section_of(page, "w")
    for path in ("/api/widgets/w", "/api/widgets"):
        body = json.loads((await client.get(path)).body)
        sample = body["sample"] if path.endswith("/w") else body["widgets"][0]["sample"]
        assert (sample["status"], sample["value"]) == ("error", None), path
        assert expected in sample["message"], path
    badge = (await client.get("/badge/w.svg")).text
    assert "hello" not in badge
    for path in ("/events/main", "/events?widgets=w"):
        stream = await StreamClient.open(server.url(path))
        event = await stream.next_widget_event()
        assert data(event)["status"] == "error" and expected in data(event)["message"], path
        stream.close()
