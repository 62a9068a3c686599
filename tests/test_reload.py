"""Reloading config.toml: SIGHUP to the real server, and the rules of what changes."""

from __future__ import annotations

import json
import logging
import signal

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from dashboard.config import load_config
from dashboard.service.reload import compare, keep_restart_settings
from tests.configs import dashboard, loopback_server, push_widget, push_widgets, table, widget
from tests.helpers import TOKEN, StreamClient, data, wait_until, write_config
from tests.process import ServerProcess

STEADY = dashboard("steady", ["tick"]) + widget(
    "tick",
    "number",
    every="50ms",
    on_change=False,
    source={"kind": "random_walk", "start": 1.0, "volatility": 0.01, "decimals": 6},
)

BEFORE = (
    dashboard("changing", ["gone", "slow"])
    + widget("gone", "number", every="50ms", on_change=False, source={"kind": "random_walk", "start": 5.0})
    + widget("slow", "number", every="1s", source={"kind": "random_walk", "start": 7.0})
)

AFTER = (
    dashboard("changing", ["slow", "fresh"])
    + widget("slow", "number", every="2s", source={"kind": "random_walk", "start": 7.0})
    + push_widgets(fresh="text")
)

BROKEN = AFTER.replace('every = "2s"', 'every = "fast"')


def config_text(*parts: str, port: int = 0, **server) -> str:
    """The dashboards in `parts` behind a [server] with `server`'s keys, a SQLite file and the push token."""
    return loopback_server(port=port, grace="2s", **server) + table("api", tokens={"test": TOKEN}) + "".join(parts)


async def get_json(url: str, **kwargs):
    response = await AsyncHTTPClient().fetch(url, raise_error=False, **kwargs)
    return response.code, json.loads(response.body)


async def widget_ids(server) -> set[str]:
    return {w["id"] for w in (await get_json(server.url("/api/widgets")))[1]["widgets"]}


async def widget_events(client: StreamClient, count: int) -> list:
    """The next `count` events of the stream, control events included."""
    return [await client.next_event(timeout=10) for _ in range(count)]


@pytest.mark.gen_test(timeout=90)
async def test_sighup_applies_a_good_config_and_keeps_the_old_one_on_a_bad_one(tmp_path):
    server = ServerProcess(tmp_path, config_text(STEADY, BEFORE))
    server.start()
    try:
        await server.ready()
        steady = await StreamClient.open(server.url("/events/steady"))
        changing = await StreamClient.open(server.url("/events/changing"))
        await widget_events(steady, 3)
        await widget_events(changing, 2)

        # A good config: a widget added, one removed, one changed; "steady" untouched.
        write_config(tmp_path, config_text(STEADY, AFTER))
        server.send(signal.SIGHUP)
        await server.notify.wait_for("RELOADING")
        await server.notify.wait_for("READY")
        while (await changing.next_event(timeout=10)).type != "reload":
            pass
        assert await widget_ids(server) == {"tick", "slow", "fresh"}
        assert (await get_json(server.url("/api/widgets/gone")))[0] == 404
        # The unchanged dashboard's stream flows on, and was never told to reload.
        seen = len(steady.events)
        more = await widget_events(steady, 5)
        assert [e.type for e in more] == ["tick"] * 5
        assert all(e.type in ("hello", "tick") for e in steady.events) and not steady.closed
        assert int(more[-1].last_event_id) > int(steady.events[seen - 1].last_event_id)
        # The new widget takes pushes, and a new page of its dashboard gets them.
        code, body = await get_json(
            server.url("/api/widgets/fresh"),
            method="POST",
            body=json.dumps({"value": "hi"}),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        assert code == 200, body
        reopened = await StreamClient.open(server.url("/events/changing"))
        while (event := await reopened.next_event(timeout=10)).type != "fresh":
            pass
        assert data(event)["value"] == "hi"
        # Tickers: the removed one stopped, the new config's run.
        sources = (await get_json(server.url("/healthz")))[1]["sources"]
        assert set(sources) == {"tick", "slow"}

        # A bad config: one clear log line, and everything as it was.
        write_config(tmp_path, config_text(STEADY, BROKEN))
        server.send(signal.SIGHUP)
        await server.notify.wait_for("RELOADING")
        await server.notify.wait_for("READY")
        await wait_until(lambda: server.log_lines("config not reloaded"), timeout=10, message="the log line")
        (line,) = server.log_lines("config not reloaded")
        assert 'widgets.slow.every: expected a duration like "5s", "2m" or "1h30m", got "fast"' in line
        assert "Traceback" not in server.log()
        assert await widget_ids(server) == {"tick", "slow", "fresh"}
        assert [e.type for e in await widget_events(steady, 3)] == ["tick"] * 3

        server.send(signal.SIGTERM)
        assert await server.exit_status() == 0
    finally:
        await server.stop()


# --- in process: the rules ----------------------------------------------------------------


def load(tmp_path, text: str):
    return load_config(write_config(tmp_path, text))


def test_compare_names_what_changed(tmp_path):
    old = load(tmp_path, config_text(STEADY, BEFORE))
    new = load(tmp_path, config_text(STEADY, AFTER))
    changes = compare(old, new)
    assert (changes.widgets_added, changes.widgets_removed, changes.widgets_changed) == (
        ("fresh",),
        ("gone",),
        ("slow",),
    )
    assert (changes.dashboards_added, changes.dashboards_removed, changes.dashboards_changed) == ((), (), ("changing",))
    assert changes.describe() == ("widgets added fresh; removed gone; changed slow; dashboards changed changing")
    assert compare(old, old).describe() == "no widget or dashboard changed"


def test_a_widget_title_change_reloads_every_dashboard_showing_it(tmp_path):
    shared = STEADY + '\n[[dashboards]]\nid = "second"\nwidgets = ["tick"]\n'
    old = load(tmp_path, config_text(shared))
    new = load(tmp_path, config_text(shared.replace('view = "number"', 'view = "number"\ntitle = "Tick"')))
    changes = compare(old, new)
    assert changes.widgets_changed == ("tick",)
    assert changes.dashboards_changed == ("steady", "second")


def test_listen_address_storage_and_hub_wait_for_a_restart(tmp_path):
    old = load(tmp_path, config_text(STEADY))
    (tmp_path / "other").mkdir()
    new = load(tmp_path / "other", config_text(STEADY, port=8123, keepalive="3s"))
    kept, differ = keep_restart_settings(old, new)
    assert differ == ("server.host/port", "storage.url")
    assert (kept.server.port, kept.storage.url) == (old.server.port, old.storage.url)
    assert kept.server.keepalive == 3.0  # the rest applies now


@pytest.mark.gen_test(timeout=30)
async def test_only_the_tickers_of_changed_widgets_restart(servers, tmp_path, caplog):
    config_path = tmp_path / "config.toml"
    server = await servers.start(config_text(STEADY, BEFORE), config_loader=lambda: load_config(config_path))
    scheduler = server.runtime.scheduler
    await wait_until(lambda: scheduler.states["tick"].runs >= 2, message="the ticker to run")
    steady_state = scheduler.states["tick"]
    write_config(tmp_path, config_text(STEADY, AFTER))
    with caplog.at_level(logging.INFO, "dashboard.server"):
        assert await server.server.reload() is True
    assert scheduler.states["tick"] is steady_state  # not restarted
    assert set(scheduler.states) == {"tick", "slow"} and scheduler.running
    assert scheduler.widgets["slow"].every == 2.0
    assert "config reloaded: widgets added fresh; removed gone; changed slow" in caplog.text
    assert server.runtime.hub.topic("changing").latest.keys() <= {"slow", "fresh"}
    # Back to the first config: "gone" ticks again, under a fresh state.
    write_config(tmp_path, config_text(STEADY, BEFORE))
    assert await server.server.reload() is True
    await wait_until(lambda: scheduler.states["gone"].runs >= 1, message="the re-added ticker")


@pytest.mark.gen_test(timeout=30)
async def test_a_restart_only_change_is_logged_and_the_rest_applies(servers, tmp_path, caplog):
    config_path = tmp_path / "config.toml"
    server = await servers.start(config_text(STEADY), config_loader=lambda: load_config(config_path))
    port = server.port
    write_config(tmp_path, config_text(STEADY, port=1, log_level="error"))
    root_level = logging.getLogger().level
    try:
        with caplog.at_level(logging.INFO, "dashboard.server"):
            assert await server.server.reload() is True
        assert logging.getLogger().level == logging.ERROR
    finally:
        logging.getLogger().setLevel(root_level)
    assert "server.host/port changed; the new value applies at the next restart" in caplog.text
    assert server.runtime.config.server.port == 0 and server.port == port
    # "self:" URLs of widgets a reload adds still go where the server listens.
    assert server.runtime.config.listening == f"http://127.0.0.1:{port}"


@pytest.mark.gen_test(timeout=30)
async def test_a_removed_dashboard_gets_reload_and_is_gone(servers, tmp_path):
    config_path = tmp_path / "config.toml"
    server = await servers.start(config_text(STEADY, BEFORE), config_loader=lambda: load_config(config_path))
    client = await StreamClient.open(server.url("/events/changing"))
    await client.next_event()
    write_config(tmp_path, config_text(STEADY))
    assert await server.server.reload() is True
    while (await client.next_event(timeout=10)).type != "reload":
        pass
    with pytest.raises(HTTPClientError) as info:
        await AsyncHTTPClient().fetch(server.url("/d/changing"))
    assert info.value.code == 404
    assert server.runtime.hub.topic("changing") is None


@pytest.mark.gen_test(timeout=30)
async def test_a_widget_whose_view_changed_shows_its_stored_value_as_the_new_view_does(servers, tmp_path):
    config_path = tmp_path / "config.toml"
    text = config_text(dashboard("main", ["w"]) + push_widget("w", "text"))
    server = await servers.start(text, config_loader=lambda: load_config(config_path))
    await server.record("w", "hello")
    write_config(tmp_path, text.replace('view = "text"', 'view = "number"'))
    assert await server.server.reload() is True
    (_, _, sample) = server.runtime.hub.topic("main").latest["w"]  # what a fresh page's stream opens with
    assert (sample.status, sample.value) == ("error", None)
    assert "cannot be shown by this number" in sample.message
