"""GET /healthz (readiness, with what each source last did) and GET /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import hmac
import time
from datetime import UTC, datetime

from .. import __version__
from ..core.samples import format_ts
from .base import BaseHandler
from .push import bearer_token

PING_TIMEOUT = 2.0  # a database that does not answer in this long counts as down


def scheduler_state(scheduler) -> str:
    """off: this process runs no tickers; idle: it could, but none is configured;
    running: every ticker's loop is alive; stopped: one ended (a bug, or shutting down)."""
    if scheduler is None:
        return "off"
    if not scheduler.sources:
        return "idle"
    return "running" if scheduler.running else "stopped"


def _when(seconds: float | None) -> str | None:
    return None if seconds is None else format_ts(datetime.fromtimestamp(seconds, UTC))


def source_report(scheduler) -> dict[str, dict]:
    if scheduler is None:
        return {}
    return {
        widget_id: {
            "status": state.status,
            "message": state.message,
            "failures": state.failures,
            "runs": state.runs,
            "last_success": _when(state.last_success),
            "last_error": _when(state.last_error),
        }
        for widget_id, state in scheduler.states.items()
    }


def operator_allowed(handler) -> bool:
    """With [server] metrics_token set, /metrics and the details of /healthz need it
    (Authorization: Bearer); without one, both are open, as on a loopback-only server."""
    token = handler.config.server.metrics_token
    if not token:
        return True
    offered = bearer_token(handler.request.headers.get("Authorization", ""))
    # Header values arrive decoded as Latin-1: encoding back gives the bytes as sent.
    return offered is not None and hmac.compare_digest(
        offered.encode("latin-1", "replace"), token.encode("utf-8", "surrogateescape")
    )


class HealthHandler(BaseHandler):
    """200 while the server takes requests, 503 otherwise (starting, stopping, the database
    unreachable, a ticker loop dead). A failing source does not make it 503: the server
    is fine, the upstream is not, and restarting would not help; see `sources`. Nor does
    a Redis hub that lost Redis (every process shares it: a 503 everywhere would only
    take the pages down too); see `hub`."""

    async def get(self) -> None:
        runtime = self.runtime
        try:
            database = await asyncio.wait_for(runtime.store.ping(), PING_TIMEOUT)
        except TimeoutError:
            database = False
        scheduler = scheduler_state(runtime.scheduler)
        ready = runtime.ready and database and scheduler != "stopped" and not runtime.hub.closed
        if not operator_allowed(self):  # a load balancer needs the status code, nothing more
            self.write_json({"status": "ok" if ready else "unavailable"}, 200 if ready else 503)
            return
        self.write_json(
            {
                "status": "ok" if ready else "unavailable",
                "ready": ready,
                "database": database,
                "scheduler": scheduler,
                "sources": source_report(runtime.scheduler),
                "hub": runtime.hub.link(),
                "clients": len(runtime.streams),
                "instance": runtime.instance,
                "version": __version__,
                "uptime": round(time.time() - runtime.started, 3),
            },
            200 if ready else 503,
        )


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        if not operator_allowed(self):
            self.set_header("WWW-Authenticate", 'Bearer realm="metrics"')
            self.write_json({"error": "metrics need Authorization: Bearer <[server] metrics_token>"}, 401)
            return
        body, content_type = self.runtime.metrics.exposition(self.request.headers.get("Accept", ""))
        self.set_header("Content-Type", content_type)
        self.finish(body)
