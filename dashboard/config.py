"""Load the dashboard's TOML config into frozen dataclasses.

Every problem with the file becomes one ConfigError whose message names the
file, the key path (``widgets.cpu.every``, ``dashboards[0].id``), what was
expected and what was found, so the user can fix it without reading code.
"""

from __future__ import annotations  # Table has methods named str/int/bool

import dataclasses
import datetime
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import auth as viewer_auth


class ConfigError(Exception):
    """One clear, user-facing message, e.g.
    'config.toml: widgets.cpu.every: expected a duration like "5s" or "2m", got "fast"'."""


MISSING: Any = object()

VIEWS = ("number", "meter", "graph", "text", "list", "status", "clock")
THEMES = ("auto", "dark", "light")
LOG_LEVELS = ("debug", "info", "warning", "error")
HUB_BACKENDS = ("memory", "redis")
DB_SCHEMES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# SSE event names the stream uses for itself; a widget with one of these ids
# would be indistinguishable from a control event on the page.
RESERVED_WIDGET_IDS = ("hello", "reload", "message", "error", "open")

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ID_RULE = 'letters, digits, "_" and "-" only (1-64 characters)'
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"([0-9]+)(B|KiB|MiB|GiB)")
_SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_RATE = re.compile(r"([0-9]+(?:\.[0-9]+)?)/(s|m|h)")
_RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")  # viewer names: kiosk tokens and users
_NAME_RULE = 'letters, digits, "_", ".", "@" and "-" only (1-64 characters)'
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")
# CSP frame-ancestors sources: a scheme ("https:") or a host, maybe with scheme, port, path.
_FRAME_SOURCE = re.compile(r"[a-z][a-z0-9+.-]*:|(?:[a-z][a-z0-9+.-]*://)?(?:\*\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
                           r"(?::(?:[0-9]{1,5}|\*))?(?:/[A-Za-z0-9._~%!$&()*+=:@/-]*)?|\*")
SECRET_MIN = 32
VIEWER_TOKEN_MIN = 16
_SHOW_MAX = 40  # got-values longer than this are cut, so one line stays one line


# --- formatting values and key paths for messages ---------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _quote(text: str) -> str:
    """Quote like a TOML basic string, so messages show values as written."""
    def esc(c: str) -> str:
        if c in _ESCAPES:
            return _ESCAPES[c]
        return f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c
    return '"' + "".join(map(esc, text)) + '"'


def _cut(text: str) -> str:
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def _show(value: Any) -> str:
    """Render a got-value in TOML syntax (tables and arrays by kind only)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _quote(_cut(value))
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return _cut(repr(value))  # int and float: repr matches TOML, incl. inf/nan


def _join(path: str, key: str | int) -> str:
    """Extend a key path: ints are array indexes, odd keys are quoted as in TOML."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    part = key if _BARE_KEY.fullmatch(key) else _quote(key)
    return f"{path}.{part}" if path else part


def _error(file: str, path: str, message: str) -> ConfigError:
    return ConfigError(f"{file}: {path}: {message}" if path else f"{file}: {message}")


def _range_text(kind: str, lo: Any, hi: Any) -> str:
    if lo is not None and hi is not None:
        return f"{kind} from {lo} to {hi}"
    if lo is not None:
        return f"{kind} >= {lo}"
    return f"{kind} <= {hi}" if hi is not None else kind


# --- scalar syntaxes ---------------------------------------------------------

def parse_duration(text: str) -> float:
    """ "500ms" "5s" "2m" "1h" "30d" "1.5s" -> seconds. Bare numbers, signs and
    spaces are rejected: a unit is required so "5" can't mean two things."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a duration: {text!r}")
    seconds = float(match[1]) * _DURATION_UNITS[match[2]]
    if not math.isfinite(seconds):
        raise ValueError(f"duration too large: {text!r}")
    return seconds


def _parse_size(text: str) -> int:
    """ "512B" "64KiB" "1MiB" "1GiB" -> bytes."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    return int(match[1]) * _SIZE_UNITS[match[2]]


def _id_problem(text: str) -> str | None:
    """Why text is not a valid widget/dashboard id, or None if it is."""
    if _ID.fullmatch(text):
        return None
    return f"invalid id {_show(text)}: use {_ID_RULE}"


# --- typed reading of one TOML table ------------------------------------------

class Table:
    """A TOML table with its dotted key path, for reading typed values with precise errors.
    Source modules use this to read their own options, so keep it general.

    Every key asked for is remembered (present or not), so done() can reject
    the keys nobody asked for and list the ones that are understood."""

    def __init__(self, file: str, path: str, data: Mapping[str, Any]):
        self.file = file
        self.path = path
        self._data = data
        self._asked: dict[str, None] = {}  # ordered set: schema order for messages

    def __repr__(self) -> str:
        return f"Table({self.file!r}, {self.path!r}, {dict(self._data)!r})"

    def keys(self):
        return self._data.keys()

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def error(self, key: str, message: str) -> ConfigError:
        return _error(self.file, _join(self.path, key), message)

    def _get(self, key: str, default: Any, hint: str = "") -> tuple[bool, Any]:
        """(found, value); raises 'missing' when absent without a default."""
        self._asked[key] = None
        if key in self._data:
            return True, self._data[key]
        if default is MISSING:
            raise self.error(key, f"missing{hint}")
        return False, default

    def _expected(self, key: str, what: str, value: Any) -> ConfigError:
        return self.error(key, f"expected {what}, got {_show(value)}")

    def raw(self, key: str, default: Any = MISSING) -> Any:
        return self._get(key, default)[1]

    def str(self, key: str, default: Any = MISSING, *,
            choices: tuple[str, ...] | None = None) -> str:
        listing = f"one of: {', '.join(choices)}" if choices else ""
        found, value = self._get(key, default, f" (expected {listing})" if choices else "")
        if not found:
            return value
        if not isinstance(value, str):
            raise self._expected(key, listing or "a string", value)
        if choices and value not in choices:
            raise self._expected(key, listing, value)
        return value

    def int(self, key: str, default: Any = MISSING, *,
            min: int | None = None, max: int | None = None) -> int:
        found, value = self._get(key, default)
        if not found:
            return value
        # bool is a subclass of int in Python, but `port = true` is a mistake
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._expected(key, "an integer", value)
        self._check_range(key, "an integer", value, min, max)
        return value

    def number(self, key: str, default: Any = MISSING, *,
               min: float | None = None, max: float | None = None) -> float | int:
        found, value = self._get(key, default)
        if not found:
            return value
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or value != value):  # nan compares false with everything
            raise self._expected(key, "a number", value)
        self._check_range(key, "a number", value, min, max)
        return value

    def _check_range(self, key: str, kind: str, value: Any, lo: Any, hi: Any) -> None:
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self._expected(key, _range_text(kind, lo, hi), value)

    def bool(self, key: str, default: Any = MISSING) -> bool:
        found, value = self._get(key, default)
        if found and not isinstance(value, bool):
            raise self._expected(key, "true or false", value)
        return value

    def duration(self, key: str, default: Any = MISSING, *, positive: bool = False) -> float:
        """Seconds from a string like "5s"; a default may be a string or seconds.
        positive=True rejects "0s" for things that must take some time."""
        found, value = self._get(key, default)
        if not found:
            return parse_duration(value) if isinstance(value, str) else value
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise self._expected(key, 'a duration like "5s" or "2m"', value) from None
        if positive and seconds <= 0:
            raise self._expected(key, "a duration greater than 0", value)
        return seconds

    def str_list(self, key: str, default: Any = MISSING) -> tuple[str, ...]:
        found, value = self._get(key, default)
        if not found:
            return tuple(value) if value is not None else None
        if not isinstance(value, list):
            raise self._expected(key, "an array of strings", value)
        for index, item in enumerate(value):
            if not isinstance(item, str):
                where = _join(_join(self.path, key), index)
                raise _error(self.file, where, f"expected a string, got {_show(item)}")
        return tuple(value)

    def table(self, key: str, default: Any = MISSING) -> Table:
        """A sub-table; a dict default (e.g. {}) is wrapped, None is returned as is."""
        found, value = self._get(key, default)
        if not found and not isinstance(value, Mapping):
            return value
        if not isinstance(value, Mapping):
            raise self._expected(key, "a table", value)
        return Table(self.file, _join(self.path, key), value)

    def done(self) -> None:
        """Reject the first key that nobody asked for (a typo, usually)."""
        for key in self._data:
            if key not in self._asked:
                known = f" (expected one of: {', '.join(self._asked)})" if self._asked else ""
                raise _error(self.file, self.path, f"unknown key {_quote(key)}{known}")


def _table_array(parent: Table, key: str) -> list[Table]:
    """Read an array of tables ([[key]]) as Tables addressed key[0], key[1], ..."""
    value = parent.raw(key, [])
    if not isinstance(value, list):
        raise parent.error(key, f"expected an array of tables, got {_show(value)}")
    path = _join(parent.path, key)
    tables = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise _error(parent.file, _join(path, index), f"expected a table, got {_show(item)}")
        tables.append(Table(parent.file, _join(path, index), item))
    return tables


# --- ${NAME} environment interpolation ----------------------------------------

# "$${" must be tried first so it escapes; a lone "${" that does not form a
# valid reference matches without a name and is reported rather than kept.
_REF = re.compile(
    r"\$\$\{|\$\{(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\})?")


def _interpolate_str(text: str, env: Mapping[str, str], file: str, path: str) -> str:
    def replace(match: re.Match) -> str:
        if match[0] == "$${":
            return "${"
        name, default = match["name"], match["default"]
        if name is None:
            raise _error(file, path, 'invalid "${": write ${NAME}, ${NAME:-default}, '
                                     'or $${ for a literal "${"')
        value = env.get(name)
        if default is not None and not value:
            return default
        if value is None:
            raise _error(file, path, f"environment variable {name} is not set")
        return value
    return _REF.sub(replace, text)


def _interpolate(value: Any, env: Mapping[str, str], file: str, path: str = "") -> Any:
    """Return value with every string, at any depth, interpolated (keys untouched)."""
    if isinstance(value, str):
        return _interpolate_str(value, env, file, path)
    if isinstance(value, dict):
        return {k: _interpolate(v, env, file, _join(path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, file, _join(path, i)) for i, v in enumerate(value)]
    return value


# --- the config dataclasses ---------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int
    keepalive: float
    log_level: str
    grace: float
    batch: float
    max_streams: int
    max_streams_per_ip: int
    max_stream_lifetime: float
    # Proxies whose X-Forwarded-For / -Proto / user header are believed (parsed networks).
    trusted_proxies: tuple = ()
    frame_ancestors: tuple[str, ...] = ("'self'",)  # CSP frame-ancestors: who may embed the pages
    max_body: int = 64 * 1024  # the largest request body, pushes aside (those have [api] max_body)
    max_header: int = 16 * 1024
    metrics_token: str = ""  # when set, /metrics and the details of /healthz need it


@dataclasses.dataclass(frozen=True)
class StorageConfig:
    url: str
    retention: float
    prune_every: float


@dataclasses.dataclass(frozen=True)
class HubConfig:
    backend: str
    url: str
    buffer: int
    channel: str = "dashboard:events"  # redis: the one pub/sub channel; the ticker lock is "<channel>:tickers"
    lease: float = 10.0  # redis: a dead worker's tickers move to a standby within this time


@dataclasses.dataclass(frozen=True)
class ApiConfig:
    tokens: Mapping[str, str]
    max_body: int
    history_limit: int
    rate: float = 10.0  # pushes per second per token, on average
    burst: int = 20  # pushes per token at once


@dataclasses.dataclass(frozen=True)
class AuthConfig:
    """Viewer authentication (dashboard/auth.py); unused while every dashboard is public."""
    secret: str = ""  # signs session cookies
    session_lifetime: float = 12 * 3600.0
    tokens: Mapping[str, str] = dataclasses.field(default_factory=lambda: MappingProxyType({}))  # kiosk links
    users: Mapping[str, str] = dataclasses.field(default_factory=lambda: MappingProxyType({}))  # name -> scrypt hash
    proxy_header: str = "X-Forwarded-User"


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    kind: str
    options: Mapping[str, Any]  # the source table minus "kind", unvalidated here
    path: str                   # "widgets.<id>.source", for the source's own errors


@dataclasses.dataclass(frozen=True)
class WidgetConfig:
    id: str
    view: str
    title: str
    every: float
    timeout: float
    on_change: bool
    unit: str
    decimals: int | None
    min: float | None
    max: float | None
    warn: float | None
    crit: float | None
    history: float
    width: int
    height: int
    timezone: str
    source: SourceConfig | None
    enabled: bool = True  # a disabled widget is validated but neither runs nor shows


@dataclasses.dataclass(frozen=True)
class DashboardConfig:
    id: str
    title: str
    widgets: tuple[str, ...]
    columns: int
    theme: str
    rotate: float  # 0.0 when off
    auth: str = "public"  # public, token, password or proxy
    users: tuple[str, ...] | None = None  # who of that kind may see it; None: everyone of that kind


@dataclasses.dataclass(frozen=True)
class Config:
    file: str
    base_dir: Path
    server: ServerConfig
    storage: StorageConfig
    hub: HubConfig
    api: ApiConfig
    dashboards: tuple[DashboardConfig, ...]
    widgets: Mapping[str, WidgetConfig]  # the enabled widgets: everything that runs and shows
    # `enabled = false`: kept only so their sources can be validated too
    disabled_widgets: Mapping[str, WidgetConfig] = dataclasses.field(
        default_factory=lambda: MappingProxyType({}))
    auth: AuthConfig = dataclasses.field(default_factory=AuthConfig)

    def source_options(self, widget_id: str) -> Table:
        """The widget's source options, for the source module to read and done()."""
        widget = self.widgets.get(widget_id) or self.disabled_widgets[widget_id]
        source = widget.source
        if source is None:
            return Table(self.file, _join(_join("widgets", widget_id), "source"), {})
        return Table(self.file, source.path, source.options)

    def dashboards_of(self, widget_id: str) -> tuple[str, ...]:
        return tuple(d.id for d in self.dashboards if widget_id in d.widgets)

    def resolve_path(self, p: str | os.PathLike) -> Path:
        return self.base_dir / p  # an absolute p wins, as with any Path join

    def dashboard(self, dashboard_id: str) -> DashboardConfig | None:
        return next((d for d in self.dashboards if d.id == dashboard_id), None)


# --- building each section ----------------------------------------------------

def _server(t: Table) -> ServerConfig:
    server = ServerConfig(
        host=t.str("host", "127.0.0.1"),
        port=t.int("port", 8888, min=0, max=65535),
        keepalive=t.duration("keepalive", "15s", positive=True),
        log_level=t.str("log_level", "info", choices=LOG_LEVELS),
        grace=t.duration("grace", "5s"),
        batch=t.duration("batch", "0ms"),
        max_streams=t.int("max_streams", 10000, min=1),
        max_streams_per_ip=t.int("max_streams_per_ip", 1000, min=1),
        max_stream_lifetime=t.duration("max_stream_lifetime", "1h", positive=True),
        trusted_proxies=_trusted_proxies(t),
        frame_ancestors=_frame_ancestors(t),
        max_body=_size(t, "max_body", 64 * 1024),
        max_header=_size(t, "max_header", 16 * 1024),
        metrics_token=_secret_token(t, "metrics_token", 8),
    )
    if server.max_header < 1024:
        raise t.error("max_header", f"expected a size of at least 1KiB, got {_show(t.raw('max_header'))}")
    t.done()
    return server


def _trusted_proxies(t: Table) -> tuple:
    networks = []
    for index, text in enumerate(t.str_list("trusted_proxies", ())):
        try:
            networks.append(viewer_auth.parse_network(text))
        except ValueError:
            where = _join(_join(t.path, "trusted_proxies"), index)
            raise _error(t.file, where, f'expected an IP address or network like "10.0.0.0/8", '
                                        f"got {_show(text)}") from None
    return tuple(networks)


def _frame_ancestors(t: Table) -> tuple[str, ...]:
    sources = t.str_list("frame_ancestors", ("'self'",))
    if not sources:
        raise t.error("frame_ancestors", """expected at least one source, got an empty array (use ["'none'"])""")
    for index, source in enumerate(sources):
        if source in ("'self'", "'none'") or _FRAME_SOURCE.fullmatch(source):
            if source == "'none'" and len(sources) > 1:
                raise t.error("frame_ancestors", "expected \"'none'\" alone, got it with other sources")
            continue
        where = _join(_join(t.path, "frame_ancestors"), index)
        raise _error(t.file, where, "expected \"'self'\", \"'none'\", a scheme like \"https:\" or a host like "
                                    f'"https://wall.example.org", got {_show(source)}')
    return sources


def _secret_token(t: Table, key: str, shortest: int) -> str:
    token = t.str(key, "")
    if token and len(token) < shortest:  # the value itself is a secret: never echo it
        raise t.error(key, f"too short: use at least {shortest} characters")
    return token


def database_url(t: Table, base_dir: Path) -> str:
    """Check the scheme; make a relative sqlite path absolute against base_dir,
    so the database does not move with the server's working directory."""
    url = t.str("url", "sqlite+aiosqlite:///data/dashboard.db")
    if not url.startswith(DB_SCHEMES):
        # show only the scheme: the rest of a URL may hold a password
        shown = url.split("://", 1)[0] + "://..." if "://" in url else url
        raise t.error("url", f"expected a URL starting with {' or '.join(DB_SCHEMES)}, "
                             f"got {_show(shown)}")
    prefix = "sqlite+aiosqlite:///"
    if not url.startswith(prefix):
        return url  # postgresql, or "sqlite+aiosqlite://" (in memory)
    path, sep, query = url[len(prefix):].partition("?")
    if not path or path.startswith((":memory:", "/")):
        return url
    return prefix + str(base_dir / path) + sep + query


def _storage(t: Table, base_dir: Path) -> StorageConfig:
    storage = StorageConfig(
        url=database_url(t, base_dir),
        retention=t.duration("retention", "30d", positive=True),
        prune_every=t.duration("prune_every", "10m", positive=True),
    )
    t.done()
    return storage


def _hub(t: Table) -> HubConfig:
    backend = t.str("backend", "memory", choices=HUB_BACKENDS)
    url = t.str("url", "")
    if backend == "redis" and not url:
        raise t.error("url", 'missing (required when backend = "redis")')
    if backend == "redis" and not url.startswith(REDIS_SCHEMES):
        shown = url.split("://", 1)[0] + "://..." if "://" in url else url  # a URL may hold a password
        raise t.error("url", f"expected a URL starting with {', '.join(REDIS_SCHEMES)}, got {_show(shown)}")
    hub = HubConfig(backend=backend, url=url, buffer=t.int("buffer", 1024, min=16),
                    channel=t.str("channel", "dashboard:events"), lease=t.duration("lease", "10s"))
    if not hub.channel:
        raise t.error("channel", "expected a channel name, got an empty string")
    if hub.lease < 1:
        raise t.error("lease", f'expected a duration of at least "1s", got {_show(t.raw("lease"))}')
    t.done()
    return hub


def _tokens(t: Table) -> Mapping[str, str]:
    tokens = {}
    for name in t.keys():
        token = t.str(name)
        if len(token) < 8:  # the value itself is a secret: never echo it
            raise t.error(name, "too short: use at least 8 characters")
        tokens[name] = token
    return MappingProxyType(tokens)


def _size(t: Table, key: str, default: int) -> int:
    """Bytes, from an int or a size string like "64KiB"."""
    value = size = t.raw(key, default)
    if isinstance(value, str) and _SIZE.fullmatch(value):
        size = _parse_size(value)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise t.error(key, f'expected a size like "64KiB", "1MiB" or "512B", got {_show(value)}')
    return size


def _api(t: Table) -> ApiConfig:
    api = ApiConfig(
        tokens=_tokens(t.table("tokens", {})),
        max_body=_size(t, "max_body", 65536),
        history_limit=t.int("history_limit", 1000, min=1),
        rate=_rate(t, "rate", "10/s"),
        burst=t.int("burst", 20, min=1),
    )
    t.done()
    return api


def _rate(t: Table, key: str, default: str) -> float:
    """Requests per second, from "10/s", "30/m" or "100/h"."""
    value = t.raw(key, default)
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    rate = float(match[1]) / _RATE_UNITS[match[2]] if match else 0.0
    if not (rate > 0 and math.isfinite(rate)):
        raise t.error(key, f'expected a rate like "10/s", "30/m" or "100/h", got {_show(value)}')
    return rate


def _viewer_name(t: Table, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise _error(t.file, _join(t.path, name), f"invalid name {_show(name)}: use {_NAME_RULE}")


def _viewer_tokens(t: Table, push_tokens: Mapping[str, str]) -> Mapping[str, str]:
    tokens: dict[str, str] = {}
    for name in t.keys():
        _viewer_name(t, name)
        token = _secret_token(t, name, VIEWER_TOKEN_MIN)
        if not token:
            raise t.error(name, "expected a token, got an empty string")
        if token in tokens.values() or token in push_tokens.values():
            # A kiosk link that also pushes, or two screens that cannot be told apart.
            raise t.error(name, "the same token as another one here or in [api] tokens: use a token of its own")
        tokens[name] = token
    return MappingProxyType(tokens)


def _users(t: Table) -> Mapping[str, str]:
    users: dict[str, str] = {}
    for name in t.keys():
        _viewer_name(t, name)
        value = t.raw(name)
        try:
            viewer_auth.parse_password_hash(value)
        except ValueError:
            shown = "a hash it cannot use" if isinstance(value, str) else _show(value)  # not echoed: a hash is secret
            raise t.error(name, 'expected a password hash made by "python run.py hash-password" '
                                f"(scrypt$n$r$p$salt$key), got {shown}") from None
        users[name] = value
    return MappingProxyType(users)


def _auth(t: Table, api: ApiConfig) -> AuthConfig:
    secret = _secret_token(t, "secret", SECRET_MIN)
    lifetime = t.duration("session_lifetime", "12h", positive=True)
    if not 1 <= lifetime <= 400 * 86400:  # browsers cap cookie lifetimes at 400 days
        got = _show(t.raw("session_lifetime"))
        raise t.error("session_lifetime", f'expected a duration from "1s" to "400d", got {got}')
    auth = AuthConfig(
        secret=secret, session_lifetime=lifetime,
        tokens=_viewer_tokens(t.table("tokens", {}), api.tokens), users=_users(t.table("users", {})),
        proxy_header=t.str("proxy_header", "X-Forwarded-User"),
    )
    if not _HEADER_NAME.fullmatch(auth.proxy_header):
        raise t.error("proxy_header", f'expected a header name like "X-Forwarded-User", got {_show(auth.proxy_header)}')
    t.done()
    return auth


def _access_checker(auth_table: Table, auth: AuthConfig, server: ServerConfig):
    """Check one dashboard's auth and users against [auth] and [server]."""
    needs = {
        viewer_auth.TOKEN: (auth.tokens, 'kiosk tokens: add [auth] tokens = { lobby = "${LOBBY_TOKEN}" }'),
        viewer_auth.PASSWORD: (auth.users,
                               'users: add [auth] users = { alice = "<from python run.py hash-password>" }'),
    }

    def check(t: Table, dashboard: DashboardConfig) -> None:
        mode = dashboard.auth
        if mode == viewer_auth.PUBLIC:
            if dashboard.users is not None:
                raise t.error("users", "expected no users on a public dashboard "
                                       '(set auth = "token", "password" or "proxy")')
            return
        if mode == viewer_auth.PROXY:
            if not server.trusted_proxies:
                raise t.error("auth", '"proxy" needs the proxy\'s address in [server] trusted_proxies')
            if dashboard.users is not None and not all(dashboard.users):
                raise t.error("users", "expected user names, got an empty string")
            return
        known, how = needs[mode]
        if not known:
            raise t.error("auth", f"{_quote(mode)} needs {how}")
        if not auth.secret:
            raise auth_table.error("secret", f"missing (required by {t.path}: auth = {_quote(mode)}; "
                                             "a random string of at least 32 characters, e.g. \"${DASHBOARD_SECRET}\")")
        for name in dashboard.users or ():
            if name not in known:
                table = "tokens" if mode == viewer_auth.TOKEN else "users"
                raise t.error("users", f"unknown name {_show(name)} (expected one of [auth] {table}: "
                                       f"{', '.join(known)})")
    return check


def _source(t: Table, view: str) -> SourceConfig | None:
    src = t.table("source", None if view == "clock" else MISSING)
    if src is None:
        return None
    kind = src.str("kind")
    # the rest belongs to the source module, which checks it via source_options()
    options = {key: src.raw(key) for key in src.keys() if key != "kind"}
    return SourceConfig(kind=kind, options=MappingProxyType(options), path=src.path)


def _widget(widget_id: str, t: Table) -> WidgetConfig:
    # read in schema order: done() lists the known keys in the order they were read
    view = t.str("view", choices=VIEWS)
    title = t.str("title", widget_id)
    every = t.duration("every", "5s", positive=True)
    timeout = t.duration("timeout", min(every, 10.0), positive=True)
    on_change = t.bool("on_change", True)
    unit = t.str("unit", "")
    decimals = t.int("decimals", None, min=0, max=12)
    lo, hi = t.number("min", None), t.number("max", None)
    if lo is not None and hi is not None and lo >= hi:
        raise t.error("max", f"expected a number greater than min ({_show(lo)}), got {_show(hi)}")
    widget = WidgetConfig(
        id=widget_id, view=view, title=title, every=every, timeout=timeout,
        on_change=on_change, unit=unit, decimals=decimals, min=lo, max=hi,
        warn=t.number("warn", None), crit=t.number("crit", None),
        history=t.duration("history", "10m", positive=True),
        width=t.int("width", 1, min=1, max=24), height=t.int("height", 1, min=1, max=12),
        timezone=t.str("timezone", ""), source=_source(t, view),
        enabled=t.bool("enabled", True),
    )
    t.done()
    return widget


def _check_widget_id(widgets: Table, widget_id: str) -> None:
    where = _join(widgets.path, widget_id)
    problem = _id_problem(widget_id)
    if problem:
        raise _error(widgets.file, where, problem)
    if widget_id in RESERVED_WIDGET_IDS:
        raise _error(widgets.file, where, f"{_quote(widget_id)} is reserved for control "
                                          "events; pick another widget id")


def _widgets(root: Table) -> dict[str, WidgetConfig]:
    widgets = root.table("widgets", {})
    if not widgets.keys():
        raise root.error("widgets", "expected at least one [widgets.<id>] table")
    result = {}
    for widget_id in widgets.keys():
        _check_widget_id(widgets, widget_id)
        result[widget_id] = _widget(widget_id, widgets.table(widget_id))
    return result


def _dashboard_widgets(t: Table, known: Mapping[str, WidgetConfig]) -> tuple[str, ...]:
    ids = t.str_list("widgets")
    if not ids:
        raise t.error("widgets", "expected at least one widget id, got an empty array")
    for index, widget_id in enumerate(ids):
        if widget_id not in known:
            raise t.error("widgets", f"unknown widget {_show(widget_id)}")
        if widget_id in ids[:index]:
            raise t.error("widgets", f"duplicate widget {_show(widget_id)}")
    return ids


def _rotate(t: Table) -> float:
    if t.raw("rotate", "") == "":  # "" (or absent) means: do not rotate
        return 0.0
    return t.duration("rotate")


def _dashboard(t: Table, widgets: Mapping[str, WidgetConfig]) -> DashboardConfig:
    dashboard_id = t.str("id")
    problem = _id_problem(dashboard_id)
    if problem:
        raise t.error("id", problem)
    title = t.str("title", dashboard_id)
    # Listing a disabled widget is fine: it is checked like any other, then left
    # out here, so turning it on is one `enabled = true` away.
    shown = tuple(w for w in _dashboard_widgets(t, widgets) if widgets[w].enabled)
    dashboard = DashboardConfig(
        id=dashboard_id, title=title, widgets=shown,
        columns=t.int("columns", 4, min=1, max=24),
        theme=t.str("theme", "auto", choices=THEMES), rotate=_rotate(t),
        auth=t.str("auth", viewer_auth.PUBLIC, choices=viewer_auth.MODES),
        users=t.str_list("users", None),
    )
    t.done()
    return dashboard


def _dashboards(root: Table, widgets: Mapping[str, WidgetConfig],
                check: Callable[[Table, DashboardConfig], None] | None = None) -> tuple[DashboardConfig, ...]:
    tables = _table_array(root, "dashboards")
    if not tables:
        raise root.error("dashboards", "expected at least one [[dashboards]] table")
    seen: set[str] = set()
    result = []
    for t in tables:
        dashboard = _dashboard(t, widgets)
        if check is not None:
            check(t, dashboard)
        if dashboard.id in seen:
            raise t.error("id", f"duplicate dashboard id {_show(dashboard.id)}")
        seen.add(dashboard.id)
        result.append(dashboard)
    return tuple(result)


def _build(root: Table, base_dir: Path) -> Config:
    sections = {name: root.table(name, {}) for name in ("server", "storage", "hub", "api", "auth")}
    root.raw("widgets", None)  # only marked as known here; read below
    root.raw("dashboards", None)
    # top-level typos first: "[dashboard]" should say so, not "no dashboards"
    root.done()
    # then the sections in schema order, so the first error is the first one found
    server = _server(sections["server"])
    storage = _storage(sections["storage"], base_dir)
    hub, api = _hub(sections["hub"]), _api(sections["api"])
    auth = _auth(sections["auth"], api)
    widgets = _widgets(root)
    enabled = {k: w for k, w in widgets.items() if w.enabled}
    disabled = {k: w for k, w in widgets.items() if not w.enabled}
    return Config(file=root.file, base_dir=base_dir, server=server, storage=storage,
                  hub=hub, api=api,
                  dashboards=_dashboards(root, widgets, _access_checker(sections["auth"], auth, server)),
                  widgets=MappingProxyType(enabled), disabled_widgets=MappingProxyType(disabled), auth=auth)


# --- loading -------------------------------------------------------------------

def _read_toml(file: str) -> dict[str, Any]:
    try:
        data = Path(file).read_bytes()
    except OSError as e:
        raise ConfigError(f"{file}: cannot read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")  # tolerate the BOM some editors write
    except UnicodeDecodeError as e:
        raise ConfigError(f"{file}: invalid TOML: not UTF-8 (byte {e.start})") from None
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ConfigError(f"{file}: invalid TOML: nested too deeply") from None
    except ValueError as e:  # TOMLDecodeError, and int() on a huge literal
        raise ConfigError(f"{file}: invalid TOML: {e}") from None


def load_config(path: str | os.PathLike, *, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate ${NAME} from env (default os.environ), and validate."""
    file = os.fsdecode(path)
    document = _interpolate(_read_toml(file), os.environ if env is None else env, file)
    base_dir = Path(os.path.abspath(file)).parent
    return _build(Table(file, "", document), base_dir)
