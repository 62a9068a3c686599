"""The `sse` source reading another instance of this server: a protected dashboard
mirrored with a read token (two real servers on loopback), and what the source does
when that server says `gap`."""

from __future__ import annotations

import asyncio
import logging

import pytest

from dashboard.sources.http_json import JsonPath
from dashboard.sources.sse import SseSource
from dashboard.web import stream as stream_module
from tests.configs import dashboard, loopback_server, protected, table, widget
from tests.helpers import wait_until

READ_TOKEN = "read-token-mirror-0123456789"
UPSTREAM = protected("mirror", READ_TOKEN, grace="1s")


def downstream(url: str, **source) -> str:
    return (
        loopback_server(grace="1s")
        + dashboard("main", ["mirror"])
        + widget(
            "mirror",
            "number",
            every="100ms",
            timeout="2s",
            source={"kind": "sse", "url": url, "event": "b", "path": "value", **source},
        )
    )


def place(tmp_path, name: str):
    directory = tmp_path / name
    directory.mkdir()
    return directory


async def mirrored(server) -> object:
    """The newest sample of the mirror widget, once there is one."""
    samples = await server.runtime.store.latest(["mirror"])
    return samples.get("mirror")


@pytest.mark.gen_test(timeout=30)
async def test_a_protected_dashboard_of_another_instance_is_mirrored_with_a_read_token(servers, tmp_path):
    upstream = await servers.start(UPSTREAM, directory=place(tmp_path, "up"))
    await upstream.record("b", 41)
    mirror = await servers.start(
        downstream(upstream.url("/events/lobby"), token=READ_TOKEN), directory=place(tmp_path, "down")
    )
    first = await wait_until(lambda: mirrored(mirror), timeout=10, message="the mirror's first value")
    assert (first.value, first.status) == (41, "ok")
    await upstream.record("b", 42)
    await wait_until(
        lambda: _value_is(mirror, 42), timeout=10, message="the mirror to follow the upstream's next value"
    )


async def _value_is(server, value) -> bool:
    sample = await mirrored(server)
    return sample is not None and sample.value == value and sample.status == "ok"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({}, "needs a viewer: give the source a read token"),
        ({"token": "not-the-read-token-0123"}, "HTTP 401"),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_a_mirror_without_a_good_token_says_so_on_its_widget(servers, tmp_path, source, message):
    upstream = await servers.start(UPSTREAM, directory=place(tmp_path, "up"))
    # A value with more digits than a port has: the message names the upstream's address.
    await upstream.record("b", 987654321)
    mirror = await servers.start(downstream(upstream.url("/events/lobby"), **source), directory=place(tmp_path, "down"))

    async def refused():
        # Under load a first attempt may time out instead: the refusal's reason follows it.
        sample = await mirrored(mirror)
        return sample if sample is not None and sample.status == "error" and message in sample.message else None

    failed = await wait_until(refused, timeout=20, message=f"the mirror's failure saying {message!r}")
    assert failed.value is None  # nothing of the protected dashboard got through
    assert "987654321" not in failed.message


@pytest.mark.gen_test(timeout=30)
async def test_the_sse_source_logs_a_gap_once_and_takes_the_snapshot(servers, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(stream_module, "REPLAY_LIMIT", 3)
    upstream = await servers.start(UPSTREAM + table("hub", buffer=16), directory=place(tmp_path, "up"))
    samples = [await upstream.record("a", n) for n in range(40)]
    source = SseSource(
        upstream.url("/events/open"),
        event="a",
        format="json",
        path=JsonPath("value"),
        headers={},
        connect_timeout=5,
        idle_timeout=None,
        reconnect_delay=1,
    )
    source.connection.last_event_id = str(samples[0].id)  # as if it had been away since then
    values = []

    async def emit(value) -> None:
        values.append(value)

    caplog.set_level(logging.INFO, logger="dashboard.sources")
    task = asyncio.ensure_future(source.stream(emit))
    try:
        await wait_until(lambda: values == [39], message="the snapshot's value")
        live = await upstream.record("a", 40)
        await wait_until(lambda: values == [39, 40], message="the next live value")
        assert source.gaps == 1 and source.last_event_id == str(live.id)
    finally:
        task.cancel()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"{upstream.url('/events/open')} could not replay what was missed (too old); "
        "taking its current values, the ones in between are lost"
    ]
