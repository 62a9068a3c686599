"""Prometheus metrics of one server, in a registry of its own.

Not the global default registry: tests start many servers in one process, and
each must count only its own. Per-event work stays cheap: streams count what
they send per write (one batch), and what the hub and the open streams already
know (events published, streams open) is read at scrape time, not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from .. import __version__
from ..core.samples import ERROR

# A commit of a few rows on SQLite takes well under a millisecond when nothing waits.
WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """`streams_open()` and `published()` are read at scrape time: what the runtime and
    the hub count anyway is not counted twice."""

    def __init__(self, *, streams_open: Callable[[], int], published: Callable[[], int]):
        self.registry = CollectorRegistry()
        registry = self.registry
        self.events_sent = Counter(
            "dashboard_events_sent", "Events written to streams (all clients)", registry=registry
        )
        self.bytes_sent = Counter("dashboard_stream_sent_bytes", "Bytes written to event streams", registry=registry)
        self.snapshots_sent = Counter(
            "dashboard_snapshots_sent",
            "Times a stream fell behind the buffer and got the newest value of each widget instead",
            registry=registry,
        )
        self.source_runs = Counter(
            "dashboard_source_runs", "Runs of a widget's source, by outcome", ["widget", "outcome"], registry=registry
        )
        self.source_errors = Counter(
            "dashboard_source_errors", "Failed runs of a widget's source", ["widget"], registry=registry
        )
        self.source_duration = Histogram(
            "dashboard_source_duration_seconds", "Time a source took to answer", ["widget"], registry=registry
        )
        self.db_write_duration = Histogram(
            "dashboard_db_write_duration_seconds",
            "Time to store a batch of samples, waiting for the write lock included",
            buckets=WRITE_BUCKETS,
            registry=registry,
        )
        # Incremented by the push handler once per answered POST: push_requests.labels(status="200").inc()
        self.push_requests = Counter(
            "dashboard_push_requests", "Push API requests, by HTTP status", ["status"], registry=registry
        )
        self._push_counters: dict[int, Any] = {}
        registry.register(_RuntimeCollector(streams_open, published))
        # What every Prometheus exporter has: process_cpu_seconds_total, process_resident_memory_bytes,
        # process_open_fds (against LimitNOFILE, one per stream), ...; python_info; and the version.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        Gauge("dashboard_build_info", "The running version, as a label", ["version"], registry=registry).labels(
            __version__
        ).set(1)

    def watch_alerts(
        self, firing: Callable[[], Mapping[str, int]], notifications: Callable[[], Mapping[str, Any]]
    ) -> None:
        """Read the alerts firing and what each notifier did, at scrape time."""
        self.registry.register(_AlertsCollector(firing, notifications))

    def wrote(self, seconds: float) -> None:
        """The recorder's on_write hook: one batch of samples stored."""
        self.db_write_duration.observe(seconds)

    def source_ran(self, widget_id: str, outcome: str, seconds: float) -> None:
        """The scheduler's on_run hook."""
        self.source_runs.labels(widget_id, outcome).inc()
        self.source_duration.labels(widget_id).observe(seconds)
        if outcome == ERROR:
            self.source_errors.labels(widget_id).inc()

    def stream_wrote(self, events: int, size: int, snapshots: int = 0) -> None:
        self.events_sent.inc(events)
        self.bytes_sent.inc(size)
        if snapshots:
            self.snapshots_sent.inc(snapshots)

    def push_answered(self, status: int) -> None:
        counter = self._push_counters.get(status)
        if counter is None:  # labels() takes a lock and builds a key: once per status, not per push
            counter = self._push_counters[status] = self.push_requests.labels(str(status))
        counter.inc()

    def forget_widgets(self, widget_ids: Sequence[str], outcomes: Sequence[str]) -> None:
        """Drop the series of widgets a reload removed, so a scrape lists only live ones."""
        for widget_id in widget_ids:
            for outcome in outcomes:
                self.source_runs.remove(widget_id, outcome)
            self.source_errors.remove(widget_id)
            self.source_duration.remove(widget_id)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The scrape body and its Content-Type: Prometheus text, or OpenMetrics 1.0.0 when
        asked for. Not prometheus_client's choose_encoder(): it fails on a version it cannot
        parse (a 500 for any client that sends one) and echoes any other into the answer."""
        if wants_openmetrics(accept):
            return openmetrics.generate_latest(self.registry), openmetrics.CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4


def wants_openmetrics(accept: str) -> bool:
    """Whether an Accept header lists OpenMetrics without a version, or with 1.0.0 (what
    Prometheus asks for first); anything else gets the Prometheus text format."""
    for accepted in accept.split(","):
        media_type, *params = (part.strip() for part in accepted.split(";"))
        if media_type.lower() != "application/openmetrics-text":
            continue
        versions = [
            value.strip('"') for name, _, value in (p.partition("=") for p in params) if name.strip() == "version"
        ]
        if not versions or versions[0] == "1.0.0":
            return True
    return False


class _RuntimeCollector:
    """What the runtime already tracks, read when scraped."""

    def __init__(self, streams_open: Callable[[], int], published: Callable[[], int]):
        self.streams_open = streams_open
        self.published = published

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily("dashboard_streams_open", "Event streams open now", value=self.streams_open())
        published = CounterMetricFamily("dashboard_events_published", "Events published to the hub")
        published.add_metric([], self.published())
        yield published


class _AlertsCollector:
    """Alerts firing now, by severity; notifications sent, failed (attempts) and given up,
    by notifier (the counts the delivery keeps anyway)."""

    def __init__(self, firing: Callable[[], Mapping[str, int]], notifications: Callable[[], Mapping[str, Any]]):
        self.firing = firing
        self.notifications = notifications

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        firing = GaugeMetricFamily("dashboard_alerts_firing", "Alerts firing now, by severity", labels=["severity"])
        for severity, count in sorted(self.firing().items()):
            firing.add_metric([severity], count)
        yield firing
        families = {
            "sent": CounterMetricFamily(
                "dashboard_notifications_sent", "Notifications delivered, by notifier", labels=["notifier"]
            ),
            "failed": CounterMetricFamily(
                "dashboard_notifications_failed",
                "Failed attempts to send a notification, by notifier",
                labels=["notifier"],
            ),
            "dropped": CounterMetricFamily(
                "dashboard_notifications_dropped",
                "Notifications given up after every retry failed, by notifier",
                labels=["notifier"],
            ),
        }
        for name, health in sorted(self.notifications().items()):
            for key, family in families.items():
                family.add_metric([name], getattr(health, key))
        yield from families.values()
