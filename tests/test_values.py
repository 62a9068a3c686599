"""What any widget value may be, whatever its view (core/values.py, applied by
views.accept): text every part can carry alike, numbers the page can show, a bounded
size and depth; and what a stored value becomes when it is read back."""

from __future__ import annotations

import enum
import json
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.core.samples import Sample
from dashboard.core.values import (
    MAX_DEPTH,
    MAX_EXACT_INTEGER,
    MAX_MESSAGE,
    MAX_VALUE_BYTES,
    Unreadable,
    ValueRejected,
    checked_sample,
    clean_message,
    clean_text,
    showable,
)
from dashboard.core.views import VIEWS, accept
from tests.strategies import values


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


ACCEPTED = [
    # Lone surrogates and NUL become U+FFFD, in values, rows, details and keys alike.
    ("text", "a\ud800b", "a\ufffdb"),
    ("text", "\udfff", "\ufffd"),
    ("text", "a\x00b", "a\ufffdb"),
    ("text", "😀 stays", "😀 stays"),
    ("text", "\r\n\t\x01\x7f stay", "\r\n\t\x01\x7f stay"),
    ("list", [["\ud83d", "\x00"]], [{"label": "\ufffd", "value": "\ufffd"}]),
    ("status", {"state": "ok", "detail": "x\ud800"}, {"state": "ok", "detail": "x\ufffd"}),
    # Integers past 2**53 are kept as the nearest float: what a browser holds of them.
    ("number", MAX_EXACT_INTEGER, MAX_EXACT_INTEGER),
    ("number", MAX_EXACT_INTEGER + 1, float(MAX_EXACT_INTEGER + 1)),
    ("number", -(10**300), -1e300),
    ("number", 1.7976931348623157e308, 1.7976931348623157e308),
    ("text", 10**300, "1" + "0" * 300),  # as text it is exact
    ("list", [["big", 10**20]], [{"label": "big", "value": 1e20}]),
    ("list", [("a", 1)], [{"label": "a", "value": 1}]),  # tuples become lists, as JSON makes them
    # What a Python source may return: subclasses of JSON's types become those types.
    ("number", Level.HIGH, 3),
    ("text", Name("a\x00"), "a\ufffd"),
]


@pytest.mark.parametrize("view, value, stored", ACCEPTED)
def test_accept_cleans_text_and_numbers(view, value, stored):
    shown = accept(view, value)
    assert shown == stored
    assert type(shown) is type(stored)


REJECTED = [
    ("number", 10**310, "expected a number the page can show (at most about 1.8e308), got an integer of 311 digits"),
    ("meter", -(10**400), "expected a number the page can show (at most about 1.8e308), got an integer of 401 digits"),
    (
        "graph",
        10**5000,
        "expected a number the page can show (at most about 1.8e308), got an integer of thousands of digits",
    ),
    ("status", {"state": "ok", "code": 10**400}, "expected a number the page can show"),
    ("list", [["x", math.inf]], "expected a finite number, got inf"),
    # str() of an integer this long raises ValueError: the view's own check never ran to the end
    ("text", 10**5000, "cannot be shown: ValueError: Exceeds the limit"),
    ("text", "x" * (MAX_VALUE_BYTES + 1), f"too large: more than {MAX_VALUE_BYTES // 1024} KiB as JSON"),
    ("text", "é" * (MAX_VALUE_BYTES // 2 + 1), f"too large: more than {MAX_VALUE_BYTES // 1024} KiB as JSON"),
    ("list", [["x" * 800, "y" * 800]] * 200, "too large"),  # 200 rows of 1,600 characters: 320 KB
]


@pytest.mark.parametrize("view, value, message", REJECTED, ids=[f"{r[0]}-{i}" for i, r in enumerate(REJECTED)])
def test_accept_refuses_what_cannot_be_shown_with_a_reason(view, value, message):
    with pytest.raises(ValueRejected) as info:
        accept(view, value)
    assert str(info.value).startswith(message)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    "value, message",
    [
        ([[[[[[[[[1]]]]]]]]], f"nested too deeply: at most {MAX_DEPTH} levels of lists and objects"),
        ({1: "x"}, "expected text keys in an object, got 1"),
        ({"a": b"x"}, "cannot be shown: bytes is not a JSON value"),
        (float("nan"), "expected a finite number, got nan"),
        (Unreadable("not JSON: Expecting value"), "not JSON: Expecting value"),
    ],
)
def test_showable_refuses_what_json_or_the_page_cannot_hold(value, message):
    with pytest.raises(ValueRejected) as info:
        showable(value)
    assert str(info.value) == message


def test_the_size_counts_numbers_and_keys_too():
    assert len(showable([1.5] * 2000)) == 2000
    # 256 KiB: 1.5 is 5 bytes with its comma; a key of 9-11 characters with its null, about 18.
    for too_large in ([1.5] * 60_000, {f"key {i}": None for i in range(20_000)}):
        with pytest.raises(ValueRejected, match="too large"):
            showable(too_large)


def test_clean_text_and_messages():
    assert clean_text("plain") == "plain"
    assert clean_text("\ud800\x00\udc00") == "\ufffd\ufffd\ufffd"
    assert clean_message(None) is None and clean_message("") is None
    assert clean_message("bad \ud800") == "bad \ufffd"
    assert clean_message(b"\xff blob") == "\ufffd blob"
    long = clean_message("x" * (MAX_MESSAGE * 3))
    assert len(long) == MAX_MESSAGE and long.endswith("…")


def sample(value, message=None, status="ok"):
    return Sample(7, "w", datetime(2026, 1, 1, tzinfo=UTC), value, status, message)


def test_a_stored_value_that_cannot_be_shown_becomes_an_error_that_says_why():
    for stored, reason in [
        (math.nan, "expected a finite number, got nan"),
        (Unreadable("not JSON: Expecting value"), "not JSON: Expecting value"),
        (10**400, "expected a number the page can show"),
    ]:
        checked = checked_sample(sample(stored))
        assert (checked.value, checked.status) == (None, "error")
        assert checked.message.startswith(f"the stored value cannot be shown: {reason}")
    fine = sample(1.5)
    assert checked_sample(fine) is fine
    assert checked_sample(sample("a\ud800", "m\x00", "error")) == sample("a\ufffd", "m\ufffd", "error")


# --- properties -----------------------------------------------------------------------------

hostile_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=50)
hostile_numbers = (
    st.integers(-(10**400), 10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([2**53, 2**53 + 1, -(2**63), 10**308, 10**309, 1.7976931348623157e308])
)
hostile_scalars = st.none() | st.booleans() | hostile_numbers | hostile_text
hostile_values = values(hostile_scalars, hostile_text, size=5, leaves=20)
hostile_inputs = (
    hostile_values
    | st.lists(st.fixed_dictionaries({"label": hostile_text, "value": hostile_values}), max_size=5)
    | st.fixed_dictionaries(
        {"state": st.sampled_from(["ok", "warn", "down"]), "detail": hostile_text, "code": hostile_numbers}
    )
)


@settings(max_examples=400, deadline=None)
@given(view=st.sampled_from(sorted(VIEWS)), value=hostile_inputs)
def test_what_a_view_accepts_every_part_can_carry_and_is_accepted_again_unchanged(view, value):
    try:
        shown = accept(view, value)
    except ValueRejected as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    text = json.dumps(shown, ensure_ascii=False, allow_nan=False)  # JSON has it: no NaN, no Infinity
    text.encode("utf-8")  # no lone surrogate
    assert "\x00" not in text and len(text.encode()) <= MAX_VALUE_BYTES + 1024
    assert json.loads(text) == shown  # the database gives back what was published
    for number in _numbers(shown):
        assert math.isfinite(number) and abs(float(number)) <= 1.7976931348623157e308
        assert not isinstance(number, int) or abs(number) <= MAX_EXACT_INTEGER
    # The page re-checks a stored value against its view (web/pages.py): what the view
    # took once, it must take again as it is.
    assert accept(view, shown) == shown


def _numbers(value):
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
