from __future__ import annotations

from .base import BaseHandler


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        runtime = self.runtime
        database = await runtime.store.ping()
        scheduler = runtime.scheduler
        scheduler_ok = scheduler is None or not scheduler.sources or scheduler.running
        ready = runtime.ready and database and scheduler_ok and not runtime.hub.closed
        self.write_json(
            {
                "status": "ok" if ready else "unavailable",
                "ready": ready,
                "database": database,
                "scheduler": "off" if scheduler is None else ("running" if scheduler_ok else "stopped"),
                "clients": len(runtime.streams),
                "instance": runtime.instance,
            },
            200 if ready else 503,
        )
