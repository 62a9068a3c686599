// Renderers, one per view. They update the elements the server rendered, and only
// ever through textContent and attributes: a value is text, never markup.

const ARROWS = { up: "▲", down: "▼", flat: "▬" };
const SVG_NS = "http://www.w3.org/2000/svg";

function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

export function formatNumber(value, decimals) {
  if (!isNumber(value)) return value === null || value === undefined ? "—" : String(value);
  const options = decimals === null || decimals === undefined
    ? { maximumSignificantDigits: 6 }
    : { minimumFractionDigits: decimals, maximumFractionDigits: decimals };
  return value.toLocaleString("en-US", options);
}

export function level(value, warn, crit) {
  if (!isNumber(value)) return "ok";
  const falling = warn !== null && crit !== null && warn > crit;
  const beyond = (limit) => (falling ? value <= limit : value >= limit);
  if (crit !== null && beyond(crit)) return "crit";
  if (warn !== null && beyond(warn)) return "warn";
  return "ok";
}

// The same scaling as views.graph_path on the server.
export function graphPath(points, width, height, low, high) {
  if (!points.length) return "";
  const ts = points.map((p) => p[0]);
  const vs = points.map((p) => p[1]);
  const t0 = Math.min(...ts), t1 = Math.max(...ts);
  let v0 = low ?? Math.min(...vs), v1 = high ?? Math.max(...vs);
  if (v1 === v0) { v0 -= 1; v1 += 1; }
  const span = (t1 - t0) || 1;
  return points.map(([t, v]) =>
    `${((t - t0) / span * width).toFixed(1)},${(height - (v - v0) / (v1 - v0) * height).toFixed(1)}`).join(" ");
}

function setText(element, text) {
  if (element && element.textContent !== text) element.textContent = text;
}

export class Widgets {
  constructor(data) {
    this.config = new Map(data.widgets.map((w) => [w.id, w]));
    this.points = new Map(Object.entries(data.graphs || {}));
    this.lastEventId = data.lastEventId;
    this.server = null;
    this.live = false;
    this.updatedAt = new Map();
    const now = Date.now();
    for (const w of data.widgets) {
      const el = this.element(w.id);
      const ts = el && el.querySelector("[data-role=updated]")?.dataset.ts;
      this.updatedAt.set(w.id, ts ? Date.parse(ts) : now);
      if (w.view === "clock") this.clock(w);
    }
  }

  element(id) {
    return document.getElementById(`w-${id}`);
  }

  role(el, name) {
    return el.querySelector(`[data-role=${name}]`);
  }

  connected(live) {
    this.live = live;
  }

  // A different server instance answered (a restart): the stream resumed through
  // Last-Event-ID, so nothing is missing; nothing to do but note it.
  resync() {}

  update(id, sample, eventId) {
    const w = this.config.get(id);
    const el = this.element(id);
    if (!w || !el) return;
    if (eventId) this.lastEventId = Math.max(this.lastEventId, eventId);
    this.updatedAt.set(id, Date.parse(sample.ts) || Date.now());
    el.classList.remove("is-stale");
    el.classList.toggle("is-error", sample.status !== "ok");
    setText(this.role(el, "message"), sample.message || "");
    const updated = this.role(el, "updated");
    if (updated) {
      updated.dataset.ts = sample.ts;
      setText(updated, `updated ${sample.ts.slice(11, 19)} UTC`);
    }
    if (sample.status !== "ok") return; // keep showing the last good value, marked
    const render = this[`render_${w.view}`];
    if (render) render.call(this, w, el, sample);
  }

  setLevel(w, el, value) {
    el.classList.remove("level--ok", "level--warn", "level--crit");
    el.classList.add(`level--${level(value, w.warn, w.crit)}`);
  }

  addPoint(w, sample) {
    if (!isNumber(sample.value)) return [];
    const points = this.points.get(w.id) || [];
    const t = Date.parse(sample.ts);
    points.push([t, sample.value]);
    const oldest = t - w.history * 1000;
    while (points.length && points[0][0] < oldest) points.shift();
    this.points.set(w.id, points);
    return points;
  }

  render_number(w, el, sample) {
    const points = this.points.get(w.id) || [];
    const previous = points.length ? points[points.length - 1][1] : null;
    setText(this.role(el, "value"), formatNumber(sample.value, w.decimals));
    const change = this.role(el, "change");
    if (change && isNumber(previous) && isNumber(sample.value)) {
      const arrow = sample.value > previous ? "up" : sample.value < previous ? "down" : "flat";
      const percent = previous === 0 ? null : ((sample.value - previous) / Math.abs(previous)) * 100;
      change.className = `change change--${arrow}`;
      setText(change, percent === null ? ARROWS[arrow] : `${ARROWS[arrow]} ${percent >= 0 ? "+" : ""}${percent.toFixed(2)}%`);
    }
    const line = this.role(el, "line");
    const all = this.addPoint(w, sample);
    if (line) line.setAttribute("points", graphPath(all, 100, 24, null, null));
    this.setLevel(w, el, sample.value);
  }

  render_meter(w, el, sample) {
    setText(this.role(el, "value"), formatNumber(sample.value, w.decimals));
    const low = w.min ?? 0, high = w.max ?? 100;
    const fraction = isNumber(sample.value) && high > low ? Math.min(1, Math.max(0, (sample.value - low) / (high - low))) : 0;
    const fill = this.role(el, "fill");
    if (fill) fill.style.strokeDasharray = `${(fraction * 100).toFixed(1)} 100`;
    this.setLevel(w, el, sample.value);
  }

  render_graph(w, el, sample) {
    setText(this.role(el, "value"), formatNumber(sample.value, w.decimals));
    const line = this.role(el, "line");
    const points = this.addPoint(w, sample);
    if (line) line.setAttribute("points", graphPath(points, 300, 100, w.min, w.max));
    this.setLevel(w, el, sample.value);
  }

  render_text(w, el, sample) {
    setText(this.role(el, "value"), sample.value === null ? "—" : String(sample.value));
  }

  render_list(w, el, sample) {
    const list = this.role(el, "rows");
    const rows = (sample.value || []).map((row) => {
      const li = document.createElement("li");
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = row.label;
      const cell = document.createElement("span");
      cell.className = "cell";
      cell.textContent = row.value === undefined ? "" : formatNumber(row.value, w.decimals);
      li.append(label, cell);
      return li;
    });
    list.replaceChildren(...rows);
  }

  render_status(w, el, sample) {
    const value = sample.value || {};
    const state = this.role(el, "state");
    state.className = `state state--${value.state || "unknown"}`;
    setText(state, value.state || "—");
    const parts = [];
    if (isNumber(value.latency_ms)) parts.push(`${Math.round(value.latency_ms)} ms`);
    if (value.code !== undefined) parts.push(String(value.code));
    if (value.detail !== undefined) parts.push(String(value.detail));
    setText(this.role(el, "detail"), parts.join(" · "));
  }

  clock(w) {
    const el = this.element(w.id);
    const options = w.timezone ? { timeZone: w.timezone } : {};
    const show = () => {
      const now = new Date();
      setText(this.role(el, "clock"), now.toLocaleTimeString([], { ...options, hour: "2-digit", minute: "2-digit", second: "2-digit" }));
      setText(this.role(el, "date"), now.toLocaleDateString([], { ...options, weekday: "long", day: "numeric", month: "long" }));
    };
    show();
    setInterval(show, 1000);
  }

  // Stale: no update for three intervals where one was expected, either because
  // the widget sends every interval, or because the stream itself is down.
  tick() {
    const now = Date.now();
    for (const [id, w] of this.config) {
      if (w.view === "clock") continue;
      const el = this.element(id);
      const silent = now - (this.updatedAt.get(id) || now) > 3 * w.every * 1000;
      el.classList.toggle("is-stale", silent && (w.heartbeat || !this.live));
    }
  }
}
