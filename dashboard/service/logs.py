"""Log lines that stay lines: what a client sent (a name, an address, a header) can reach
a message, and a line break in it would let the client write a line of its own, at a
level of its choosing. Control characters in a message are written as escapes; only a
traceback, which the formatter adds after the message, spans lines."""

from __future__ import annotations

import logging
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """The text with every control character (line breaks, NUL, escape ...) as \\xNN."""
    return _CONTROL.sub(_escape, text) if not text.isprintable() else text


class LineFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)  # format() sets it afresh for every handler
        return super().formatMessage(record)
