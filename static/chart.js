// Hand-written SVG charts: a sparkline, a time-series chart with a time axis and
// value grid, drawn in the element's own pixels so text is never stretched, and an
// uptime bar. The chart draws buckets [time ms, min, avg, max]: the band from min
// to max, and the line through the averages.

const SVG_NS = "http://www.w3.org/2000/svg";
const SECOND = 1000, MINUTE = 60 * SECOND, HOUR = 60 * MINUTE, DAY = 24 * HOUR;
const TIME_STEPS = [
  SECOND, 2 * SECOND, 5 * SECOND, 10 * SECOND, 15 * SECOND, 30 * SECOND,
  MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY,
];

// Same scaling as views.graph_path on the server (the first paint), for sparklines.
export function sparkPoints(points, width, height) {
  if (!points.length) return "";
  let t0 = Infinity, t1 = -Infinity, v0 = Infinity, v1 = -Infinity;
  for (const [t, v] of points) {
    t0 = Math.min(t0, t); t1 = Math.max(t1, t);
    v0 = Math.min(v0, v); v1 = Math.max(v1, v);
  }
  if (v1 === v0) { v0 -= 1; v1 += 1; }
  const span = (t1 - t0) || 1;
  return points.map(([t, v]) =>
    `${((t - t0) / span * width).toFixed(1)},${(height - (v - v0) / (v1 - v0) * height).toFixed(1)}`).join(" ");
}

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / magnitude;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * magnitude;
}

// The value range and its gridlines: configured bounds are kept as they are;
// bounds from the data are widened a little and rounded to the grid step.
export function valueScale(buckets, low, high, count) {
  let v0 = low ?? Infinity, v1 = high ?? -Infinity;
  if (low === null || high === null) {
    for (const b of buckets) {
      if (low === null) v0 = Math.min(v0, b[1]);
      if (high === null) v1 = Math.max(v1, b[3]);
    }
  }
  if (!Number.isFinite(v0) && !Number.isFinite(v1)) { v0 = 0; v1 = 1; }
  if (!Number.isFinite(v0)) v0 = v1 - 1;
  if (!Number.isFinite(v1)) v1 = v0 + 1;
  if (v1 === v0) { const d = Math.abs(v0) * 0.1 || 1; v0 = low ?? v0 - d; v1 = high ?? v1 + d; }
  const step = niceStep(v1 - v0, count);
  if (low === null) v0 = Math.floor((v0 - (v1 - v0) * 0.05) / step) * step;
  if (high === null) v1 = Math.ceil((v1 + (v1 - v0) * 0.05) / step) * step;
  const ticks = [];
  for (let v = Math.ceil(v0 / step) * step; v <= v1 + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return { v0, v1, ticks, step };
}

// Tick times at round local-clock steps ("10:05", "10:10"), about `count` of them.
export function timeTicks(start, end, count) {
  const span = end - start;
  const step = TIME_STEPS.find((s) => span / s <= count) ?? TIME_STEPS[TIME_STEPS.length - 1];
  const offset = -new Date(start).getTimezoneOffset() * MINUTE; // align to the local clock
  const ticks = [];
  for (let t = Math.ceil((start + offset) / step) * step - offset; t <= end; t += step) ticks.push(t);
  return { ticks, step };
}

function timeLabel(t, step, timeZone) {
  const options = step >= DAY ? { weekday: "short", day: "numeric" }
    : { hour: "2-digit", minute: "2-digit", hourCycle: "h23", ...(step < MINUTE ? { second: "2-digit" } : {}) };
  if (timeZone) options.timeZone = timeZone;
  try {
    return new Date(t).toLocaleString([], options);
  } catch {
    delete options.timeZone;
    return new Date(t).toLocaleString([], options);
  }
}

function node(name, attributes, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, value);
  if (text !== undefined) el.textContent = text;
  return el;
}

// Draws `buckets` between `start` and `end` (ms). A silence longer than `gap` ms
// breaks the band and the line: an outage shows as a hole, not as a straight ramp.
// Returns where time runs on the x axis (for drag-to-zoom), or null when not drawn.
export function drawChart(svg, buckets, { start, end, low, high, gap, format, timeZone }) {
  const box = svg.getBoundingClientRect();
  const width = Math.round(box.width), height = Math.round(box.height);
  if (width < 20 || height < 20) return null;
  const font = parseFloat(getComputedStyle(svg).fontSize) || 12;
  const bottom = height - Math.ceil(font * 1.7); // room for the time labels
  const top = Math.ceil(font * 0.6);
  const shown = buckets.filter((b) => b[0] >= start && b[0] <= end);
  const scale = valueScale(shown, low, high, Math.max(2, Math.min(5, Math.floor(bottom / (font * 3.5)))));
  const labels = scale.ticks.map(format);
  const left = Math.ceil(Math.max(...labels.map((l) => l.length), 1) * font * 0.6 + font * 0.8); // the value gutter
  const x = (t) => left + ((t - start) / (end - start || 1)) * (width - left);
  const y = (v) => Math.min(bottom, Math.max(top, bottom - ((v - scale.v0) / (scale.v1 - scale.v0 || 1)) * (bottom - top)));

  const parts = [];
  const grid = node("g", { class: "grid" });
  scale.ticks.forEach((v, i) => {
    const py = y(v).toFixed(1);
    grid.append(node("line", { x1: left, x2: width, y1: py, y2: py }));
    grid.append(node("text", { class: "y-label", x: left - font * 0.5, y: (y(v) + font * 0.35).toFixed(1), "text-anchor": "end" }, labels[i]));
  });
  parts.push(grid);

  const axis = node("g", { class: "axis" });
  axis.append(node("line", { x1: left, x2: width, y1: bottom + 0.5, y2: bottom + 0.5 }));
  const labelWidth = font * (timeLabel(end, MINUTE, timeZone).length * 0.62 + 1.5);
  const { ticks, step } = timeTicks(start, end, Math.max(2, Math.floor((width - left) / labelWidth)));
  for (const t of ticks) {
    const px = x(t);
    // A half-shown label reads wrong; and the right end has a label of its own.
    if (px < left + labelWidth / 3 || px > width - labelWidth * 1.1) continue;
    axis.append(node("line", { class: "tick", x1: px.toFixed(1), x2: px.toFixed(1), y1: bottom, y2: bottom + font * 0.35 }));
    axis.append(node("text", { class: "x-label", x: px.toFixed(1), y: height - font * 0.25, "text-anchor": "middle" },
      timeLabel(t, step, timeZone)));
  }
  // The axis reaches the newest point: its end is labelled, flush with the plot's edge.
  axis.append(node("text", { class: "x-label x-label--end", x: width, y: height - font * 0.25, "text-anchor": "end" },
    timeLabel(end, step, timeZone)));
  parts.push(axis);

  if (shown.length) {
    let line = "", band = "";
    const segments = [];
    let segment = [];
    for (const b of shown) {
      if (segment.length && b[0] - segment[segment.length - 1][0] > gap) {
        segments.push(segment);
        segment = [];
      }
      segment.push(b);
    }
    segments.push(segment);
    for (const part of segments) {
      const px = part.map((b) => x(b[0]).toFixed(1));
      line += part.map((b, i) => `${i ? "L" : "M"}${px[i]},${y(b[2]).toFixed(1)}`).join("");
      // Along the maxima, and back along the minima.
      band += part.map((b, i) => `${i ? "L" : "M"}${px[i]},${y(b[3]).toFixed(1)}`).join("");
      band += part.map((b, i) => `L${px[i]},${y(b[1]).toFixed(1)}`).reverse().join("") + "Z";
    }
    parts.push(node("path", { class: "band", d: band }));
    parts.push(node("path", { class: "line", d: line }));
    const last = shown[shown.length - 1];
    parts.push(node("circle", { class: "dot", cx: x(last[0]).toFixed(1), cy: y(last[2]).toFixed(1), r: Math.max(3, font * 0.3) }));
  }
  svg.removeAttribute("preserveAspectRatio");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.dataset.start = String(Math.round(start));
  svg.dataset.end = String(Math.round(end));
  svg.replaceChildren(...parts);
  return { left, right: width, top, bottom, start, end };
}

// The uptime bar: a segment per bucket over [start, end), coloured by its worst state,
// the share of ok samples and the bucket's times in its title (shown on hover).
export function drawUptime(svg, segments, { start, end, describe }) {
  const span = Math.max(end - start, 1);
  const parts = [];
  for (const s of segments) {
    const left = Math.max(s.t, start), right = Math.min(s.t + s.step, end);
    if (right <= left) continue;
    const rect = node("rect", {
      class: `seg seg--${s.state}`,
      x: (((left - start) / span) * 1000).toFixed(2),
      y: 0,
      width: Math.max(((right - left) / span) * 1000 - 0.6, 0.4).toFixed(2),
      height: 10,
    });
    rect.append(node("title", {}, describe(s)));
    parts.push(rect);
  }
  svg.replaceChildren(...parts);
}
