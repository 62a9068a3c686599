// Formatting shared by the renderers: numbers as the server formats them, levels
// from thresholds, ages ("12 s ago") and clock times.

export const ARROWS = { up: "▲", down: "▼", flat: "▬" };

export function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

// Like views.format_number: grouped thousands, fixed decimals when configured.
export function formatNumber(value, decimals) {
  if (!isNumber(value)) return value === null || value === undefined ? "—" : String(value);
  const options = decimals === null || decimals === undefined
    ? { maximumSignificantDigits: 6 }
    : { minimumFractionDigits: decimals, maximumFractionDigits: decimals };
  return value.toLocaleString("en-US", options);
}

// Like views.level: thresholds rise (warn < crit) or fall (warn > crit: low is bad).
export function level(value, warn, crit) {
  if (!isNumber(value)) return "ok";
  const falling = warn !== null && crit !== null && warn > crit;
  const beyond = (limit) => (falling ? value <= limit : value >= limit);
  if (crit !== null && beyond(crit)) return "crit";
  if (warn !== null && beyond(warn)) return "warn";
  return "ok";
}

// Like views.change_text and views.change_tone: a percentage's change in points, other
// values' relative to the previous one; good or bad as the widget's thresholds say which
// way is worse (neutral without thresholds).
export function change(current, previous, w = {}) {
  if (!isNumber(current) || !isNumber(previous)) return null;
  const arrow = current > previous ? "up" : current < previous ? "down" : "flat";
  const sign = (x) => (x >= 0 ? "+" : "-");
  let text;
  if (w.unit === "%") {
    const points = current - previous;
    text = `${ARROWS[arrow]} ${sign(points)}${Math.abs(points).toFixed(Math.max(1, w.decimals || 0))} pts`;
  } else {
    const percent = previous === 0 ? null : ((current - previous) / Math.abs(previous)) * 100;
    text = percent === null ? ARROWS[arrow] : `${ARROWS[arrow]} ${sign(percent)}${Math.abs(percent).toFixed(2)}%`;
  }
  const warn = w.warn ?? null, crit = w.crit ?? null;
  let tone = "neutral";
  if (arrow !== "flat" && (warn !== null || crit !== null)) {
    const worse = warn !== null && crit !== null && warn > crit ? "down" : "up";
    tone = arrow === worse ? "bad" : "good";
  }
  return { arrow, text, tone };
}

export function formatAge(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 2) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.floor(h / 24)} days ago`;
}

export function formatDuration(ms) {
  return formatAge(ms).replace(/ ago$/, "").replace("just now", "a moment");
}

// A timezone the browser does not know must not break the page: fall back to local time.
function zoned(options, timeZone) {
  if (!timeZone) return options;
  try {
    new Intl.DateTimeFormat([], { timeZone });
    return { ...options, timeZone };
  } catch {
    return options;
  }
}

export function clockTime(date, timeZone, seconds = true) {
  const options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  if (seconds) options.second = "2-digit";
  return date.toLocaleTimeString([], zoned(options, timeZone));
}

export function longDate(date, timeZone) {
  return date.toLocaleDateString([], zoned({ weekday: "long", day: "numeric", month: "long" }, timeZone));
}

export function fullTime(date) {
  return date.toLocaleString([], { dateStyle: "medium", timeStyle: "medium" });
}

// What marks a widget with a firing alert (as templates/widgets.html alert_mark says it).
export function alertMark(alert) {
  if (!alert) return "";
  const note = alert.silenced ? " · silenced" : alert.acked_by ? " · acked" : "";
  return `${alert.acked_by ? "✓" : "▲"} ${alert.severity.toUpperCase()}${note}`;
}
