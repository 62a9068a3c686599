"""Typed reading of TOML tables, with errors that name the file and the key.

Generic: it knows nothing of dashboards. Source modules read their own options
with it too. Every problem becomes one ConfigError whose message names the file,
the key path (``widgets.cpu.every``, ``dashboards[0].id``), what was expected
and what was found, so the user can fix it without reading code.
"""

from __future__ import annotations  # Table has methods named str/int/bool

import builtins
import datetime
import math
import re
from collections.abc import Iterator, KeysView, Mapping
from typing import Any, overload


class ConfigError(Exception):
    """One clear, user-facing message, e.g.
    'config.toml: widgets.cpu.every: expected a duration like "5s", "2m" or "1h30m", got "fast"'."""


MISSING: Any = object()

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_DURATION_PART = r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)"  # "ms" before "m" and "s": tried in this order
_DURATION = re.compile(f"(?:{_DURATION_PART})+")
_DURATION_PARTS = re.compile(_DURATION_PART)
_DURATION_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}  # largest first
_SIZE = re.compile(r"([0-9]+)(B|KiB|MiB|GiB)")
_SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_RATE = re.compile(r"([0-9]+(?:\.[0-9]+)?)/(s|m|h)")
_RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_EXPECTED = 'a duration like "5s", "2m" or "1h30m"'
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token
LONGEST = "36600d"  # a hundred years: any duration in a config is at most this
LARGEST_INT = 2**53 - 1  # integers a config holds (exact as a float, and in JavaScript)
LARGEST_NUMBER = 1.7976931348623157e308  # numbers: what a float holds
_SHOW_MAX = 40  # got-values longer than this are cut, so one line stays one line

# --- formatting values and key paths for messages ---------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def quote(text: str) -> str:
    """Quote like a TOML basic string, so messages show values as written."""

    def esc(c: str) -> str:
        if c in _ESCAPES:
            return _ESCAPES[c]
        return f"\\u{ord(c):04x}" if _BREAKS.match(c) else c

    return '"' + "".join(map(esc, text)) + '"'


# What would break a message's one line, or hide in it: C0 and C1 controls, DEL, and the
# Unicode line and paragraph separators (str.splitlines() breaks at each of them).
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """The text with each character that would break a line as \\uXXXX (a file's name)."""
    return _BREAKS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def cut(text: str) -> str:
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def show(value: Any) -> str:
    """Render a got-value in TOML syntax (tables and arrays by kind only)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(cut(value))
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return cut(repr(value))  # int and float: repr matches TOML, incl. inf/nan


def join(path: str, key: str | int) -> str:
    """Extend a key path: ints are array indexes, odd keys are quoted as in TOML."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    part = key if _BARE_KEY.fullmatch(key) else quote(key)
    return f"{path}.{part}" if path else part


def error(file: str, path: str, message: str) -> ConfigError:
    return ConfigError(f"{file}: {path}: {message}" if path else f"{file}: {message}")


def range_text(kind: str, lo: Any, hi: Any) -> str:
    if lo is not None and hi is not None:
        return f"{kind} from {lo} to {hi}"
    if lo is not None:
        return f"{kind} >= {lo}"
    return f"{kind} <= {hi}" if hi is not None else kind


def _finite(value: int | float) -> bool:
    """What a float holds (math.isfinite() of an integer past it raises OverflowError)."""
    return math.isfinite(value) if isinstance(value, float) else -LARGEST_NUMBER <= value <= LARGEST_NUMBER


# --- scalar syntaxes ---------------------------------------------------------


def parse_duration(text: str) -> float:
    """ "500ms" "5s" "2m" "1h" "30d" "1.5s", and compounds like "1h30m" or "2m30s" ->
    seconds. Bare numbers, signs and spaces are rejected: a unit is required so "5"
    can't mean two things. In a compound the units go from the largest down, each
    once: "30m1h" or "1m1m" is more likely a slip than a wish."""
    if not isinstance(text, str) or _DURATION.fullmatch(text) is None:
        raise ValueError(f"not a duration: {text!r}")
    order = list(_DURATION_UNITS)
    seconds, previous = 0.0, -1
    for number, unit in _DURATION_PARTS.findall(text):
        if order.index(unit) <= previous:
            raise ValueError(f"not a duration: {text!r} (units go from the largest down, each once)")
        previous = order.index(unit)
        seconds += float(number) * _DURATION_UNITS[unit]
    if not math.isfinite(seconds):
        raise ValueError(f"duration too large: {text!r}")
    return seconds


def parse_size(text: str) -> int:
    """ "512B" "64KiB" "1MiB" "1GiB" -> bytes."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    return int(match[1]) * _SIZE_UNITS[match[2]]


# --- typed reading of one TOML table ------------------------------------------


class Table:
    """A TOML table with its dotted key path, for reading typed values with precise errors.
    Source modules use this to read their own options, so keep it general.

    Every key asked for is remembered (present or not), so done() can reject
    the keys nobody asked for and list the ones that are understood."""

    def __init__(self, file: builtins.str, path: builtins.str, data: Mapping[builtins.str, Any]):
        self.file = file
        self.path = path
        self._data = data
        self._asked: dict[builtins.str, None] = {}  # ordered set: schema order for messages

    def __repr__(self) -> builtins.str:
        return f"Table({self.file!r}, {self.path!r}, {dict(self._data)!r})"

    def keys(self) -> KeysView[builtins.str]:
        return self._data.keys()

    def __iter__(self) -> Iterator[builtins.str]:
        return iter(self._data)

    def __contains__(self, key: object) -> builtins.bool:
        return key in self._data

    def error(self, key: builtins.str, message: builtins.str) -> ConfigError:
        return error(self.file, join(self.path, key), message)

    def _get(self, key: builtins.str, default: Any, hint: builtins.str = "") -> tuple[builtins.bool, Any]:
        """(found, value); raises 'missing' when absent without a default."""
        self._asked[key] = None
        if key in self._data:
            return True, self._data[key]
        if default is MISSING:
            raise self.error(key, f"missing{hint}")
        return False, default

    def _expected(self, key: builtins.str, what: builtins.str, value: Any) -> ConfigError:
        return self.error(key, f"expected {what}, got {show(value)}")

    def raw(self, key: builtins.str, default: Any = MISSING) -> Any:
        return self._get(key, default)[1]

    def str(
        self, key: builtins.str, default: Any = MISSING, *, choices: tuple[builtins.str, ...] | None = None
    ) -> builtins.str:
        listing = f"one of: {', '.join(choices)}" if choices else ""
        found, value = self._get(key, default, f" (expected {listing})" if choices else "")
        if not found:
            return value
        if not isinstance(value, str):
            raise self._expected(key, listing or "a string", value)
        if choices and value not in choices:
            raise self._expected(key, listing, value)
        return value

    def int(
        self,
        key: builtins.str,
        default: Any = MISSING,
        *,
        min: builtins.int | None = None,
        max: builtins.int | None = None,
    ) -> builtins.int:
        found, value = self._get(key, default)
        if not found:
            return value
        # bool is a subclass of int in Python, but `port = true` is a mistake
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._expected(key, "an integer", value)
        self._check_range(key, "an integer", value, min, max)
        if not -LARGEST_INT <= value <= LARGEST_INT:
            lo, hi = -LARGEST_INT if min is None else min, LARGEST_INT if max is None else max
            raise self._expected(key, range_text("an integer", lo, hi), value)
        return value

    def number(
        self, key: builtins.str, default: Any = MISSING, *, min: float | None = None, max: float | None = None
    ) -> float | builtins.int:
        found, value = self._get(key, default)
        if not found:
            return value
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not _finite(value):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            raise self._expected(key, "a finite number" if number else "a number", value)
        self._check_range(key, "a number", value, min, max)
        return value

    def _check_range(self, key: builtins.str, kind: builtins.str, value: Any, lo: Any, hi: Any) -> None:
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self._expected(key, range_text(kind, lo, hi), value)

    def bool(self, key: builtins.str, default: Any = MISSING) -> builtins.bool:
        found, value = self._get(key, default)
        if found and not isinstance(value, bool):
            raise self._expected(key, "true or false", value)
        return value

    def duration(
        self,
        key: builtins.str,
        default: Any = MISSING,
        *,
        positive: builtins.bool = False,
        least: builtins.str | None = None,
        most: builtins.str = LONGEST,
    ) -> float:
        """Seconds from a string like "5s"; a default may be a string or seconds.
        positive=True rejects "0s" for things that must take some time; `least` and
        `most` bound it (durations as text, for the message). No duration is longer than
        LONGEST: a date that far off is past what the calendar holds."""
        found, value = self._get(key, default)
        if not found:
            return parse_duration(value) if isinstance(value, str) else value
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise self._expected(key, DURATION_EXPECTED, value) from None
        if positive and seconds <= 0:
            raise self._expected(key, "a duration greater than 0", value)
        if (least is not None and seconds < parse_duration(least)) or seconds > parse_duration(most):
            bounds = f'from "{least}" to "{most}"' if least is not None else f'of at most "{most}"'
            raise self._expected(key, f"a duration {bounds}", value)
        return seconds

    def size(self, key: builtins.str, default: Any = MISSING) -> builtins.int:
        """Bytes, from an int or a size string like "64KiB"."""
        value = size = self.raw(key, default)
        if isinstance(value, str) and _SIZE.fullmatch(value):
            size = parse_size(value)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise self.error(key, f'expected a size like "64KiB", "1MiB" or "512B", got {show(value)}')
        return size

    def headers(self, key: builtins.str = "headers") -> dict[builtins.str, builtins.str]:
        """A table of HTTP request headers: names that are RFC 9110 tokens, values with no
        line break or NUL (which would end the header and start another)."""
        table = self.table(key, {})
        headers = {}
        for name in table:
            value = table.str(name)
            if not _HEADER_NAME.fullmatch(name):
                raise table.error(name, "expected a header name (letters, digits and -)")
            if any(c in value for c in "\r\n\0"):  # the value may be a secret: not echoed
                raise table.error(name, "a header value cannot contain line breaks or NUL")
            headers[name] = value
        return headers

    def environment(self, key: builtins.str = "env") -> dict[builtins.str, builtins.str]:
        """Environment variables for a program: the OS takes NAME=value pairs, so a name
        with "=" (or none) would fail every run. (No string in a config holds a NUL:
        check_scalars.)"""
        table = self.table(key, {})
        env = {}
        for name in table:
            if not name or "=" in name:
                raise table.error(name, 'expected a variable name (not empty, without "=")')
            env[name] = table.str(name)
        return env

    def rate(self, key: builtins.str, default: Any = MISSING) -> float:
        """Events per second, from "10/s", "30/m" or "100/h"."""
        value = self.raw(key, default)
        match = _RATE.fullmatch(value) if isinstance(value, str) else None
        rate = float(match[1]) / _RATE_UNITS[match[2]] if match else 0.0
        if not (rate > 0 and math.isfinite(rate)):
            raise self.error(key, f'expected a rate like "10/s", "30/m" or "100/h", got {show(value)}')
        return rate

    @overload
    def str_list(self, key: builtins.str, default: None) -> tuple[builtins.str, ...] | None: ...

    @overload
    def str_list(
        self, key: builtins.str, default: tuple[builtins.str, ...] | list[builtins.str] = ...
    ) -> tuple[builtins.str, ...]: ...

    def str_list(self, key: builtins.str, default: Any = MISSING) -> tuple[builtins.str, ...] | None:
        found, value = self._get(key, default)
        if not found:
            return tuple(value) if value is not None else value  # None: the caller's "not given"
        if not isinstance(value, list):
            raise self._expected(key, "an array of strings", value)
        for index, item in enumerate(value):
            if not isinstance(item, str):
                where = join(join(self.path, key), index)
                raise error(self.file, where, f"expected a string, got {show(item)}")
        return tuple(value)

    def table(self, key: builtins.str, default: Any = MISSING) -> Table:
        """A sub-table; a dict default (e.g. {}) is wrapped, None is returned as is."""
        found, value = self._get(key, default)
        if not found and not isinstance(value, Mapping):
            return value
        if not isinstance(value, Mapping):
            raise self._expected(key, "a table", value)
        return Table(self.file, join(self.path, key), value)

    def done(self) -> None:
        """Reject the first key that nobody asked for (a typo, usually)."""
        for key in self._data:
            if key not in self._asked:
                known = f" (expected one of: {', '.join(self._asked)})" if self._asked else ""
                raise error(self.file, self.path, f"unknown key {quote(key)}{known}")


def check_scalars(value: Any, file: str, path: str = "") -> None:
    """Reject, anywhere in a document, what no part of the server can use: inf and nan
    (JSON has no such numbers: a page's data would not parse), and NUL in a string or
    key (the OS refuses it in a program's arguments, environment and paths; the HTML
    parser drops it). Found here, `check` reports it instead of a run failing later."""
    if isinstance(value, float) and not math.isfinite(value):
        raise error(file, path, f"expected a finite number, got {show(value)}")
    if isinstance(value, str) and "\0" in value:
        # Not echoed: the string may be a secret (a token, a password).
        raise error(file, path, "expected text without NUL (\\u0000)")
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = join(path, key)
            if "\0" in key:
                raise error(file, where, "expected a key without NUL (\\u0000)")
            check_scalars(item, file, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_scalars(item, file, join(path, index))


def table_array(parent: Table, key: str) -> list[Table]:
    """Read an array of tables ([[key]]) as Tables addressed key[0], key[1], ..."""
    value = parent.raw(key, [])
    if not isinstance(value, list):
        raise parent.error(key, f"expected an array of tables, got {show(value)}")
    path = join(parent.path, key)
    tables = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise error(parent.file, join(path, index), f"expected a table, got {show(item)}")
        tables.append(Table(parent.file, join(path, index), item))
    return tables
