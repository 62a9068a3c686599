"""GET /badge/<widget>.svg: a small status badge (label and value, shields-style) for a
README, a wiki or a chat topic, coloured by the widget's level.

- Every piece of text in it is the widget's title or value: user text, escaped for
  XML (and stripped of what XML 1.0 cannot hold: NUL and other C0 controls, lone
  surrogates, U+FFFE/U+FFFF), cut to a badge's length, on one line. No script, no
  style attribute, nothing loaded from anywhere: the page's CSP applies as to
  every answer.
- A widget the requester may not see answers 404, exactly like one that does not
  exist: an image embedded in a public page is fetched without credentials, and
  must tell a stranger neither the value nor that the widget exists. A read token
  ([auth] readers) in the Authorization header may see what its rule allows.
- Cache-Control of a few seconds (private for a widget only some viewers see),
  and an ETag: Tornado hashes the body and answers a matching If-None-Match with
  304, so a badge polled by many readers costs little when nothing changed.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import markupsafe
import tornado.web

from ..core import auth, views
from ..core.samples import Sample
from .base import BaseHandler

MAX_AGE = 5  # seconds
MAX_TEXT = 48  # characters of a label or value before it is cut with "…"
HEIGHT = 20
PADDING = 6  # pixels left and right of each text
COLOURS = {"ok": "#2e8540", "warn": "#b7791f", "crit": "#c5221f"}
INFO = "#1a66d9"  # a value with no level to show (text, a list, a number without thresholds)
GREY = "#6b7685"  # no data, a failing source, a clock
LABEL = "#4a5261"
# Characters XML 1.0 cannot hold (besides TAB, LF, CR), lone surrogates, and the two non-characters.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_LINE_BREAKS = re.compile("[\t\n\r\x85\u2028\u2029]+")


def badge_text(text: str) -> str:
    """One line of at most MAX_TEXT characters that XML can hold (not yet escaped)."""
    text = _NOT_XML.sub("\ufffd", _LINE_BREAKS.sub(" ", text)).strip()
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def text_width(text: str) -> float:
    """About how wide `text` is in 11 px Verdana: a badge has no layout engine to ask."""
    width = 0.0
    for char in text:
        if char in "iIl.,:;|!'`":
            width += 3.5
        elif char in "mwMW@%":
            width += 10.5
        elif unicodedata.east_asian_width(char) in ("W", "F") or ord(char) > 0xFFFF:
            width += 12.0
        elif char.isupper() or char.isdigit():
            width += 7.5
        else:
            width += 6.5
    return width


def value_text(widget, sample: Sample | None) -> str:
    if sample is None:
        return "no data"
    if sample.status != "ok":
        return "error"
    value: Any = sample.value
    if widget.view == "status" and isinstance(value, dict):
        return str(value.get("state", ""))
    if widget.view == "list" and isinstance(value, list):
        return f"{len(value)} row{'s' if len(value) != 1 else ''}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = views.format_number(value, widget.decimals)
        unit = widget.unit
        return f"{number}{' ' if unit[:1].isalnum() else ''}{unit}" if unit else number
    return "" if value is None else str(value)


def colour(widget, sample: Sample | None) -> str:
    if sample is None or sample.status != "ok" or not views.VIEWS[widget.view].values:
        return GREY
    view = views.VIEWS[widget.view]
    if view.states is None and widget.warn is None and widget.crit is None:
        return INFO
    return COLOURS.get(view.level(sample.value, widget.warn, widget.crit), INFO)


def render_badge(label: str, value: str, fill: str) -> str:
    label, value = badge_text(label), badge_text(value) or "—"
    left = round(text_width(label) + 2 * PADDING)
    right = round(text_width(value) + 2 * PADDING)
    width = left + right
    title = markupsafe.escape(f"{label}: {value}")
    label_x, value_x = left / 2, left + right / 2
    e = markupsafe.escape
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" role="img" aria-label="{title}">'
        f"<title>{title}</title>"
        f'<clipPath id="r"><rect width="{width}" height="{HEIGHT}" rx="3"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left}" height="{HEIGHT}" fill="{LABEL}"/>'
        f'<rect x="{left}" width="{right}" height="{HEIGHT}" fill="{fill}"/></g>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{label_x:g}" y="14">{e(label)}</text><text x="{value_x:g}" y="14">{e(value)}</text>'
        "</g></svg>\n"
    )


class BadgeHandler(BaseHandler):
    async def get(self, widget_id: str) -> None:
        widget = self.config.widgets.get(widget_id)
        if widget is None or not auth.widget_visible(self.config, widget_id, self.viewers):
            # The same answer for both: a stranger learns nothing, not even that it exists.
            raise tornado.web.HTTPError(404, "There is no such badge.")
        runtime = self.runtime
        assert runtime is not None  # initialize() sets it
        sample = (await runtime.store.shown([widget])).get(widget.id)
        public = auth.widget_visible(self.config, widget_id, {})
        self.set_header("Content-Type", "image/svg+xml; charset=utf-8")
        self.set_header("Cache-Control", f"{'public' if public else 'private'}, max-age={MAX_AGE}")
        if not public:
            self.set_header("Vary", "Authorization, Cookie")
        self.finish(render_badge(widget.title, value_text(widget, sample), colour(widget, sample)))
