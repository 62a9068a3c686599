"""Streams of some widgets: /events/<dashboard>?widgets=a,b and /events?widgets=a,c
(widgets of several dashboards on one connection), read by a raw socket client on a
real server: only those widgets, resumed with Last-Event-ID from memory, the database
or a snapshot (after `gap`) like a dashboard's stream, and the dashboards' own topics
untouched."""

from __future__ import annotations

import pytest

from dashboard.config import load_config
from dashboard.hub import memory
from dashboard.web import stream as stream_module
from tests.configs import protected, push_widgets
from tests.helpers import (
    BASE_CONFIG,
    StreamClient,
    config_with,
    data,
    ids,
    mixed,
    open_stream,
    read_through,
    record_all,
    wait_until,
)

SMALL_BUFFER = config_with(hub="buffer = 16")
READ_TOKEN = "read-token-grafana-0123456789"
PROTECTED = protected("grafana", READ_TOKEN, grace="2s")


@pytest.mark.gen_test(timeout=20)
async def test_a_dashboard_stream_of_some_widgets_carries_only_those(servers):
    server = await servers.start()
    _, b = await record_all(server, [("a", 1), ("b", "x")])
    client = await open_stream(server, "/events/main?widgets=b")
    assert [(e.type, int(e.last_event_id)) for e in await client.collect(1)] == [("b", b.id)]
    live = await record_all(server, mixed(9))
    expected = [s.id for s in live if s.widget == "b"]
    got = await read_through(client, expected[-1])
    assert ids(got) == expected and {e.type for e in got} == {"b"}
    client.close()


@pytest.mark.gen_test(timeout=20)
async def test_widgets_of_several_dashboards_follow_on_one_connection(servers):
    server = await servers.start()  # main shows a and b, other shows b and c
    first = await record_all(server, [("a", 1), ("b", "x"), ("c", 2)])
    client = await open_stream(server, "/events?widgets=c,a")
    opening = await client.collect(2)
    assert [(e.type, int(e.last_event_id)) for e in opening] == [("a", first[0].id), ("c", first[2].id)]
    live = await record_all(server, mixed(12))
    expected = [s.id for s in live if s.widget in ("a", "c")]
    got = await read_through(client, expected[-1])
    assert ids(got) == expected
    assert [data(e)["value"] for e in got] == [v for w, v in mixed(12) if w in ("a", "c")]
    client.close()


@pytest.mark.gen_test(timeout=20)
async def test_streams_of_one_widget_set_share_a_subset_topic_and_leave_the_dashboards_alone(servers):
    server = await servers.start()
    hub = server.runtime.hub
    main = hub.topic("main")
    whole = await open_stream(server, "/events/main")
    one = await open_stream(server, "/events?widgets=a,c")
    two = await open_stream(server, "/events?widgets=c&widgets=a")  # the same set, asked otherwise
    await wait_until(lambda: len(server.runtime.streams) == 3, message="three streams")
    assert list(hub.subsets) == [("a", "c")]
    subset = hub.subsets[("a", "c")]
    assert subset.readers == 2 and len(main.subscribers) == 1 and main.readers == 1
    sample = await server.record("a", 5)
    for client in (whole, one, two):
        assert ids([await client.next_widget_event()]) == [sample.id]
    for client in (whole, one, two):
        client.close()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/events", 400),  # which widgets?
        ("/events?widgets=", 400),
        ("/events?widgets=a,nope", 404),
        ("/events/main?widgets=c", 404),  # c is not on main
        ("/events/nope?widgets=a", 404),
        ("/events?widgets=" + ",".join(f"w{n}" for n in range(65)), 400),
    ],
)
@pytest.mark.gen_test(timeout=20)
async def test_what_cannot_be_streamed_is_refused_before_the_stream_starts(servers, path, status):
    server = await servers.start()
    client = await StreamClient.open(server.url(path))
    assert client.status == status
    client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_subset_stream_resumes_from_memory_and_from_the_database_like_a_dashboard(servers):
    server = await servers.start(SMALL_BUFFER)
    client = await open_stream(server, "/events?widgets=a,c")
    before = await record_all(server, mixed(6))
    got = await read_through(client, [s.id for s in before if s.widget in "ac"][-1])
    client.close()
    last = got[-1].last_event_id
    # Missed while away, still in the subset topic's buffer:
    missed = await record_all(server, mixed(6, start=6))
    again = await open_stream(server, "/events?widgets=a,c", last_event_id=last)
    expected = [s.id for s in missed if s.widget in "ac"]
    assert ids(await read_through(again, expected[-1])) == expected
    again.close()
    # Missed long ago, far beyond any buffer: from the database, every one of them.
    older = await record_all(server, mixed(120, start=12))
    assert int(last) < server.runtime.hub.subsets[("a", "c")].floor
    third = await open_stream(server, "/events?widgets=a,c", last_event_id=last)
    expected = [s.id for s in missed + older if s.widget in "ac"]
    replayed = await read_through(third, expected[-1])
    assert ids(replayed) == expected
    third.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_subset_stream_after_a_restart_resumes_from_the_database(servers, tmp_path):
    server = await servers.start()
    client = await open_stream(server, "/events?widgets=b,c")
    first = await record_all(server, mixed(3))
    got = await read_through(client, first[-1].id)
    port = server.port
    await server.stop()
    await client.read_until_closed()
    server = await servers.start(port=port)
    missed = await record_all(server, mixed(6, start=3))
    again = await open_stream(server, "/events?widgets=b,c", last_event_id=got[-1].last_event_id)
    expected = [s.id for s in missed if s.widget in "bc"]
    assert ids(await read_through(again, expected[-1])) == expected
    again.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_subset_stream_says_gap_before_a_snapshot(servers, monkeypatch):
    monkeypatch.setattr(stream_module, "REPLAY_LIMIT", 5)
    server = await servers.start(SMALL_BUFFER)
    samples = await record_all(server, mixed(60))
    newest = {s.widget: s.id for s in samples}
    client = await open_stream(server, "/events?widgets=a", last_event_id=samples[0].id)
    gap = await client.next_event()
    assert (gap.type, gap.last_event_id, data(gap)) == ("gap", "", {"reason": "too old", "after": samples[0].id})
    assert ids(await client.collect(1)) == [newest["a"]]
    client.close()


@pytest.mark.gen_test(timeout=20)
async def test_a_widget_on_no_dashboard_streams_with_its_value_from_the_database(servers):
    server = await servers.start(BASE_CONFIG + push_widgets(loose="number"))
    sample = await server.record("loose", 7)
    hub = server.runtime.hub
    client = await open_stream(server, "/events?widgets=loose")
    assert ids(await client.collect(1)) == [sample.id]
    live = await server.record("loose", 8)
    assert ids([await client.next_widget_event()]) == [live.id]
    assert hub.topic("main").latest.keys() == set()  # nobody else carries it
    client.close()


@pytest.mark.gen_test(timeout=20)
async def test_idle_subset_topics_go_and_their_number_is_bounded(servers, monkeypatch):
    monkeypatch.setattr(memory, "MAX_SUBSETS", 2)
    monkeypatch.setattr(memory, "SUBSET_LINGER", 0.0)
    server = await servers.start()
    hub = server.runtime.hub
    one = await open_stream(server, "/events?widgets=a")
    two = await open_stream(server, "/events?widgets=b")
    refused = await StreamClient.open(server.url("/events?widgets=c"))
    assert refused.status == 200
    assert [e.type for e in await refused.read_until_closed()] == []  # a retry: and closed
    assert refused.decoder.retry is not None and 1000 <= refused.decoder.retry <= 5000
    one.close()
    await wait_until(lambda: hub.subsets[("a",)].readers == 0, message="the stream of a to leave")
    three = await open_stream(server, "/events?widgets=c")  # a's idle topic made room
    assert sorted(hub.subsets) == [("b",), ("c",)]
    two.close()
    three.close()


@pytest.mark.gen_test(timeout=20)
async def test_streams_opened_and_dropped_cannot_keep_a_new_set_out(servers, monkeypatch):
    monkeypatch.setattr(memory, "MAX_SUBSETS", 3)  # the linger stays a minute
    server = await servers.start()
    hub = server.runtime.hub
    held = await open_stream(server, "/events?widgets=a")
    for widgets in ("b", "a,b"):  # opened and dropped at once: their topics linger unread
        (await open_stream(server, f"/events?widgets={widgets}")).close()
    await wait_until(lambda: all(t.readers == 0 for k, t in hub.subsets.items() if k != ("a",)), message="closed")
    fresh = await open_stream(server, "/events?widgets=c")  # the oldest unread one (b) made room
    assert sorted(hub.subsets) == [("a",), ("a", "b"), ("c",)]
    # With every subset read by an open stream, a new set is told to retry.
    held_too = await open_stream(server, "/events?widgets=a,b")
    refused = await StreamClient.open(server.url("/events?widgets=b"))
    assert [e.type for e in await refused.read_until_closed()] == [] and refused.decoder.retry is not None
    for client in (held, fresh, held_too):
        client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_reload_that_changes_a_widget_reloads_its_subset_streams(servers, tmp_path):
    path = tmp_path / "config.toml"
    server = await servers.start(config_loader=lambda: load_config(path))
    client = await open_stream(server, "/events?widgets=a")
    untouched = await open_stream(server, "/events?widgets=b")
    changed = BASE_CONFIG.replace('[widgets.a]\nview = "number"', '[widgets.a]\nview = "number"\nunit = "%"')
    assert changed != BASE_CONFIG
    path.write_text(changed)
    assert await server.server.reload()
    event = await client.next_event()
    assert (event.type, data(event)) == ("reload", {"reason": "configuration changed"})
    live = await server.record("b", "still")
    assert ids([await untouched.next_widget_event()]) == [live.id]
    client.close()
    untouched.close()


# --- who may read which widgets ---------------------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_a_subset_with_a_protected_widget_turns_strangers_away_and_lets_readers_in(servers):
    server = await servers.start(PROTECTED)
    b = await server.record("b", 2)
    stranger = await StreamClient.open(server.url("/events?widgets=a,b"))
    assert stranger.status == 200  # a browser's EventSource: 200, reload, close
    assert [e.type for e in await stranger.read_until_closed()] == ["reload"]
    wrong = await StreamClient.open(server.url("/events?widgets=a,b"), headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
    reader = await open_stream(server, "/events?widgets=a,b", headers={"Authorization": f"Bearer {READ_TOKEN}"})
    assert ids(await reader.collect(1)) == [b.id]
    live = await server.record("b", 3)
    assert ids([await reader.next_widget_event()]) == [live.id]
    reader.close()
