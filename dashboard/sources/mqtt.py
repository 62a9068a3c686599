"""Values published on an MQTT topic, read from a broker with aiomqtt (the
optional extra `dashboard[mqtt]`).

A streaming source: it stays subscribed and hands on every message. A broker
that refuses or goes away ends the stream with SourceError, and the scheduler
reconnects with backoff; a retained message is what fills the widget again
right after a reconnect. One unreadable message does not end the subscription:
the widget shows why until the next good one.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from ..config import ConfigError
from ..core.values import MAX_VALUE_BYTES
from ..core.views import number_from_text
from . import SourceError
from .http_json import JsonPath, read_path
from .sse import parse_json

FORMATS = ("auto", "number", "json", "text")
# Four times what the value gate takes as JSON (1 MiB): a larger message is refused
# before it is decoded and parsed, which would take several times its size.
MAX_PAYLOAD = 4 * MAX_VALUE_BYTES


def parse_payload(payload: bytes, format: str, path: JsonPath) -> Any:
    """The value a message carries. "auto": JSON when it parses (a bare 21.5 is
    JSON), else the text."""
    if len(payload) > MAX_PAYLOAD:
        raise SourceError(f"a message of {len(payload)} bytes: at most {MAX_PAYLOAD // (1024 * 1024)} MiB is read")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError("expected UTF-8 text in the message, got other bytes") from None
    if format == "text":
        return text
    if format == "number":
        return _number(text)
    if format == "auto" and not path.keys:
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return text
    return parse_json(text, path)


def _number(text: str) -> int | float:
    number = number_from_text(text)
    if number is None:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise SourceError(f"expected a number in the message, got {shown!r}")
    return number


class MqttSource:
    def __init__(
        self,
        client_class,
        error_class,
        client_options: dict[str, Any],
        topic: str,
        qos: int,
        format: str,
        path: JsonPath,
    ):
        # aiomqtt is imported by build(), so a config without MQTT never needs it.
        self._client_class = client_class
        self._error_class = error_class
        self.client_options = client_options
        self.topic = topic
        self.qos = qos
        self.format = format
        self.path = path

    @property
    def broker(self) -> str:
        return f"{self.client_options['hostname']}:{self.client_options['port']}"

    async def stream(self, emit: Callable[[Any], Awaitable[None]]) -> None:
        try:
            async with self._client_class(**self.client_options) as client:
                await client.subscribe(self.topic, qos=self.qos)
                async for message in client.messages:
                    if not message.payload:
                        continue  # an empty retained message clears the topic: no value to show
                    try:
                        value = parse_payload(message.payload, self.format, self.path)
                    except SourceError as exc:
                        value = exc  # the widget shows why; the subscription goes on
                    await emit(value)
        except self._error_class as exc:
            raise SourceError(f"MQTT broker {self.broker}: {exc}") from None
        raise SourceError(f"MQTT broker {self.broker} ended the subscription")


def _import_aiomqtt():
    try:
        import aiomqtt
    except ImportError:
        return None
    return aiomqtt


def build(options, widget, config) -> MqttSource:
    aiomqtt = _import_aiomqtt()
    if aiomqtt is None:
        raise ConfigError(
            f'{options.file}: {options.path}.kind: the mqtt source needs aiomqtt: pip install "dashboard[mqtt]"'
        )
    topic = options.str("topic")
    try:
        aiomqtt.Wildcard(topic)  # "+" and "#" only as whole levels, "#" only last
        valid = "\0" not in topic
    except ValueError:
        valid = False
    if not valid:
        raise options.error("topic", f'expected a topic filter like "sensors/+/temperature", got {json.dumps(topic)}')
    tls = options.bool("tls", False)
    client_options = {
        "hostname": options.str("host", "127.0.0.1"),
        "port": options.int("port", 8883 if tls else 1883, min=1, max=65535),
        "username": options.str("username", None),
        "password": options.str("password", None),
        "tls_context": ssl.create_default_context() if tls else None,
        "timeout": widget.timeout,
    }
    if client_options["password"] is not None and client_options["username"] is None:
        raise options.error("password", "a password needs a username")
    qos = options.int("qos", 0, min=0, max=2)
    format = options.str("format", "auto", choices=FORMATS)
    path = read_path(options)
    if path.keys and format in ("number", "text"):
        raise options.error("path", f'a path reads into JSON: use format = "json" or "auto", not "{format}"')
    return MqttSource(aiomqtt.Client, aiomqtt.MqttError, client_options, topic, qos, format, path)
