"""The widget views: which values each accepts, and the numbers the page shows."""

import math

import pytest

from dashboard.core.views import (
    MAX_LIST_ROWS,
    ValueRejected,
    accept,
    change,
    change_text,
    change_tone,
    format_number,
    graph_path,
    level,
    meter_fraction,
)

ACCEPTED = [
    ("number", 1, 1),
    ("number", -2.5, -2.5),
    ("number", 0, 0),
    ("number", 10**20, 10**20),
    ("meter", 99.9, 99.9),
    ("graph", 3, 3),
    ("text", "hello", "hello"),
    ("text", "", ""),
    ("text", "<script>alert(1)</script>", "<script>alert(1)</script>"),
    ("text", 42, "42"),
    ("text", 1.5, "1.5"),
    ("list", [], []),
    ("list", ["a", "b"], [{"label": "a"}, {"label": "b"}]),
    ("list", [["disk", 91.5], ("cpu", "high")], [{"label": "disk", "value": 91.5}, {"label": "cpu", "value": "high"}]),
    (
        "list",
        [{"label": "x", "value": 1}, {"label": "y"}, {"label": "z", "value": None}],
        [{"label": "x", "value": 1}, {"label": "y"}, {"label": "z"}],
    ),
    ("list", [{"label": 7, "value": 2, "extra": "dropped"}], [{"label": "7", "value": 2}]),
    ("list", ["r"] * MAX_LIST_ROWS, [{"label": "r"}] * MAX_LIST_ROWS),
    ("status", "ok", {"state": "ok"}),
    ("status", "down", {"state": "down"}),
    (
        "status",
        {"state": "warn", "latency_ms": 120, "code": 503, "detail": "slow", "other": 1},
        {"state": "warn", "latency_ms": 120, "code": 503, "detail": "slow"},
    ),
    ("status", {"state": "ok", "latency_ms": None, "detail": None}, {"state": "ok"}),
    # Text that spells a number is that number where the view wants one (Prometheus's API
    # sends "0.25"); integers stay integers.
    ("number", "5", 5),
    ("number", "-0.25", -0.25),
    ("meter", " 42 ", 42),
    ("graph", "1e3", 1000.0),
    ("graph", ".5", 0.5),
    ("number", "+7", 7),
    ("status", {"state": "ok", "latency_ms": "12", "code": "200"}, {"state": "ok", "latency_ms": 12, "code": 200}),
    ("text", "5", "5"),  # a text view keeps text
    ("list", [["a", "5"]], [{"label": "a", "value": "5"}]),
]


@pytest.mark.parametrize("view, value, stored", ACCEPTED)
def test_accept(view, value, stored):
    assert accept(view, value) == stored


REJECTED = [
    ("number", True, "expected a number, got true"),
    ("number", False, "expected a number, got false"),
    ("number", "five", "expected a number, got text 'five'"),
    ("number", "", "expected a number, got text ''"),
    ("number", "NaN", "expected a number, got text 'NaN'"),
    ("meter", "+Inf", "expected a number, got text '+Inf'"),
    ("graph", "0x1f", "expected a number, got text '0x1f'"),
    ("number", "1_000", "expected a number, got text '1_000'"),
    ("number", "5 %", "expected a number, got text '5 %'"),
    ("number", "1e999", "expected a number, got text '1e999'"),
    ("number", None, "expected a number, got null"),
    ("number", [1], "expected a number, got list"),
    ("number", float("nan"), "expected a finite number, got nan"),
    ("meter", float("inf"), "expected a finite number, got inf"),
    ("graph", -math.inf, "expected a finite number, got -inf"),
    ("text", None, "expected text, got null"),
    ("text", True, "expected text, got true"),
    ("text", {"a": 1}, "expected text, got dict"),
    ("text", ["x"], "expected text, got list"),
    ("text", math.inf, "expected text or a finite number, got inf"),  # JSON's 1e400
    ("list", [[math.nan, 1]], "expected text or a finite number, got nan"),
    ("status", {"state": "ok", "detail": -math.inf}, "expected text or a finite number, got -inf"),
    ("list", "a, b", "expected a list of rows, got text 'a, b'"),
    ("list", {"label": "x"}, "expected a list of rows, got dict"),
    ("list", ["r"] * (MAX_LIST_ROWS + 1), f"expected at most {MAX_LIST_ROWS} rows, got {MAX_LIST_ROWS + 1}"),
    ("list", [{"value": 1}], 'expected each list row to have a "label"'),
    ("list", [["a", float("nan")]], "expected a finite number, got nan"),
    ("list", [["a", True]], "expected text, got true"),
    ("list", [None], "expected text, got null"),
    ("status", "fine", 'expected "ok", "warn" or "down" (or an object with a "state"), got text \'fine\''),
    ("status", {"state": "OK"}, 'expected "ok", "warn" or "down" (or an object with a "state"), got dict'),
    ("status", 1, 'expected "ok", "warn" or "down" (or an object with a "state"), got 1'),
    ("status", {"state": "ok", "latency_ms": "fast"}, "expected a number, got text 'fast'"),
    ("status", {"state": "ok", "code": True}, "expected a number, got true"),
    ("clock", 1, "a clock shows the browser's time and takes no value"),
]


@pytest.mark.parametrize("view, value, message", REJECTED)
def test_accept_rejects_with_a_reason(view, value, message):
    with pytest.raises(ValueRejected) as info:
        accept(view, value)
    assert str(info.value) == message


STATES = {"green": "ok", "amber": "warn", "failed": "down", "1": "ok", "0": "down", "true": "ok", "null": "down"}


@pytest.mark.parametrize(
    "view, value, value_map, stored",
    [
        ("status", "green", STATES, {"state": "ok"}),
        ("status", "failed", STATES, {"state": "down"}),
        ("status", "ok", STATES, {"state": "ok"}),  # not listed: as it came
        ("status", 1, STATES, {"state": "ok"}),  # numbers by their JSON text
        ("status", 0.0, STATES, {"state": "down"}),  # 0.0 is "0"
        ("status", True, STATES, {"state": "ok"}),
        ("status", None, STATES, {"state": "down"}),
        ("status", {"state": "amber", "detail": "slow"}, STATES, {"state": "warn", "detail": "slow"}),
        ("number", "up", {"up": 1, "down": 0}, 1),
        ("number", "3", {"up": 1}, 3),  # not listed, and then a numeric string
        ("text", 2, {"2": "two"}, "two"),
        ("status", "green", None, None),
    ],
)
def test_a_map_turns_source_values_into_what_the_view_takes(view, value, value_map, stored):
    if stored is None:
        with pytest.raises(ValueRejected):
            accept(view, value, value_map)
    else:
        assert accept(view, value, value_map) == stored


def test_a_value_the_map_does_not_list_is_checked_as_it_came():
    with pytest.raises(ValueRejected) as info:
        accept("status", "activating", STATES)
    assert str(info.value) == 'expected "ok", "warn" or "down" (or an object with a "state"), got text \'activating\''


def test_a_long_text_is_cut_in_the_reason():
    with pytest.raises(ValueRejected) as info:
        accept("number", "y" * 100)
    assert str(info.value) == f"expected a number, got text '{'y' * 37}...'"


@pytest.mark.parametrize(
    "value, warn, crit, expected",
    [
        # rising: high is bad
        (10, 70, 90, "ok"),
        (70, 70, 90, "warn"),
        (89.9, 70, 90, "warn"),
        (90, 70, 90, "crit"),
        (200, 70, 90, "crit"),
        # falling: low is bad (free disk space)
        (50, 20, 10, "ok"),
        (20, 20, 10, "warn"),
        (15, 20, 10, "warn"),
        (10, 20, 10, "crit"),
        (-1, 20, 10, "crit"),
        # one threshold only: rising
        (80, 70, None, "warn"),
        (60, 70, None, "ok"),
        (95, None, 90, "crit"),
        (85, None, 90, "ok"),
        # no thresholds, or no number
        (1e9, None, None, "ok"),
        (None, 70, 90, "ok"),
        ("high", 70, 90, "ok"),
        (True, 0, 0, "ok"),
    ],
)
def test_level(value, warn, crit, expected):
    assert level(value, warn, crit) == expected


@pytest.mark.parametrize(
    "value, decimals, text",
    [
        (1234567, None, "1,234,567"),
        (0, None, "0"),
        (0.5, None, "0.5"),
        (0.92314159, None, "0.923142"),
        (1234.5, None, "1,234.5"),
        (12345678.9, None, "12,345,679"),
        (-0.25, None, "-0.25"),
        (0.9231, 4, "0.9231"),
        (2, 2, "2.00"),
        (1234.5678, 1, "1,234.6"),
        (99.5, 0, "100"),
        (None, 2, ""),
        ("n/a", 2, "n/a"),
        (True, None, "True"),
    ],
)
def test_format_number(value, decimals, text):
    assert format_number(value, decimals) == text


@pytest.mark.parametrize(
    "current, previous, expected",
    [
        (110, 100, ("up", 10.0)),
        (90, 100, ("down", -10.0)),
        (5, 5, ("flat", 0.0)),
        (-5, -10, ("up", 50.0)),
        (1, 0, ("up", None)),  # no percent of zero
        (-1, 0, ("down", None)),
        (1, None, ("flat", None)),
        (None, 1, ("flat", None)),
        (True, 1, ("flat", None)),
        ("2", 1, ("flat", None)),
    ],
)
def test_change(current, previous, expected):
    arrow, percent = change(current, previous)
    assert arrow == expected[0]
    assert percent == (pytest.approx(expected[1]) if expected[1] is not None else None)


@pytest.mark.parametrize(
    "value, low, high, fraction",
    [
        (50, 0, 100, 0.5),
        (150, 0, 100, 1.0),
        (-5, 0, 100, 0.0),
        (5, None, None, 0.05),
        (3, 2, 4, 0.5),
        (3, 4, 4, 0.0),
        (None, 0, 100, 0.0),
        (True, 0, 100, 0.0),
    ],
)
def test_meter_fraction(value, low, high, fraction):
    assert meter_fraction(value, low, high) == pytest.approx(fraction)


def test_graph_path_scales_points_into_the_box():
    points = [(0, 0), (5, 5), (10, 10)]
    assert graph_path(points, 100, 20) == "0.0,20.0 50.0,10.0 100.0,0.0"


def test_graph_path_with_fixed_bounds():
    assert graph_path([(0, 25), (1, 75)], 100, 100, low=0, high=100) == "0.0,75.0 100.0,25.0"
    # Values beyond the bounds are drawn beyond the box, not clipped into it.
    assert graph_path([(0, 150)], 10, 10, low=0, high=100) == "0.0,-5.0"


def test_graph_path_of_a_flat_line_or_a_single_point():
    assert graph_path([(0, 3), (1, 3)], 10, 10) == "0.0,5.0 10.0,5.0"
    assert graph_path([(7, 3)], 10, 10) == "0.0,5.0"


def test_graph_path_of_nothing():
    assert graph_path([], 100, 20) == ""


@pytest.mark.parametrize(
    "current, previous, unit, decimals, text",
    [
        (110, 100, "", None, "▲ +10.00%"),
        (90, 100, "ms", None, "▼ -10.00%"),
        (1, 0, "", None, "▲"),  # no percent of zero: the arrow alone
        (55.5, 53, "%", 0, "▲ +2.5 pts"),  # a percentage changes by points, not by a percent of itself
        (40, 50, "%", None, "▼ -10.0 pts"),
        (50, 50, "%", 2, "▬ +0.00 pts"),
        (None, 1, "%", None, ""),
        ("2", 1, "", None, ""),
    ],
)
def test_change_text(current, previous, unit, decimals, text):
    assert change_text(current, previous, unit, decimals) == text


@pytest.mark.parametrize(
    "arrow, warn, crit, tone",
    [
        ("up", 70, 90, "bad"),  # rising thresholds: high is bad
        ("down", 70, 90, "good"),
        ("up", 20, 10, "good"),  # falling thresholds (free disk): low is bad
        ("down", 20, 10, "bad"),
        ("up", 70, None, "bad"),  # one threshold reads as rising, as level() does
        ("up", None, None, "neutral"),  # no thresholds: a change is neither good nor bad
        ("down", None, None, "neutral"),
        ("flat", 70, 90, "neutral"),
    ],
)
def test_change_tone_follows_the_thresholds(arrow, warn, crit, tone):
    assert change_tone(arrow, warn, crit) == tone
