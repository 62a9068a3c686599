"""The bundled config.toml, mutated: values of other types, values near and far from the
right ones, keys removed and keys added. `check` answers each with exit 0, or exit 2
and one line naming the file and the key, never anything else and never a traceback;
and whatever `check` accepts also starts, renders its pages and runs its tickers.

`check` runs in this process (cli.main, what run.py calls); one in eight is also run
as `run.py check` in a process of its own, which must say exactly the same."""

from __future__ import annotations

import contextlib
import copy
import datetime
import io
import json
import math
import re
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dashboard.service import cli
from tests.configs import toml_key, toml_value
from tests.helpers import StreamClient, wait_until
from tests.webclient import WebClient

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = tomllib.loads((ROOT / "config.toml").read_text())
# Kept on this machine: the live exchange rate (off, but a mutation may turn it on) and
# the self check point at a closed loopback port instead of the internet and port 8888.
BUNDLED["widgets"]["usd_eur_live"]["source"]["url"] = "http://127.0.0.1:9/latest?from=USD"
BUNDLED["widgets"]["self_check"]["source"]["url"] = "http://127.0.0.1:9/healthz"

# Every key the config knows, to add where it does not belong, and a few it does not.
KNOWN_KEYS = sorted(
    {"host", "port", "keepalive", "log_level", "grace", "batch", "max_streams", "max_streams_per_ip"}
    | {"max_stream_lifetime", "trusted_proxies", "frame_ancestors", "max_body", "max_header", "metrics_token"}
    | {"header_timeout", "body_timeout", "max_incomplete_requests", "url", "retention", "prune_every"}
    | {"tokens", "history_limit", "rate", "burst", "id", "title", "widgets", "columns", "theme", "rotate", "auth"}
    | {"users", "view", "every", "timeout", "on_change", "unit", "decimals", "min", "max", "warn", "crit"}
    | {"history", "width", "height", "timezone", "source", "enabled", "kind", "metric", "path", "count"}
    | {"start", "volatility", "argv", "shell", "cwd", "env", "parse", "method", "expect_status", "warn_latency"}
    | {"function", "args", "import_timeout", "secret", "backend", "junk", "Port", "a b", ""}
)
SCALARS = [
    "",
    "x",
    "5s",
    "0s",
    "-1s",
    "500ms",
    "400d",
    "fast",
    "64KiB",
    "0B",
    "10/s",
    "\x00",
    "a\x00b",
    "${HOME}",
    "${DASHBOARD_FUZZ_UNSET}",
    "${DASHBOARD_FUZZ_UNSET:-1s}",
    "$${x}",
    "é😀",
    "<script>",
    "main",
    "usd_eur",
    "hello",
    "number",
    "meter",
    "text",
    "list",
    "status",
    "clock",
    "graph",
    "push",
    "system",
    "command",
    "python",
    "random_walk",
    "http_check",
    "sse",
    "cpu_percent",
    "top_processes",
    "json",
    "lines",
    "auto",
    "127.0.0.1",
    "localhost",
    "http://127.0.0.1:9/x",
    "sqlite+aiosqlite:///data/other.db",
    "sqlite+aiosqlite://",
    "Europe/Berlin",
    "Mars/Olympus",
    "'self'",
    "'none'",
    0,
    1,
    -1,
    2,
    24,
    65536,
    2**31,
    2**63 - 1,
    -(2**63),
    0.5,
    -0.0,
    1e308,
    math.inf,
    -math.inf,
    math.nan,
    True,
    False,
    datetime.date(2026, 1, 1),
    datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC),
    datetime.time(12, 0),
]
COMPOUND = [
    [],
    ["usd_eur"],
    ["usd_eur", "usd_eur"],
    ["nope"],
    [1, "a"],
    ["uname", "-sr"],
    ["no-such-program-zz"],
    ["uname", "\x00"],
    {},
    {"kind": "push"},
    {"kind": "random_walk", "start": 1},
    {"kind": "system", "metric": "load5"},
    {"kind": "command", "argv": ["echo", "7"], "parse": "number"},
    {"kind": "nope"},
    {"demo": "short"},
    {"demo": "a-token-long-enough-0123"},
    {"a": {"b": {"c": [1, 2, {"d": math.inf}]}}},
]


def paths(value, prefix=()):
    """Every (path, value) in a document, tables and arrays included."""
    yield prefix, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def parent_of(document, path):
    for key in path[:-1]:
        document = document[key]
    return document


@st.composite
def mutated_documents(draw) -> dict:
    document = copy.deepcopy(BUNDLED)
    for _ in range(draw(st.integers(1, 3))):
        operation = draw(st.sampled_from(["value", "value", "remove", "add", "nudge", "poison"]))
        leaves = operation in ("nudge", "poison")  # these change a number or a string
        found = [p for p, v in paths(document) if p and (not leaves or isinstance(v, (str, int, float)))]
        path = draw(st.sampled_from(found))
        parent = parent_of(document, path)
        current = parent[path[-1]]
        number = isinstance(current, (int, float)) and not isinstance(current, bool)
        if operation == "remove":
            del parent[path[-1]]
        elif operation == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KNOWN_KEYS))] = copy.deepcopy(draw(st.sampled_from(SCALARS + COMPOUND)))
        elif operation == "nudge" and number:
            parent[path[-1]] = current + draw(st.sampled_from([-1, 1, -1000, 10**6, 0.5]))
        elif operation == "poison" and (number or isinstance(current, str)):
            # Of the right type, and still unusable: what `check` used to let through.
            poisons = (
                ["\x00", f"{current}\x00", "\x00x"] if isinstance(current, str) else [math.inf, -math.inf, math.nan]
            )
            parent[path[-1]] = draw(st.sampled_from(poisons))
        else:
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(SCALARS + COMPOUND)))
        event(f"{operation} {'.'.join(str(p) for p in path[:2])}")
    return document


def to_toml(document: dict) -> str:
    """The document as TOML: root values, then [tables], [widgets.<id>] and [[dashboards]]."""
    lines, tables = [], []
    for key, value in document.items():
        if key == "widgets" and isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
            tables += [(f"widgets.{toml_key(wid)}", item, False) for wid, item in value.items()]
        elif key == "dashboards" and isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables += [("dashboards", item, True) for item in value]
        elif isinstance(value, dict):
            tables.append((toml_key(key), value, False))
        else:
            lines.append(f"{toml_key(key)} = {toml(value)}")
    for name, table, array in tables:
        lines.append(f"\n[[{name}]]" if array else f"\n[{name}]")
        lines += [f"{toml_key(key)} = {toml(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def toml(value) -> str:
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return toml_value(value)


def check_in_process(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["check", "--config", str(path)])
    return code, out.getvalue(), err.getvalue()


def check_as_a_process(path: Path) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "check", "--config", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout, result.stderr


def strict_json(text: str):
    """JSON as a browser's JSON.parse reads it: no NaN, no Infinity."""

    def refuse(constant: str):
        raise AssertionError(f"{constant} in the page's data: JSON.parse would throw")

    return json.loads(text, parse_constant=refuse)


async def pages_render(server) -> None:
    """Every page of the running server answers as documented, with data its script can
    parse; every ticker runs, and none failed with a bug (an exception of its own) on its
    first run."""
    client = WebClient(server.port)
    dashboards = server.runtime.config.dashboards
    for dashboard in dashboards:
        reply = await client.get(f"/d/{dashboard.id}")
        expected = {200} if dashboard.auth == "public" else {200, 303, 401, 403}
        assert reply.status in expected, (dashboard.id, reply.status, reply.text[:300])
        if dashboard.auth == "public":
            strict_json(page_data_text(reply.body.decode("utf-8")))
            stream = await StreamClient.open(server.url(f"/events/{dashboard.id}"))
            assert stream.status == 200
            assert (await stream.next_event()).type == "hello"
            stream.close()
    for path in ("/", "/api/widgets", "/metrics"):
        reply = await client.get(path)
        assert reply.status < 500, (path, reply.status, reply.text[:300])
    assert (await client.get("/healthz")).status == 200
    scheduler = server.runtime.scheduler
    assert scheduler.state != "stopped", "a ticker's loop ended"
    await wait_until(lambda: all(s.runs for s in scheduler.states.values()), timeout=20, message="every ticker ran")
    for widget_id, state in scheduler.states.items():
        # A bug's message is "ExceptionType: ..."; a source's own reasons are sentences.
        assert not re.match(r"[A-Z][A-Za-z]*(Error|Exception): ", state.message or ""), (widget_id, state.message)


def page_data_text(html: str) -> str:
    match = re.search(r'<script type="application/json" id="dashboard-data">(.*?)</script>', html, re.S)
    assert match, "the page carries its data block"
    return match[1]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(document=mutated_documents(), as_process=st.integers(0, 7))
def test_check_accepts_or_says_why_in_one_line_and_what_it_accepts_runs(
    servers, io_loop, tmp_path, document, as_process
):
    directory = tmp_path / uuid.uuid4().hex
    directory.mkdir()
    path = directory / "config.toml"
    path.write_text(to_toml(document))

    code, out, err = check_in_process(path)
    if as_process == 0:
        assert check_as_a_process(path) == (code, out, err)
    assert code in (0, 2), (code, out, err)
    assert "Traceback" not in err
    if code == 2:
        event("refused")
        assert out == ""
        (line,) = err.splitlines()
        assert re.match(rf"error: {re.escape(str(path))}: \S", line), line
        return
    event("accepted")
    assert out.startswith(f"{path}: ok (")

    async def run():
        server = await servers.start(path.read_text(), directory=directory, port=0)
        try:
            await pages_render(server)
        finally:
            await server.stop()

    io_loop.run_sync(run, timeout=60)
