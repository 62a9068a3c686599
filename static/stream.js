// The page's one EventSource: one listener per widget, plus the control events.
//
// The page was rendered with values up to data.lastEventId, so the stream starts
// after it (the query parameter; on a reconnect the browser sends Last-Event-ID,
// which the server prefers). data.events may carry a query of its own (a single
// widget's page reads /events?widgets=<id>). Control events carry no id: data.controls of them,
// sent before the page was rendered, are replayed after lastEventId and must be
// skipped, or a `reload` would reload the page it produced, for ever.

export function connect(data, on) {
  const url = new URL(data.events, window.location.href);
  url.searchParams.set("last_event_id", data.lastEventId);
  const source = new EventSource(url);
  let skip = data.controls || 0;
  let down = false;

  source.addEventListener("open", () => {
    on.open(down);
    down = false;
  });
  source.addEventListener("error", () => {
    down = true;
    on.down();
  });
  source.addEventListener("hello", (event) => on.hello(JSON.parse(event.data)));
  // The stream could not replay everything this page missed: newest values follow.
  source.addEventListener("gap", (event) => on.gap(JSON.parse(event.data)));
  source.addEventListener("reload", () => {
    if (skip > 0) skip -= 1;
    else on.reload();
  });
  // An alert event is applied even when it is one of the skipped ones: each says how
  // its alerts are now, and the stream's opening ends with all of them as they are.
  source.addEventListener("alert", (event) => {
    if (skip > 0) skip -= 1;
    on.alert(JSON.parse(event.data));
  });
  for (const widget of data.widgets) {
    source.addEventListener(widget.id, (event) => {
      skip = 0; // controls older than the page come before any sample newer than it
      on.sample(widget.id, JSON.parse(event.data), Number(event.lastEventId));
    });
  }
  return source;
}
