"""What a process does: `all` (web and tickers, the default), `web` (pages, streams,
API; no tickers) or `worker` (tickers; HTTP only for /healthz and /metrics), and
which backends that needs.

Decisions, so that nobody has to rediscover them:
- `web` or `worker`, or several processes, with the memory hub is an error: each
  process would see only the events it made itself.
- SQLite shared by several processes is a warning, not an error: on one machine
  it works (its file lock serialises writers, WAL lets readers run), it just does
  not grow; PostgreSQL is the backend for several machines.
- With the Redis hub, whichever processes run tickers take turns through a lock
  in Redis (dashboard.lease), so a second worker started by mistake waits.
"""

from __future__ import annotations

from dataclasses import dataclass

import tornado.web
from tornado.routing import PathMatches

from ..config import Config, ConfigError
from ..hub import Hub


@dataclass(frozen=True)
class Role:
    name: str
    web: bool  # pages, streams and the API
    tickers: bool  # the sources' scheduler


ROLES = {
    "all": Role("all", web=True, tickers=True),
    "web": Role("web", web=True, tickers=False),
    "worker": Role("worker", web=False, tickers=True),
}

WORKER_PATHS = ("/healthz", "/metrics")


def check_role(config: Config, role: Role, processes: int = 1) -> list[str]:
    """Warnings for running `role` in `processes` processes with this config; a
    ConfigError (one line) when it cannot work at all."""
    shared = role.name != "all" or processes > 1
    if shared and config.hub.backend == "memory":
        if role.name != "all":
            why = (f"--role {role.name}", "web processes and a separate worker would never see each other's events")
        else:
            why = (f"--processes {processes}", "each process would see only the events it made itself")
        raise ConfigError(f'{config.file}: hub.backend: {why[0]} needs backend = "redis": with the memory hub {why[1]}')
    warnings = []
    if shared and config.storage.url.startswith("sqlite"):
        warnings.append(
            f"{config.file}: storage.url: SQLite shared by several processes works on one machine only "
            "and its writers wait on each other; use postgresql+asyncpg:// to scale out"
        )
    return warnings


def make_hub(config: Config, role: Role, origin: str) -> Hub:
    if config.hub.backend == "redis":
        from ..hub.redis_hub import RedisHub  # redis is an optional dependency

        return RedisHub(
            config.hub.url, buffer=config.hub.buffer, channel=config.hub.channel, origin=origin, subscribe=role.web
        )
    return Hub(config.hub.buffer)


def make_lease(config: Config, *, start_tickers, stop_tickers):
    """The lock that lets one process of many run the tickers; None with the memory
    hub, where there is only one process."""
    if config.hub.backend != "redis":
        return None
    from .lease import TickerLease

    return TickerLease(
        config.hub.url,
        f"{config.hub.channel}:tickers",
        config.hub.lease,
        start_tickers=start_tickers,
        stop_tickers=stop_tickers,
    )


def worker_app(app: tornado.web.Application) -> tornado.web.Application:
    """The web app cut down to /healthz and /metrics (when the app has it): a worker
    serves nothing else."""
    kept = [
        rule
        for rule in app.wildcard_router.rules
        if isinstance(rule.matcher, PathMatches) and rule.matcher.regex.pattern.rstrip("$") in WORKER_PATHS
    ]
    # Tornado's bare 404: the app's own error page needs templates and static files a worker does not serve.
    carried = {key: app.settings[key] for key in ("log_function", "xheaders") if key in app.settings}
    return tornado.web.Application(
        kept, default_handler_class=tornado.web.ErrorHandler, default_handler_args={"status_code": 404}, **carried
    )
