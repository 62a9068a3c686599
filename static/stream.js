// The page's one EventSource: one listener per widget, the connection indicator,
// and the control events (hello, reload). Values are set with textContent only.
import { Widgets } from "./widgets.js";

const data = JSON.parse(document.getElementById("dashboard-data").textContent);
const widgets = new Widgets(data);
const indicator = document.getElementById("connection");

function showConnection(state, text) {
  indicator.className = `connection connection--${state}`;
  indicator.textContent = text;
  document.body.dataset.connection = state;
}

function clockTime(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// The page was rendered with values up to lastEventId: the stream starts after it.
// On a reconnect the browser sends Last-Event-ID itself, which the server prefers.
const source = new EventSource(`${data.events}?last_event_id=${encodeURIComponent(data.lastEventId)}`);
let downSince = null;

source.addEventListener("open", () => {
  downSince = null;
  showConnection("live", "live");
  widgets.connected(true);
});

source.addEventListener("error", () => {
  if (downSince === null) downSince = new Date();
  showConnection("reconnecting", `reconnecting since ${clockTime(downSince)}`);
  widgets.connected(false);
});

source.addEventListener("hello", (event) => {
  const hello = JSON.parse(event.data);
  if (widgets.server && widgets.server !== hello.server) widgets.resync();
  widgets.server = hello.server;
});

source.addEventListener("reload", () => window.location.reload());

for (const widget of data.widgets) {
  source.addEventListener(widget.id, (event) => {
    widgets.update(widget.id, JSON.parse(event.data), Number(event.lastEventId));
  });
}

setInterval(() => widgets.tick(), 1000);
window.dashboard = { source, widgets };
