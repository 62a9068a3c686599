"""What the handlers share: the current config and the live collaborators.

One object made by main (or a test), handed to each handler through the URL
table. Its `config` is replaced on reload, so handlers read it per request.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import jinja2

from ..config import Config
from ..hub import Hub
from ..storage.recorder import Recorder
from ..storage.store import Store


@dataclass
class Runtime:
    config: Config
    hub: Hub
    store: Store
    recorder: Recorder
    templates: jinja2.Environment
    instance: str
    scheduler: Any = None  # None in a process that runs no tickers
    metrics: Any = None  # dashboard.metrics.Metrics: counters handlers and tickers bump
    started: float = field(default_factory=time.time)
    ready: bool = False
    streams: set = field(default_factory=set)  # open streams (web/stream.py LiveStream)
    streams_per_ip: Counter = field(default_factory=Counter)  # remote address -> open streams, for the per-IP limit

    def topics_of(self, widget_id: str) -> tuple[str, ...]:
        return self.config.dashboards_of(widget_id)
