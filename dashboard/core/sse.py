"""Server-Sent Events wire format: an encoder and a spec-exact incremental decoder.

Pure functions and a small state machine; no I/O and no Tornado, stdlib only.
The decoder follows the WHATWG HTML standard, "Server-sent events",
section "Parsing an event stream" / "Interpreting an event stream".

Deliberate choices:

* Data is split into ``data:`` lines only on CRLF, CR and LF, the three line
  endings the spec knows.  ``str.splitlines()`` would also split on \\x0b,
  \\x0c, \\x1c-\\x1e, \\x85, U+2028 and U+2029; a browser would then receive
  "\\n" where the caller sent one of those characters.
* The stream must be UTF-8, and a lone surrogate (which a Python str can hold,
  e.g. from ``json.loads('"\\\\ud800"')``) has no UTF-8 encoding.  Each one is
  replaced with U+FFFD rather than raising, so that one bad value cannot kill
  a stream shared by many clients, and rather than dropped, so the loss stays
  visible (U+FFFD is also what the client's decoder substitutes for bad bytes).
* ``id`` and ``event`` values containing CR, LF or NUL are refused: they
  cannot be represented (a line break would end the field early, and the
  decoder ignores an ``id`` containing NUL).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = [
    "Decoder",
    "Event",
    "decode",
    "encode_comment",
    "encode_event",
    "encode_retry",
]

_LINE_END = re.compile(r"\r\n|\r|\n")
_SURROGATE = re.compile("[\ud800-\udfff]")
_BOM = "\ufeff"
_NEXT_DATA = "\ndata: "
_NEXT_COMMENT = "\n: "


# --- encoding ---------------------------------------------------------------


def _to_utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Rare path: the "replace" error handler would give "?", not U+FFFD.
        return _SURROGATE.sub("\ufffd", text).encode("utf-8")


def _normalize_newlines(text: str) -> str:
    # Checked first: data without CR (the common case) is not copied at all.
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _single_line(field: str, value: str) -> str:
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError(f"SSE {field} must not contain CR, LF or NUL: {value!r}")
    return value


def _check_retry(ms: int) -> int:
    # bool is an int subclass, but retry=True is a bug, not 1 ms.
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
        raise ValueError(f"SSE retry must be a non-negative int, got {ms!r}")
    return ms


def _header(event: str | None, id: str | int | None, retry: int | None) -> str:
    header = ""
    if id is not None:
        header += f"id: {_single_line('id', str(id))}\n"
    if event is not None:
        header += f"event: {_single_line('event', event)}\n"
    if retry is not None:
        header += f"retry: {_check_retry(retry)}\n"
    return header


def encode_event(
    data: str,
    *,
    event: str | None = None,
    id: str | int | None = None,
    retry: int | None = None,
) -> bytes:
    # Hot path: one f-string (the only join) and one encode; the optional
    # fields cost a call only when present.
    header = "" if id is None and event is None and retry is None else _header(event, id, retry)
    body = _normalize_newlines(data).replace("\n", _NEXT_DATA)
    return _to_utf8(f"{header}data: {body}\n\n")


def encode_comment(text: str = "") -> bytes:
    if not text:
        return b":\n\n"
    body = _normalize_newlines(text).replace("\n", _NEXT_COMMENT)
    return _to_utf8(f": {body}\n\n")


def encode_retry(ms: int) -> bytes:
    return f"retry: {_check_retry(ms)}\n\n".encode("ascii")


# --- decoding ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    type: str = "message"
    data: str = ""
    last_event_id: str = ""


class Decoder:
    """Incremental, spec-exact parser of a text/event-stream byte stream."""

    def __init__(self) -> None:
        self.retry: int | None = None
        self.last_event_id: str = ""
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_start = True  # no text decoded yet: a BOM may still come
        self._after_cr = False  # last text ended in CR: a leading LF belongs to it
        self._partial: list[str] = []  # pieces of the unterminated last line
        self._data: list[str] = []  # the data buffer, one item per data field
        self._event_type = ""
        self._partial_size = 0
        self._data_size = 0

    @property
    def pending(self) -> int:
        """Characters held for an event not yet dispatched: its data so far and the
        unterminated last line. A reader bounds it against an upstream that never ends
        a line or an event."""
        return self._partial_size + self._data_size

    def feed(self, chunk: bytes) -> list[Event]:
        text = self._utf8.decode(chunk)
        if not text:
            return []  # nothing decoded yet (e.g. half a UTF-8 sequence)
        if self._at_start:
            self._at_start = False
            if text[0] == _BOM:
                text = text[1:]
        if self._after_cr:
            self._after_cr = False
            if text[0] == "\n":
                text = text[1:]
        if "\n" not in text and "\r" not in text:
            # No line ends: keep a list, so a long line fed in small chunks
            # costs linear, not quadratic, time.
            if text:
                self._partial.append(text)
                self._partial_size += len(text)
            return []
        lines = _LINE_END.split(text)
        if self._partial:
            self._partial.append(lines[0])
            lines[0] = "".join(self._partial)
        tail = lines.pop()
        self._partial = [tail] if tail else []
        self._partial_size = len(tail)
        self._after_cr = text[-1] == "\r"
        return self._process(lines)

    def close(self) -> list[Event]:
        # The spec discards whatever is pending at end of stream: a line with
        # no line end, and an event not yet ended by a blank line.
        self._utf8.reset()  # drops any half-received UTF-8 sequence
        self._partial = []
        self._data = []
        self._partial_size = self._data_size = 0
        self._event_type = ""
        self._after_cr = False
        return []

    def _process(self, lines: list[str]) -> list[Event]:
        events = []
        for line in lines:
            if not line:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
            elif line[0] != ":":  # a leading colon marks a comment
                field, _, value = line.partition(":")
                if value[:1] == " ":
                    value = value[1:]
                self._field(field, value)
        return events

    def _field(self, name: str, value: str) -> None:
        if name == "data":
            self._data.append(value)
            self._data_size += len(value) + 1
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        # "Only ASCII digits": isdigit() alone would accept e.g. "²" or "٣";
        # an empty value is ignored too, as browsers do.
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        # Any other field name is ignored.

    def _dispatch(self) -> Event | None:
        data, self._data = self._data, []
        self._data_size = 0
        event_type, self._event_type = self._event_type, ""
        if not data:  # the data buffer is empty: reset, fire nothing
            return None
        # The buffer is each value + LF, minus the final LF: a join does both.
        return Event(event_type or "message", "\n".join(data), self.last_event_id)


def decode(stream: bytes) -> list[Event]:
    decoder = Decoder()
    return decoder.feed(stream) + decoder.close()
