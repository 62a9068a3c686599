"""Tests for dashboard.config: TOML -> frozen dataclasses with precise errors."""

import contextlib
import dataclasses
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.config import MISSING, Config, ConfigError, Table, load_config, parse_duration
from tests.configs import toml_value

# The smallest valid document is one widget shown on one dashboard.
W = 'view = "number"\nsource = { kind = "cpu" }'
D = 'id = "main"\nwidgets = ["cpu"]'


def doc(widget: str = W, dashboard: str = D, top: str = "") -> str:
    """A config: `top` (root keys and extra sections), widget cpu, one dashboard."""
    return f"{top}\n[widgets.cpu]\n{widget}\n\n[[dashboards]]\n{dashboard}\n"


MINIMAL = doc()


def write(directory: Path, text: str | bytes, name: str = "config.toml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, env: dict | None = None) -> Config:
    return load_config(write(tmp_path, text), env={} if env is None else env)


def load_error(tmp_path: Path, text: str | bytes, env: dict | None = None) -> str:
    """The message load_config raises for text, with the file prefix checked and cut."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={} if env is None else env)
    message = str(info.value)
    prefix = f"{path}: "
    assert message.startswith(prefix), message
    return message[len(prefix) :]


WIDGET_KEYS = (
    "view, title, every, timeout, on_change, unit, decimals, min, max, warn, "
    "crit, history, width, height, timezone, source, map, enabled, alert"
)
SERVER_KEYS = (
    "host, port, keepalive, log_level, grace, batch, max_streams, "
    "max_streams_per_ip, max_stream_lifetime, trusted_proxies, frame_ancestors, "
    "max_body, max_header, metrics_token, header_timeout, body_timeout, max_incomplete_requests, cors_origins"
)
VIEWS = "number, meter, graph, text, list, status, clock, alerts"
SIZE = 'expected a size like "64KiB", "1MiB" or "512B", got'
ID_RULE = 'letters, digits, "_" and "-" only (1-64 characters)'

ERROR_CASES = [
    # --- the file itself
    (
        "syntax",
        "[server\nport = 1\n",
        "invalid TOML: Expected ']' at the end of a table declaration (at line 1, column 8)",
    ),
    ("duplicate key", "a = 1\na = 2\n", "invalid TOML: Cannot overwrite a value (at line 2, column 6)"),
    ("nested too deep", "a = " + "[" * 5000 + "]" * 5000, "invalid TOML: nested too deeply"),
    # --- unknown keys at each level
    (
        "unknown root key",
        doc(top='[dashboard]\nid = "x"'),
        'unknown key "dashboard" (expected one of: server, storage, hub, api, auth, alerts, notifiers, widgets, dashboards, maintenance)',
    ),
    (
        "unknown server key",
        doc(top="[server]\nprot = 1"),
        f'server: unknown key "prot" (expected one of: {SERVER_KEYS})',
    ),
    (
        "unknown storage key",
        doc(top='[storage]\nretain = "1d"'),
        'storage: unknown key "retain" (expected one of: url, retention, prune_every, retention_10s, retention_1m, retention_1h)',
    ),
    (
        "unknown hub key",
        doc(top='[hub]\nbackends = "redis"'),
        'hub: unknown key "backends" (expected one of: backend, url, buffer, channel, lease)',
    ),
    (
        "unknown api key",
        doc(top="[api]\ntoken = 1"),
        'api: unknown key "token" (expected one of: tokens, max_body, history_limit, rate, burst)',
    ),
    (
        "unknown widget key",
        doc(widget=W + '\nevry = "5s"'),
        f'widgets.cpu: unknown key "evry" (expected one of: {WIDGET_KEYS})',
    ),
    (
        "unknown dashboard key",
        doc(dashboard=D + "\ncols = 3"),
        'dashboards[0]: unknown key "cols" (expected one of: id, title, widgets, columns, theme, rotate, auth, users, alert_sound, alert_notifications)',
    ),
    (
        "odd unknown key is quoted",
        doc(top='[server]\n"my port" = 1'),
        f'server: unknown key "my port" (expected one of: {SERVER_KEYS})',
    ),
    # --- wrong types and ranges; got-values shown as TOML
    ("int from string", doc(top='[server]\nport = "eighty"'), 'server.port: expected an integer, got "eighty"'),
    ("bool is not int", doc(top="[server]\nport = true"), "server.port: expected an integer, got true"),
    ("float is not int", doc(top="[server]\nport = 80.0"), "server.port: expected an integer, got 80.0"),
    ("array got", doc(top="[server]\nport = [80]"), "server.port: expected an integer, got an array"),
    ("datetime got", doc(top="[server]\nport = 1979-05-27"), "server.port: expected an integer, got 1979-05-27"),
    ("int range", doc(top="[server]\nport = 70000"), "server.port: expected an integer from 0 to 65535, got 70000"),
    ("int min only", doc(top="[server]\nmax_streams = 0"), "server.max_streams: expected an integer >= 1, got 0"),
    (
        "huge int",
        doc(top="[server]\nport = " + "9" * 5000),
        "invalid TOML: Exceeds the limit (4300 digits) for integer string conversion: "
        "value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit",
    ),
    ("section not a table", doc(top="server = 5"), "server: expected a table, got 5"),
    (
        "choice",
        doc(top='[server]\nlog_level = "verbose"'),
        'server.log_level: expected one of: debug, info, warning, error, got "verbose"',
    ),
    (
        "long value cut",
        doc(top=f'[server]\nlog_level = "{"x" * 60}"'),
        f'server.log_level: expected one of: debug, info, warning, error, got "{"x" * 37}..."',
    ),
    (
        "control chars escaped",
        doc(top='[server]\nlog_level = "a\\tb\\u0001"'),
        'server.log_level: expected one of: debug, info, warning, error, got "a\\tb\\u0001"',
    ),
    (
        "positive duration",
        doc(top='[server]\nkeepalive = "0s"'),
        'server.keepalive: expected a duration greater than 0, got "0s"',
    ),
    (
        "bad duration",
        doc(widget=W + '\nevery = "fast"'),
        'widgets.cpu.every: expected a duration like "5s", "2m" or "1h30m", got "fast"',
    ),
    (
        "bare number duration",
        doc(widget=W + "\nevery = 5"),
        'widgets.cpu.every: expected a duration like "5s", "2m" or "1h30m", got 5',
    ),
    (
        "map to a state the view lacks",
        doc(widget='view = "status"\nsource = { kind = "cpu" }\nmap = { green = "fine" }'),
        'widgets.cpu.map.green: expected "ok", "warn" or "down" (or an object with a "state"), got text \'fine\' '
        "(what a status widget shows)",
    ),
    (
        "map to a table",
        doc(widget=W + "\nmap = { up = { a = 1 } }"),
        "widgets.cpu.map.up: expected a string, a number or true/false, got a table",
    ),
    (
        "map not a table",
        doc(widget=W + '\nmap = "green"'),
        'widgets.cpu.map: expected a table, got "green"',
    ),
    (
        "unknown time zone",
        doc(widget=W + '\ntimezone = "Mars/Olympus"'),
        'widgets.cpu.timezone: unknown time zone "Mars/Olympus" (expected an IANA name like "Europe/Berlin")',
    ),
    (
        "a file, not a zone",
        doc(widget=W + '\ntimezone = "localtime"'),
        'widgets.cpu.timezone: unknown time zone "localtime" (expected an IANA name like "Europe/Berlin")',
    ),
    ("bool", doc(widget=W + '\non_change = "yes"'), 'widgets.cpu.on_change: expected true or false, got "yes"'),
    ("number", doc(widget=W + '\nmin = "low"'), 'widgets.cpu.min: expected a number, got "low"'),
    ("nan", doc(widget=W + "\nwarn = nan"), "widgets.cpu.warn: expected a finite number, got nan"),
    # inf and nan are refused anywhere: a page's data would not parse, a source would fail
    ("inf", doc(widget=W + "\nmax = inf"), "widgets.cpu.max: expected a finite number, got inf"),
    (
        "inf in a source",
        doc(widget='view = "number"\nsource = { kind = "random_walk", start = -inf }'),
        "widgets.cpu.source.start: expected a finite number, got -inf",
    ),
    (
        "nan deep in a source",
        doc(widget='view = "number"\nsource = { kind = "python", args = { a = [1, { b = nan }] } }'),
        "widgets.cpu.source.args.a[1].b: expected a finite number, got nan",
    ),
    # NUL anywhere: the OS refuses it in arguments, variables and paths; HTML drops it
    (
        "NUL in a title",
        doc(widget=W + '\ntitle = "a\\u0000"'),
        "widgets.cpu.title: expected text without NUL (\\u0000)",
    ),
    (
        "NUL in a key",
        doc(widget=W + '\n"a\\u0000" = 1'),
        'widgets.cpu."a\\u0000": expected a key without NUL (\\u0000)',
    ),
    (
        "NUL in a secret, not echoed",
        doc(top='[api]\ntokens = { ci = "secret-token\\u0000" }'),
        "api.tokens.ci: expected text without NUL (\\u0000)",
    ),
    (
        "min >= max",
        doc(widget=W + "\nmin = 10\nmax = 5"),
        "widgets.cpu.max: expected a number greater than min (10), got 5",
    ),
    ("decimals", doc(widget=W + "\ndecimals = 13"), "widgets.cpu.decimals: expected an integer from 0 to 12, got 13"),
    ("width", doc(widget=W + "\nwidth = 0"), "widgets.cpu.width: expected an integer from 1 to 24, got 0"),
    (
        "history",
        doc(widget=W + '\nhistory = "0m"'),
        'widgets.cpu.history: expected a duration greater than 0, got "0m"',
    ),
    (
        "history over a year",
        doc(widget=W + '\nhistory = "367d"'),
        'widgets.cpu.history: expected a duration of at most "366d" (a year), got "367d"',
    ),
    (
        "rollup retention",
        doc(top='[storage]\nretention_1m = "0s"'),
        'storage.retention_1m: expected a duration greater than 0, got "0s"',
    ),
    ("title table", doc(widget=W + "\ntitle = { a = 1 }"), "widgets.cpu.title: expected a string, got a table"),
    # --- widgets
    (
        "no widgets",
        '[[dashboards]]\nid = "main"\nwidgets = ["cpu"]\n',
        "widgets: expected at least one [widgets.<id>] table",
    ),
    ("widget not a table", doc(top="[widgets]\nmem = 5"), "widgets.mem: expected a table, got 5"),
    ("missing view", doc(widget='source = { kind = "cpu" }'), f"widgets.cpu.view: missing (expected one of: {VIEWS})"),
    (
        "bad view",
        doc(widget='view = "gauge"\nsource = { kind = "cpu" }'),
        f'widgets.cpu.view: expected one of: {VIEWS}, got "gauge"',
    ),
    ("missing source", doc(widget='view = "number"'), "widgets.cpu.source: missing"),
    (
        "source not a table",
        doc(widget='view = "number"\nsource = "cpu"'),
        'widgets.cpu.source: expected a table, got "cpu"',
    ),
    ("source without kind", doc(widget='view = "number"\nsource = { every = 1 }'), "widgets.cpu.source.kind: missing"),
    (
        "source kind type",
        doc(widget='view = "number"\n[widgets.cpu.source]\nkind = 1'),
        "widgets.cpu.source.kind: expected a string, got 1",
    ),
    (
        "bad widget id",
        doc(top=f'[widgets."cpu load"]\n{W}'),
        f'widgets."cpu load": invalid id "cpu load": use {ID_RULE}',
    ),
    (
        "long widget id",
        doc(top=f"[widgets.{'a' * 65}]\n{W}"),
        f'widgets.{"a" * 65}: invalid id "{"a" * 37}...": use {ID_RULE}',
    ),
    (
        "reserved widget id",
        doc(top=f"[widgets.hello]\n{W}"),
        'widgets.hello: "hello" is reserved for control events; pick another widget id',
    ),
    # --- dashboards
    ("no dashboards", f"[widgets.cpu]\n{W}\n", "dashboards: expected at least one [[dashboards]] table"),
    (
        "dashboards not an array",
        "dashboards = 5\n" + f"[widgets.cpu]\n{W}\n",
        "dashboards: expected an array of tables, got 5",
    ),
    ("dashboard not a table", "dashboards = [5]\n" + f"[widgets.cpu]\n{W}\n", "dashboards[0]: expected a table, got 5"),
    ("missing dashboard id", doc(dashboard='widgets = ["cpu"]'), "dashboards[0].id: missing"),
    (
        "bad dashboard id",
        doc(dashboard='id = "ops/main"\nwidgets = ["cpu"]'),
        f'dashboards[0].id: invalid id "ops/main": use {ID_RULE}',
    ),
    ("duplicate dashboard id", doc() + f"[[dashboards]]\n{D}\n", 'dashboards[1].id: duplicate dashboard id "main"'),
    ("missing widgets list", doc(dashboard='id = "main"'), "dashboards[0].widgets: missing"),
    (
        "empty widgets list",
        doc(dashboard='id = "main"\nwidgets = []'),
        "dashboards[0].widgets: expected at least one widget id, got an empty array",
    ),
    (
        "widgets not a list",
        doc(dashboard='id = "main"\nwidgets = "cpu"'),
        'dashboards[0].widgets: expected an array of strings, got "cpu"',
    ),
    (
        "widget id not a string",
        doc(dashboard='id = "main"\nwidgets = ["cpu", 5]'),
        "dashboards[0].widgets[1]: expected a string, got 5",
    ),
    (
        "unknown widget",
        doc(dashboard='id = "main"\nwidgets = ["cpux"]'),
        'dashboards[0].widgets: unknown widget "cpux"',
    ),
    (
        "duplicate widget",
        doc(dashboard='id = "main"\nwidgets = ["cpu", "cpu"]'),
        'dashboards[0].widgets: duplicate widget "cpu"',
    ),
    ("columns", doc(dashboard=D + "\ncolumns = 25"), "dashboards[0].columns: expected an integer from 1 to 24, got 25"),
    (
        "theme",
        doc(dashboard=D + '\ntheme = "blue"'),
        'dashboards[0].theme: expected one of: auto, dark, light, got "blue"',
    ),
    (
        "rotate",
        doc(dashboard=D + "\nrotate = 30"),
        'dashboards[0].rotate: expected a duration like "5s", "2m" or "1h30m", got 30',
    ),
    # --- hub, storage, api
    ("redis without url", doc(top='[hub]\nbackend = "redis"'), 'hub.url: missing (required when backend = "redis")'),
    ("hub buffer", doc(top="[hub]\nbuffer = 8"), "hub.buffer: expected an integer >= 16, got 8"),
    (
        "storage scheme hides the rest",
        doc(top='[storage]\nurl = "mysql://root:hunter2@db/x"'),
        'storage.url: expected a URL starting with sqlite+aiosqlite:// or postgresql+asyncpg://, got "mysql://..."',
    ),
    (
        "storage not a url",
        doc(top='[storage]\nurl = "data.db"'),
        'storage.url: expected a URL starting with sqlite+aiosqlite:// or postgresql+asyncpg://, got "data.db"',
    ),
    (
        "short token, not echoed",
        doc(top='[api]\ntokens = { ci = "abc" }'),
        "api.tokens.ci: too short: use at least 8 characters",
    ),
    ("empty token", doc(top='[api.tokens]\nci = ""'), "api.tokens.ci: too short: use at least 8 characters"),
    ("token type", doc(top="[api.tokens]\nci = 12345678"), "api.tokens.ci: expected a string, got 12345678"),
    ("tokens not a table", doc(top='[api]\ntokens = "secret123"'), 'api.tokens: expected a table, got "secret123"'),
    ("bad size", doc(top='[api]\nmax_body = "lots"'), f'api.max_body: {SIZE} "lots"'),
    ("decimal size unit", doc(top='[api]\nmax_body = "64kb"'), f'api.max_body: {SIZE} "64kb"'),
    ("zero size", doc(top="[api]\nmax_body = 0"), f"api.max_body: {SIZE} 0"),
    ("bool size", doc(top="[api]\nmax_body = true"), f"api.max_body: {SIZE} true"),
    (
        "host that cannot be listened on",
        doc(top='[server]\nhost = "http://127.0.0.1/"'),
        'server.host: expected an IP address or a host name that resolves, got "http://127.0.0.1/"',
    ),
    (
        "header_timeout",
        doc(top='[server]\nheader_timeout = "0s"'),
        'server.header_timeout: expected a duration greater than 0, got "0s"',
    ),
    (
        "max_incomplete_requests",
        doc(top="[server]\nmax_incomplete_requests = 0"),
        "server.max_incomplete_requests: expected an integer >= 1, got 0",
    ),
    ("history_limit", doc(top="[api]\nhistory_limit = 0"), "api.history_limit: expected an integer >= 1, got 0"),
    # --- ${NAME} interpolation
    (
        "unset env var",
        doc(top='[api.tokens]\nci = "${DASHBOARD_TOKEN}"'),
        "api.tokens.ci: environment variable DASHBOARD_TOKEN is not set",
    ),
    (
        "unset env var in array",
        doc(dashboard='id = "main"\nwidgets = ["cpu", "${W2}"]'),
        "dashboards[0].widgets[1]: environment variable W2 is not set",
    ),
    (
        "unset env var in inline table",
        doc(widget='view = "number"\nsource = { kind = "http", headers = { a = "${H}" } }'),
        "widgets.cpu.source.headers.a: environment variable H is not set",
    ),
    (
        "unset env var in unknown key",
        doc(top='[server]\nfoo = "${FOO}"'),
        "server.foo: environment variable FOO is not set",
    ),
    (
        "malformed reference",
        doc(dashboard=D + '\ntitle = "${1X}"'),
        'dashboards[0].title: invalid "${": write ${NAME}, ${NAME:-default}, or $${ for a literal "${"',
    ),
    (
        "unterminated reference",
        doc(dashboard=D + '\ntitle = "${HOME"'),
        'dashboards[0].title: invalid "${": write ${NAME}, ${NAME:-default}, or $${ for a literal "${"',
    ),
    (
        "env value is still type-checked",
        doc(top='[server]\nport = "${PORT}"'),
        'server.port: expected an integer, got "8080"',
    ),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_error_message(tmp_path, text, expected):
    assert load_error(tmp_path, text, env={"PORT": "8080"}) == expected


# --- reading the file ------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read: No such file or directory"


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path))
    assert str(info.value) == f"{tmp_path}: cannot read: Is a directory"


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "fifo"])
def test_anything_but_a_regular_file_is_refused_at_once(tmp_path, path):
    if path == "fifo":  # with no writer, reading it would wait for ever
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read: not a regular file"


def test_a_file_past_16_mib_is_refused_unread(tmp_path):
    path = write(tmp_path, MINIMAL + "#" * (16 * 1024 * 1024))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read: larger than 16 MiB"


def test_an_empty_path_and_a_name_with_a_line_break_say_so_in_one_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config("")
    assert str(info.value) == "--config: expected a file, got an empty path"
    path = write(tmp_path, "server = 5\n" + MINIMAL, name="a\nb\u2028.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{tmp_path}/a\\u000ab\\u2028.toml: server: expected a table, got 5"


def test_keys_dotted_a_thousand_deep_are_an_error_not_a_recursion(tmp_path):
    text = MINIMAL + ".".join(["k"] * 1000) + " = 1\n"
    assert load_error(tmp_path, text).endswith("invalid TOML: nested too deeply")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("batch", '"1h"', 'server.batch: expected a duration of at most "10s", got "1h"'),
        ("grace", '"99999999d"', 'server.grace: expected a duration of at most "36600d", got "99999999d"'),
    ],
)
def test_durations_have_bounds_the_program_can_keep(tmp_path, key, value, expected):
    assert load_error(tmp_path, f"[server]\n{key} = {value}\n" + MINIMAL).endswith(expected)


def test_file_name_is_shown_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "server = 5\n" + MINIMAL)
    with pytest.raises(ConfigError) as info:
        load_config("config.toml", env={})
    assert str(info.value) == "config.toml: server: expected a table, got 5"


def test_not_utf8(tmp_path):
    assert load_error(tmp_path, b'a = "\xff"\n') == "invalid TOML: not UTF-8 (byte 5)"


def test_utf8_bom_is_accepted(tmp_path):
    config = load_config(write(tmp_path, b"\xef\xbb\xbf" + MINIMAL.encode()), env={})
    assert config.widgets["cpu"].view == "number"


# --- happy paths -------------------------------------------------------------------


def test_defaults(tmp_path):
    config = load(tmp_path, MINIMAL)
    assert config.file == str(tmp_path / "config.toml")
    assert config.base_dir == tmp_path
    s = config.server
    assert (s.host, s.port, s.keepalive, s.log_level, s.grace, s.batch) == ("127.0.0.1", 8888, 15.0, "info", 5.0, 0.0)
    assert (s.max_streams, s.max_streams_per_ip, s.max_stream_lifetime) == (10000, 1000, 3600.0)
    assert config.storage.url == f"sqlite+aiosqlite:///{tmp_path}/data/dashboard.db"
    assert (config.storage.retention, config.storage.prune_every) == (30 * 86400.0, 600.0)
    assert (config.storage.retention_10s, config.storage.retention_1m, config.storage.retention_1h) == (
        2 * 86400.0,
        90 * 86400.0,
        400 * 86400.0,
    )
    assert (config.hub.backend, config.hub.url, config.hub.buffer) == ("memory", "", 1024)
    assert (dict(config.api.tokens), config.api.max_body, config.api.history_limit) == ({}, 65536, 1000)

    (dash,) = config.dashboards
    assert dash == type(dash)(id="main", title="main", widgets=("cpu",), columns=4, theme="auto", rotate=0.0)
    w = config.widgets["cpu"]
    assert (w.id, w.view, w.title, w.every, w.timeout, w.on_change, w.unit) == (
        "cpu",
        "number",
        "cpu",
        5.0,
        5.0,
        True,
        "",
    )
    assert (w.decimals, w.min, w.max, w.warn, w.crit) == (None,) * 5
    assert (w.history, w.width, w.height, w.timezone) == (600.0, 1, 1, "")
    assert (w.source.kind, dict(w.source.options), w.source.path) == ("cpu", {}, "widgets.cpu.source")


def test_everything_set(tmp_path):
    text = """
[server]
host = "0.0.0.0"
port = 0
keepalive = "20s"
log_level = "debug"
grace = "0s"
batch = "50ms"
max_streams = 5
max_streams_per_ip = 2
max_stream_lifetime = "2h"

[storage]
url = "postgresql+asyncpg://dash:pw@db/dash"
retention = "7d"
prune_every = "1h"

[hub]
backend = "redis"
url = "redis://localhost:6379/0"
buffer = 16

[api]
tokens = { ci = "ci-token-123", deploy = "deploy-token" }
max_body = "1MiB"
history_limit = 50

[widgets.usd_eur]
view = "graph"
title = "USD / EUR"
every = "2s"
on_change = false
unit = "EUR"
decimals = 4
min = 0
max = 1.5
warn = 1.1
crit = 1.2
history = "1h"
width = 2
height = 3
source = { kind = "random_walk", start = 0.92, volatility = 0.002 }

[widgets.clock]
view = "clock"
every = "1m"
timezone = "Europe/Paris"

[[dashboards]]
id = "main"
title = "Operations"
widgets = ["usd_eur", "clock"]
columns = 6
theme = "dark"
rotate = "30s"

[[dashboards]]
id = "clocks"
widgets = ["clock"]
rotate = ""
"""
    config = load(tmp_path, text)
    assert config.server == type(config.server)(
        host="0.0.0.0",
        port=0,
        keepalive=20.0,
        log_level="debug",
        grace=0.0,
        batch=0.05,
        max_streams=5,
        max_streams_per_ip=2,
        max_stream_lifetime=7200.0,
    )
    assert config.storage.url == "postgresql+asyncpg://dash:pw@db/dash"
    assert config.hub.url == "redis://localhost:6379/0"
    assert dict(config.api.tokens) == {"ci": "ci-token-123", "deploy": "deploy-token"}
    assert config.api.max_body == 1024 * 1024
    w = config.widgets["usd_eur"]
    assert (w.title, w.every, w.timeout, w.on_change, w.decimals) == ("USD / EUR", 2.0, 2.0, False, 4)
    assert (w.min, w.max, w.warn, w.crit, w.history, w.width, w.height) == (0, 1.5, 1.1, 1.2, 3600.0, 2, 3)
    assert dict(w.source.options) == {"start": 0.92, "volatility": 0.002}
    clock = config.widgets["clock"]
    assert (clock.source, clock.timeout, clock.timezone) == (None, 10.0, "Europe/Paris")
    assert list(config.widgets) == ["usd_eur", "clock"]  # document order
    assert [(d.id, d.title, d.columns, d.theme, d.rotate) for d in config.dashboards] == [
        ("main", "Operations", 6, "dark", 30.0),
        ("clocks", "clocks", 4, "auto", 0.0),
    ]
    assert config.dashboards_of("clock") == ("main", "clocks")
    assert config.dashboards_of("usd_eur") == ("main",)
    assert config.dashboard("clocks").widgets == ("clock",)
    assert config.dashboard("nope") is None


def test_config_is_frozen(tmp_path):
    config = load(tmp_path, doc(top='[api.tokens]\nci = "12345678"'))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.api.tokens["x"] = "y"  # type: ignore[index]
    with pytest.raises(TypeError):
        config.widgets["x"] = None  # type: ignore[index]
    assert isinstance(config.dashboards, tuple)
    assert isinstance(config.dashboards[0].widgets, tuple)
    # callers change settings with dataclasses.replace
    assert dataclasses.replace(config, server=dataclasses.replace(config.server, port=0)).server.port == 0


@pytest.mark.parametrize("every, timeout", [("2s", 2.0), ("1m", 10.0), ("10s", 10.0)])
def test_timeout_defaults_to_every_capped_at_10s(tmp_path, every, timeout):
    config = load(tmp_path, doc(widget=W + f'\nevery = "{every}"'))
    assert config.widgets["cpu"].timeout == timeout


@pytest.mark.parametrize(
    "value, size", [("512B", 512), ("64KiB", 65536), ("1MiB", 1048576), ("1GiB", 1 << 30), (100, 100)]
)
def test_max_body_sizes(tmp_path, value, size):
    config = load(tmp_path, doc(top=f"[api]\nmax_body = {json.dumps(value)}"))
    assert config.api.max_body == size


# --- durations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("500ms", 0.5),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("30d", 2592000.0),
        ("1.5s", 1.5),
        ("0s", 0.0),
        ("0ms", 0.0),
        ("10m", 600.0),
        ("1h30m", 5400.0),
        ("2m30s", 150.0),
        ("1d12h", 129600.0),
        ("1s500ms", 1.5),
        ("1h0m5s", 3605.0),
        ("1d2h3m4s5ms", 93784.005),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds
    assert isinstance(parse_duration(text), float)


# A unit is always required and the form is strict: no spaces, signs, exponents,
# upper case or missing digits; a compound goes from its largest unit down, each once.
@pytest.mark.parametrize(
    "text",
    [
        "",
        "5",
        "-1s",
        "+1s",
        "5 s",
        " 5s",
        "5s ",
        "5s\n",
        "fast",
        "5S",
        "30m1h",
        "1m1m",
        "1s1m",
        "1h 30m",
        "1h30",
        "1h-30m",
        "h30m",
        ".5s",
        "1.s",
        "1e3s",
        "5sec",
        "s",
        "\u0665s",
        "9" * 400 + "d",
    ],
)
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_a_map_is_read_with_its_targets_as_written(tmp_path):
    config = load(tmp_path, doc('view = "status"\nsource = { kind = "cpu" }\nmap = { green = "ok", "0" = "down" }'))
    assert dict(config.widgets["cpu"].value_map) == {"green": "ok", "0": "down"}
    assert load(tmp_path, MINIMAL).widgets["cpu"].value_map is None


def test_a_compound_duration_is_read_wherever_a_duration_is(tmp_path):
    config = load(
        tmp_path,
        doc(
            W + '\nevery = "1m30s"\nhistory = "1h30m"',
            D + '\nrotate = "2m30s"',
            top='[storage]\nretention = "7d12h"',
        ),
    )
    widget = config.widgets["cpu"]
    assert (widget.every, widget.history) == (90.0, 5400.0)
    assert config.dashboards[0].rotate == 150.0
    assert config.storage.retention == 7.5 * 86400


def test_parse_duration_rejects_non_strings():
    for value in (5, 5.0, None, True):
        with pytest.raises(ValueError):
            parse_duration(value)  # type: ignore[arg-type]


# --- ${NAME} interpolation ---------------------------------------------------------------


def test_env_interpolation(tmp_path):
    text = doc(
        top='[api.tokens]\nci = "${TOKEN}"\nlocal = "${UNSET:-fallback-token}"\nblank = "${EMPTY:-default-token}"',
        widget='view = "number"\ntitle = "${EMPTY}|$${HOME}|$$|${A}${A}"\n'
        'source = { kind = "http", url = "https://${HOST:-example.org}/x", '
        'headers = { auth = "Bearer ${TOKEN}" }, args = ["${A}", 1] }',
        dashboard='id = "main"\nwidgets = ["${W}"]',
    )
    env = {"TOKEN": "s3cret-token", "EMPTY": "", "A": "a", "W": "cpu"}
    config = load(tmp_path, text, env)
    assert dict(config.api.tokens) == {"ci": "s3cret-token", "local": "fallback-token", "blank": "default-token"}
    assert config.widgets["cpu"].title == "|${HOME}|$$|aa"
    assert dict(config.widgets["cpu"].source.options) == {
        "url": "https://example.org/x",
        "headers": {"auth": "Bearer s3cret-token"},
        "args": ["a", 1],
    }
    assert config.dashboards[0].widgets == ("cpu",)


def test_env_interpolation_is_not_recursive(tmp_path):
    config = load(tmp_path, doc(dashboard=D + '\ntitle = "${T}"'), {"T": "${X}"})
    assert config.dashboards[0].title == "${X}"


def test_a_reference_in_a_default_is_refused_not_kept_as_text(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, doc(dashboard=D + '\ntitle = "${UNSET:-${ALSO_UNSET}}"'), {})
    assert str(info.value).endswith(
        'dashboards[0].title: the default of ${UNSET:-...} holds "${": a default is text, not another reference'
    )


def test_env_defaults_to_os_environ(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHBOARD_TEST_TITLE", "From env")
    config = load_config(write(tmp_path, doc(dashboard=D + '\ntitle = "${DASHBOARD_TEST_TITLE}"')))
    assert config.dashboards[0].title == "From env"


# --- storage URL ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, expected",
    [
        ("sqlite+aiosqlite:///data/dashboard.db", "sqlite+aiosqlite:///{dir}/data/dashboard.db"),
        ("sqlite+aiosqlite:///../x.db?mode=ro", "sqlite+aiosqlite:///{dir}/../x.db?mode=ro"),
        ("sqlite+aiosqlite:////var/lib/x.db", "sqlite+aiosqlite:////var/lib/x.db"),
        ("sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite:///:memory:"),
        ("sqlite+aiosqlite://", "sqlite+aiosqlite://"),
        ("postgresql+asyncpg://u:p@host/db", "postgresql+asyncpg://u:p@host/db"),
    ],
)
def test_storage_url_resolved_against_config_dir(tmp_path, url, expected):
    path = write(tmp_path / "etc" / "dashboard", doc(top=f'[storage]\nurl = "{url}"'))
    config = load_config(path, env={})
    config_dir = tmp_path / "etc" / "dashboard"
    assert config.base_dir == config_dir
    assert config.storage.url == expected.format(dir=config_dir)
    if "{dir}" in expected:
        assert config.storage.url.startswith("sqlite+aiosqlite:////")


def test_resolve_path(tmp_path):
    config = load_config(write(tmp_path / "sub", MINIMAL), env={})
    assert config.resolve_path("static") == tmp_path / "sub" / "static"
    assert config.resolve_path("/srv/static") == Path("/srv/static")


# --- Table, as the source modules use it ----------------------------------------------------


def test_source_options_done_catches_unread_key(tmp_path):
    text = doc(widget='view = "number"\nsource = { kind = "random_walk", start = 0.92, volatilty = 0.002 }')
    config = load(tmp_path, text)
    options = config.source_options("cpu")
    assert options.number("start") == 0.92
    assert options.number("volatility", 0.01) == 0.01
    with pytest.raises(ConfigError) as info:
        options.done()
    assert str(info.value) == (
        f'{tmp_path / "config.toml"}: widgets.cpu.source: unknown key "volatilty" (expected one of: start, volatility)'
    )


def test_source_options_of_clock_without_source(tmp_path):
    config = load(tmp_path, doc(widget='view = "clock"'))
    options = config.source_options("cpu")
    assert list(options.keys()) == [] and options.path == "widgets.cpu.source"
    options.done()


def test_table_reading():
    t = Table(
        "f.toml",
        "widgets.x.source",
        {
            "n": 3,
            "f": 1.5,
            "b": True,
            "s": "hi",
            "d": "2m",
            "l": ["a", "b"],
            "sub": {"k": 1},
            "body": {"json": [1, {"a": None}]},
        },
    )
    assert "n" in t and "zzz" not in t
    assert t.int("n", min=0, max=5) == 3
    assert t.number("f") == 1.5 and t.number("n") == 3
    assert t.bool("b") is True
    assert t.str("s", choices=("hi", "ho")) == "hi"
    assert t.duration("d") == 120.0
    assert t.str_list("l") == ("a", "b")
    sub = t.table("sub")
    assert sub.path == "widgets.x.source.sub" and sub.int("k") == 1
    sub.done()
    assert t.raw("body") == {"json": [1, {"a": None}]}
    t.done()


def test_table_defaults_are_returned_for_absent_keys():
    t = Table("f.toml", "", {})
    assert t.int("a", None) is None
    assert t.str("b", "x", choices=("y",)) == "x"
    assert t.duration("c", "1m") == 60.0
    assert t.duration("c", 2.5) == 2.5
    assert t.str_list("d", ["a"]) == ("a",)
    assert t.table("e", None) is None
    empty = t.table("e", {})
    assert empty.path == "e" and list(empty.keys()) == []
    assert t.raw("f", None) is None
    with pytest.raises(ConfigError):
        t.raw("f", MISSING)  # MISSING is the "required" marker
    t.done()


@pytest.mark.parametrize(
    "key, read, message",
    [
        ("b", lambda t: t.int("b"), "expected an integer, got true"),
        ("b", lambda t: t.number("b"), "expected a number, got true"),
        ("n", lambda t: t.int("n", min=5), "expected an integer >= 5, got 3"),
        ("n", lambda t: t.int("n", max=2), "expected an integer <= 2, got 3"),
        ("f", lambda t: t.number("f", min=2, max=3), "expected a number from 2 to 3, got 1.5"),
        ("n", lambda t: t.duration("n"), 'expected a duration like "5s", "2m" or "1h30m", got 3'),
        ("n", lambda t: t.str_list("n"), "expected an array of strings, got 3"),
        ("n", lambda t: t.table("n"), "expected a table, got 3"),
        ("n", lambda t: t.str("n"), "expected a string, got 3"),
        ("n", lambda t: t.str("n", choices=("a", "b")), "expected one of: a, b, got 3"),
        ("nope", lambda t: t.int("nope"), "missing"),
        # Past what the program can hold: a clean error, not an OverflowError at run time.
        ("huge", lambda t: t.number("huge"), "expected a finite number, got " + "1" + "0" * 36 + "..."),
        (
            "huge",
            lambda t: t.int("huge", min=1),
            "expected an integer from 1 to 9007199254740991, got 1" + "0" * 36 + "...",
        ),
        ("big", lambda t: t.int("big"), f"expected an integer from -9007199254740991 to 9007199254740991, got {2**63}"),
        ("long", lambda t: t.duration("long"), 'expected a duration of at most "36600d", got "99999999d"'),
        ("fast", lambda t: t.duration("fast", least="10ms"), 'expected a duration from "10ms" to "36600d", got "1ms"'),
        ("nope", lambda t: t.str("nope", choices=("a", "b")), "missing (expected one of: a, b)"),
    ],
)
def test_table_errors(key, read, message):
    t = Table(
        "f.toml",
        "widgets.x.source",
        {"n": 3, "f": 1.5, "b": True, "huge": 10**400, "big": 2**63, "long": "99999999d", "fast": "1ms"},
    )
    with pytest.raises(ConfigError) as info:
        read(t)
    assert str(info.value) == f"f.toml: widgets.x.source.{key}: {message}"


def test_table_error_and_root_paths():
    assert str(Table("f.toml", "a.b", {}).error("c", "bad")) == "f.toml: a.b.c: bad"
    assert str(Table("f.toml", "", {}).error("c", "bad")) == "f.toml: c: bad"
    with pytest.raises(ConfigError) as info:
        Table("f.toml", "", {"x": 1}).done()
    assert str(info.value) == 'f.toml: unknown key "x"'


# --- no input ever escapes as anything but ConfigError -------------------------------------

_values = st.recursive(
    st.none().map(lambda _: "5s")
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.integers()
    | st.sampled_from([2**63, -(2**63), 10**309, 10**400])
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "",
            "0s",
            "1h",
            "99999999d",
            "0.0000001ms",
            "fast",
            "64KiB",
            "${X}",
            "${X:-d}",
            "redis",
            "cpu",
            "clock",
            "hello",
            "memory",
            "sqlite+aiosqlite:///a.db",
        ]
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["kind", "id", "a", "widgets"]), inner, max_size=3)
    ),
    max_leaves=6,
)
_sections = st.sampled_from(
    ["server", "storage", "hub", "api", "api.tokens", "widgets.cpu", "widgets.cpu.source", "dashboards"]
)
_keys = st.sampled_from(
    [
        "host",
        "port",
        "keepalive",
        "grace",
        "url",
        "backend",
        "buffer",
        "tokens",
        "max_body",
        "view",
        "every",
        "timeout",
        "min",
        "max",
        "decimals",
        "width",
        "source",
        "kind",
        "id",
        "widgets",
        "rotate",
        "columns",
        "theme",
        "ci",
        "title",
        "history",
        "odd key",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(assignments=st.lists(st.tuples(_sections, _keys, _values), max_size=4))
def test_any_value_anywhere_gives_config_or_config_error(tmp_path, assignments):
    # Rebuild a document from the minimal one with values replaced or added.
    tables = {
        "widgets.cpu": {"view": '"number"'},
        "widgets.cpu.source": {"kind": '"cpu"'},
        "dashboards": {"id": '"main"', "widgets": '["cpu"]'},
    }
    for section, key, value in assignments:
        tables.setdefault(section, {})[json.dumps(key)] = toml_value(value, ensure_ascii=False)
    parts = []
    for section, items in tables.items():
        header = "[[dashboards]]" if section == "dashboards" else f"[{section}]"
        parts.append(header + "\n" + "".join(f"{k} = {v}\n" for k, v in items.items()))
    text = "\n".join(parts)
    with contextlib.suppress(ConfigError):
        load(tmp_path, text, {"X": "value-of-x"})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list("[]{}=\"'.,=\n #$abc15s-:")), max_size=60))
def test_any_text_gives_config_or_config_error(tmp_path, text):
    with contextlib.suppress(ConfigError):
        load(tmp_path, MINIMAL + text)


# --- [hub] for several processes: redis URL, channel, lease -----------------------


def test_hub_redis_options_and_their_defaults(tmp_path):
    config = load(tmp_path, doc(top='[hub]\nbackend = "redis"\nurl = "redis://127.0.0.1:6379/0"'))
    assert (config.hub.channel, config.hub.lease) == ("dashboard:events", 10.0)
    config = load(
        tmp_path,
        doc(top='[hub]\nbackend = "redis"\nurl = "unix:///run/redis.sock"\nchannel = "wall:events"\nlease = "3s"'),
    )
    assert (config.hub.url, config.hub.channel, config.hub.lease) == ("unix:///run/redis.sock", "wall:events", 3.0)


@pytest.mark.parametrize(
    "hub, message",
    [
        (
            'backend = "redis"\nurl = "http://user:secret@host/"',
            'hub.url: expected a URL starting with redis://, rediss://, unix://, got "http://..."',
        ),
        (
            'backend = "redis"\nurl = "localhost:6379"',
            'hub.url: expected a URL starting with redis://, rediss://, unix://, got "localhost:6379"',
        ),
        (
            'backend = "redis"\nurl = "redis://h"\nchannel = ""',
            "hub.channel: expected a channel name, got an empty string",
        ),
        (
            'backend = "redis"\nurl = "redis://h"\nlease = "500ms"',
            'hub.lease: expected a duration of at least "1s", got "500ms"',
        ),
        ('lease = "soon"', 'hub.lease: expected a duration like "5s", "2m" or "1h30m", got "soon"'),
    ],
)
def test_hub_redis_errors(tmp_path, hub, message):
    assert load_error(tmp_path, doc(top=f"[hub]\n{hub}")) == message


# --- enabled = false: validated, then neither run nor shown --------------------------


def test_a_disabled_widget_is_kept_apart_and_left_off_its_dashboards(tmp_path):
    config = load(
        tmp_path,
        doc(dashboard='id = "main"\nwidgets = ["cpu", "off"]')
        + '\n[widgets.off]\nview = "number"\nenabled = false\nsource = { kind = "random_walk" }\n',
    )
    assert config.widgets["cpu"].enabled is True
    assert list(config.widgets) == ["cpu"]
    assert list(config.disabled_widgets) == ["off"] and config.disabled_widgets["off"].enabled is False
    assert config.dashboards[0].widgets == ("cpu",)
    assert config.dashboards_of("off") == ()
    assert config.source_options("off").path == "widgets.off.source"  # its source can still be checked


@pytest.mark.parametrize(
    "widget, message",
    [
        (
            'view = "number"\nenabled = "no"\nsource = { kind = "random_walk" }',
            'widgets.off.enabled: expected true or false, got "no"',
        ),
        (
            'view = "number"\nenabled = false\nevry = "5s"\nsource = { kind = "random_walk" }',
            f'widgets.off: unknown key "evry" (expected one of: {WIDGET_KEYS})',
        ),
        (
            'view = "dial"\nenabled = false\nsource = { kind = "random_walk" }',
            f'widgets.off.view: expected one of: {VIEWS}, got "dial"',
        ),
    ],
)
def test_a_disabled_widget_is_validated_like_any_other(tmp_path, widget, message):
    assert load_error(tmp_path, MINIMAL + f"\n[widgets.off]\n{widget}\n") == message


def test_a_dashboard_still_may_not_name_an_unknown_widget_next_to_a_disabled_one(tmp_path):
    text = (
        doc(dashboard='id = "main"\nwidgets = ["cpu", "off", "ghost"]')
        + '\n[widgets.off]\nview = "number"\nenabled = false\nsource = { kind = "random_walk" }\n'
    )
    assert load_error(tmp_path, text) == 'dashboards[0].widgets: unknown widget "ghost"'


def test_build_sources_checks_a_disabled_source_but_does_not_run_it(tmp_path):
    from dashboard.sources import build_sources

    text = (
        '[[dashboards]]\nid = "main"\nwidgets = ["on", "off"]\n'
        '[widgets.on]\nview = "number"\nsource = { kind = "random_walk" }\n'
        '[widgets.off]\nview = "number"\nenabled = false\nsource = { kind = "random_walk" }\n'
    )
    assert list(build_sources(load(tmp_path, text))) == ["on"]
    broken = text.replace(
        'enabled = false\nsource = { kind = "random_walk" }',
        'enabled = false\nsource = { kind = "random_walk", strat = 1 }',
    )
    with pytest.raises(ConfigError, match=r'widgets\.off\.source: unknown key "strat"'):
        build_sources(load(tmp_path, broken))


# --- viewer authentication, limits and headers: the keys and their defaults -------------------
# (the errors of each are a table in tests/test_auth.py)


def test_security_keys_default_to_an_open_loopback_server(tmp_path):
    config = load(tmp_path, MINIMAL)
    server = config.server
    assert (server.trusted_proxies, server.frame_ancestors, server.metrics_token) == ((), ("'self'",), "")
    assert (server.max_body, server.max_header) == (64 * 1024, 16 * 1024)
    assert (server.header_timeout, server.body_timeout, server.max_incomplete_requests) == (10.0, 30.0, 1024)
    assert (config.api.rate, config.api.burst) == (10.0, 20)
    assert (config.auth.secret, config.auth.session_lifetime, config.auth.proxy_header) == (
        "",
        43200.0,
        "X-Forwarded-User",
    )
    assert (dict(config.auth.tokens), dict(config.auth.users)) == ({}, {})
    assert (config.dashboards[0].auth, config.dashboards[0].users) == ("public", None)


def test_auth_secret_and_tokens_come_from_the_environment(tmp_path):
    secret, token = "s" * 40, "kiosk-" + "t" * 20
    text = doc(
        top='[auth]\nsecret = "${SECRET}"\ntokens = { lobby = "${LOBBY}" }',
        dashboard=D + '\nauth = "token"\nusers = ["lobby"]',
    )
    config = load(tmp_path, text, {"SECRET": secret, "LOBBY": token})
    assert (config.auth.secret, dict(config.auth.tokens)) == (secret, {"lobby": token})
    assert (config.dashboards[0].auth, config.dashboards[0].users) == ("token", ("lobby",))
    assert load_error(tmp_path, text, {"LOBBY": token}) == "auth.secret: environment variable SECRET is not set"
