// The alerts of the page: which are open now, the marks on their widgets, the alerts
// views, whether a rotation must wait, the Ack buttons, and (when the dashboard opts
// in) a beep and a browser notification when one fires.
//
// The page was rendered with the open alerts (data.alerting.alerts); the stream then
// sends `alert` events: each alert that changed, as it is now, or (`complete`, at each
// stream's opening) every open one, so that a page that reconnects or opened late
// shows what is open now, not only what happens next.

const OPEN = new Set(["pending", "firing"]);

export class AlertBoard {
  constructor(data, widgets) {
    this.data = data;
    this.widgets = widgets;
    this.settings = data.alerting || { alerts: [], canAck: false };
    this.own = new Set(data.widgets.map((w) => w.id)); // the widgets of this dashboard
    this.alerts = new Map();
    for (const alert of this.settings.alerts || []) this.alerts.set(alert.id, alert);
    this.beeps = 0; // for the curious and the tests
    this.notified = [];
    this.audio = null;
    this.render();
    this.wireAcks();
    this.wirePermission();
  }

  // An `alert` event from the stream.
  apply(event) {
    const before = new Set(this.firing().map((a) => a.id));
    if (event.complete) this.alerts.clear();
    for (const alert of event.alerts || []) {
      if (OPEN.has(alert.state)) this.alerts.set(alert.id, alert);
      else this.alerts.delete(alert.id);
    }
    this.render();
    for (const alert of this.shown()) {
      if (!before.has(alert.id) && !alert.acked_by && !alert.silenced) this.announce(alert);
    }
  }

  firing() {
    return [...this.alerts.values()].filter((a) => a.state === "firing");
  }

  // A rotating dashboard stays while one of its own widgets has a crit alert that
  // fires and that nobody acknowledged (a silenced one does not hold it).
  holdsRotation() {
    return this.firing().some((a) => a.severity === "crit" && !a.acked_by && !a.silenced && this.own.has(a.widget));
  }

  // The firing alerts, but not the warn of a widget whose crit (or down) fires too:
  // that says more, and the server keeps the warn quiet as well.
  shown() {
    const firing = this.firing();
    const strong = new Set(firing.filter((a) => a.condition !== "warn" && a.severity === "crit").map((a) => a.widget));
    return firing.filter((a) => !(a.condition === "warn" && strong.has(a.widget)));
  }

  render() {
    const firing = this.shown().sort(
      (a, b) => (a.severity === "crit" ? 0 : 1) - (b.severity === "crit" ? 0 : 1) || Date.parse(a.fired_at) - Date.parse(b.fired_at),
    );
    const marks = new Map();
    for (const alert of firing) {
      if (this.own.has(alert.widget) && !marks.has(alert.widget)) marks.set(alert.widget, alert);
    }
    for (const w of this.widgets.config.values()) {
      const el = this.widgets.element(w.id);
      if (!el) continue;
      this.widgets.markAlert(el, marks.get(w.id) || null);
      if (w.view === "alerts") this.widgets.render_alerts(w, el, firing, this.settings.canAck);
    }
    document.documentElement.dataset.alerts = String(firing.length);
  }

  // Ack buttons (present only for a signed-in viewer): one listener for the page.
  wireAcks() {
    if (!this.settings.canAck) return;
    document.addEventListener("click", async (event) => {
      const button = event.target.closest("button[data-ack]");
      if (!button) return;
      button.disabled = true;
      try {
        const response = await fetch(`/api/alerts/${encodeURIComponent(button.dataset.ack)}/ack`, {
          method: "POST",
          headers: { "X-XSRFToken": this.settings.xsrf },
          credentials: "same-origin",
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        this.apply({ alerts: [await response.json()] });
      } catch {
        button.disabled = false;
        button.textContent = "Ack failed: again";
      }
    });
  }

  // Browser notifications need the viewer's permission, asked for on a click.
  wirePermission() {
    const button = document.getElementById("alert-permission");
    if (!button || !this.settings.alertNotifications || !("Notification" in window)) return;
    const show = () => { button.hidden = Notification.permission !== "default"; };
    show();
    button.addEventListener("click", async () => {
      await Notification.requestPermission();
      show();
    });
  }

  announce(alert) {
    if (this.settings.alertSound) this.beep(alert.severity === "crit" ? 2 : 1);
    if (this.settings.alertNotifications && "Notification" in window && Notification.permission === "granted") {
      const title = `${alert.severity.toUpperCase()}: ${alert.title}`;
      this.notified.push(title);
      new Notification(title, { body: alert.message || "", tag: `alert-${alert.id}` });
    }
  }

  // A short generated tone (Web Audio): no sound file, no inline script. A browser
  // lets a page play sound only after the viewer touched it, unless told otherwise
  // (a wall screen: chromium --autoplay-policy=no-user-gesture-required).
  beep(times) {
    this.beeps += 1;
    try {
      this.audio ??= new AudioContext();
      if (this.audio.state === "suspended") this.audio.resume();
      const start = this.audio.currentTime;
      for (let i = 0; i < times; i++) {
        const tone = this.audio.createOscillator();
        const gain = this.audio.createGain();
        tone.frequency.value = 880;
        gain.gain.setValueAtTime(0.2, start + i * 0.3);
        gain.gain.exponentialRampToValueAtTime(0.001, start + i * 0.3 + 0.25);
        tone.connect(gain).connect(this.audio.destination);
        tone.start(start + i * 0.3);
        tone.stop(start + i * 0.3 + 0.25);
      }
    } catch {
      // no audio device: the screen still shows it
    }
  }
}
