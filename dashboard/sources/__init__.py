"""Where widget values come from: one small module per source kind.

A polled source has `async fetch() -> value`; the scheduler owns interval,
timeout, backoff and logging. A streaming source (an upstream SSE stream, an
MQTT topic) has `async stream(emit)` instead: it runs until it fails, calling
`await emit(value)` for each value. Either raises SourceError, with a reason
a person can act on, and nothing else. A stream that got one unreadable
message passes a SourceError to emit instead of a value: the widget shows the
reason and the stream goes on. A streaming source may have a `retry_delay`
(seconds, or None): the scheduler's backoff then starts from it, not `every`.

Kinds are imported lazily, so an optional dependency (an MQTT client, say) is
needed only by a config that uses it. The scheduler (scheduler.py) runs them and
hands each value to the storage writer.

May import core, config and storage; never hub, web or service.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..config import Config, ConfigError, Table, WidgetConfig


class SourceError(Exception):
    """The source could not produce a value; str() is shown on the widget."""


# kind -> module under dashboard.sources with a `build(options, widget, config)` function.
KINDS = {
    "random_walk": "random_walk",
    "system": "system",
    "sse": "sse",
    "mqtt": "mqtt",
    "sql": "sql",
    "http_json": "http_json",
    "http_check": "http_check",
    "command": "command",
    "python": "python",
    "prometheus": "prometheus",
    "push": None,  # no ticker: values arrive through the push API
}


def build_source(config: Config, widget: WidgetConfig):
    """The source object for a widget, None for push widgets and clocks; ConfigError
    for a bad kind or bad options."""
    if widget.source is None:
        return None
    options = config.source_options(widget.id)
    kind = widget.source.kind
    if kind not in KINDS:
        raise ConfigError(
            f"{config.file}: {widget.source.path}.kind: unknown source kind {kind!r} "
            f"(expected one of: {', '.join(sorted(KINDS))})"
        )
    if KINDS[kind] is None:
        options.done()
        return None
    module = importlib.import_module(f"{__name__}.{KINDS[kind]}")
    source = module.build(options, widget, config)
    options.done()
    return source


def build_sources(config: Config) -> dict[str, Any]:
    """Every ticker of the config, by widget id; validates every source's options."""
    sources = {}
    for widget in config.widgets.values():
        source = build_source(config, widget)
        if source is not None:
            sources[widget.id] = source
    for widget in config.disabled_widgets.values():
        build_source(config, widget)  # checked like the rest, but never run
    return sources


__all__ = ["KINDS", "SourceError", "Table", "build_source", "build_sources"]
