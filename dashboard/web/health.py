"""GET /healthz (readiness, with what each source last did) and GET /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import time

from .. import __version__
from ..core.auth import match_token
from .base import BaseHandler

PING_TIMEOUT = 2.0  # a database that does not answer in this long counts as down


def operator_allowed(handler) -> bool:
    """With [server] metrics_token set, /metrics and the details of /healthz need it
    (Authorization: Bearer); without one, both are open, as on a loopback-only server."""
    token = handler.config.server.metrics_token
    if not token:
        return True
    offered = handler.bearer_token()
    return offered is not None and match_token({"metrics": token}, offered) is not None


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
        scheduler = runtime.ticker_state()
        alerts = runtime.alerts if runtime is not None else None
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
                "sources": runtime.scheduler.report() if runtime.scheduler is not None else {},
                "hub": runtime.hub.link(),
                "alerts": alerts.report() if alerts is not None and alerts.active else "off",
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
