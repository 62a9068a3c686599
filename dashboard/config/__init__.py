"""The configuration: one TOML file read into frozen dataclasses.

reader: typed reading of any TOML table with precise errors (sources use it too);
env: ${NAME} interpolation; model: the dataclasses; sections: building each
section and load_config. May import dashboard.core only.
"""

from .model import (
    ApiConfig,
    AuthConfig,
    Config,
    DashboardConfig,
    HubConfig,
    ServerConfig,
    SourceConfig,
    StorageConfig,
    WidgetConfig,
    is_push,
)
from .reader import MISSING, ConfigError, Table, parse_duration
from .sections import RESERVED_WIDGET_IDS, database_url, load_config

__all__ = [
    "MISSING",
    "RESERVED_WIDGET_IDS",
    "ApiConfig",
    "AuthConfig",
    "Config",
    "ConfigError",
    "DashboardConfig",
    "HubConfig",
    "ServerConfig",
    "SourceConfig",
    "StorageConfig",
    "Table",
    "WidgetConfig",
    "database_url",
    "is_push",
    "load_config",
    "parse_duration",
]
