"""Alerts across processes: a worker (holding the tickers' lease) judges and notifies, a
web process takes the pushes, shows the alerts on its pages and takes acknowledgements
and silences; a private Redis joins them, PostgreSQL holds everything."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.alerting import Inbox, alert_table, notifier
from tests.configs import dashboard, loopback_server, push_widget, table, widget
from tests.helpers import TOKEN, StreamClient, data, wait_until, write_config

HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def config_text(redis_url: str, pg_url: str, hook: int) -> str:
    return (
        loopback_server(storage=pg_url, grace="1s")
        + f'\n[hub]\nbackend = "redis"\nurl = "{redis_url}"\nlease = "1s"\n'
        + table("api", tokens={"test": TOKEN})
        + table("alerts", notify=["hook"], group_window="0s")
        + notifier("hook", "webhook", url=f"http://127.0.0.1:{hook}/hook")
        + dashboard("main", ["cpu", "disk", "board"])
        + push_widget("cpu", "number", title="CPU", crit=90)
        + alert_table("cpu")
        + push_widget("disk", "number", title="Disk", crit=90)
        + alert_table("disk")
        + widget("board", "alerts")
    )


async def call(url: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict]:
    response = await AsyncHTTPClient().fetch(
        url,
        method=method,
        headers=HEADERS,
        body=json.dumps(body) if body is not None else None,
        allow_nonstandard_methods=True,
        raise_error=False,
    )
    return response.code, json.loads(response.body)


def told(inbox: Inbox) -> list[tuple[str, str, str | None]]:
    return [(a["event"], a["widget"], a["acked_by"]) for body in inbox.bodies() for a in body["alerts"]]


async def next_alert(client: StreamClient) -> dict:
    while True:
        event = await client.next_event(timeout=15)
        if event.type == "alert":
            return data(event)


@pytest.mark.gen_test(timeout=120)
async def test_a_worker_judges_pushes_made_to_a_web_process_which_shows_them(
    tmp_path, redis_server, pg_url, processes, receiver
):
    inbox, hook = receiver
    path = write_config(tmp_path, config_text(redis_server.url, pg_url, hook))
    worker = processes.start(path, "worker")
    web = processes.start(path, "web")
    await wait_until(lambda: (worker.health() or {}).get("alerts", {}).get("mode") == "judge", timeout=20)
    assert web.health()["alerts"]["mode"] == "follow"

    stream = await StreamClient.open(web.url("/events/main"))
    assert (await next_alert(stream))["complete"] is True  # nothing open yet, said at the opening

    assert (await call(web.url("/api/widgets/cpu"), "POST", {"value": 95}))[0] == 200
    await wait_until(lambda: told(inbox) == [("firing", "cpu", None)], timeout=15, message="the worker's notification")
    event = await next_alert(stream)
    assert [(a["widget"], a["state"]) for a in event["alerts"]] == [("cpu", "firing")]
    code, body = await call(web.url("/api/alerts?state=firing"))
    assert code == 200 and [a["widget"] for a in body["alerts"]] == ["cpu"]

    # Acknowledged on the web process: the worker reads it, and says so when it resolves.
    code, acked = await call(web.url(f"/api/alerts/{body['alerts'][0]['id']}/ack"), "POST", {"by": "bob"})
    assert (code, acked["acked_by"]) == (200, "bob")
    assert (await next_alert(stream))["alerts"][0]["acked_by"] == "bob"

    # Silenced on the web process: the worker holds the disk's notification back until it ends.
    code, silence = await call(web.url("/api/silences"), "POST", {"widgets": ["disk"], "duration": "1h"})
    assert code == 201
    assert (await call(web.url("/api/widgets/disk"), "POST", {"value": 99}))[0] == 200
    firing = await next_alert(stream)
    assert (firing["alerts"][0]["widget"], firing["alerts"][0]["silenced"]) == ("disk", f"silence {silence['id']}")
    assert told(inbox) == [("firing", "cpu", None)]
    assert (await call(web.url(f"/api/silences/{silence['id']}"), "DELETE"))[0] == 200
    await wait_until(lambda: ("firing", "disk", None) in told(inbox), timeout=15, message="the disk after the silence")

    assert (await call(web.url("/api/widgets/cpu"), "POST", {"value": 10}))[0] == 200
    await wait_until(lambda: ("resolved", "cpu", "bob") in told(inbox), timeout=15, message="the resolve")
    assert told(inbox) == [("firing", "cpu", None), ("firing", "disk", None), ("resolved", "cpu", "bob")]
    stream.close()
