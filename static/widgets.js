// The widgets' state and renderers. They update the elements the server rendered,
// and only through textContent and attributes: a value is text, never markup.
//
// What a view is (whether it keeps points, how its states map to levels, whether it
// takes values at all) comes with each widget in the page's JSON, from the view's
// declaration on the server (dashboard/core/views.py). Per view, only its renderers
// live here: render_<view> for a sample, and optionally start_<view> (once),
// draw_<view> (its points) and tick_<view> (every second).
import {
  alertMark, change, clockTime, formatAge, formatDuration, formatNumber, fullTime, isNumber, level, longDate,
} from "./format.js";
import { drawChart, sparkPoints } from "./chart.js";


function setText(element, text) {
  if (element && element.textContent !== text) element.textContent = text;
}

export class Widgets {
  // `now` is the server's clock as this page estimates it (ms): sample times are
  // the server's, and a browser's clock may be off by minutes.
  constructor(data, now) {
    this.now = now;
    this.config = new Map(data.widgets.map((w) => [w.id, w]));
    this.points = new Map(); // widget id -> [[time ms, value, sample id], ...], by id
    this.lastIds = new Map(); // widget id -> the newest sample id shown
    this.updatedAt = new Map(); // widget id -> time of the newest sample shown (ms), or null
    this.live = false;
    this.liveUntil = now(); // when the stream was last known to be up
    this.loadedAt = now();
    for (const w of data.widgets) {
      const el = this.element(w.id);
      if (!el) continue;
      this.lastIds.set(w.id, Number(el.dataset.eventId) || 0);
      const updated = this.role(el, "updated");
      const ts = updated?.dataset.ts;
      this.updatedAt.set(w.id, ts ? Date.parse(ts) : null);
      if (ts) updated.title = `updated ${fullTime(new Date(Date.parse(ts)))}`;
      if (w.points) {
        const ids = data.graphIds?.[w.id] || [];
        this.points.set(w.id, (data.graphs?.[w.id] || []).map(([t, v], i) => [t, v, ids[i]]));
      }
      this[`start_${w.view}`]?.(w, el);
    }
    this.tick();
  }

  element(id) {
    return document.getElementById(`w-${id}`);
  }

  role(el, name) {
    return el.querySelector(`[data-role=${name}]`);
  }

  connected(live) {
    if (this.live && !live) this.liveUntil = this.now();
    this.live = live;
    this.tick();
  }

  // Returns whether the sample was shown: a replay of one already shown is not.
  update(id, sample, eventId) {
    const w = this.config.get(id);
    const el = this.element(id);
    if (!w || !el) return false;
    const ts = Date.parse(sample.ts);
    if (eventId && eventId <= (this.lastIds.get(id) || 0)) {
      // Shown already (a replay after a reconnect, a snapshot), unless the ids started
      // over with a new database: then the sample is newer than what is shown.
      const shown = this.updatedAt.get(id);
      if (!(shown !== null && shown !== undefined && ts > shown)) return false;
      if (this.points.has(id)) this.points.set(id, []);
    }
    if (eventId) this.lastIds.set(id, eventId);
    this.updatedAt.set(id, ts);
    el.dataset.eventId = String(eventId || 0);
    const failed = sample.status !== "ok";
    el.classList.toggle("is-error", failed);
    setText(this.role(el, "message"), failed ? sample.message || "the source failed" : sample.message || "");
    const updated = this.role(el, "updated");
    if (updated) {
      updated.dataset.ts = sample.ts;
      updated.title = `updated ${fullTime(new Date(ts))}`;
    }
    // A failed sample keeps showing the last good value, marked as failed.
    if (!failed) this[`render_${w.view}`]?.(w, el, sample, eventId);
    this.refresh(w, el, this.now());
    return true;
  }

  // Samples fetched from the history API to fill a gap; merged by id, so one
  // that also arrives on the stream is kept once.
  merge(id, samples) {
    const w = this.config.get(id);
    if (!w || !this.points.has(id)) return;
    for (const s of samples) {
      if (s.status === "ok" && isNumber(s.value)) this.addPoint(w, [Date.parse(s.ts), s.value, s.id]);
    }
    this.draw(w, this.element(id));
  }

  lastPointId(id) {
    const points = this.points.get(id) || [];
    return points.length ? points[points.length - 1][2] : 0;
  }

  addPoint(w, point) {
    const points = this.points.get(w.id);
    const newest = points.length ? points[points.length - 1][2] : -Infinity;
    if (point[2] > newest) {
      points.push(point);
    } else {
      let low = 0, high = points.length;
      while (low < high) {
        const mid = (low + high) >> 1;
        if (points[mid][2] < point[2]) low = mid + 1; else high = mid;
      }
      if (points[low]?.[2] === point[2]) return; // have it
      points.splice(low, 0, point);
    }
    const oldest = this.now() - w.history * 1000;
    let drop = 0;
    while (drop < points.length - 1 && points[drop][0] < oldest) drop++;
    if (drop) points.splice(0, drop);
  }

  previousValue(w, eventId) {
    const points = this.points.get(w.id) || [];
    for (let i = points.length - 1; i >= 0; i--) if (points[i][2] < eventId) return points[i][1];
    return null;
  }

  setLevel(el, name) {
    for (const old of ["ok", "warn", "crit"]) el.classList.toggle(`level--${old}`, old === name);
  }

  render_number(w, el, sample, eventId) {
    setText(this.role(el, "value"), formatNumber(sample.value, w.decimals));
    const delta = change(sample.value, this.previousValue(w, eventId));
    const arrow = this.role(el, "change");
    if (arrow && delta) {
      arrow.setAttribute("class", `change change--${delta.arrow}`);
      setText(arrow, delta.text);
    }
    if (isNumber(sample.value)) this.addPoint(w, [Date.parse(sample.ts), sample.value, eventId]);
    this.draw(w, el);
    this.setLevel(el, level(sample.value, w.warn, w.crit));
  }

  render_meter(w, el, sample) {
    setText(this.role(el, "value"), formatNumber(sample.value, w.decimals));
    const low = w.min ?? 0, high = w.max ?? 100;
    const fraction = isNumber(sample.value) && high > low ? Math.min(1, Math.max(0, (sample.value - low) / (high - low))) : 0;
    this.role(el, "fill")?.setAttribute("stroke-dasharray", `${(fraction * 100).toFixed(1)} 100`);
    this.setLevel(el, level(sample.value, w.warn, w.crit));
  }

  render_graph(w, el, sample, eventId) {
    setText(this.role(el, "value"), formatNumber(sample.value, w.decimals));
    if (isNumber(sample.value)) this.addPoint(w, [Date.parse(sample.ts), sample.value, eventId]);
    this.draw(w, el);
    this.setLevel(el, level(sample.value, w.warn, w.crit));
  }

  render_text(w, el, sample) {
    setText(this.role(el, "value"), sample.value === null || sample.value === undefined ? "—" : String(sample.value));
  }

  render_list(w, el, sample) {
    const rows = (Array.isArray(sample.value) ? sample.value : []).map((row) => {
      const li = document.createElement("li");
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = String(row.label ?? "");
      const cell = document.createElement("span");
      cell.className = "cell";
      cell.textContent = row.value === undefined || row.value === null ? ""
        : isNumber(row.value) ? formatNumber(row.value, w.decimals) : String(row.value);
      li.append(label, cell);
      return li;
    });
    this.role(el, "rows")?.replaceChildren(...rows);
  }

  render_status(w, el, sample) {
    const value = sample.value && typeof sample.value === "object" ? sample.value : { state: sample.value };
    const state = typeof value.state === "string" ? value.state : "unknown";
    this.role(el, "state")?.setAttribute("class", `state state--${w.states[state] ? state : "unknown"}`);
    setText(this.role(el, "state-word"), value.state ? String(value.state) : "—");
    const parts = [];
    if (isNumber(value.latency_ms)) parts.push(`${Math.round(value.latency_ms)} ms`);
    if (value.code !== undefined && value.code !== null) parts.push(String(value.code));
    if (value.detail !== undefined && value.detail !== null) parts.push(String(value.detail));
    setText(this.role(el, "detail"), parts.join(" · "));
    this.setLevel(el, w.states[state] || "ok");
  }

  start_clock(w, el) {
    const show = () => {
      const now = new Date(); // a clock shows the viewer's time, not the server's
      setText(this.role(el, "clock"), clockTime(now, w.timezone));
      setText(this.role(el, "date"), longDate(now, w.timezone) + (w.timezone ? ` · ${w.timezone}` : ""));
    };
    show();
    setInterval(show, 1000);
  }

  // A widget with a firing alert: a frame, stripes and a label that says the severity
  // (app.css), so that it is seen from across a room and not by colour alone.
  markAlert(el, alert) {
    el.classList.toggle("has-alert", Boolean(alert));
    for (const severity of ["warn", "crit"]) el.classList.toggle(`alert--${severity}`, alert?.severity === severity);
    el.classList.toggle("is-acked", Boolean(alert?.acked_by));
    el.classList.toggle("is-silenced", Boolean(alert?.silenced));
    setText(this.role(el, "alert-mark"), alertMark(alert));
  }

  // The alerts view: the firing alerts it may show, crit first (see static/alerts.js).
  render_alerts(w, el, alerts, canAck) {
    const rows = alerts.map((alert) => {
      const li = document.createElement("li");
      li.className = `alert-row alert-row--${alert.severity}${alert.acked_by ? " is-acked" : ""}${alert.silenced ? " is-silenced" : ""}`;
      li.dataset.alert = String(alert.id);
      const cell = (name, text) => {
        const span = document.createElement("span");
        span.className = name;
        span.textContent = text;
        li.append(span);
        return span;
      };
      cell("alert-severity", alertMark(alert));
      cell("alert-title", alert.title);
      cell("alert-message", alert.message || "");
      const when = cell("alert-since", "");
      when.dataset.since = alert.fired_at;
      this.since(when);
      cell("alert-note", alert.acked_by ? `acknowledged by ${alert.acked_by}` + (alert.acked_at ? ` at ${clockTime(new Date(Date.parse(alert.acked_at)), undefined, false)}` : "")
        : alert.silenced ? `silenced: ${alert.silenced}` : "");
      if (canAck && !alert.acked_by) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "ack";
        button.dataset.ack = String(alert.id);
        button.textContent = "Ack";
        li.append(button);
      }
      return li;
    });
    this.role(el, "alerts")?.replaceChildren(...rows);
    const none = this.role(el, "alerts-none");
    if (none) none.hidden = rows.length > 0;
  }

  since(element) {
    const since = new Date(Date.parse(element.dataset.since));
    setText(element, `since ${clockTime(since, undefined, false)} · ${formatDuration(this.now() - since)}`);
    element.title = fullTime(since);
  }

  tick_alerts(w, el) {
    for (const element of el.querySelectorAll("[data-since]")) this.since(element);
  }

  draw(w, el) {
    this[`draw_${w.view}`]?.(w, el, this.points.get(w.id) || []);
  }

  draw_number(w, el, points) {
    this.role(el, "line")?.setAttribute("points", sparkPoints(points, 100, 24));
  }

  draw_graph(w, el, points) {
    const svg = this.role(el, "chart");
    if (!svg) return;
    const end = this.now();
    // The window is the configured history, but while the data covers less of it
    // (a new widget), it narrows to the data, down to ten intervals or 30 s, so
    // that the line does not start as a sliver at the right edge.
    const span = w.history * 1000;
    const least = Math.min(span, Math.max(30_000, 10 * w.every * 1000));
    const first = points.length ? points[0][0] : end;
    const start = Math.max(end - span, Math.min(first, end - least));
    drawChart(svg, points, {
      start, end, low: w.min, high: w.max,
      // A silence of five intervals (or a fortieth of the window) is a hole in the data.
      gap: Math.max(5 * w.every * 1000, (w.history * 1000) / 40),
      format: (v) => formatNumber(v, Number.isInteger(v) ? 0 : null) + (w.unit ? ` ${w.unit}` : ""),
      timeZone: w.timezone || undefined,
    });
  }

  tick_graph(w, el) {
    this.draw(w, el); // the time window slides
  }

  // Stale: no update for three intervals where one was expected, because the
  // widget sends every interval (heartbeat) or because the stream is down.
  refresh(w, el, now) {
    if (!w.values) return;
    const ts = this.updatedAt.get(w.id);
    const since = w.heartbeat ? (ts ?? this.loadedAt) : this.live ? null : Math.max(ts ?? 0, this.liveUntil);
    const stale = since !== null && now - since > 3 * w.every * 1000;
    el.classList.toggle("is-stale", stale);
    const failed = el.classList.contains("is-error");
    setText(this.role(el, "badge"), failed ? "error" : stale ? "stale" : "");
    const updated = this.role(el, "updated");
    if (updated) setText(updated, ts === null || ts === undefined ? "no data yet" : `updated ${formatAge(now - ts)}`);
  }

  tick() {
    const now = this.now();
    for (const w of this.config.values()) {
      const el = this.element(w.id);
      if (!el) continue;
      this.refresh(w, el, now);
      this[`tick_${w.view}`]?.(w, el);
    }
  }
}
