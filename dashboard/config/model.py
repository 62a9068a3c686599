"""The configuration as frozen dataclasses: what the rest of the server reads."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..core.auth import Network
from .alerts import AlertsConfig, MaintenanceWindow, NotifierConfig, WidgetAlertConfig
from .reader import Table, join

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
    trusted_proxies: tuple[Network, ...] = ()
    frame_ancestors: tuple[str, ...] = ("'self'",)  # CSP frame-ancestors: who may embed the pages
    max_body: int = 64 * 1024  # the largest request body, pushes aside (those have [api] max_body)
    max_header: int = 16 * 1024
    metrics_token: str = ""  # when set, /metrics and the details of /healthz need it
    # Time limits and a bound for connections whose request has not arrived (service/connections.py).
    header_timeout: float = 10.0  # seconds for a request's head; also an idle keep-alive connection's
    body_timeout: float = 30.0  # seconds for a request's body
    max_incomplete_requests: int = 1024  # connections waiting for (the rest of) a request
    # Origins whose pages may read the streams and the read API (CORS); "*": any. Empty: none.
    cors_origins: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class StorageConfig:
    url: str
    retention: float
    prune_every: float
    retention_10s: float = 2 * 86400.0  # per-10-second rollups (storage/rollups.py)
    retention_1m: float = 90 * 86400.0  # per-minute rollups
    retention_1h: float = 400 * 86400.0  # per-hour rollups: a year of graphs and then some


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
class ReaderConfig:
    """A read token for scripts and servers: which dashboards it may read."""

    token: str
    dashboards: tuple[str, ...]  # dashboard ids, or ("*",) for all of them


@dataclasses.dataclass(frozen=True)
class AuthConfig:
    """Viewer authentication (core/auth.py); unused while every dashboard is public."""

    secret: str = ""  # signs session cookies
    session_lifetime: float = 12 * 3600.0
    tokens: Mapping[str, str] = dataclasses.field(default_factory=lambda: MappingProxyType({}))  # kiosk links
    users: Mapping[str, str] = dataclasses.field(default_factory=lambda: MappingProxyType({}))  # name -> scrypt hash
    proxy_header: str = "X-Forwarded-User"
    readers: Mapping[str, ReaderConfig] = dataclasses.field(default_factory=lambda: MappingProxyType({}))


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    kind: str
    options: Mapping[str, Any]  # the source table minus "kind", unvalidated here
    path: str  # "widgets.<id>.source", for the source's own errors


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
    alert: WidgetAlertConfig | None = None  # `[widgets.<id>.alert]`: when the widget alerts
    # `map`: source values (as text: "green", "1", "true") -> what the view gets, e.g. "ok"
    value_map: Mapping[str, Any] | None = None

    @property
    def pushed(self) -> bool:
        """Fed by the push API rather than a ticker."""
        return self.source is not None and self.source.kind == "push"


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
    alert_sound: bool = False  # the page beeps when an alert of it fires
    alert_notifications: bool = False  # the page shows a browser notification when one fires


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
    disabled_widgets: Mapping[str, WidgetConfig] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    auth: AuthConfig = dataclasses.field(default_factory=AuthConfig)
    alerts: AlertsConfig = dataclasses.field(default_factory=AlertsConfig)
    notifiers: Mapping[str, NotifierConfig] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    maintenance: tuple[MaintenanceWindow, ...] = ()

    # Where this server answers once it listens ("http://127.0.0.1:43117"), for source URLs
    # written "self:/healthz". Not read from the file: the server sets it after binding
    # (the port may be 0, or --port); until then own_url() goes by [server] host and port.
    listening: str = ""

    def own_url(self) -> str:
        return self.listening or server_url(self.server.host, self.server.port)

    def source_options(self, widget_id: str) -> Table:
        """The widget's source options, for the source module to read and done()."""
        widget = self.widgets.get(widget_id) or self.disabled_widgets[widget_id]
        source = widget.source
        if source is None:
            return Table(self.file, join(join("widgets", widget_id), "source"), {})
        return Table(self.file, source.path, source.options)

    def dashboards_of(self, widget_id: str) -> tuple[str, ...]:
        return tuple(d.id for d in self.dashboards if widget_id in d.widgets)

    def resolve_path(self, p: str | os.PathLike[str]) -> Path:
        return self.base_dir / p  # an absolute p wins, as with any Path join

    def dashboard(self, dashboard_id: str) -> DashboardConfig | None:
        return next((d for d in self.dashboards if d.id == dashboard_id), None)


def server_url(host: str, port: int) -> str:
    """The URL this process reaches a server on that listens on host:port: an address
    that listens everywhere is reached on loopback."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
