import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.helpers import StreamClient, data


@pytest.mark.gen_test(timeout=20)
async def test_stream_carries_a_recorded_sample(servers):
    server = await servers.start()
    client = await StreamClient.open(server.url("/events/main"))
    assert client.status == 200
    hello = await client.next_event()
    assert hello.type == "hello"
    sample = await server.record("a", 1.5)
    event = await client.next_widget_event()
    assert (event.type, event.last_event_id, data(event)["value"]) == ("a", str(sample.id), 1.5)
    client.close()
    response = await AsyncHTTPClient().fetch(server.url("/healthz"))
    assert response.code == 200
