"""The alerts over HTTP: GET /api/alerts (open and recent, filtered), GET /api/alerts/<id>
(one, with its transitions), POST /api/alerts/<id>/ack, and the ad hoc silences:
GET and POST /api/silences, DELETE /api/silences/<id>.

Who may do what:
- Reading alerts: like /api/widgets, a viewer sees the alerts of the widgets it may
  see; a push token (Authorization: Bearer) sees them all.
- Acknowledging: a push token, or a signed-in viewer (password or proxy mode) who may
  see the widget, from the page: then with Tornado's XSRF token (the X-XSRFToken
  header), since a cookie alone would let any site make the browser acknowledge.
- Silences: push tokens only.
Tokens are compared through core.auth.match_token only, taken from the header only.
"""

from __future__ import annotations

from typing import Any

import tornado.web

from ..alerts.engine import AlertEngine
from ..alerts.silences import Silence, window_active
from ..alerts.store import AlertStore, iso
from ..config import parse_duration
from ..config.alerts import WEEKDAYS, duration_text
from ..core import auth
from ..core.values import clean_text
from .api import ApiHandler
from .push import bad_request, describe, http_error, json_object, push_token_name, quoted, require_json

STATES = ("pending", "firing", "resolved")
STATE_FILTERS = {"open": ("pending", "firing"), **{state: (state,) for state in STATES}}
MIN_SILENCE = 1.0  # a shorter one would have ended before anyone saw it
MAX_SILENCE = 366 * 86400.0
MAX_REASON = 1000
MAX_BY = 128


def silence_json(silence: Silence, now: float) -> dict[str, Any]:
    return {
        "id": silence.id,
        "widgets": list(silence.widgets) if silence.widgets is not None else None,
        "starts_at": iso(silence.starts),
        "ends_at": iso(silence.ends),
        "reason": silence.reason,
        "created_by": silence.created_by,
        "active": silence.starts <= now < silence.ends,
    }


class AlertsApiHandler(ApiHandler):
    """The token or the viewer of a request, and the engine."""

    def check_xsrf_cookie(self) -> None:
        # A bearer token cannot be sent by a cross-site form: only a request that relies
        # on its cookies (the page's Ack button) needs the XSRF token.
        if self.request.headers.get("Authorization") is None:
            super().check_xsrf_cookie()

    @property
    def alert_engine(self) -> AlertEngine | None:
        return self.runtime.alerts if self.runtime is not None else None

    @property
    def engine(self) -> AlertEngine:
        engine = self.alert_engine
        if engine is None or not engine.active:
            raise http_error(503, "alerting is not running in this process")
        return engine

    @property
    def alert_store(self) -> AlertStore:
        engine = self.alert_engine
        if engine is None:
            raise http_error(503, "alerting is not set up in this process")
        return engine.store

    def token_name(self, *, required: bool) -> str | None:
        """The name of the push token sent (push.push_token_name); None without an
        Authorization header, or with a read token ([auth] readers: it sees what its
        dashboards show, as on /api/widgets), unless `required`."""
        if not required and (self.request.headers.get("Authorization") is None or auth.READER in self.viewers):
            return None
        return push_token_name(self.config.api.tokens, self.request)

    def may_see(self, widget: str, token: str | None) -> bool:
        return token is not None or auth.widget_visible(self.config, widget, self.viewers)

    def json_body(self, keys: tuple[str, ...], example: str, *, optional: bool = False) -> dict[str, Any]:
        body = self.request.body
        if not body and optional:
            return {}
        require_json(self.request.headers)
        return json_object(body, keys, example)


class AlertsHandler(AlertsApiHandler):
    """GET /api/alerts?state=open|firing|pending|resolved&widget=<id>&limit=<n>"""

    async def get(self) -> None:
        token = self.token_name(required=False)
        state = self.get_query_argument("state", None)
        if state is not None and state not in STATE_FILTERS:
            raise bad_request(f"state: expected one of: {', '.join(STATE_FILTERS)}, got {quoted(state)}")
        widgets = [w for part in self.get_query_arguments("widget") for w in part.split(",") if w]
        for widget in widgets:
            if widget not in self.config.widgets and widget not in self.config.disabled_widgets:
                raise tornado.web.HTTPError(404, "%s", f"unknown widget {quoted(widget)}")
        limit = self.int_argument("limit", 100, low=1, high=1000)
        visible = [w for w in self.config.widgets if self.may_see(w, token)]
        wanted = [w for w in widgets if w in visible] if widgets else visible
        engine = self.alert_engine
        records = await self.alert_store.find(
            states=STATE_FILTERS[state] if state else None, widgets=wanted, limit=limit
        )
        alerts = []
        for record in records:
            title = self.config.widgets[record.widget].title if record.widget in self.config.widgets else record.widget
            open_ = record.state in ("pending", "firing")
            silenced = engine.silenced(record.widget) if engine is not None and open_ else None
            alerts.append(record.public(title=title, silenced=silenced))
        firing = sum(1 for a in alerts if a["state"] == "firing")
        self.write_json({"alerts": alerts, "firing": firing, "now": iso(engine.clock() if engine else None)})


class AlertHandler(AlertsApiHandler):
    """GET /api/alerts/<id>: one alert and its transitions."""

    async def get(self, alert_id: str) -> None:
        token = self.token_name(required=False)
        record = await self.alert_store.get(_id(alert_id))
        if record is None or not self.may_see(record.widget, token):
            raise tornado.web.HTTPError(404, "%s", f"no alert {alert_id}")
        widget = self.config.widgets.get(record.widget)
        engine = self.alert_engine
        silenced = engine.silenced(record.widget) if engine is not None and record.state != "resolved" else None
        body = record.public(title=widget.title if widget else record.widget, silenced=silenced)
        body["events"] = await self.alert_store.events(record.id or 0)
        self.write_json(body)


class AckHandler(AlertsApiHandler):
    """POST /api/alerts/<id>/ack: with a push token (and optionally {"by": "<who>"}), or
    from the page by a signed-in viewer (with the XSRF header)."""

    async def post(self, alert_id: str) -> None:
        token = self.token_name(required=False)
        viewer = None
        if token is None:
            viewer = next((self.viewers[k] for k in (auth.PASSWORD, auth.PROXY) if k in self.viewers), None)
            if viewer is None:
                raise http_error(401, "sign in (or send a push token) to acknowledge an alert")
        body = self.json_body(("by",), '{"by": "<who>"}', optional=True)
        by = body.get("by") if token is not None else viewer.name if viewer is not None else None
        if token is not None and by is None:
            by = f"token {token}"
        if not isinstance(by, str) or not by.strip() or len(by) > MAX_BY or not by.isprintable():
            # Printable: a name goes into log lines, mail headers and pages as it is.
            raise bad_request(f"by: expected a name of 1-{MAX_BY} printable characters, got {describe(body.get('by'))}")
        engine = self.engine
        record = await self.alert_store.get(_id(alert_id))
        if record is None or not self.may_see(record.widget, token):
            raise tornado.web.HTTPError(404, "%s", f"no alert {alert_id}")
        if record.state != "firing":
            raise http_error(409, f"alert {record.id} is {record.state}: only a firing alert can be acknowledged")
        acked = await engine.acknowledge(record.id or 0, by.strip())
        if acked is None or acked["state"] != "firing":
            raise http_error(409, f"alert {record.id} is no longer firing")
        self.write_json(acked)


class SilencesHandler(AlertsApiHandler):
    """GET /api/silences: the silences in force, and the maintenance windows; POST one:
    {"widgets": ["cpu"], "duration": "2h", "reason": "..."} (no widgets: every widget)."""

    def check_xsrf_cookie(self) -> None:
        pass  # push tokens only: a cookie grants nothing here, so a forged request gets a 401

    async def get(self) -> None:
        self.token_name(required=True)
        engine = self.engine
        now = engine.clock()
        silences = await engine.store.silences(active_at=now)
        windows = [
            {
                "name": w.name,
                "weekdays": [WEEKDAYS[d] for d in w.weekdays],
                "start": f"{w.start:%H:%M}",
                "end": f"{w.end:%H:%M}",
                "timezone": w.timezone,
                "widgets": list(w.widgets) if w.widgets is not None else None,
                "active": window_active(w, now),
            }
            for w in self.config.maintenance
        ]
        self.write_json({"silences": [silence_json(s, now) for s in silences], "maintenance": windows})

    async def post(self) -> None:
        token = self.token_name(required=True)
        body = self.json_body(("widgets", "duration", "reason"), '{"duration": "2h"}')
        widgets = body.get("widgets")
        if widgets is not None:
            if not isinstance(widgets, list) or not widgets or not all(isinstance(w, str) for w in widgets):
                raise bad_request(f"widgets: expected an array of widget ids, got {describe(widgets)}")
            widgets = list(dict.fromkeys(widgets))  # each once, in the order given
            for widget in widgets:
                if widget not in self.config.widgets:
                    raise tornado.web.HTTPError(404, "%s", f"unknown widget {quoted(widget)}")
        duration = body.get("duration")
        try:
            seconds = parse_duration(duration) if isinstance(duration, str) else 0.0
        except ValueError:
            seconds = 0.0
        if not MIN_SILENCE <= seconds <= MAX_SILENCE:
            raise bad_request(
                f'duration: expected a duration like "30m" or "2h" (from "1s" to "366d"), got {describe(duration)}'
            )
        reason = body.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
            raise bad_request(f"reason: expected text of at most {MAX_REASON} characters, got {describe(reason)}")
        if reason is not None:
            reason = clean_text(reason)  # NUL and lone surrogates as U+FFFD, as in every value
        engine = self.engine
        silence = await engine.silence(widgets, seconds, reason, f"token {token}")
        self.set_status(201)
        self.set_header("Location", f"/api/silences/{silence.id}")
        body = silence_json(silence, engine.clock())
        body["duration"] = duration_text(seconds)
        self.write_json(body, 201)


class SilenceHandler(AlertsApiHandler):
    """DELETE /api/silences/<id>: end it now."""

    def check_xsrf_cookie(self) -> None:
        pass  # push tokens only, as above

    async def delete(self, silence_id: str) -> None:
        self.token_name(required=True)
        engine = self.engine
        silence = await engine.end_silence(_id(silence_id))
        if silence is None:
            raise tornado.web.HTTPError(404, "%s", f"no silence {silence_id}")
        self.write_json(silence_json(silence, engine.clock()))


def _id(text: str) -> int:
    if len(text) > 18:
        raise tornado.web.HTTPError(404, "%s", f"no such id {text[:20]}...")
    return int(text)
