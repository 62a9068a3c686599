"""Config text for tests, written as a person would write it: a loopback [server] with
its [storage], dashboards, widgets. Each piece is a string; a config is their sum, so a
test reads as the tables it needs and nothing else."""

from __future__ import annotations

import json
import math
import re

TEST_DB = "sqlite+aiosqlite:///data/test.db"
PUSH = {"kind": "push"}

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_value(value, *, ensure_ascii: bool = True) -> str:
    """A TOML inline value: JSON's strings, numbers, booleans and arrays are TOML's too;
    a dict becomes an inline table. ensure_ascii=False writes characters as they are:
    JSON escapes one beyond U+FFFF as a surrogate pair, which TOML refuses."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # inf, -inf, nan: TOML's spelling, where JSON's is Infinity and NaN
    if isinstance(value, dict):
        return (
            "{ "
            + ", ".join(f"{toml_key(k)} = {toml_value(v, ensure_ascii=ensure_ascii)}" for k, v in value.items())
            + " }"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v, ensure_ascii=ensure_ascii) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ensure_ascii)


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _lines(keys: dict) -> str:
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in keys.items())


def table(name: str, **keys) -> str:
    return f"\n[{name}]\n" + _lines(keys)


def loopback_server(*, port: int = 0, storage: str = TEST_DB, **server) -> str:
    """[server] on 127.0.0.1 (with `server`'s keys after host and port), then [storage]."""
    return table("server", host="127.0.0.1", port=port, **server) + table("storage", url=storage)


def dashboard(dashboard_id: str, widgets: list[str], **keys) -> str:
    return "\n[[dashboards]]\n" + _lines({"id": dashboard_id, **keys, "widgets": list(widgets)})


def widget(widget_id: str, view: str, *, source: dict | str | None = None, **keys) -> str:
    """[widgets.<id>]; `source` last, as a dict or as TOML text that is already written."""
    text = table(f"widgets.{widget_id}", view=view, **keys)
    if source is not None:
        text += f"source = {source if isinstance(source, str) else toml_value(source)}\n"
    return text


def push_widget(widget_id: str, view: str, **keys) -> str:
    return widget(widget_id, view, source=PUSH, **keys)


def push_widgets(**views: str) -> str:
    """One push-fed widget per keyword: push_widgets(a="number", b="text")."""
    return "".join(push_widget(widget_id, view) for widget_id, view in views.items())


def one_widget(widget_id: str, view: str, source: dict | str, **keys) -> str:
    """Dashboard "main" with one widget, fed by `source`."""
    return dashboard("main", [widget_id]) + widget(widget_id, view, source=source, **keys)


def with_keys(text: str, *, hub: str = "", **server: str) -> str:
    """`text` with [server] keys set (values as TOML text, replacing a key already there)
    and/or a [hub] table added."""
    for key, value in server.items():
        line = f"{key} = {value}\n"
        text, found = re.subn(rf"(?m)^{key} = .*\n", line, text, count=1)
        if not found:
            text = text.replace("[server]\n", "[server]\n" + line, 1)
    return text + (f"\n[hub]\n{hub}\n" if hub else "")


SECRET = "s3cret-for-signing-sessions-0123456789abcdef"  # [auth] secret of the protected configs
LOBBY_TOKEN = "kiosk-token-lobby-0123456789"


def protected(reader: str, token: str, **server) -> str:
    """Dashboard "open" (widget a, public) and "lobby" (widget b, kiosk token only), with
    one read token, `reader`, that may read the lobby."""
    return (
        loopback_server(**server)
        + table("auth", secret=SECRET, tokens={"lobby": LOBBY_TOKEN})
        + table(f"auth.readers.{reader}", token=token, dashboards=["lobby"])
        + dashboard("open", ["a"])
        + dashboard("lobby", ["b"], auth="token")
        + push_widgets(a="number", b="number")
    )
