// Reads an event stream with the `eventsource` package from npm (a client this
// project did not write) and prints one JSON line per event on stdout, for
// tests/test_clients.py: {"type", "id", "data"} of each named event, and the
// EventSource's own "open" and "error" as {"type"}.
//
//   node eventsource.mjs URL EVENT_NAME... (a read token may come in DASHBOARD_READ_TOKEN)
import { EventSource } from "eventsource";

const [url, ...names] = process.argv.slice(2);
const token = process.env.DASHBOARD_READ_TOKEN;
const options = token
  ? { fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, Authorization: `Bearer ${token}` } }) }
  : {};
const source = new EventSource(url, options);
const print = (record) => process.stdout.write(`${JSON.stringify(record)}\n`);

source.addEventListener("open", () => print({ type: "open" }));
source.addEventListener("error", () => print({ type: "error" }));
for (const name of names) {
  source.addEventListener(name, (event) => print({ type: event.type, id: event.lastEventId, data: event.data }));
}
process.on("SIGTERM", () => {
  source.close();
  process.exit(0);
});
