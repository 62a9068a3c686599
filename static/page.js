// The dashboard page: wires the stream to the widgets, shows the connection's
// state, fills gaps in graphs after a reconnect, and rotates through dashboards.
import { connect } from "./stream.js";
import { Widgets } from "./widgets.js";
import { AlertBoard } from "./alerts.js";
import { clockTime } from "./format.js";

const data = JSON.parse(document.getElementById("dashboard-data").textContent);
const offset = Date.parse(data.now) - Date.now(); // the server's clock minus ours
const serverNow = () => Date.now() + offset;
const widgets = new Widgets(data, serverNow);
const alerts = new AlertBoard(data, widgets);
const indicator = document.getElementById("connection");
const offline = document.getElementById("offline");
const state = { live: false, downSince: null, server: null, backfills: 0, reopened: false };
showConnection("connecting", "connecting");

function showConnection(name, text) {
  indicator.className = `connection connection--${name}`;
  indicator.hidden = false;
  indicator.textContent = text;
  offline.textContent = text;
  offline.hidden = name === "live";
  document.documentElement.dataset.connection = name;
}

// What the graphs lack after a gap (the stream replays what it can, but a long gap
// gets the newest values only): each one's series again, for the range it shows.
async function backfill() {
  state.backfills += 1;
  await widgets.reload();
}

const source = connect(data, {
  open(afterError) {
    state.live = true;
    state.downSince = null;
    showConnection("live", "live");
    widgets.connected(true);
    // A reconnect fetches what the graphs lack; the `gap` that may open the new stream
    // before its first sample needs no second fetch.
    state.reopened = afterError;
    if (afterError) backfill();
  },
  down() {
    state.live = false;
    if (state.downSince === null) state.downSince = new Date();
    showConnection("reconnecting", `reconnecting since ${clockTime(state.downSince)}`);
    widgets.connected(false);
  },
  hello(hello) {
    // A new version was deployed: this page's scripts and markup may not fit it.
    if (hello.version && hello.version !== data.version) window.location.reload();
    state.server = hello.server;
  },
  gap() {
    // Only the newest values follow: the graphs fetch what they lack (unless this
    // connection's opening just did).
    if (!state.reopened) backfill();
  },
  reload() {
    source.close();
    window.location.reload();
  },
  sample(id, sample, eventId) {
    state.reopened = false;
    widgets.update(id, sample, eventId);
  },
  alert(event) {
    alerts.apply(event);
  },
});

// Rotation waits for a live connection: navigating while the server is away would
// leave a wall screen on the browser's own error page, which never comes back. It also
// stays on a dashboard while one of its crit alerts fires unacknowledged, and moves on
// once that resolved or was acknowledged.
const held = document.getElementById("rotation-held");
function rotate() {
  const hold = alerts.holdsRotation();
  held.hidden = !hold;
  document.documentElement.dataset.rotation = hold ? "held" : "due";
  if (state.live && !hold) window.location.assign(data.next);
  else setTimeout(rotate, 1000);
}
if (data.rotate > 0 && data.next) setTimeout(rotate, data.rotate * 1000);

setInterval(() => widgets.tick(), 1000);
new ResizeObserver(() => widgets.tick()).observe(document.querySelector("main.grid"));
window.dashboard = { data, source, widgets, state, alerts };
