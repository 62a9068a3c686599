"""Building the Config from a TOML document, section by section, in schema order;
and loading a file."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import socket
import stat
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..core import auth as viewer_auth
from ..core import views
from ..core.auth import Network
from ..core.events import RESERVED_NAMES
from ..core.views import VIEWS
from .alerts import (
    WidgetAlertConfig,
    alerts_section,
    check_alert_references,
    duration_text,
    maintenance_section,
    notifiers_section,
    widget_alert,
)
from .env import interpolate
from .model import (
    ApiConfig,
    AuthConfig,
    Config,
    DashboardConfig,
    HubConfig,
    ReaderConfig,
    ServerConfig,
    SourceConfig,
    StorageConfig,
    WidgetConfig,
)
from .reader import MISSING, ConfigError, Table, check_scalars, error, join, one_line, quote, show, table_array

THEMES = ("auto", "dark", "light")
LOG_LEVELS = ("debug", "info", "warning", "error")
HUB_BACKENDS = ("memory", "redis")
DB_SCHEMES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
MAX_HISTORY = 366 * 86400.0  # a widget's `history`: a year, leap or not
# A widget's id is its events' name: one of these would be taken for a control event.
RESERVED_WIDGET_IDS = RESERVED_NAMES

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ID_RULE = 'letters, digits, "_" and "-" only (1-64 characters)'
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")  # viewer names: kiosk tokens and users
_NAME_RULE = 'letters, digits, "_", ".", "@" and "-" only (1-64 characters)'
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")
# CSP frame-ancestors sources: a scheme ("https:") or a host, maybe with scheme, port, path.
_FRAME_SOURCE = re.compile(
    r"[a-z][a-z0-9+.-]*:|(?:[a-z][a-z0-9+.-]*://)?(?:\*\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
    r"(?::(?:[0-9]{1,5}|\*))?(?:/[A-Za-z0-9._~%!$&()*+=:@/-]*)?|\*"
)
# A CORS origin: scheme://host[:port], nothing after it (RFC 6454 serialisation).
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
SECRET_MIN = 32
VIEWER_TOKEN_MIN = 16


def _id_problem(text: str) -> str | None:
    """Why text is not a valid widget/dashboard id, or None if it is."""
    if _ID.fullmatch(text):
        return None
    return f"invalid id {show(text)}: use {_ID_RULE}"


# --- building each section ----------------------------------------------------


def _server(t: Table) -> ServerConfig:
    server = ServerConfig(
        host=_listen_host(t),
        port=t.int("port", 8888, min=0, max=65535),
        keepalive=t.duration("keepalive", "15s", positive=True),
        log_level=t.str("log_level", "info", choices=LOG_LEVELS),
        grace=t.duration("grace", "5s"),
        batch=t.duration("batch", "0ms", most="10s"),  # streams hear nothing meanwhile
        max_streams=t.int("max_streams", 10000, min=1),
        max_streams_per_ip=t.int("max_streams_per_ip", 1000, min=1),
        max_stream_lifetime=t.duration("max_stream_lifetime", "1h", positive=True),
        trusted_proxies=_trusted_proxies(t),
        frame_ancestors=_frame_ancestors(t),
        max_body=t.size("max_body", 64 * 1024),
        max_header=t.size("max_header", 16 * 1024),
        metrics_token=_secret_token(t, "metrics_token", 8),
        header_timeout=t.duration("header_timeout", "10s", positive=True),
        body_timeout=t.duration("body_timeout", "30s", positive=True),
        max_incomplete_requests=t.int("max_incomplete_requests", 1024, min=1),
        cors_origins=_cors_origins(t),
    )
    if server.max_header < 1024:
        raise t.error("max_header", f"expected a size of at least 1KiB, got {show(t.raw('max_header'))}")
    t.done()
    return server


LISTEN_HOST = "expected an IP address or a host name that resolves"


def listens(host: str) -> bool:
    """Whether the server could listen on `host`: an IP address, or a name that resolves
    now (it is looked up again when the server starts; one that does not resolve would
    stop it there)."""
    try:
        socket.getaddrinfo(host or None, 0, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        return False
    return True


def _listen_host(t: Table) -> str:
    host = t.str("host", "127.0.0.1")
    if not listens(host):
        raise t.error("host", f"{LISTEN_HOST}, got {show(host)}")
    return host


def _trusted_proxies(t: Table) -> tuple[Network, ...]:
    networks = []
    for index, text in enumerate(t.str_list("trusted_proxies", ()) or ()):
        try:
            networks.append(viewer_auth.parse_network(text))
        except ValueError:
            where = join(join(t.path, "trusted_proxies"), index)
            raise error(
                t.file, where, f'expected an IP address or network like "10.0.0.0/8", got {show(text)}'
            ) from None
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
        where = join(join(t.path, "frame_ancestors"), index)
        raise error(
            t.file,
            where,
            'expected "\'self\'", "\'none\'", a scheme like "https:" or a host like '
            f'"https://wall.example.org", got {show(source)}',
        )
    return sources


def _cors_origins(t: Table) -> tuple[str, ...]:
    origins = t.str_list("cors_origins", ())
    for index, origin in enumerate(origins):
        if origin == "*" or _ORIGIN.fullmatch(origin):
            continue
        where = join(join(t.path, "cors_origins"), index)
        raise error(
            t.file, where, f'expected an origin like "https://wiki.example.org" (no path) or "*", got {show(origin)}'
        )
    return origins


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
        raise t.error("url", f"expected a URL starting with {' or '.join(DB_SCHEMES)}, got {show(shown)}")
    prefix = "sqlite+aiosqlite:///"
    if not url.startswith(prefix):
        return url  # postgresql, or "sqlite+aiosqlite://" (in memory)
    path, sep, query = url[len(prefix) :].partition("?")
    if not path or path.startswith((":memory:", "/")):
        return url
    return prefix + str(base_dir / path) + sep + query


def _storage(t: Table, base_dir: Path) -> StorageConfig:
    storage = StorageConfig(
        url=database_url(t, base_dir),
        retention=t.duration("retention", "30d", positive=True),
        prune_every=t.duration("prune_every", "10m", positive=True),
        retention_10s=t.duration("retention_10s", "2d", positive=True),
        retention_1m=t.duration("retention_1m", "90d", positive=True),
        retention_1h=t.duration("retention_1h", "400d", positive=True),
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
        raise t.error("url", f"expected a URL starting with {', '.join(REDIS_SCHEMES)}, got {show(shown)}")
    hub = HubConfig(
        backend=backend,
        url=url,
        buffer=t.int("buffer", 1024, min=16),
        channel=t.str("channel", "dashboard:events"),
        lease=t.duration("lease", "10s", most="1h"),
    )
    if not hub.channel:
        raise t.error("channel", "expected a channel name, got an empty string")
    if hub.lease < 1:
        raise t.error("lease", f'expected a duration of at least "1s", got {show(t.raw("lease"))}')
    t.done()
    return hub


def _tokens(t: Table) -> Mapping[str, str]:
    tokens = {}
    for name in t:
        token = t.str(name)
        if len(token) < 8:  # the value itself is a secret: never echo it
            raise t.error(name, "too short: use at least 8 characters")
        tokens[name] = token
    return MappingProxyType(tokens)


def _api(t: Table) -> ApiConfig:
    api = ApiConfig(
        tokens=_tokens(t.table("tokens", {})),
        max_body=t.size("max_body", 65536),
        history_limit=t.int("history_limit", 1000, min=1),
        rate=t.rate("rate", "10/s"),
        burst=t.int("burst", 20, min=1),
    )
    t.done()
    return api


def _viewer_name(t: Table, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise error(t.file, join(t.path, name), f"invalid name {show(name)}: use {_NAME_RULE}")


def _viewer_tokens(t: Table, push_tokens: Mapping[str, str]) -> Mapping[str, str]:
    tokens: dict[str, str] = {}
    for name in t:
        _viewer_name(t, name)
        token = _secret_token(t, name, VIEWER_TOKEN_MIN)
        if not token:
            raise t.error(name, "expected a token, got an empty string")
        if token in tokens.values() or token in push_tokens.values():
            # A kiosk link that also pushes, or two screens that cannot be told apart.
            raise t.error(name, "the same token as another one here or in [api] tokens: use a token of its own")
        tokens[name] = token
    return MappingProxyType(tokens)


def _readers(t: Table, taken: Mapping[str, str]) -> Mapping[str, ReaderConfig]:
    """[auth] readers: name -> { token, dashboards }. `taken`: every other token (push,
    kiosk, metrics), none of which a read token may equal."""
    readers: dict[str, ReaderConfig] = {}
    for name in t:
        _viewer_name(t, name)
        rule = t.table(name)
        token = _secret_token(rule, "token", VIEWER_TOKEN_MIN)
        if not token:
            raise rule.error("token", "expected a token, got an empty string")
        if token in taken.values() or any(token == other.token for other in readers.values()):
            raise rule.error(
                "token", "the same token as another one (a push, kiosk, metrics or read token): use a token of its own"
            )
        dashboards = rule.str_list("dashboards")
        if not dashboards:
            raise rule.error("dashboards", 'expected dashboard ids, or ["*"] for all of them, got an empty array')
        readers[name] = ReaderConfig(token=token, dashboards=dashboards)
        rule.done()
    return MappingProxyType(readers)


def _check_readers(auth_table: Table, auth: AuthConfig, dashboards: tuple[DashboardConfig, ...]) -> None:
    known = {d.id for d in dashboards}
    for name, reader in auth.readers.items():
        for index, dashboard_id in enumerate(reader.dashboards):
            if dashboard_id != viewer_auth.EVERY_DASHBOARD and dashboard_id not in known:
                where = join(join(join(join(auth_table.path, "readers"), name), "dashboards"), index)
                raise error(auth_table.file, where, f"unknown dashboard {show(dashboard_id)}")


def _users(t: Table) -> Mapping[str, str]:
    users: dict[str, str] = {}
    for name in t:
        _viewer_name(t, name)
        value = t.raw(name)
        try:
            viewer_auth.parse_password_hash(value)
        except ValueError:
            shown = "a hash it cannot use" if isinstance(value, str) else show(value)  # not echoed: a hash is secret
            raise t.error(
                name,
                f'expected a password hash made by "python run.py hash-password" (scrypt$n$r$p$salt$key), got {shown}',
            ) from None
        users[name] = value
    return MappingProxyType(users)


def _auth(t: Table, api: ApiConfig, server: ServerConfig) -> AuthConfig:
    secret = _secret_token(t, "secret", SECRET_MIN)
    lifetime = t.duration("session_lifetime", "12h", positive=True)
    if not 1 <= lifetime <= 400 * 86400:  # browsers cap cookie lifetimes at 400 days
        got = show(t.raw("session_lifetime"))
        raise t.error("session_lifetime", f'expected a duration from "1s" to "400d", got {got}')
    kiosk = _viewer_tokens(t.table("tokens", {}), api.tokens)
    taken = {**{f"push {k}": v for k, v in api.tokens.items()}, **{f"kiosk {k}": v for k, v in kiosk.items()}}
    if server.metrics_token:
        taken["metrics"] = server.metrics_token
    auth = AuthConfig(
        secret=secret,
        session_lifetime=lifetime,
        tokens=kiosk,
        users=_users(t.table("users", {})),
        proxy_header=t.str("proxy_header", "X-Forwarded-User"),
        readers=_readers(t.table("readers", {}), taken),
    )
    if not _HEADER_NAME.fullmatch(auth.proxy_header):
        raise t.error("proxy_header", f'expected a header name like "X-Forwarded-User", got {show(auth.proxy_header)}')
    t.done()
    return auth


def _access_checker(
    auth_table: Table, auth: AuthConfig, server: ServerConfig
) -> Callable[[Table, DashboardConfig], None]:
    """Check one dashboard's auth and users against [auth] and [server]."""
    needs = {
        viewer_auth.TOKEN: (auth.tokens, 'kiosk tokens: add [auth] tokens = { lobby = "${LOBBY_TOKEN}" }'),
        viewer_auth.PASSWORD: (
            auth.users,
            'users: add [auth] users = { alice = "<from python run.py hash-password>" }',
        ),
    }

    def check(t: Table, dashboard: DashboardConfig) -> None:
        mode = dashboard.auth
        if mode == viewer_auth.PUBLIC:
            if dashboard.users is not None:
                raise t.error(
                    "users", 'expected no users on a public dashboard (set auth = "token", "password" or "proxy")'
                )
            return
        if mode == viewer_auth.PROXY:
            if not server.trusted_proxies:
                raise t.error("auth", '"proxy" needs the proxy\'s address in [server] trusted_proxies')
            if dashboard.users is not None and not all(dashboard.users):
                raise t.error("users", "expected user names, got an empty string")
            return
        known, how = needs[mode]
        if not known:
            raise t.error("auth", f"{quote(mode)} needs {how}")
        if not auth.secret:
            raise auth_table.error(
                "secret",
                f"missing (required by {t.path}: auth = {quote(mode)}; "
                'a random string of at least 32 characters, e.g. "${DASHBOARD_SECRET}")',
            )
        for name in dashboard.users or ():
            if name not in known:
                table = "tokens" if mode == viewer_auth.TOKEN else "users"
                raise t.error(
                    "users", f"unknown name {show(name)} (expected one of [auth] {table}: {', '.join(known)})"
                )

    return check


def _source(t: Table, view: str) -> SourceConfig | None:
    src = t.table("source", MISSING if VIEWS[view].values else None)
    if src is None:
        return None
    kind = src.str("kind")
    # the rest belongs to the source module, which checks it via source_options()
    options = {key: src.raw(key) for key in src if key != "kind"}
    return SourceConfig(kind=kind, options=MappingProxyType(options), path=src.path)


def _widget(widget_id: str, t: Table) -> WidgetConfig:
    # read in schema order: done() lists the known keys in the order they were read
    view = t.str("view", choices=tuple(VIEWS))
    title = t.str("title", widget_id)
    every = t.duration("every", "5s", positive=True, least="1ms")  # at most 1,000 runs a second
    timeout = t.duration("timeout", min(every, 10.0), positive=True)
    on_change = t.bool("on_change", True)
    unit = t.str("unit", "")
    decimals = t.int("decimals", None, min=0, max=12)
    lo, hi = t.number("min", None), t.number("max", None)
    if lo is not None and hi is not None and lo >= hi:
        raise t.error("max", f"expected a number greater than min ({show(lo)}), got {show(hi)}")
    widget = WidgetConfig(
        id=widget_id,
        view=view,
        title=title,
        every=every,
        timeout=timeout,
        on_change=on_change,
        unit=unit,
        decimals=decimals,
        min=lo,
        max=hi,
        warn=t.number("warn", None),
        crit=t.number("crit", None),
        history=_history(t),
        width=t.int("width", 1, min=1, max=24),
        height=t.int("height", 1, min=1, max=12),
        timezone=_timezone(t),
        source=_source(t, view),
        value_map=_value_map(t, view),
        enabled=t.bool("enabled", True),
    )
    widget = dataclasses.replace(widget, alert=_widget_alert(t, widget))
    t.done()
    return widget


def _history(t: Table) -> float:
    """How far back a graph reaches: up to a year (the hourly rollups keep 400 days)."""
    history = t.duration("history", "10m", positive=True)
    if history > MAX_HISTORY:
        raise t.error("history", f'expected a duration of at most "366d" (a year), got {show(t.raw("history"))}')
    return history


def _widget_alert(t: Table, widget: WidgetConfig) -> WidgetAlertConfig | None:
    return widget_alert(
        t,
        widget.view,
        widget.warn,
        widget.crit,
        has_source=widget.source is not None,
        status_view=VIEWS[widget.view].states is not None,
    )


def _value_map(t: Table, view: str) -> Mapping[str, Any] | None:
    """`map = { green = "ok", failed = "down" }`: each value is one the view takes."""
    table = t.table("map", None)
    if table is None:
        return None
    mapped = {}
    for key in table:
        target = table.raw(key)
        if isinstance(target, (Mapping, list)) or not isinstance(target, (str, int, float, bool)):
            raise table.error(key, f"expected a string, a number or true/false, got {show(target)}")
        try:
            views.accept(view, target)
        except views.ValueRejected as exc:
            raise table.error(key, f"{exc} (what a {view} widget shows)") from None
        mapped[key] = target
    return MappingProxyType(mapped)


@functools.cache
def _zone_names() -> frozenset[str]:
    # The system's zone files, else the tzdata package's; "localtime" and "posixrules"
    # are files there, but no browser knows them as zones.
    return frozenset(zoneinfo.available_timezones()) - {"localtime", "posixrules"}


def _timezone(t: Table) -> str:
    """An IANA zone name the page can hand to the browser's Intl, or "" (the browser's own)."""
    name = t.str("timezone", "")
    if name and name not in _zone_names():
        raise t.error("timezone", f'unknown time zone {show(name)} (expected an IANA name like "Europe/Berlin")')
    return name


def _check_widget_id(widgets: Table, widget_id: str) -> None:
    where = join(widgets.path, widget_id)
    problem = _id_problem(widget_id)
    if problem:
        raise error(widgets.file, where, problem)
    if widget_id in RESERVED_WIDGET_IDS:
        raise error(widgets.file, where, f"{quote(widget_id)} is reserved for control events; pick another widget id")


def _widgets(root: Table) -> dict[str, WidgetConfig]:
    widgets = root.table("widgets", {})
    if not widgets.keys():
        raise root.error("widgets", "expected at least one [widgets.<id>] table")
    result = {}
    for widget_id in widgets:
        _check_widget_id(widgets, widget_id)
        result[widget_id] = _widget(widget_id, widgets.table(widget_id))
    return result


def _dashboard_widgets(t: Table, known: Mapping[str, WidgetConfig]) -> tuple[str, ...]:
    ids = t.str_list("widgets")
    if not ids:
        raise t.error("widgets", "expected at least one widget id, got an empty array")
    for index, widget_id in enumerate(ids):
        if widget_id not in known:
            raise t.error("widgets", f"unknown widget {show(widget_id)}")
        if widget_id in ids[:index]:
            raise t.error("widgets", f"duplicate widget {show(widget_id)}")
    return ids


def _rotate(t: Table) -> float:
    if t.raw("rotate", "") == "":  # "" (or absent) means: do not rotate
        return 0.0
    return t.duration("rotate", most="24d")  # a browser timer holds at most 24.8 days


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
        id=dashboard_id,
        title=title,
        widgets=shown,
        columns=t.int("columns", 4, min=1, max=24),
        theme=t.str("theme", "auto", choices=THEMES),
        rotate=_rotate(t),
        auth=t.str("auth", viewer_auth.PUBLIC, choices=viewer_auth.MODES),
        users=t.str_list("users", None),
        alert_sound=t.bool("alert_sound", False),
        alert_notifications=t.bool("alert_notifications", False),
    )
    t.done()
    return dashboard


def _dashboards(
    root: Table, widgets: Mapping[str, WidgetConfig], check: Callable[[Table, DashboardConfig], None] | None = None
) -> tuple[DashboardConfig, ...]:
    tables = table_array(root, "dashboards")
    if not tables:
        raise root.error("dashboards", "expected at least one [[dashboards]] table")
    seen: set[str] = set()
    result = []
    for t in tables:
        dashboard = _dashboard(t, widgets)
        if check is not None:
            check(t, dashboard)
        if dashboard.id in seen:
            raise t.error("id", f"duplicate dashboard id {show(dashboard.id)}")
        seen.add(dashboard.id)
        result.append(dashboard)
    return tuple(result)


def _build(root: Table, base_dir: Path) -> Config:
    sections = {
        name: root.table(name, {}) for name in ("server", "storage", "hub", "api", "auth", "alerts", "notifiers")
    }
    root.raw("widgets", None)  # only marked as known here; read below
    root.raw("dashboards", None)
    root.raw("maintenance", None)
    # top-level typos first: "[dashboard]" should say so, not "no dashboards"
    root.done()
    # then the sections in schema order, so the first error is the first one found
    server = _server(sections["server"])
    storage = _storage(sections["storage"], base_dir)
    hub, api = _hub(sections["hub"]), _api(sections["api"])
    auth = _auth(sections["auth"], api, server)
    widgets = _widgets(root)
    enabled = {k: w for k, w in widgets.items() if w.enabled}
    disabled = {k: w for k, w in widgets.items() if not w.enabled}
    dashboards = _dashboards(root, widgets, _access_checker(sections["auth"], auth, server))
    _check_readers(sections["auth"], auth, dashboards)
    alerts = alerts_section(sections["alerts"])
    notifiers = notifiers_section(sections["notifiers"], base_dir)
    maintenance = maintenance_section(root, alerts.timezone)
    check_alert_references(
        root.file,
        alerts,
        notifiers,
        {k: w.alert for k, w in widgets.items() if w.alert is not None},
        maintenance,
        tuple(widgets),
        storage.retention,
        duration_text(storage.retention),
    )
    return Config(
        file=root.file,
        base_dir=base_dir,
        server=server,
        storage=storage,
        hub=hub,
        api=api,
        dashboards=dashboards,
        widgets=MappingProxyType(enabled),
        disabled_widgets=MappingProxyType(disabled),
        auth=auth,
        alerts=alerts,
        notifiers=notifiers,
        maintenance=maintenance,
    )


# --- loading -------------------------------------------------------------------


MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a config a thousand times the bundled one still fits


def _read_toml(file: str, name: str) -> dict[str, Any]:
    """The parsed file; `name` is how messages show it."""
    try:
        mode = os.stat(file).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{name}: cannot read: Is a directory")
        if not stat.S_ISREG(mode):  # a FIFO would wait for a writer, /dev/zero never end
            raise ConfigError(f"{name}: cannot read: not a regular file")
        with open(file, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{name}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{name}: cannot read: larger than {MAX_CONFIG_BYTES // 1024 // 1024} MiB")
    try:
        text = data.decode("utf-8-sig")  # tolerate the BOM some editors write
    except UnicodeDecodeError as e:
        raise ConfigError(f"{name}: invalid TOML: not UTF-8 (byte {e.start})") from None
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ConfigError(f"{name}: invalid TOML: nested too deeply") from None
    except ValueError as e:  # TOMLDecodeError, and int() on a huge literal
        reason = one_line(str(e))  # it may quote keys at length: "Cannot declare ('a', 'a', ...) twice"
        raise ConfigError(f"{name}: invalid TOML: {reason if len(reason) <= 200 else reason[:197] + '...'}") from None


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate ${NAME} from env (default os.environ), and validate."""
    file = os.fsdecode(path)
    if not file:
        raise ConfigError("--config: expected a file, got an empty path")
    name = one_line(file)  # every message is one line, whatever the file is called
    try:
        document = interpolate(_read_toml(file, name), os.environ if env is None else env, name)
        check_scalars(document, name)
        base_dir = Path(os.path.abspath(file)).parent
        return _build(Table(name, "", document), base_dir)
    except RecursionError:  # keys dotted a thousand deep: every walk of the document recurses
        raise ConfigError(f"{name}: invalid TOML: nested too deeply") from None
