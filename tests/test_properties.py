"""Properties over generated input:

- any TOML document near a valid config gives a Config or a clean ConfigError;
- any request to the push API gets one of its documented statuses, never a 5xx,
  and a 4xx stores nothing;
- any text travels through the SSE encoder and the spec-exact decoder intact,
  as one event with no field added;
- a value's JSON and a sample's are byte for byte what json.dumps makes of them.
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import string
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from dashboard.config import ConfigError, load_config
from dashboard.core.samples import Sample, value_json
from dashboard.core.sse import Decoder, Event, decode, encode_event
from dashboard.hub.memory import encode_sample
from tests.configs import dashboard, loopback_server, push_widget, push_widgets, table, toml_value, widget
from tests.helpers import TOKEN, wait_until, write_config
from tests.strategies import values
from tests.test_auth import ALICE_HASH, LOBBY_TOKEN, SECRET
from tests.webclient import WebClient

FIXTURES_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

# --- the config loader ----------------------------------------------------------------------

# Per table: the keys it knows and values that are right, nearly right, or plainly wrong.
DURATIONS = ["5s", "0s", "1h", "500ms", "1.5m", "fast", "", "-1s", "400d", "401d"]
SIZES = ["64KiB", "1MiB", "512B", "0B", "1kb", 0, 1, 10**12, -5]
NAMES = ["alice", "bob", "lobby", "hall", "carol@example.org", "", "al ice", "x" * 70]
TOKENS = [TOKEN, LOBBY_TOKEN, "short", "kiosk-token-other-0123456789", "", "${T}", "${MISSING}", "$${x}"]
STRINGS = ["", "x", "main", "${T}", "${T:-d}", "${", "\u2028", "\x00", "'self'", "'none'", "https:"]

TABLES: dict[str, dict[str, list]] = {
    "server": {
        "host": ["127.0.0.1", "0.0.0.0", "::1", "", "nohost"],
        "port": [0, 8888, -1, 70000, "80"],
        "keepalive": DURATIONS,
        "log_level": ["info", "debug", "loud"],
        "grace": DURATIONS,
        "batch": DURATIONS,
        "max_streams": [1, 0, 10**6],
        "max_streams_per_ip": [1, 0],
        "max_stream_lifetime": DURATIONS,
        "trusted_proxies": [[], ["127.0.0.1"], ["10.0.0.0/8", "::1"], ["nginx"], "127.0.0.1", [1], ["10.0.0.0/33"]],
        "frame_ancestors": [
            ["'self'"],
            ["'none'"],
            ["'none'", "'self'"],
            [],
            ["https://a.example"],
            ["https://a.example; x"],
            "'self'",
            ["*"],
            ["a b"],
        ],
        "max_body": SIZES,
        "max_header": [*SIZES, "512B"],
        "metrics_token": ["metrics-token-0123", "short", "", 5],
    },
    "storage": {
        "url": ["sqlite+aiosqlite:///data/x.db", "mysql://x", "", 5],
        "retention": DURATIONS,
        "prune_every": DURATIONS,
    },
    "hub": {
        "backend": ["memory", "redis", "kafka"],
        "url": ["redis://127.0.0.1/0", "http://x", ""],
        "buffer": [16, 15, 1024],
        "channel": ["c", ""],
        "lease": DURATIONS,
    },
    "api": {
        "tokens": [{}, {"ci": TOKEN}, {"ci": "short"}, {"ci": 5}, {"lobby": LOBBY_TOKEN}, "x"],
        "max_body": SIZES,
        "history_limit": [1, 0, 1000],
        "rate": ["10/s", "30/m", "1/h", "0/s", "fast", 10],
        "burst": [1, 0, 20, "5"],
    },
    "auth": {
        "secret": [SECRET, "short", "", "${T}" * 8, 7],
        "session_lifetime": DURATIONS,
        "tokens": [
            {},
            {"lobby": LOBBY_TOKEN},
            {"lobby": TOKEN},
            {"lobby": "short"},
            {"a b": LOBBY_TOKEN},
            {"lobby": LOBBY_TOKEN, "hall": LOBBY_TOKEN},
            "x",
        ],
        "users": [
            {},
            {"alice": ALICE_HASH},
            {"alice": "hunter2"},
            {"alice": 5},
            {"alice": ALICE_HASH.replace("16384", "1024")},
            {"alice": "scrypt$2$1$1$AAAAAAAAAAA$" + "A" * 22},
        ],
        "proxy_header": ["X-Forwarded-User", "Remote-User", "", "X User", 5],
    },
    "dashboards": {
        "id": ["main", "", "a b", "x" * 65],
        "title": STRINGS,
        "widgets": [["w"], [], ["w", "w"], ["nope"], "w"],
        "columns": [1, 0, 25],
        "theme": ["auto", "pink"],
        "rotate": DURATIONS,
        "auth": ["public", "token", "password", "proxy", "ldap", 1],
        "users": [["alice"], ["lobby"], ["carol@example.org"], [], [""], "alice", [5], ["mallory"]],
    },
    "widgets.w": {
        "view": ["number", "text", "clock", "dial"],
        "every": DURATIONS,
        "timeout": DURATIONS,
        "min": [0, 10, "x"],
        "max": [0, 100, math.inf],
        "decimals": [0, 13, -1],
        "enabled": [True, "no"],
    },
}
JUNK_KEYS = ["junk", "Secret", "token", "user", "a.b", ""]


@st.composite
def near_valid_configs(draw) -> str:
    """A valid config with a few keys in each table replaced, added or dropped."""
    tables: dict[str, dict] = {
        "server": {"port": 0},
        "api": {"tokens": {"ci": TOKEN}},
        "auth": {"secret": SECRET, "tokens": {"lobby": LOBBY_TOKEN}, "users": {"alice": ALICE_HASH}},
        "dashboards": {"id": "main", "widgets": ["w"]},
        "widgets.w": {"view": "number"},
        "widgets.w.source": {"kind": "push"},
    }
    for _ in range(draw(st.integers(0, 6))):
        table = draw(st.sampled_from(sorted(TABLES)))
        known = TABLES[table]
        key = draw(st.sampled_from(sorted(known) + JUNK_KEYS))
        if draw(st.integers(0, 9)) == 0:
            tables.get(table, {}).pop(key, None)
            continue
        pool = known.get(key, [*STRINGS, 1, True, [], {}])
        anything = draw(st.integers(0, 4)) == 0
        tables.setdefault(table, {})[key] = draw(
            st.text(max_size=8) | st.integers() if anything else st.sampled_from(pool)
        )
    text = []
    for table, items in tables.items():
        text.append("[[dashboards]]" if table == "dashboards" else f"[{table}]")
        text.extend(f"{json.dumps(k)} = {toml_value(v)}" for k, v in items.items())
    return "\n".join(text) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURES_OK)
@given(text=near_valid_configs())
def test_a_config_near_a_valid_one_loads_or_says_why(tmp_path, text):
    path = write_config(tmp_path, text)
    try:
        config = load_config(path, env={"T": "from-the-environment-0123456789"})
    except ConfigError as exc:
        event("ConfigError")
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message
        assert SECRET not in message and LOBBY_TOKEN not in message and TOKEN not in message
        return
    event("loaded")
    # What loads is usable: every protected dashboard has what its mode needs.
    for board in config.dashboards:
        if board.auth in ("token", "password"):
            assert len(config.auth.secret) >= 32
            known = config.auth.tokens if board.auth == "token" else config.auth.users
            assert known and all(name in known for name in board.users or ())
        if board.auth == "proxy":
            assert config.server.trusted_proxies


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURES_OK)
@given(
    text=st.text(alphabet=st.sampled_from(list("[]{}=\"'.,\n #$" + "auth secret users tokens dashboards")), max_size=80)
)
def test_any_text_after_a_valid_config_loads_or_says_why(tmp_path, text):
    base = f'[auth]\nsecret = "{SECRET}"\n[[dashboards]]\nid = "m"\nwidgets = ["w"]\n[widgets.w]\nview = "clock"\n'
    with contextlib.suppress(ConfigError):
        load_config(write_config(tmp_path, base + text), env={})


# --- the push API ---------------------------------------------------------------------------

PUSH_CONFIG = (
    loopback_server(grace="2s")
    + table("api", tokens={"test": TOKEN}, max_body="2KiB", rate="1000/s", burst=1000)
    + dashboard("main", ["a", "b", "rows", "state", "gauge", "ticker", "clock"])
    + push_widgets(a="number", b="text", rows="list", state="status")
    + push_widget("gauge", "meter", min=0, max=10)
    # Fed by a source, for the 409 path; it runs once at start and then not for an hour,
    # so that every sample stored during a request is the request's doing.
    + widget("ticker", "number", every="1h", source={"kind": "random_walk"})
    + widget("clock", "clock")
)
DOCUMENTED = {200, 400, 401, 403, 404, 409, 413, 415, 429}
WIDGETS = ["a", "b", "rows", "state", "gauge", "ticker", "clock", "nope", "A", "a-b"]

latin1 = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_keys = st.sampled_from(["label", "value", "state", "detail", "code", "latency_ms", "x"]) | st.text(max_size=5)
json_values = values(json_scalars, json_keys, size=4, leaves=10)


# Values each push widget takes, so that many generated pushes get through.
FITTING = {
    "a": st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False),
    "gauge": st.integers(-100, 100),
    "b": st.text(max_size=30),
    "rows": st.lists(
        st.fixed_dictionaries({"label": st.text(max_size=10), "value": st.integers() | st.text(max_size=5)}), max_size=4
    ),
    "state": st.fixed_dictionaries({"state": st.sampled_from(["up", "warn", "down"])}),
}


def odd(draw) -> bool:
    """True one time in four: most requests get each part right, so that the later
    checks (and the 200s) are reached too."""
    return draw(st.integers(0, 3)) == 0


@st.composite
def push_requests(draw) -> tuple[str, dict, bytes]:
    single = draw(st.booleans())
    target = draw(st.sampled_from(WIDGETS))
    path = f"/api/widgets/{target}" if single else "/api/widgets"
    headers = {}
    authorization = draw(st.sampled_from(["none", "wrong", "basic", "empty", "random"])) if odd(draw) else "good"
    headers["Authorization"] = {
        "good": f"Bearer {TOKEN}",
        "wrong": "Bearer not-the-token-0123456789",
        "basic": f"Basic {TOKEN}",
        "empty": "Bearer ",
        "random": draw(latin1),
        "none": None,
    }[authorization]
    headers["Content-Type"] = (
        "application/json"
        if not odd(draw)
        else draw(
            latin1
            | st.sampled_from(
                [
                    "application/json; charset=utf-8",
                    "APPLICATION/JSON",
                    "application/json; charset=latin-1",
                    "text/plain",
                    None,
                ]
            )
        )
    )
    shape = draw(st.sampled_from(["value", "values", "status", "object", "raw", "json", "big"])) if odd(draw) else "fit"
    if shape == "fit":
        value = draw(FITTING.get(target, json_values))
        body = json.dumps({"value": value} if single else {"values": {target: value}}).encode()
    elif shape == "value":
        body = json.dumps({"value": draw(json_values)}).encode()
    elif shape == "values":
        body = json.dumps({"values": draw(st.dictionaries(st.sampled_from(WIDGETS), json_values, max_size=3))}).encode()
    elif shape == "status":
        document = {"status": draw(st.sampled_from(["ok", "error", "down", 1]))}
        if draw(st.booleans()):
            document["message"] = draw(json_values)
        if draw(st.booleans()):
            document["value"] = draw(json_values)
        body = json.dumps(document).encode()
    elif shape == "object":
        body = json.dumps(draw(st.dictionaries(st.text(max_size=6), json_values, max_size=3))).encode()
    elif shape == "json":
        body = json.dumps(draw(json_values)).encode()
    elif shape == "big":
        body = json.dumps({"value": "x" * draw(st.integers(2000, 5000))}).encode()
    else:
        body = draw(st.binary(max_size=64))
    return path, {k: v for k, v in headers.items() if v is not None}, body


@pytest.fixture
def push_server(servers, io_loop):
    async def started():
        server = await servers.start(PUSH_CONFIG)
        await wait_until(lambda: "ticker" in server.runtime.scheduler.last, message="the ticker's one sample stored")
        return server

    return io_loop.run_sync(started)


@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURES_OK)
@given(request=push_requests())
def test_any_push_gets_a_documented_answer_and_a_refusal_stores_nothing(push_server, io_loop, request):
    path, headers, body = request

    async def exchange():
        before = await push_server.runtime.store.last_id()
        reply = await WebClient(push_server.port).request("POST", path, headers, body)
        after = await push_server.runtime.store.last_id()
        return reply, before, after

    reply, before, after = io_loop.run_sync(exchange, timeout=30)
    event(f"status {reply.status}")
    assert reply.status in DOCUMENTED, (reply.status, reply.text)
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    answer = json.loads(reply.body)
    if reply.status == 200:
        assert after > before
    else:
        assert after == before, "a refused push stored something"
        assert set(answer) == {"error"} and isinstance(answer["error"], str) and answer["error"]
        assert TOKEN not in answer["error"]


# --- the SSE encoder and decoder ------------------------------------------------------------

any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=200)
event_names = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=64)


def feed_in_pieces(data: bytes, cuts: list[int]) -> list[Event]:
    decoder = Decoder()
    events, last = [], 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        events += decoder.feed(data[last:cut])
        last = cut
    return events + decoder.close()


def as_sent(text: str) -> str:
    """What the encoder can carry: line ends become LF; a lone surrogate (no UTF-8 form) U+FFFD."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


@settings(max_examples=500, deadline=None)
@given(
    text=any_text, name=event_names, event_id=st.integers(0, 2**63), cuts=st.lists(st.integers(0, 10**6), max_size=8)
)
def test_any_text_arrives_as_sent_in_one_event(text, name, event_id, cuts):
    encoded = encode_event(text, event=name, id=event_id)
    events = feed_in_pieces(encoded, cuts)
    assert events == [Event(name, as_sent(text), str(event_id))]
    assert events == decode(encoded)


@settings(max_examples=300, deadline=None)
@given(text=any_text.filter(lambda t: "\r" not in t and not any(0xD800 <= ord(c) <= 0xDFFF for c in t)))
def test_text_without_cr_or_lone_surrogates_is_byte_identical(text):
    (event,) = decode(encode_event(text))
    assert event.data.encode("utf-8") == text.encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(
    value=json_values | any_text,
    widget=event_names.filter(lambda w: w not in ("hello", "reload", "message")),
    event_id=st.integers(1, 2**53),
    cuts=st.lists(st.integers(0, 10**6), max_size=8),
    message=st.none() | any_text,
)
def test_any_value_reaches_the_page_exactly_through_a_sample(value, widget, event_id, cuts, message):
    sample = Sample(
        event_id,
        widget,
        datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
        value,
        "error" if message else "ok",
        message,
    )
    (event,) = feed_in_pieces(encode_sample(sample), cuts)
    assert (event.type, event.last_event_id) == (widget, str(event_id))
    # json.dumps with ensure_ascii: even a lone surrogate travels as an escape, and comes back.
    assert json.loads(event.data) == json.loads(sample.to_json()) == sample.as_dict()


class Level(enum.IntEnum):
    HIGH = 3


class Celsius(float):
    pass


# What value_json must write exactly as json.dumps does, or refuse as it does: NaN and the
# infinities, subclasses of int and float, values with no JSON form.
any_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | any_text
    | st.sampled_from([Level.HIGH, Celsius(1.5), Celsius("nan"), {1, 2}, b"x", -0.0, 2**200])
)
any_values = values(any_scalars, st.text(max_size=4), size=3, leaves=8)


def dumped(value, **options) -> str | type:
    try:
        return json.dumps(value, allow_nan=False, **options)
    except (TypeError, ValueError) as exc:
        return type(exc)


@settings(max_examples=500, deadline=None)
@given(value=any_values)
@example(True).via("a bool is an int to isinstance(), not to JSON")
@example(float("inf")).via("refused, as json.dumps refuses it")
def test_value_json_writes_what_json_dumps_writes_and_refuses_what_it_refuses(value):
    for compact, options in ((False, {}), (True, {"separators": (",", ":")})):
        try:
            written: str | type = value_json(value, compact=compact)
        except (TypeError, ValueError) as exc:
            written = type(exc)
        assert written == dumped(value, **options)


@settings(max_examples=300, deadline=None)
@given(
    value=json_values | any_text,
    widget=any_text,
    status=st.sampled_from(["ok", "error"]) | any_text,
    message=st.none() | any_text,
    ms=st.integers(0, 10**6),
)
def test_a_samples_json_is_byte_for_byte_what_json_dumps_made_of_it(value, widget, status, message, ms):
    sample = Sample(
        1, widget, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) + timedelta(microseconds=ms), value, status, message
    )
    assert sample.to_json() == json.dumps(sample.as_dict(), ensure_ascii=True, separators=(",", ":"), allow_nan=False)


@settings(max_examples=500, deadline=None)
@given(widget=any_text | event_names, value=json_values | any_text, message=st.none() | any_text)
@example("a\nb", 1, None).via("a line break in an event name is refused, not sent")
def test_a_samples_event_is_byte_for_byte_what_the_general_encoder_makes_of_it(widget, value, message):
    sample = Sample(2**40, widget, datetime(2026, 1, 2, tzinfo=UTC), value, "error" if message else "ok", message)
    outcomes = []
    for encode in (encode_sample, lambda s: encode_event(s.to_json(), event=s.widget, id=s.id)):
        try:
            outcomes.append(encode(sample))
        except ValueError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]


def test_the_sample_property_covers_lone_surrogates():
    # Not left to chance: the case the ensure_ascii encoding is there for.
    sample = Sample(7, "w", datetime(2026, 1, 1, tzinfo=UTC), "a\ud800b\r\n<script>")
    (event,) = decode(encode_sample(sample))
    assert json.loads(event.data)["value"] == "a\ud800b\r\n<script>"
