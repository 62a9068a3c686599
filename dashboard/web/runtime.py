"""What the handlers share: the current config and the live collaborators.

One object, built complete by web.app.make_runtime (in the server, or a test),
handed to each handler through the URL table. Its `config` is replaced on
reload, so handlers read it per request.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import jinja2

from ..alerts.engine import AlertEngine
from ..config import Config
from ..hub import Hub
from ..storage.recorder import Recorder
from ..storage.store import Store
from .metrics import Metrics

if TYPE_CHECKING:
    from .stream import LiveStream


class Tickers(Protocol):
    """What the web side may ask of the scheduler (dashboard.sources.scheduler)."""

    @property
    def state(self) -> str: ...

    def report(self) -> dict[str, dict[str, Any]]: ...


@dataclass
class Runtime:
    config: Config
    hub: Hub
    store: Store
    recorder: Recorder
    metrics: Metrics  # counters that handlers and tickers bump
    templates: jinja2.Environment
    instance: str  # this process's id, told to pages in `hello`
    streams: set[LiveStream] = field(default_factory=set)  # open streams
    streams_per_ip: Counter[str] = field(default_factory=Counter)  # remote address -> open streams
    scheduler: Tickers | None = None  # None in a process that runs no tickers
    started: float = field(default_factory=time.time)
    ready: bool = False
    alerts: AlertEngine | None = None  # evaluates and notifies once started (the process running the tickers)

    def ticker_state(self) -> str:
        """off: this process runs no tickers; else the scheduler's state (idle, running,
        stopped)."""
        return "off" if self.scheduler is None else self.scheduler.state
