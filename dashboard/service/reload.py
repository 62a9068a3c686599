"""Reloading config.toml in a running server (SIGHUP, `systemctl reload`).

What a reload does, and why in this order:
1. Everything that can fail is done before anything changes: the new file is
   parsed, the sources of new and changed widgets are built (which validates
   their options), the latest values of newly placed widgets are read. A
   failure leaves the server exactly as it was.
2. Then, with no await in between (so no request sees half of it): the config
   is swapped (handlers read runtime.config per request), hub topics are
   added, reshaped or removed, and the pages of changed or removed dashboards
   get a `reload` control event. Streams of unchanged dashboards never notice.
3. Last, the tickers: only those of removed or changed widgets stop, only
   those of new or changed widgets start.

What cannot change without a restart (the listen address, the database, the
hub backend) keeps its running value, and the log says a restart is needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from typing import Any

from ..config import Config, ConfigError
from ..core.events import Reload
from ..core.samples import Sample
from ..sources import build_source
from ..web.runtime import Runtime
from ..web.stream import topic_settings

# A removed dashboard's open streams get `reload`, then end after this long: time
# enough for the event to reach even a slow client.
REMOVED_TOPIC_LINGER = 10.0


@dataclasses.dataclass(frozen=True)
class Changes:
    widgets_added: tuple[str, ...] = ()
    widgets_removed: tuple[str, ...] = ()
    widgets_changed: tuple[str, ...] = ()
    dashboards_added: tuple[str, ...] = ()
    dashboards_removed: tuple[str, ...] = ()
    dashboards_changed: tuple[str, ...] = ()  # their pages are told to reload
    restart_needed: tuple[str, ...] = ()  # keys whose new value waits for a restart

    def describe(self) -> str:
        parts = []
        for what, added, removed, changed in (
            ("widgets", self.widgets_added, self.widgets_removed, self.widgets_changed),
            ("dashboards", self.dashboards_added, self.dashboards_removed, self.dashboards_changed),
        ):
            listed = [
                f"{verb} {', '.join(ids)}"
                for verb, ids in (("added", added), ("removed", removed), ("changed", changed))
                if ids
            ]
            if listed:
                parts.append(f"{what} {'; '.join(listed)}")
        return "; ".join(parts) or "no widget or dashboard changed"


def keep_restart_settings(old: Config, new: Config) -> tuple[Config, tuple[str, ...]]:
    """`new`, but with the settings only a restart can change kept at their running
    values; and the names of those that differ."""
    differ = []
    server = new.server
    if (server.host, server.port) != (old.server.host, old.server.port):
        differ.append("server.host/port")
        server = dataclasses.replace(server, host=old.server.host, port=old.server.port)
    if new.storage.url != old.storage.url:
        differ.append("storage.url")
    if new.hub != old.hub:
        differ.append("hub")
    kept = dataclasses.replace(
        new,
        server=server,
        storage=dataclasses.replace(new.storage, url=old.storage.url),
        hub=old.hub,
        listening=old.listening,  # the socket stays: so does the address "self:" URLs go to
    )
    return kept, tuple(differ)


def compare(old: Config, new: Config, restart_needed: tuple[str, ...] = ()) -> Changes:
    def split(before: dict, after: dict) -> tuple[tuple, tuple, tuple]:
        added = tuple(k for k in after if k not in before)
        removed = tuple(k for k in before if k not in after)
        changed = tuple(k for k in after if k in before and before[k] != after[k])
        return added, removed, changed

    widgets = split(dict(old.widgets), dict(new.widgets))
    old_dashboards = {d.id: d for d in old.dashboards}
    new_dashboards = {d.id: d for d in new.dashboards}
    added, removed, changed = split(old_dashboards, new_dashboards)
    # A page shows its widgets' titles, views and units: one of them changing changes the page.
    touched = set(widgets[2])
    changed = tuple(
        d
        for d in new_dashboards
        if d in old_dashboards and (d in changed or touched.intersection(new_dashboards[d].widgets))
    )
    return Changes(*widgets, added, removed, changed, restart_needed)


def build_tickers(config: Config, widget_ids: Iterable[str]) -> dict[str, Any]:
    """The sources of these widgets (those that tick); ConfigError on bad options."""
    sources = {}
    try:
        for widget_id in widget_ids:
            source = build_source(config, config.widgets[widget_id])
            if source is not None:
                sources[widget_id] = source
    except ConfigError:
        close_sources(sources.values())
        raise
    return sources


def close_sources(sources: Iterable[Any]) -> None:
    """Close sources that were built but will not run (a failed or ticker-less reload)."""
    for source in sources:
        close = getattr(source, "close", None)
        if close is not None:
            task = asyncio.ensure_future(close())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # nothing to report


def newly_placed(old: Config, new: Config) -> set[str]:
    """Widgets that appear on a dashboard they were not on: their topic needs their latest value."""
    before = {d.id: set(d.widgets) for d in old.dashboards}
    return {w for d in new.dashboards for w in d.widgets if w not in before.get(d.id, ())}


async def prepare(runtime, loaded: Config) -> tuple[Config, Changes, dict[str, Any], dict]:
    """Step 1: everything that may fail. Returns the config to run, the changes, the
    sources of new and changed widgets, and the latest samples the hub needs."""
    config, restart_needed = keep_restart_settings(runtime.config, loaded)
    changes = compare(runtime.config, config, restart_needed)
    sources = build_tickers(config, changes.widgets_added + changes.widgets_changed)
    try:
        # Newly placed widgets need their latest value; changed ones (their view, say) as they now show it.
        refreshed = sorted(newly_placed(runtime.config, config) | set(changes.widgets_changed))
        latest = await runtime.store.shown(config.widgets[w] for w in refreshed)
    except BaseException:
        close_sources(sources.values())
        raise
    return config, changes, sources, latest


def switch(runtime: Runtime, config: Config, changes: Changes, latest: dict[str, Sample]) -> None:
    """Step 2, synchronous: the new config, the hub's topics and their settings, and
    `reload` to the pages of changed and removed dashboards."""
    hub = runtime.hub
    runtime.config = config
    goodbye = Reload("configuration changed")
    removed = hub.reconfigure({d.id: d.widgets for d in config.dashboards}, latest, goodbye, config.widgets)
    loop = asyncio.get_running_loop()
    for topic in removed:
        loop.call_later(REMOVED_TOPIC_LINGER, topic.end_subscribers)
    hub.apply(topic_settings(config.server, runtime.metrics.stream_wrote))
    for name in changes.dashboards_changed:
        hub.send_control(name, goodbye)
    # A stream of some widgets (a single widget's page) shows their titles, views and units too.
    for topic in hub.subsets_showing(changes.widgets_changed):
        topic.append_control(goodbye.encode())
    if runtime.alerts is not None:
        runtime.alerts.apply(config)  # rules, routes, notifiers and windows, from the next round


async def update_tickers(scheduler, config: Config, changes: Changes, sources: dict[str, Any]) -> None:
    """Step 3: stop the tickers of removed and changed widgets, start new and changed ones."""
    for widget_id in changes.widgets_removed + changes.widgets_changed:
        if widget_id in scheduler.sources:
            await scheduler.remove(widget_id)
    for widget_id, source in sources.items():
        scheduler.add(config.widgets[widget_id], source)
