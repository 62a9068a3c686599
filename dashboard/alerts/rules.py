"""What each widget's alert conditions are, and how one alert moves: pure, no I/O, no clock
of its own (every call is given `now`, in seconds).

A widget's `alert` table names conditions (see config.alerts): `warn` and `crit`
(its thresholds, rising or falling as the page draws them; a status widget's `warn`
and `down` states), `failing` (its source fails) and `stale` (no update for
`stale_after` intervals). Each condition is a Rule, and each Rule is watched on its
own (a Watch): the crit alert of a widget and its warn alert are two alerts, as in
Alertmanager; a firing crit keeps the warn of the same widget quiet (see
`inhibits`).

One alert's life, as Grafana has it:

    ok --condition--> pending --held `for`--> firing --gone `clear_for`--> resolved (ok)
                         \\--condition gone--> ok (cancelled: nothing was said)

A firing threshold alert resolves only once the value is back past its threshold by
`clear_margin`, so a value that hovers at the line does not flap. A sample that says
nothing about a condition (no value yet, a text where a number was expected) changes
nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import Config, WidgetConfig
from ..core.samples import ERROR, Sample
from ..core.views import format_number

OK, PENDING, FIRING, RESOLVED = "ok", "pending", "firing", "resolved"
# The events a transition records; "cancelled" (a pending alert whose condition went
# away) leaves no trace: nothing was said about it.
CANCELLED, ACKNOWLEDGED = "cancelled", "acknowledged"
# A firing alert of the first kind keeps quiet the one of the second, on the same widget.
INHIBITS = {"crit": "warn", "down": "warn"}


@dataclass(frozen=True)
class Rule:
    widget: str
    title: str
    condition: str  # warn, crit, down, failing or stale
    severity: str  # warn or crit
    hold: float  # seconds the condition must last before the alert fires
    clear_hold: float  # seconds it must be gone before the alert resolves
    threshold: float | None  # warn and crit of a number, meter or graph
    falling: bool  # low is bad (warn > crit)
    margin: float  # how far back past the threshold a firing alert must come to resolve
    stale_after: float  # seconds without an update (stale)
    every: float  # the widget's interval
    unit: str
    decimals: int | None
    status_view: bool

    @property
    def key(self) -> str:
        return f"{self.widget}:{self.condition}"

    def holds(self, sample: Sample | None, firing: bool) -> bool | None:
        """Whether the condition holds for this sample; None when the sample cannot say.
        (stale is a matter of time: see Watch.evaluate.)"""
        if sample is None:
            return None
        if self.condition == "failing":
            return sample.status == ERROR
        value = sample.value
        if self.status_view:
            state = value.get("state") if isinstance(value, Mapping) else value if isinstance(value, str) else None
            if state not in ("ok", "warn", "down"):
                return None
            return state == "down" if self.condition == "down" else state in ("warn", "down")
        if self.threshold is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return None
        # Past the line to fire; past the line and the margin back to resolve.
        margin = self.margin if firing else 0.0
        return value <= self.threshold + margin if self.falling else value >= self.threshold - margin

    def number(self, value: Any) -> str:
        text = format_number(value, self.decimals)
        return f"{text} {self.unit}" if self.unit and text else text

    def message(self, sample: Sample | None, *, firing: bool, stale_for: float = 0.0) -> str:
        """What the alert says, in a sentence: "CPU 93 % is above crit (90 %)"."""
        if self.condition == "stale":
            if firing:
                return f"{self.title}: no update for {_seconds(stale_for)} (expected every {_seconds(self.every)})"
            return f"{self.title} is updating again"
        if sample is None:
            return f"{self.title}: no value"
        if self.condition == "failing":
            if firing:
                return f"{self.title}: source failing: {sample.message or 'no reason given'}"
            return f"{self.title}: source working again"
        if self.status_view:
            value = sample.value if isinstance(sample.value, Mapping) else {"state": sample.value}
            detail = value.get("detail")
            said = f"{self.title} is {value.get('state')}"
            return f"{said}: {detail}" if detail else said
        side = "below" if self.falling else "above"
        if firing:
            return (
                f"{self.title} {self.number(sample.value)} is {side} {self.condition} ({self.number(self.threshold)})"
            )
        back = "above" if self.falling else "below"
        return f"{self.title} is back {back} {self.condition}: {self.number(sample.value)}"


def _seconds(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:g} s"


def widget_rules(widget: WidgetConfig, status_view: bool) -> list[Rule]:
    alert = widget.alert
    if alert is None:
        return []
    falling = widget.warn is not None and widget.crit is not None and widget.warn > widget.crit
    rules = []
    for condition in alert.on:
        threshold = {"warn": widget.warn, "crit": widget.crit}.get(condition) if not status_view else None
        severity = {"warn": "warn", "crit": "crit", "down": "crit"}.get(condition, alert.severity)
        rules.append(
            Rule(
                widget=widget.id,
                title=widget.title,
                condition=condition,
                severity=severity,
                hold=alert.hold,
                clear_hold=alert.clear_hold,
                threshold=threshold,
                falling=falling,
                margin=float(alert.clear_margin),
                stale_after=alert.stale_after * widget.every,
                every=widget.every,
                unit=widget.unit,
                decimals=widget.decimals,
                status_view=status_view,
            )
        )
    return rules


def rules_of(config: Config, status_views: frozenset[str]) -> dict[str, Rule]:
    """Every rule of the enabled widgets, by key, crit before warn (so that a crit and a
    warn that fire together are judged in that order: the crit keeps the warn quiet)."""
    rules = [rule for widget in config.widgets.values() for rule in widget_rules(widget, widget.view in status_views)]
    rules.sort(key=lambda rule: rule.severity != "crit")
    return {rule.key: rule for rule in rules}


def route_of(config: Config, widget_id: str) -> tuple[str, ...]:
    """The notifiers a widget's alerts go to: its own `notify`, or the default route."""
    widget = config.widgets.get(widget_id)
    alert = widget.alert if widget is not None else None
    if alert is not None and alert.notify is not None:
        return alert.notify
    return config.alerts.notify


@dataclass
class Watch:
    """One rule's alert, as far as time and values go: ok, pending (since `started`) or
    firing (since `fired`; `clear_since` while its condition is gone). The engine keeps
    everything else (the row's id, acknowledgements, who was told)."""

    rule: Rule
    state: str = OK
    started: float | None = None
    fired: float | None = None
    clear_since: float | None = None

    def evaluate(self, sample: Sample | None, seen: float, now: float) -> str | None:
        """Move on, given the widget's newest sample and when it last updated (`seen`);
        the transition made (pending, firing, cancelled, resolved), or None."""
        if self.rule.condition == "stale":
            holds: bool | None = now - seen >= self.rule.stale_after
        else:
            holds = self.rule.holds(sample, firing=self.state == FIRING)
        if holds is None:
            return None
        if self.state == OK:
            if not holds:
                return None
            self.state, self.started = PENDING, now
            if self.rule.hold > 0:
                return PENDING
            self.state, self.fired = FIRING, now
            return FIRING
        if self.state == PENDING:
            if not holds:
                self.state, self.started = OK, None
                return CANCELLED
            if now - (self.started if self.started is not None else now) >= self.rule.hold:
                self.state, self.fired = FIRING, now
                return FIRING
            return None
        # firing
        if holds:
            self.clear_since = None
            return None
        if self.clear_since is None:
            self.clear_since = now
        if now - self.clear_since >= self.rule.clear_hold:
            self.state, self.started, self.fired, self.clear_since = OK, None, None, None
            return RESOLVED
        return None

    def due(self, seen: float) -> float | None:
        """The next time at which this watch may move without a new sample, or None."""
        if self.state == PENDING and self.started is not None:
            return self.started + self.rule.hold
        if self.state == FIRING and self.clear_since is not None:
            return self.clear_since + self.rule.clear_hold
        if self.rule.condition == "stale" and self.state == OK:
            return seen + self.rule.stale_after
        return None
