"""The alerts of a real server on loopback: GET /api/alerts, acknowledging (with a token,
and as a signed-in viewer with the XSRF token), silences, the `alert` events on the
stream, /healthz and /metrics."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dashboard.config import load_config
from tests.alerting import Inbox, alert_table, notifier
from tests.configs import dashboard, loopback_server, push_widget, table, widget
from tests.helpers import StreamClient, data, health, wait_until, write_config
from tests.peers import refused_url
from tests.test_auth import ALICE_HASH, ALICE_PASSWORD, PUSH_TOKEN, SECRET
from tests.webclient import WebClient, xsrf_field

TOKEN_HEADERS = {"Authorization": f"Bearer {PUSH_TOKEN}", "Content-Type": "application/json"}
READ_TOKEN = "ops-read-token-0123456789"


def config_text(port: int) -> str:
    return (
        loopback_server(grace="1s")
        + table("api", tokens={"test": PUSH_TOKEN})
        + table("auth", secret=SECRET, users={"alice": ALICE_HASH})
        + table("auth.readers.opsbot", token=READ_TOKEN, dashboards=["ops"])
        + table("alerts", notify=["hook"], group_window="0s")
        + notifier("hook", "webhook", url=f"http://127.0.0.1:{port}/hook")
        + notifier("gone", "webhook", url=refused_url("/x"), retries=0, timeout="1s")
        + dashboard("main", ["cpu", "disk"])
        + dashboard("ops", ["secret"], auth="password")
        + dashboard("other", ["note"])
        + push_widget("cpu", "number", title="CPU", warn=70, crit=90, unit="%")
        + alert_table("cpu", on=["crit"])
        + push_widget("disk", "number", title="Disk", warn=80, crit=95)
        + alert_table("disk", notify=["hook", "gone"])
        + push_widget("secret", "number", title="Secret", crit=10)
        + alert_table("secret")
        + push_widget("note", "text")
    )


def told(inbox: Inbox, event: str, widget: str) -> bool:
    return any((a["event"], a["widget"]) == (event, widget) for body in inbox.bodies() for a in body["alerts"])


async def alerts(client: WebClient, query: str = "", headers: dict | None = None) -> dict:
    reply = await client.get(f"/api/alerts{query}", headers)
    assert reply.status == 200, reply.text
    return reply.json()


async def firing(client: WebClient, widget: str) -> dict:
    async def found():
        body = await alerts(client, f"?state=firing&widget={widget}", TOKEN_HEADERS)
        return body["alerts"][0] if body["alerts"] else None

    return await wait_until(found, message=f"an alert of {widget} firing")


@pytest.mark.gen_test(timeout=60)
async def test_the_api_lists_open_and_recent_alerts_with_filters(servers, receiver):
    inbox, port = receiver
    server = await servers.start(config_text(port))
    client = WebClient(server.port)
    await server.record("cpu", 95)
    await server.record("secret", 50)
    cpu = await firing(client, "cpu")
    assert (cpu["widget"], cpu["condition"], cpu["severity"], cpu["title"]) == ("cpu", "crit", "crit", "CPU")
    assert cpu["message"] == "CPU 95 % is above crit (90 %)" and cpu["silenced"] is None
    await server.record("cpu", 20)
    await wait_until(lambda: told(inbox, "resolved", "cpu"), message="the resolved notification")

    everything = await alerts(client, "", TOKEN_HEADERS)
    assert [(a["widget"], a["state"]) for a in everything["alerts"]] == [("secret", "firing"), ("cpu", "resolved")]
    assert everything["firing"] == 1
    assert [a["widget"] for a in (await alerts(client, "?state=resolved", TOKEN_HEADERS))["alerts"]] == ["cpu"]
    assert [a["widget"] for a in (await alerts(client, "?state=open", TOKEN_HEADERS))["alerts"]] == ["secret"]
    assert (await alerts(client, "?widget=disk", TOKEN_HEADERS))["alerts"] == []
    assert len((await alerts(client, "?limit=1", TOKEN_HEADERS))["alerts"]) == 1
    # Without a token, the alerts of the widgets this viewer may see, and no other.
    assert [a["widget"] for a in (await alerts(client))["alerts"]] == ["cpu"]
    one = await client.get(f"/api/alerts/{cpu['id']}")
    assert [e["state"] for e in one.json()["events"]] == ["firing", "resolved"]
    secret_id = everything["alerts"][0]["id"]
    assert (await client.get(f"/api/alerts/{secret_id}")).status == 404
    # A read token sees what its dashboards show (and the public ones), as on /api/widgets.
    reader = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert [a["widget"] for a in (await alerts(client, "", reader))["alerts"]] == ["secret", "cpu"]
    assert (await client.get(f"/api/alerts/{secret_id}", reader)).json()["widget"] == "secret"
    ack = await client.request("POST", f"/api/alerts/{secret_id}/ack", {**reader, "Content-Type": "application/json"})
    assert ack.status == 401, ack.text  # reading is not acknowledging
    assert (await client.get("/api/silences", reader)).status == 401


@pytest.mark.parametrize(
    ("path", "headers", "status", "error"),
    [
        (
            "/api/alerts?state=burning",
            {},
            400,
            'state: expected one of: open, pending, firing, resolved, got "burning"',
        ),
        ("/api/alerts?widget=nope", {}, 404, 'unknown widget "nope"'),
        ("/api/alerts?limit=0", {}, 400, "limit: expected a number from 1 to 1000, got 0"),
        ("/api/alerts", {"Authorization": "Bearer wrong-token-0000"}, 401, "invalid token"),
        ("/api/alerts/123456", {}, 404, "no alert 123456"),
        ("/api/silences", {}, 401, "missing token"),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_bad_reads_get_a_precise_error(servers, path, headers, status, error):
    server = await servers.start(config_text(1))
    reply = await WebClient(server.port).get(path, headers)
    assert reply.status == status, reply.text
    assert reply.json()["error"].startswith(error)


@pytest.mark.gen_test(timeout=60)
async def test_acknowledging_with_a_token_stops_the_repeats_and_is_kept(servers, receiver):
    inbox, port = receiver
    server = await servers.start(config_text(port))
    client = WebClient(server.port)
    await server.record("cpu", 99)
    cpu = await firing(client, "cpu")
    path = f"/api/alerts/{cpu['id']}/ack"
    assert (await client.request("POST", path)).status == 403  # a cookie's request without the XSRF token
    await client.get("/login")  # an _xsrf cookie, but nobody signed in
    anonymous = await client.request("POST", path, {"X-XSRFToken": client.jar["_xsrf"]})
    assert (anonymous.status, anonymous.json()["error"]) == (
        401,
        "sign in (or send a push token) to acknowledge an alert",
    )
    wrong = await client.request("POST", path, {**TOKEN_HEADERS, "Authorization": "Bearer nope-nope-nope"})
    assert wrong.status == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    reply = await client.request("POST", path, TOKEN_HEADERS, json.dumps({"by": "oncall Bob"}).encode())
    assert reply.status == 200, reply.text
    assert reply.json()["acked_by"] == "oncall Bob" and reply.json()["acked_at"]
    again = await client.request("POST", path, TOKEN_HEADERS)
    assert again.json()["acked_by"] == "oncall Bob"  # the first acknowledgement stands
    bad = await client.request("POST", path, TOKEN_HEADERS, b'{"who": 1}')
    assert (bad.status, bad.json()["error"]) == (400, 'unknown key "who" (expected "by")')
    # A name goes into log lines, mail and pages: no line break, NUL or lone surrogate in it.
    for forged in ("bob\n2026-12-04 ERROR dashboard: forged", "a\x00b", "\ud800", "x" * 129, " "):
        refused = await client.request("POST", path, TOKEN_HEADERS, json.dumps({"by": forged}).encode())
        assert refused.status == 400 and refused.json()["error"].startswith("by: expected a name of 1-128 printable")
    await server.record("cpu", 10)
    await wait_until(lambda: told(inbox, "resolved", "cpu"), message="the resolved notification")
    resolved = await client.request("POST", path, TOKEN_HEADERS)
    assert resolved.status == 409 and "resolved" in resolved.json()["error"]
    assert (await client.request("POST", "/api/alerts/999999/ack", TOKEN_HEADERS)).status == 404
    events = (await client.get(f"/api/alerts/{cpu['id']}", TOKEN_HEADERS)).json()["events"]
    assert [(e["state"], e["by"]) for e in events] == [
        ("firing", None),
        ("acknowledged", "oncall Bob"),
        ("resolved", None),
    ]


@pytest.mark.gen_test(timeout=60)
async def test_a_signed_in_viewer_acknowledges_with_the_xsrf_token(servers, receiver):
    _, port = receiver
    server = await servers.start(config_text(port))
    client = WebClient(server.port)
    await server.record("secret", 50)
    secret = await firing(client, "secret")
    path = f"/api/alerts/{secret['id']}/ack"
    assert (await client.request("POST", path)).status == 403  # no XSRF token, no cookie
    form = await client.get("/login")
    await client.post_form("/login", {"name": "alice", "password": ALICE_PASSWORD, "_xsrf": xsrf_field(form.text)})
    assert (await client.request("POST", path)).status == 403  # signed in, but no XSRF header
    reply = await client.request("POST", path, {"X-XSRFToken": client.jar["_xsrf"]})
    assert reply.status == 200, reply.text
    assert reply.json()["acked_by"] == "alice"


@pytest.mark.gen_test(timeout=60)
async def test_silences_through_the_api(servers, receiver):
    inbox, port = receiver
    server = await servers.start(config_text(port))
    client = WebClient(server.port)
    body = json.dumps({"widgets": ["cpu"], "duration": "1h", "reason": "fan replacement"}).encode()
    created = await client.request("POST", "/api/silences", TOKEN_HEADERS, body)
    assert created.status == 201, created.text
    silence = created.json()
    assert silence["widgets"] == ["cpu"] and silence["active"] and silence["created_by"] == "token test"
    assert created.headers["Location"] == f"/api/silences/{silence['id']}"
    await server.record("cpu", 99)
    cpu = await firing(client, "cpu")
    assert cpu["silenced"] == f"silence {silence['id']}"  # shown, marked
    listed = (await client.get("/api/silences", TOKEN_HEADERS)).json()
    assert [s["id"] for s in listed["silences"]] == [silence["id"]] and listed["maintenance"] == []
    assert inbox.received == []
    ended = await client.request("DELETE", f"/api/silences/{silence['id']}", TOKEN_HEADERS)
    assert ended.status == 200 and not ended.json()["active"]
    await wait_until(lambda: len(inbox.received) == 1, message="the alert told once the silence ended")
    assert (await client.get("/api/silences", TOKEN_HEADERS)).json()["silences"] == []
    assert (await client.request("DELETE", "/api/silences/4242", TOKEN_HEADERS)).status == 404
    # Widgets named twice count once; a reason is cleaned as values are.
    body = json.dumps({"widgets": ["cpu", "disk"] * 500, "duration": "1m", "reason": "a\x00b\ud800"}).encode()
    created = await client.request("POST", "/api/silences", TOKEN_HEADERS, body)
    assert created.status == 201, created.text
    assert created.json()["widgets"] == ["cpu", "disk"] and created.json()["reason"] == "a\ufffdb\ufffd"
    listed = (await client.get("/api/silences", TOKEN_HEADERS)).json()["silences"]
    assert [(s["widgets"], s["reason"]) for s in listed] == [(["cpu", "disk"], "a\ufffdb\ufffd")]


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        ({"duration": "1h"}, {"Authorization": "Bearer nope-nope-nope"}, 401, "invalid token"),
        (
            {"duration": "1h"},
            {"Content-Type": "text/plain"},
            415,
            'expected Content-Type: application/json, got "text/plain"',
        ),
        (
            {"duration": "soon"},
            {},
            400,
            'duration: expected a duration like "30m" or "2h" (from "1s" to "366d"), got a string',
        ),
        ({"duration": "999ms"}, {}, 400, "duration: expected a duration"),
        ({"duration": "400d"}, {}, 400, "duration: expected a duration"),
        ({}, {}, 400, "duration: expected a duration"),
        ({"duration": "1h", "widgets": []}, {}, 400, "widgets: expected an array of widget ids, got an array"),
        ({"duration": "1h", "widgets": ["nope"]}, {}, 404, 'unknown widget "nope"'),
        ({"duration": "1h", "until": "never"}, {}, 400, 'unknown key "until"'),
        ([1], {}, 400, 'expected a JSON object like {"duration": "2h"}, got an array'),
        # The body is read as the push API reads its own (web/push.py json_object).
        (b'{"duration": NaN}', {}, 400, "invalid JSON: NaN is not JSON"),
        (b'{"duration": "\xff"}', {}, 400, "invalid JSON: not UTF-8 (byte 14)"),
        (b"[" * 10_000, {}, 400, "invalid JSON: nested too deeply"),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_bad_silences_get_a_precise_error(servers, body, headers, status, error):
    server = await servers.start(config_text(1))
    reply = await WebClient(server.port).request(
        "POST",
        "/api/silences",
        {**TOKEN_HEADERS, **headers},
        body if isinstance(body, bytes) else json.dumps(body).encode(),
    )
    assert reply.status == status, reply.text
    assert reply.json()["error"].startswith(error)


@pytest.mark.gen_test(timeout=60)
async def test_pages_are_told_of_alerts_over_their_stream(servers, receiver):
    _, port = receiver
    server = await servers.start(config_text(port))
    await server.record("cpu", 99)
    await firing(WebClient(server.port), "cpu")
    main = await StreamClient.open(server.url("/events/main"))
    other = await StreamClient.open(server.url("/events/other"))
    assert (await main.next_event()).type == "hello"
    opening = await main.next_event()
    while opening.type != "alert":  # after the widgets' values: what is open now, as the stream opens
        opening = await main.next_event()
    assert data(opening)["complete"] is True
    assert [(a["widget"], a["state"]) for a in data(opening)["alerts"]] == [("cpu", "firing")]
    await server.record("cpu", 5)
    while (event := await main.next_event()).type != "alert":
        pass
    (alert,) = data(event)["alerts"]
    assert (alert["widget"], alert["state"], data(event)["complete"]) == ("cpu", "resolved", False)
    assert b"id:" not in main.raw[main.raw.rindex(b"event: alert") :]  # a control event moves no Last-Event-ID
    # A dashboard that does not show the widget hears nothing of it.
    assert (await other.next_event()).type == "hello"
    await server.record("note", "hi")
    assert (await other.next_event()).type == "note"
    assert b"event: alert" not in other.raw
    main.close()
    other.close()


@pytest.mark.gen_test(timeout=60)
async def test_healthz_and_metrics_show_alerts_and_each_notifier(servers, receiver):
    _, port = receiver
    server = await servers.start(config_text(port))
    await server.record("cpu", 99)
    await server.record("disk", 99)  # to "hook" and to "gone", which refuses connections

    async def gone_failing():
        return (await health(server))[1]["alerts"]["notifiers"]["gone"]["status"] == "failing"

    await wait_until(gone_failing, timeout=10, message="the failing notifier on /healthz")
    code, body = await health(server)
    assert code == 200  # a failing notifier is no reason to restart the server
    report = body["alerts"]
    assert report["firing"] == 3 and report["rules"] == 4  # cpu crit; disk warn and crit; secret crit
    assert report["notifiers"]["gone"]["last_error"].startswith("cannot reach http://127.0.0.1:") or report[
        "notifiers"
    ]["gone"]["last_error"].startswith("no answer from http://127.0.0.1:")
    assert report["notifiers"]["hook"]["status"] == "ok"
    scrape = (await WebClient(server.port).get("/metrics")).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scrape)
        for s in family.samples
    }
    assert samples[("dashboard_alerts_firing", (("severity", "crit"),))] == 2
    assert samples[("dashboard_alerts_firing", (("severity", "warn"),))] == 1
    assert samples[("dashboard_notifications_sent_total", (("notifier", "hook"),))] >= 1
    assert samples[("dashboard_notifications_failed_total", (("notifier", "gone"),))] == 1
    assert samples[("dashboard_notifications_dropped_total", (("notifier", "gone"),))] == 1


@pytest.mark.gen_test(timeout=60)
async def test_a_reload_applies_new_rules_and_resolves_the_alerts_of_removed_ones(servers, receiver, tmp_path):
    inbox, port = receiver
    text = config_text(port)
    server = await servers.start(text, config_loader=lambda: load_config(tmp_path / "config.toml"))
    client = WebClient(server.port)
    await server.record("cpu", 99)
    await firing(client, "cpu")
    # The cpu loses its alert table; the note gets one.
    changed = text.replace('\n[widgets.cpu.alert]\non = ["crit"]\n', "\n") + alert_table("note", on=["failing"])
    write_config(tmp_path, changed)
    assert await server.server.reload()
    await wait_until(lambda: told(inbox, "resolved", "cpu"), message="the cpu resolved")
    resolved = [a for body in inbox.bodies() for a in body["alerts"] if a["event"] == "resolved"]
    assert resolved[0]["message"].endswith("no longer watched (the configuration changed)")
    await server.record("note", None, "error", "no such file")
    await firing(client, "note")


@pytest.mark.gen_test(timeout=60)
async def test_a_viewer_signed_in_by_the_proxy_acknowledges_from_the_page(servers, receiver):
    _, port = receiver
    text = (
        config_text(port).replace("[server]\n", '[server]\ntrusted_proxies = ["127.0.0.2"]\n', 1)
        + dashboard("sso", ["cpu", "board"], auth="proxy")
        + widget("board", "alerts")
    )
    server = await servers.start(text)
    await server.record("cpu", 99)
    cpu = await firing(WebClient(server.port), "cpu")
    proxy = WebClient(server.port, source="127.0.0.2", headers={"X-Forwarded-User": "carol@example.org"})
    page = await proxy.get("/d/sso")
    assert page.status == 200 and 'data-ack="' in page.text  # the page has the Ack button, and the XSRF cookie
    reply = await proxy.request("POST", f"/api/alerts/{cpu['id']}/ack", {"X-XSRFToken": proxy.jar["_xsrf"]})
    assert reply.status == 200, reply.text
    assert reply.json()["acked_by"] == "carol@example.org"
    # The same page for a stranger on the public dashboard: no button, no XSRF cookie made for it.
    stranger = WebClient(server.port)
    public = await stranger.get("/d/main")
    assert "data-ack=" not in public.text and "_xsrf" not in stranger.jar


@pytest.mark.gen_test(timeout=60)
async def test_the_page_of_an_alerts_widget_alone_lists_the_open_alerts(servers, receiver, caplog):
    _, port = receiver
    server = await servers.start(config_text(port) + dashboard("wall", ["cpu", "board"]) + widget("board", "alerts"))
    await server.record("cpu", 99)
    await firing(WebClient(server.port), "cpu")
    page = await WebClient(server.port).get("/w/board")
    assert page.status == 200
    assert "cannot be shown" not in page.text and "CPU" in page.text
    assert 'data-role="alerts-none" hidden' in page.text  # one alert listed, so "No alerts" is hidden
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/api/silences", 401),  # token only: no XSRF check before the token's
        ("GET", "/api/silences", 401),
        ("DELETE", "/api/silences/1", 401),
        ("PUT", "/api/widgets/cpu/history", 405),  # not served there: no XSRF check before the 405
        ("DELETE", "/api/alerts", 405),
        ("PATCH", "/api/widgets/cpu/series", 405),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_without_a_token_or_with_another_method_the_answer_says_so(servers, method, path, status):
    server = await servers.start(config_text(1))
    body = b'{"duration": "1m"}' if method in ("POST", "PUT", "PATCH") else None
    reply = await WebClient(server.port).request(method, path, {"Content-Type": "application/json"}, body)
    assert reply.status == status, reply.text
    assert "_xsrf" not in reply.json()["error"]
