"""The mqtt source against real brokers: the shared Mosquitto on 127.0.0.1:1883
(a unique topic per test), and a private mosquitto (tests/backends.py) that a test
stops and restarts."""

import asyncio
import ssl
import sys
import uuid

import aiomqtt
import pytest

from dashboard.config import ConfigError
from dashboard.sources import SourceError
from tests.backends import free_port
from tests.configs import dashboard, loopback_server, widget
from tests.helpers import build_widget_source, wait_until
from tests.peers import self_signed_certificate


def unique_topic() -> str:
    return f"dashboard-test/{uuid.uuid4().hex}"


def config_text(widgets: dict[str, tuple[str, str]]) -> str:
    """widgets: id -> (view, source table)."""
    # A short interval: a stream's backoff starts from it. A timeout that a loaded
    # machine meets: it bounds connecting to the broker.
    return (
        loopback_server(storage="sqlite+aiosqlite:///dashboard.db")
        + dashboard("main", list(widgets))
        + "".join(
            widget(widget_id, view, every="100ms", timeout="5s", source=source)
            for widget_id, (view, source) in widgets.items()
        )
    )


def build(tmp_path, source: str, view: str = "text"):
    return build_widget_source(tmp_path, config_text({"m": (view, source)}), "m")


async def publish(
    topic: str,
    payload: bytes | str,
    *,
    port: int = 1883,
    retain: bool = False,
    tls_context: ssl.SSLContext | None = None,
) -> None:
    async with aiomqtt.Client("127.0.0.1", port, tls_context=tls_context) as client:
        await client.publish(topic, payload, qos=1, retain=retain)


class Received:
    """An emit that keeps what the stream hands on."""

    def __init__(self):
        self.values = []

    async def __call__(self, value) -> None:
        self.values.append(value)

    async def count(self, n: int) -> list:
        await wait_until(lambda: len(self.values) >= n, message=f"{n} value(s)")
        return self.values


class Streaming:
    """Runs a source's stream() for the length of an `async with`; clears the retained message."""

    def __init__(self, source, topic: str):
        self.source = source
        self.topic = topic
        self.received = Received()

    async def __aenter__(self) -> Received:
        self.task = asyncio.create_task(self.source.stream(self.received))
        return self.received

    async def __aexit__(self, *exc) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await publish(self.topic, b"", retain=True)


@pytest.mark.gen_test(timeout=20)
async def test_values_arrive_in_auto_format(tmp_path):
    topic = unique_topic()
    source = build(tmp_path, f'{{ kind = "mqtt", topic = "{topic}" }}')
    # Retained, so it arrives whenever the subscription starts; the rest follow it.
    await publish(topic, "21.5", retain=True)
    async with Streaming(source, topic) as received:
        await received.count(1)
        for payload in ('{"on": true}', "door open", b"", b"\xff\xfe", "7"):
            await publish(topic, payload)
        values = await received.count(5)
    assert values[:3] == [21.5, {"on": True}, "door open"]  # JSON when it parses, else the text
    assert isinstance(values[3], SourceError)  # not UTF-8; the empty payload was skipped
    assert str(values[3]) == "expected UTF-8 text in the message, got other bytes"
    assert values[4] == 7


@pytest.mark.gen_test(timeout=20)
async def test_a_json_path_picks_the_value(tmp_path):
    topic = unique_topic()
    source = build(tmp_path, f'{{ kind = "mqtt", topic = "{topic}", format = "json", path = "sensor.t" }}', "number")
    await publish(topic, '{"sensor": {"t": 21.5, "rh": 40}}', retain=True)
    async with Streaming(source, topic) as received:
        await received.count(1)
        await publish(topic, '{"sensor": {"rh": 41}}')
        await publish(topic, "22.0")
        await publish(topic, '{"sensor": {"t": 22.5}}')
        values = await received.count(4)
    assert values[0] == 21.5
    assert str(values[1]) == 'no key "t" at sensor.t'
    assert "cannot read" in str(values[2])
    assert values[3] == 22.5


@pytest.mark.gen_test(timeout=20)
async def test_a_wildcard_topic_and_text_format(tmp_path):
    base = unique_topic()
    source = build(tmp_path, f'{{ kind = "mqtt", topic = "{base}/+/state", format = "text" }}')
    await publish(f"{base}/door/state", "open", retain=True)
    try:
        async with Streaming(source, f"{base}/door/state") as received:
            await received.count(1)
            await publish(f"{base}/window/state", '"closed"')
            await publish(f"{base}/window/other", "ignored")
            await publish(f"{base}/gate/state", "42")
            assert await received.count(3) == ["open", '"closed"', "42"]
    finally:
        await publish(f"{base}/door/state", b"", retain=True)


@pytest.mark.gen_test(timeout=30)
async def test_a_bad_payload_marks_the_widget_failing_and_the_next_good_one_recovers(servers):
    topic = unique_topic()
    server = await servers.start(
        config_text(
            {
                "strict": ("number", f'{{ kind = "mqtt", topic = "{topic}", format = "number" }}'),
                "auto": ("number", f'{{ kind = "mqtt", topic = "{topic}" }}'),
            }
        )
    )
    last = server.runtime.scheduler.last
    try:
        await publish(topic, "21", retain=True)
        await wait_until(
            lambda: all(w in last and last[w].value == 21 for w in ("strict", "auto")), message="21 on both widgets"
        )
        await publish(topic, "abc")
        await wait_until(lambda: last["strict"].status == last["auto"].status == "error", message="both failing")
        assert (last["strict"].value, last["strict"].message) == (21, "expected a number in the message, got 'abc'")
        assert (last["auto"].value, last["auto"].message) == (21, "expected a number, got text 'abc'")
        await publish(topic, "22")
        await wait_until(
            lambda: all(last[w].status == "ok" and last[w].value == 22 for w in ("strict", "auto")),
            message="both recovered",
        )
    finally:
        await publish(topic, b"", retain=True)


@pytest.mark.gen_test(timeout=20)
async def test_no_broker_is_an_error_state(servers):
    port = free_port()
    server = await servers.start(config_text({"m": ("number", f'{{ kind = "mqtt", port = {port}, topic = "x" }}')}))
    last = server.runtime.scheduler.last
    await wait_until(lambda: "m" in last and last["m"].status == "error", message="the error state")
    assert last["m"].message.startswith(f"MQTT broker 127.0.0.1:{port}: ")
    assert server.runtime.scheduler.states["m"].failures >= 1


@pytest.mark.gen_test(timeout=40)
async def test_a_tls_broker_is_checked_against_the_system_s_trusted_certificates(mosquitto, tmp_path, monkeypatch):
    certificate, key = self_signed_certificate(tmp_path)
    mosquitto.start(tls=(certificate, key))
    topic = unique_topic()
    source_text = f'{{ kind = "mqtt", port = {mosquitto.port}, topic = "{topic}", tls = true }}'
    # Not trusted: a self-signed certificate is refused, and the error says why.
    untrusted = build(tmp_path, source_text, "number")
    with pytest.raises(SourceError, match=f"MQTT broker 127.0.0.1:{mosquitto.port}: .*self-signed certificate"):
        await untrusted.stream(Received())
    # Trusted the way an own CA is added to the system's: values arrive over TLS.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    source = build(tmp_path, source_text, "number")
    received = Received()
    task = asyncio.create_task(source.stream(received))
    try:
        await publish(
            topic,
            "42",
            port=mosquitto.port,
            retain=True,
            tls_context=ssl.create_default_context(cafile=str(certificate)),
        )
        assert await received.count(1) == [42]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.gen_test(timeout=40)
async def test_values_flow_again_after_the_broker_comes_back(mosquitto, servers):
    # mosquitto first: fixtures stop in reverse, so the dashboard stops before its broker.
    mosquitto.start()
    topic = unique_topic()
    server = await servers.start(
        config_text({"m": ("number", f'{{ kind = "mqtt", port = {mosquitto.port}, topic = "{topic}" }}')})
    )
    last = server.runtime.scheduler.last
    await publish(topic, "1", port=mosquitto.port, retain=True)
    await wait_until(lambda: "m" in last and last["m"].value == 1, message="the first value")

    mosquitto.kill()
    await wait_until(lambda: last["m"].status == "error", message="the widget failing")
    assert last["m"].value == 1  # the last good value stays, marked as failing

    mosquitto.start()  # the same port; a new broker, with nothing retained
    await publish(topic, "2", port=mosquitto.port, retain=True)
    await wait_until(
        lambda: last["m"].status == "ok" and last["m"].value == 2,
        timeout=15,
        message="values after the broker came back",
    )


@pytest.mark.parametrize(
    "source, message",
    [
        ('{ kind = "mqtt" }', "widgets.m.source.topic: missing"),
        (
            '{ kind = "mqtt", topic = "a/#/b" }',
            'widgets.m.source.topic: expected a topic filter like "sensors/+/temperature", got "a/#/b"',
        ),
        ('{ kind = "mqtt", topic = "" }', "widgets.m.source.topic: expected a topic filter"),
        ('{ kind = "mqtt", topic = "t", port = 0 }', "widgets.m.source.port: expected an integer from 1 to 65535"),
        ('{ kind = "mqtt", topic = "t", tls = "yes" }', "widgets.m.source.tls: expected true or false"),
        (
            '{ kind = "mqtt", topic = "t", password = "pw-only" }',
            "widgets.m.source.password: a password needs a username",
        ),
        ('{ kind = "mqtt", topic = "t", qos = 3 }', "widgets.m.source.qos: expected an integer from 0 to 2"),
        (
            '{ kind = "mqtt", topic = "t", format = "xml" }',
            "widgets.m.source.format: expected one of: auto, number, json, text",
        ),
        (
            '{ kind = "mqtt", topic = "t", format = "number", path = "a.b" }',
            'widgets.m.source.path: a path reads into JSON: use format = "json" or "auto", not "number"',
        ),
        ('{ kind = "mqtt", topic = "t", path = "a..b" }', "widgets.m.source.path: a dotted path has no empty parts"),
        ('{ kind = "mqtt", topic = "t", broker = "x" }', 'widgets.m.source: unknown key "broker"'),
    ],
)
def test_config_errors(tmp_path, source, message):
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, source)
    assert message in str(caught.value)


def test_defaults_and_tls(tmp_path):
    plain = build(tmp_path, '{ kind = "mqtt", topic = "t" }')
    assert (plain.broker, plain.qos, plain.format, plain.client_options["tls_context"]) == (
        "127.0.0.1:1883",
        0,
        "auto",
        None,
    )
    secure = build(
        tmp_path, '{ kind = "mqtt", topic = "t", host = "broker.example", tls = true, username = "u", password = "p" }'
    )
    assert secure.broker == "broker.example:8883"
    assert secure.client_options["tls_context"] is not None
    assert (secure.client_options["username"], secure.client_options["password"]) == ("u", "p")


def test_without_aiomqtt_the_config_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "aiomqtt", None)  # what an uninstalled package looks like
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, '{ kind = "mqtt", topic = "t" }')
    assert str(caught.value).endswith(
        'widgets.m.source.kind: the mqtt source needs aiomqtt: pip install "dashboard[mqtt]"'
    )


@pytest.mark.gen_test(timeout=30)
async def test_a_message_of_megabytes_is_refused_unread_and_the_next_one_is_read(tmp_path):
    topic = unique_topic()
    source = build(tmp_path, f'{{ kind = "mqtt", topic = "{topic}", format = "json" }}')
    async with Streaming(source, topic) as received:
        await publish(topic, "1", retain=True)
        await received.count(1)
        await publish(topic, b"[" + b"1," * (4 * 1024 * 1024) + b"1]")  # 8 MiB of JSON
        await publish(topic, "2")
        values = await received.count(3)
    assert values[0] == 1
    assert isinstance(values[1], SourceError)
    assert str(values[1]) == f"a message of {8 * 1024 * 1024 + 3} bytes: at most 1 MiB is read"
    assert values[2] == 2
