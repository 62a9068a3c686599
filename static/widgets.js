// The widgets' state and renderers. They update the elements the server rendered,
// and only through textContent and attributes: a value is text, never markup.
//
// What a view is (whether it keeps points, how its states map to levels, whether it
// takes values at all) comes with each widget in the page's JSON, from the view's
// declaration on the server (dashboard/core/views.py). Per view, only its renderers
// live here: render_<view> for a sample, and optionally start_<view> (once),
// draw_<view> (its history) and tick_<view> (every second).
//
// History is a series of buckets (GET /api/widgets/<id>/series: t, min, avg, max, n,
// and ok, warn, down for a status), first from the page's JSON, later fetched for the
// range a viewer picks; live samples extend its last bucket while the range is the
// one that ends now.
import {
  alertMark, change, clockTime, formatAge, formatDuration, formatNumber, fullTime, isNumber, level, longDate,
} from "./format.js";
import { drawChart, drawUptime, sparkPoints } from "./chart.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const STATE_COLUMNS = ["ok", "warn", "down"];
const DRAG_MIN_PX = 6; // a shorter drag is a click, not a zoom

function setText(element, text) {
  if (element && element.textContent !== text) element.textContent = text;
}

// What a sample adds to its bucket (the rule of dashboard/storage/rollups.py): a number,
// or a status's state and latency; null when it counts for nothing.
function measure(w, value) {
  if (w.states) {
    const v = value && typeof value === "object" ? value : { state: value };
    if (typeof v.state !== "string" || !(v.state in w.states)) return null;
    return { state: v.state, x: isNumber(v.latency_ms) ? v.latency_ms : null };
  }
  return isNumber(value) ? { state: null, x: value } : null;
}

function timeRange(from, to) {
  const options = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  return `${new Date(from).toLocaleString([], options)} – ${new Date(to).toLocaleString([], options)}`;
}

export class Widgets {
  // `now` is the server's clock as this page estimates it (ms): sample times are
  // the server's, and a browser's clock may be off by minutes.
  constructor(data, now) {
    this.now = now;
    this.base = data.history; // "/api/widgets/"
    this.kiosk = Boolean(data.kiosk);
    this.config = new Map(data.widgets.map((w) => [w.id, w]));
    this.series = new Map(); // widget id -> its buckets, as the series API answers
    this.ranges = new Map(); // widget id -> { live, span } or { live: false, start, end }, and `back`
    this.values = new Map(Object.entries(data.values || {})); // a number's value shown, for its change
    this.fetching = new Map(); // widget id -> the series request in flight, and what came meanwhile
    this.geometry = new Map(); // widget id -> where time runs on its chart
    this.lastIds = new Map(); // widget id -> the newest sample id shown
    this.updatedAt = new Map(); // widget id -> time of the newest sample shown (ms), or null
    this.dragging = null;
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
      const series = data.series?.[w.id];
      if (series) {
        this.series.set(w.id, series);
        this.ranges.set(w.id, { live: true, span: w.history * 1000, back: [] });
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
      const series = this.series.get(id);
      if (series) this.series.set(id, this.emptySeries(series));
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
    if (!failed) {
      this.extend(w, ts, sample.value);
      this[`render_${w.view}`]?.(w, el, sample, eventId);
    }
    this.refresh(w, el, this.now());
    return true;
  }

  // -- history: the series of each widget that shows one --------------------------------------

  emptySeries(series) {
    const out = { ...series, t: [], min: [], avg: [], max: [], n: [] };
    for (const column of STATE_COLUMNS) if (column in series) out[column] = [];
    return out;
  }

  // A live sample joins its bucket of the series, while the range shown ends now.
  extend(w, ts, value) {
    const series = this.series.get(w.id);
    const range = this.ranges.get(w.id);
    const measured = measure(w, value);
    if (!series || !range?.live || !measured) return;
    const pending = this.fetching.get(w.id);
    if (pending) pending.samples.push([ts, measured]); // the answer on its way may lack it
    this.addToSeries(series, ts, measured);
    const oldest = this.now() - range.span - series.step;
    let drop = 0;
    while (drop < series.t.length - 1 && series.t[drop] < oldest) drop++;
    if (drop) for (const column of ["t", "min", "avg", "max", "n", ...STATE_COLUMNS]) series[column]?.splice(0, drop);
  }

  addToSeries(series, ts, { state, x }) {
    const start = Math.floor(ts / series.step) * series.step;
    let i = series.t.length - 1;
    while (i >= 0 && series.t[i] > start) i--;
    if (i < 0 || series.t[i] !== start) {
      i += 1;
      series.t.splice(i, 0, start);
      for (const column of ["min", "avg", "max"]) series[column].splice(i, 0, null);
      series.n.splice(i, 0, 0);
      for (const column of STATE_COLUMNS) series[column]?.splice(i, 0, 0);
    }
    if (x !== null) {
      // A number's buckets count every sample; a status's average is of its latencies,
      // whose count the answer does not carry: its band and states are what is drawn.
      const counted = series.avg[i] === null ? 0 : series.n[i];
      series.avg[i] = ((series.avg[i] ?? 0) * counted + x) / (counted + 1);
      series.min[i] = series.min[i] === null ? x : Math.min(series.min[i], x);
      series.max[i] = series.max[i] === null ? x : Math.max(series.max[i], x);
    }
    series.n[i] += 1;
    if (state && series[state]) series[state][i] += 1;
  }

  // The window a widget shows: its range, narrowed while a new widget's data covers
  // less of it (down to ten intervals or 30 s), so a line does not start as a sliver.
  // Data that starts within two buckets of the range's start covers it.
  window(w) {
    const range = this.ranges.get(w.id);
    if (!range.live) return { start: range.start, end: range.end };
    const end = this.now();
    const least = Math.min(range.span, Math.max(30_000, 10 * w.every * 1000));
    const series = this.series.get(w.id);
    const first = series?.t.length ? series.t[0] : end;
    if (first - (end - range.span) <= 2 * (series?.step || 0)) return { start: end - range.span, end };
    return { start: Math.max(end - range.span, Math.min(first, end - least)), end };
  }

  // Fetch the series for the widget's range, about a bucket per two pixels.
  async load(w, el) {
    const range = this.ranges.get(w.id);
    const box = (this.role(el, "chart") || this.role(el, "uptime") || el).getBoundingClientRect();
    const points = Math.max(20, Math.min(2000, Math.round((box.width || 600) / 2)));
    const end = range.live ? this.now() : range.end;
    const start = range.live ? end - range.span : range.start;
    const request = { samples: [] };
    this.fetching.set(w.id, request);
    let answer = null;
    try {
      const query = `from=${(start / 1000).toFixed(3)}&to=${(end / 1000).toFixed(3)}&points=${points}`;
      const response = await fetch(`${this.base}${encodeURIComponent(w.id)}/series?${query}`);
      if (response.ok) answer = await response.json();
    } catch {
      // the server is away: the next reconnect loads again
    }
    if (this.fetching.get(w.id) !== request) return false; // a newer request took over
    this.fetching.delete(w.id);
    if (!answer) return false;
    // Live samples that came while the answer was on its way: those in buckets after its
    // newest are surely not in it (an earlier bucket's may be: they are left to it).
    const newest = answer.t.length ? answer.t[answer.t.length - 1] : -Infinity;
    for (const [ts, measured] of request.samples) {
      if (ts >= newest + answer.step && this.ranges.get(w.id) === range) this.addToSeries(answer, ts, measured);
    }
    this.series.set(w.id, answer);
    this.draw(w, el);
    return true;
  }

  // After a gap in the stream: every widget's series again, for the range it shows.
  async reload() {
    await Promise.all([...this.series.keys()].map((id) => this.load(this.config.get(id), this.element(id))));
  }

  show(w, el, range) {
    this.ranges.set(w.id, range);
    const tools = this.role(el, "ranges");
    if (tools) {
      for (const button of tools.querySelectorAll("button[data-range]")) {
        const pressed = range.live && Number(button.dataset.range) * 1000 === range.span;
        button.setAttribute("aria-pressed", String(pressed));
      }
      this.role(tools, "back").hidden = range.back.length === 0;
    }
    this.draw(w, el);
    return this.load(w, el);
  }

  // -- renderers ---------------------------------------------------------------------------

  setLevel(el, name) {
    for (const old of ["ok", "warn", "crit"]) el.classList.toggle(`level--${old}`, old === name);
  }

  render_number(w, el, sample) {
    setText(this.role(el, "value"), formatNumber(sample.value, w.decimals));
    const delta = change(sample.value, this.values.get(w.id), w);
    const arrow = this.role(el, "change");
    if (arrow && delta) {
      arrow.setAttribute("class", `change change--${delta.arrow} change--${delta.tone}`);
      setText(arrow, delta.text);
    }
    if (isNumber(sample.value)) this.values.set(w.id, sample.value);
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

  render_graph(w, el, sample) {
    setText(this.role(el, "value"), formatNumber(sample.value, w.decimals));
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
    this.draw(w, el);
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

  // The range buttons and drag-to-zoom, with a way back. A wall screen keeps the
  // configured range: no buttons, no zoom.
  start_graph(w, el) {
    const tools = this.role(el, "ranges");
    const svg = this.role(el, "chart");
    if (this.kiosk || !this.ranges.has(w.id)) {
      tools?.remove();
      return;
    }
    tools?.addEventListener("click", (event) => {
      const button = event.target.closest("button");
      if (!button) return;
      const current = this.ranges.get(w.id);
      if (button.dataset.role === "back") {
        const back = [...current.back];
        const previous = back.pop();
        if (previous) this.show(w, el, { ...previous, back });
      } else {
        this.show(w, el, { live: true, span: Number(button.dataset.range) * 1000, back: [] });
      }
    });
    svg?.addEventListener("pointerdown", (event) => this.dragStart(w, el, svg, event));
    svg?.addEventListener("pointermove", (event) => this.dragMove(svg, event));
    svg?.addEventListener("pointerup", (event) => this.dragEnd(w, el, svg, event));
    svg?.addEventListener("pointercancel", () => this.dragStop());
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

  dragStart(w, el, svg, event) {
    const geometry = this.geometry.get(w.id);
    if (event.button !== 0 || !geometry) return;
    const x = event.clientX - svg.getBoundingClientRect().left;
    if (x < geometry.left) return;
    event.preventDefault(); // no text selection, no native drag
    svg.setPointerCapture?.(event.pointerId);
    const selection = document.createElementNS(SVG_NS, "rect");
    selection.setAttribute("class", "selection");
    selection.setAttribute("y", String(geometry.top));
    selection.setAttribute("height", String(Math.max(0, geometry.bottom - geometry.top)));
    selection.setAttribute("x", String(x));
    selection.setAttribute("width", "0");
    svg.append(selection);
    this.dragging = { id: w.id, geometry, x0: x, x1: x, selection };
  }

  dragMove(svg, event) {
    const drag = this.dragging;
    if (!drag) return;
    const { left, right } = drag.geometry;
    drag.x1 = Math.min(right, Math.max(left, event.clientX - svg.getBoundingClientRect().left));
    drag.selection.setAttribute("x", String(Math.min(drag.x0, drag.x1)));
    drag.selection.setAttribute("width", String(Math.abs(drag.x1 - drag.x0)));
  }

  dragEnd(w, el, svg, event) {
    const drag = this.dragging;
    if (!drag) return;
    this.dragMove(svg, event);
    this.dragStop();
    if (Math.abs(drag.x1 - drag.x0) < DRAG_MIN_PX) return;
    const { left, right, start, end } = drag.geometry;
    const at = (x) => start + ((x - left) / (right - left)) * (end - start);
    const { back, ...shown } = this.ranges.get(w.id);
    this.show(w, el, {
      live: false,
      start: at(Math.min(drag.x0, drag.x1)),
      end: at(Math.max(drag.x0, drag.x1)),
      back: [...back, shown], // "back" returns to what was shown before the zoom
    });
  }

  dragStop() {
    this.dragging?.selection.remove();
    this.dragging = null;
  }

  // -- drawing -----------------------------------------------------------------------------

  draw(w, el) {
    if (this.series.has(w.id)) this[`draw_${w.view}`]?.(w, el, this.series.get(w.id));
  }

  draw_number(w, el, series) {
    const { start } = this.window(w);
    const points = series.t.map((t, i) => [t, series.avg[i]]).filter((p) => p[0] + series.step > start && p[1] !== null);
    this.role(el, "line")?.setAttribute("points", sparkPoints(points, 100, 24));
  }

  draw_graph(w, el, series) {
    const svg = this.role(el, "chart");
    if (!svg || this.dragging?.id === w.id) return; // a drag draws its selection on this picture
    const { start, end } = this.window(w);
    const half = series.step / 2;
    const buckets = [];
    series.t.forEach((t, i) => {
      if (series.avg[i] !== null) buckets.push([Math.min(t + half, end), series.min[i], series.avg[i], series.max[i]]);
    });
    const geometry = drawChart(svg, buckets, {
      start, end, low: w.min, high: w.max,
      // A silence of five intervals, or of two buckets, is a hole in the data.
      gap: Math.max(5 * w.every * 1000, 2 * series.step),
      format: (v) => formatNumber(v, Number.isInteger(v) ? 0 : null) + (w.unit ? ` ${w.unit}` : ""),
      timeZone: w.timezone || undefined,
    });
    if (geometry) this.geometry.set(w.id, geometry);
    svg.dataset.step = String(series.step);
  }

  draw_status(w, el, series) {
    const svg = this.role(el, "uptime");
    if (!svg || !series.ok) return;
    const { start, end } = this.window(w);
    const segments = [];
    series.t.forEach((t, i) => {
      if (!series.n[i]) return;
      const state = series.down[i] ? "down" : series.warn[i] ? "warn" : "ok";
      segments.push({ t, step: series.step, state, ok: series.ok[i], n: series.n[i] });
    });
    drawUptime(svg, segments, {
      start, end,
      describe: (s) => `${((s.ok / s.n) * 100).toFixed(1)} % ok · ${timeRange(s.t, s.t + s.step)}`,
    });
  }

  tick_graph(w, el) {
    this.draw(w, el); // the time window slides
  }

  tick_status(w, el) {
    this.draw(w, el);
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
