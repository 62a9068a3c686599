"""What any widget value may be, whatever its view: the part of views.accept that
every view shares, and the check of what is read back from the database.

Every value that comes in (a push, a source, an import) passes views.accept(),
which asks the view first and then showable() here: so the database, the page
and the stream all hold the same value, and each can carry and show it.

- Text is valid Unicode with no NUL. A lone surrogate (JSON "\\ud800") has no
  UTF-8 form: SQLite refuses it, the page cannot be encoded, and the stream would
  send an escape that the browser keeps. NUL is dropped by the HTML parser but
  shown by textContent, so a freshly rendered page and an open one would differ.
  Both become U+FFFD, the character that says "something was here".
- Numbers are finite and within what a browser holds (a JavaScript number is an
  IEEE double). An integer beyond 2**53 is kept as the nearest float, which is
  exactly what the page shows of it; beyond the double range it is refused.
- A value is at most MAX_DEPTH containers deep and MAX_VALUE_BYTES large as
  JSON: every sample is kept in the hub's buffers and sent to every open page.
- Object keys are text (JSON has no other kind; a dict with int keys would come
  back from the database as something else than what was published).

A stored value is checked again when it is read (checked_sample): rows written
before these checks, or by another process, must not take a page, a stream or
the server's start down. What cannot be shown becomes an error on its widget.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from typing import Any

from .samples import ERROR, Sample

MAX_DEPTH = 8  # containers in containers (a list view's rows are 2)
MAX_VALUE_BYTES = 256 * 1024  # as JSON, about: a long text (a log tail, a 100 KB report) fits
MAX_MESSAGE = 1000  # characters of an error message; longer ones are cut
MAX_EXACT_INTEGER = 2**53  # the largest integer a JavaScript number holds exactly
REPLACEMENT = "\ufffd"
_UNSHOWABLE = re.compile("[\x00\ud800-\udfff]")


class ValueRejected(ValueError):
    """The value does not fit the widget's view, or cannot be shown at all; str() says why."""


class Unreadable:
    """A stored value the database handed back but that is not JSON (see store.py)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unreadable({self.reason!r})"


def clean_text(text: str) -> str:
    """The text with each lone surrogate and each NUL replaced by U+FFFD."""
    if text.isascii():  # the common case, and no surrogate in it: two passes in C
        return text.replace("\x00", REPLACEMENT) if "\x00" in text else text
    return _UNSHOWABLE.sub(REPLACEMENT, text) if _UNSHOWABLE.search(text) else text


def clean_message(message: Any) -> str | None:
    """An error message as the page and the stream show it: clean text, cut to MAX_MESSAGE;
    None for none at all (an empty one too: the stream leaves it out)."""
    if message is None or message == "":
        return None
    if isinstance(message, bytes):  # a row another program wrote as a BLOB
        message = message.decode("utf-8", "replace")
    text = clean_text(message if isinstance(message, str) else str(message))
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def guarded(view_accept: Callable[[Any], Any], value: Any) -> Any:
    """view_accept(value), with whatever else a hostile value makes it raise (an
    integer of 5000 digits has no str(), say) turned into ValueRejected."""
    try:
        return view_accept(value)
    except ValueRejected:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise ValueRejected(f"cannot be shown: {type(exc).__name__}: {exc}") from None


def showable(value: Any) -> Any:
    """The value as every part can carry and show it (see the module docstring), or
    ValueRejected. Tuples become lists, as JSON would make them."""
    budget = [MAX_VALUE_BYTES]  # bytes left; the hot paths subtract, and it is checked at the end
    shown = _showable(value, 0, budget)
    _take(budget, 0)
    return shown


def _take(budget: list[int], size: int) -> None:
    budget[0] -= size
    if budget[0] < 0:
        raise ValueRejected(f"too large: more than {MAX_VALUE_BYTES // 1024} KiB as JSON")


def _showable(value: Any, depth: int, budget: list[int]) -> Any:
    kind = type(value)  # exact types first: this runs for every sample
    if kind is str:
        text = clean_text(value)
        budget[0] -= 2 + (len(text) if text.isascii() else len(text.encode("utf-8")))
        if budget[0] < 0:
            _take(budget, 0)
        return text
    if kind is float:
        if not math.isfinite(value):
            raise ValueRejected(f"expected a finite number, got {value}")
        budget[0] -= 24
        return value
    if kind is int and -MAX_EXACT_INTEGER <= value <= MAX_EXACT_INTEGER:
        budget[0] -= 24
        return value
    if kind is int:
        return _number(value, budget)
    if value is None or kind is bool:
        _take(budget, 5)
        return value
    if kind is dict or kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            raise ValueRejected(f"nested too deeply: at most {MAX_DEPTH} levels of lists and objects")
        _take(budget, 2)
        if kind is dict:
            return {_key(key, budget): _showable(item, depth + 1, budget) for key, item in value.items()}
        return [_showable(item, depth + 1, budget) for item in value]
    return _showable_subclass(value, depth, budget)


def _showable_subclass(value: Any, depth: int, budget: list[int]) -> Any:
    """What a Python source may return beyond JSON's own types: subclasses of them
    (an IntEnum, an OrderedDict) as their base type; anything else is refused."""
    if isinstance(value, bool):
        return _showable(bool(value), depth, budget)
    for base in (str, int, float, dict, list, tuple):
        if isinstance(value, base):
            original: Any = value  # (not narrowed: each base takes it)
            return _showable(base(original), depth, budget)
    if isinstance(value, Unreadable):
        raise ValueRejected(value.reason)
    raise ValueRejected(f"cannot be shown: {type(value).__name__} is not a JSON value")


def _key(key: Any, budget: list[int]) -> str:
    if not isinstance(key, str):
        raise ValueRejected(f"expected text keys in an object, got {_shown(key)}")
    text = clean_text(key)
    budget[0] -= 3 + (len(text) if text.isascii() else len(text.encode("utf-8")))
    return text


def _number(value: int | float, budget: list[int]) -> int | float:
    if isinstance(value, int) and abs(value) > MAX_EXACT_INTEGER:
        try:
            value = float(value)  # what the page holds of it anyway
        except OverflowError:
            raise ValueRejected(
                f"expected a number the page can show (at most about 1.8e308), got {_shown(value)}"
            ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueRejected(f"expected a finite number, got {value}")
    _take(budget, 24)
    return value


def _shown(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**40:
        try:
            return f"an integer of {len(str(abs(value)))} digits"
        except ValueError:  # beyond sys.get_int_max_str_digits()
            return "an integer of thousands of digits"
    try:
        shown = json.dumps(value) if isinstance(value, (int, float, str)) else type(value).__name__
    except ValueError:
        shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def checked_sample(sample: Sample) -> Sample:
    """A sample read back from the database, as every part can show it: its message
    cleaned; a value that cannot be shown replaced by an error that says why."""
    value, kind = sample.value, type(sample.value)
    if sample.message is None and (
        (kind is float and math.isfinite(value)) or (kind is int and -MAX_EXACT_INTEGER <= value <= MAX_EXACT_INTEGER)
    ):
        return sample  # most rows (a history of a graph, say): a plain number
    message = clean_message(sample.message)
    try:
        value = showable(sample.value)
    except ValueRejected as exc:
        return dataclasses.replace(
            sample, value=None, status=ERROR, message=clean_message(f"the stored value cannot be shown: {exc}")
        )
    if value is sample.value and message is sample.message:
        return sample
    return dataclasses.replace(sample, value=value, message=message)


def fitting_sample(sample: Sample, view: str, accept: Callable[[str, Any], Any]) -> Sample:
    """The sample as a widget of `view` shows it: a stored value that view does not take
    (written for another view before the config changed, or by another process) becomes
    an error on the widget. `accept` is views.accept, which takes its own output as it is."""
    if sample.value is None and sample.status != "ok":
        return sample  # a failure with no value to keep
    try:
        accept(view, sample.value)
    except ValueRejected as exc:
        message = clean_message(f"the stored value cannot be shown by this {view}: {exc}")
        return dataclasses.replace(sample, value=None, status=ERROR, message=message)
    return sample
