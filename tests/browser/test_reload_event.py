"""Hub.send_control on the wire (no browser needed): the `reload` a page acts on."""

from __future__ import annotations

import pytest
from tornado.httpclient import AsyncHTTPClient

from dashboard.core.events import Reload
from tests.configs import dashboard, loopback_server, push_widgets
from tests.helpers import StreamClient, data

CONFIG = loopback_server(grace="1s") + dashboard("main", ["a"]) + dashboard("other", ["a"]) + push_widgets(a="number")


@pytest.mark.gen_test(timeout=30)
async def test_a_control_event_reaches_readers_of_its_topic_without_an_id(servers):
    server = await servers.start(CONFIG)
    first = await server.record("a", 1)
    main = await StreamClient.open(server.url("/events/main"), last_event_id=first.id)
    other = await StreamClient.open(server.url("/events/other"), last_event_id=first.id)
    assert (await main.next_event()).type == "hello"
    assert (await other.next_event()).type == "hello"

    server.runtime.hub.send_control("main", Reload())
    event = await main.next_event()
    assert (event.type, event.data) == ("reload", "{}")
    assert b"event: reload\ndata: {}\n\n" in main.raw and b"id:" not in main.raw.split(b"event: reload")[1]
    topic = server.runtime.hub.topic("main")
    assert (topic.last_id, topic.controls) == (first.id, 1)  # event ids stay the samples'

    second = await server.record("a", 2)
    event = await main.next_event()
    assert (event.type, event.last_event_id, data(event)["value"]) == ("a", str(second.id), 2)
    assert (topic.last_id, topic.controls) == (second.id, 0)
    # The other dashboard's readers never saw the reload.
    event = await other.next_event()
    assert (event.type, event.last_event_id) == ("a", str(second.id))
    main.close()
    other.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_reader_resuming_from_before_a_control_event_gets_it_replayed(servers):
    # Which is why a page rendered after the reload is told how many to skip.
    server = await servers.start(CONFIG)
    sample = await server.record("a", 1)
    server.runtime.hub.send_control("main", Reload())
    server.runtime.hub.send_control("main", Reload())
    client = await StreamClient.open(server.url(f"/events/main?last_event_id={sample.id}"))
    assert [(await client.next_event()).type for _ in range(3)] == ["hello", "reload", "reload"]
    client.close()
    page = (await AsyncHTTPClient().fetch(server.url("/d/main"))).body.decode()
    assert '"controls": 2' in page and f'"lastEventId": {sample.id}' in page
