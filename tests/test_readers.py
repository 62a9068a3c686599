"""Read tokens ([auth] readers) for scripts and servers, and [server] cors_origins for
pages of other origins: the config that sets them up, and the real server's streams
and read API answering them."""

from __future__ import annotations

import pytest

from dashboard.config import ConfigError, load_config
from dashboard.core import auth
from tests.configs import LOBBY_TOKEN, SECRET, dashboard, loopback_server, push_widgets, table
from tests.helpers import StreamClient, wait_until, write_config
from tests.webclient import WebClient

PUSH_TOKEN = "push-token-0123456789"
GRAFANA = "read-token-grafana-0123456789"
EVERYTHING = "read-token-all-of-it-0123456789"
BEARER = {"Authorization": f"Bearer {GRAFANA}"}


def config_text(readers: dict | None = None, cors: list[str] | None = None) -> str:
    readers = readers if readers is not None else {"grafana": {"token": GRAFANA, "dashboards": ["ops"]}}
    server = {"cors_origins": cors} if cors is not None else {}
    return (
        loopback_server(grace="2s", **server)
        + table("api", tokens={"ci": PUSH_TOKEN})
        + table("auth", secret=SECRET, tokens={"lobby": LOBBY_TOKEN}, readers=readers)
        + dashboard("open", ["a"])
        + dashboard("ops", ["b"], auth="token")
        + dashboard("boss", ["c"], auth="token")
        + push_widgets(a="number", b="number", c="number")
    )


def error_of(tmp_path, text: str) -> str:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    return str(info.value).removeprefix(f"{path}: ")


# --- the config ------------------------------------------------------------------------------


def test_readers_and_origins_are_read(tmp_path):
    text = config_text(
        {"grafana": {"token": GRAFANA, "dashboards": ["ops"]}, "all": {"token": EVERYTHING, "dashboards": ["*"]}},
        cors=["https://wiki.example.org", "http://127.0.0.1:9000"],
    )
    config = load_config(write_config(tmp_path, text))
    assert {name: (r.token, r.dashboards) for name, r in config.auth.readers.items()} == {
        "grafana": (GRAFANA, ("ops",)),
        "all": (EVERYTHING, ("*",)),
    }
    assert config.server.cors_origins == ("https://wiki.example.org", "http://127.0.0.1:9000")
    assert load_config(write_config(tmp_path, config_text())).server.cors_origins == ()  # off by default


@pytest.mark.parametrize(
    ("readers", "cors", "message"),
    [
        (
            {"g": {"token": "short-token", "dashboards": ["ops"]}},
            None,
            "auth.readers.g.token: too short: use at least 16 characters",
        ),
        (
            {"g": {"token": PUSH_TOKEN, "dashboards": ["ops"]}},
            None,
            "auth.readers.g.token: the same token as another one (a push, kiosk, metrics or read token): use a token of its own",
        ),
        (
            {"g": {"token": LOBBY_TOKEN, "dashboards": ["ops"]}},
            None,
            "auth.readers.g.token: the same token as another one (a push, kiosk, metrics or read token): use a token of its own",
        ),
        (
            {"g": {"token": GRAFANA, "dashboards": ["ops"]}, "h": {"token": GRAFANA, "dashboards": ["*"]}},
            None,
            "auth.readers.h.token: the same token as another one (a push, kiosk, metrics or read token): use a token of its own",
        ),
        (
            {"g": {"token": GRAFANA, "dashboards": ["nope"]}},
            None,
            'auth.readers.g.dashboards[0]: unknown dashboard "nope"',
        ),
        (
            {"g": {"token": GRAFANA, "dashboards": []}},
            None,
            'auth.readers.g.dashboards: expected dashboard ids, or ["*"] for all of them, got an empty array',
        ),
        ({"g": {"token": GRAFANA}}, None, "auth.readers.g.dashboards: missing"),
        (
            {"g": {"token": GRAFANA, "dashboards": ["ops"], "write": True}},
            None,
            'auth.readers.g: unknown key "write" (expected one of: token, dashboards)',
        ),
        (
            None,
            ["https://wiki.example.org/path"],
            'server.cors_origins[0]: expected an origin like "https://wiki.example.org" (no path) or "*", got "https://wiki.example.org/path"',
        ),
    ],
)
def test_reader_and_origin_errors_say_what_to_fix(tmp_path, readers, cors, message):
    got = error_of(tmp_path, config_text(readers, cors))
    assert got.startswith(message), got
    assert "short-token" not in got and PUSH_TOKEN not in got and LOBBY_TOKEN not in got and GRAFANA not in got


def test_a_read_token_is_matched_through_match_token_only_and_sees_only_its_dashboards(tmp_path):
    config = load_config(write_config(tmp_path, config_text()))
    reader = auth.reader_of(config.auth.readers, GRAFANA.encode())
    assert reader is not None and (reader.name, reader.kind, reader.reads) == ("grafana", auth.READER, ("ops",))
    assert auth.reader_of(config.auth.readers, GRAFANA[:-1]) is None
    viewers = {auth.READER: reader}
    assert [d.id for d in auth.visible_dashboards(config, viewers)] == ["open", "ops"]


# --- the read API and streams with a read token --------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_the_read_api_answers_a_read_token_with_what_it_may_read(servers):
    server = await servers.start(config_text())
    b = await server.record("b", 2)
    await server.record("c", 3)
    client = WebClient(server.port)
    listed = (await client.get("/api/widgets", BEARER)).json()
    assert [w["id"] for w in listed["widgets"]] == ["a", "b"]
    assert (await client.get("/api/widgets/b", BEARER)).json()["sample"]["id"] == b.id
    history = await client.get("/api/widgets/b/history", BEARER)
    assert [s["id"] for s in history.json()["samples"]] == [b.id]
    assert (await client.get("/api/widgets/c", BEARER)).status == 403  # not its dashboard
    wrong = await client.get("/api/widgets/b", {"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status == 401 and wrong.json()["error"].startswith("invalid read token")
    # Never from the URL (URLs are logged), and a push token reads nothing.
    assert (await client.get(f"/api/widgets/b?token={GRAFANA}")).status == 401
    assert (await client.get("/api/widgets/b", {"Authorization": f"Bearer {PUSH_TOKEN}"})).status == 401


@pytest.mark.gen_test(timeout=20)
async def test_a_stream_read_with_a_token_ends_when_a_reload_takes_its_dashboard_away(servers, tmp_path):
    path = tmp_path / "config.toml"
    server = await servers.start(config_text(), config_loader=lambda: load_config(path))
    stream = await StreamClient.open(server.url("/events/ops"), headers=BEARER)
    assert stream.status == 200
    assert (await stream.next_event()).type == "hello"
    live = await server.record("b", 5)
    assert int((await stream.next_widget_event()).last_event_id) == live.id
    refused = await StreamClient.open(server.url("/events/boss"), headers=BEARER)
    assert refused.status == 403
    path.write_text(config_text({"grafana": {"token": GRAFANA, "dashboards": ["boss"]}}))
    assert await server.server.reload()
    events = await stream.read_until_closed(timeout=10)
    assert [e.type for e in events] == ["reload"]
    await wait_until(lambda: not server.runtime.streams, message="the stream to end")


# --- cross-origin reads ------------------------------------------------------------------------------

ORIGIN = "https://wiki.example.org"


@pytest.mark.gen_test(timeout=20)
async def test_cors_is_off_by_default(servers):
    server = await servers.start(config_text())
    client = WebClient(server.port)
    reply = await client.get("/api/widgets", {"Origin": ORIGIN})
    assert reply.status == 200 and reply.headers["Access-Control-Allow-Origin"] is None
    assert (await client.request("OPTIONS", "/api/widgets", {"Origin": ORIGIN})).status == 405


@pytest.mark.gen_test(timeout=20)
async def test_the_stream_and_read_api_answer_cors_for_the_configured_origins_only(servers):
    server = await servers.start(config_text(cors=[ORIGIN]))
    client = WebClient(server.port)
    for path in ("/api/widgets", "/api/widgets/a", "/api/widgets/a/history"):
        reply = await client.get(path, {"Origin": ORIGIN})
        assert reply.headers["Access-Control-Allow-Origin"] == ORIGIN, path
        assert reply.headers["Vary"] == "Origin"
        assert reply.headers["Access-Control-Allow-Credentials"] is None  # never with cookies
        other = await client.get(path, {"Origin": "https://evil.example.com"})
        assert other.headers["Access-Control-Allow-Origin"] is None
    preflight = await client.request(
        "OPTIONS",
        "/api/widgets/b",
        {"Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"},
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    stream = await StreamClient.open(server.url("/events/open"), headers={"Origin": ORIGIN})
    assert stream.status == 200 and stream.headers["access-control-allow-origin"] == ORIGIN
    stream.close()
    subset = await StreamClient.open(server.url("/events?widgets=a"), headers={"Origin": ORIGIN})
    assert subset.headers["access-control-allow-origin"] == ORIGIN
    subset.close()
    # Pushes stay same-origin: a preflight allows GET only, and a POST carries no CORS header.
    push = await client.request(
        "POST",
        "/api/widgets/a",
        {"Origin": ORIGIN, "Authorization": f"Bearer {PUSH_TOKEN}", "Content-Type": "application/json"},
        b'{"value": 1}',
    )
    assert push.status == 200 and push.headers["Access-Control-Allow-Origin"] is None


@pytest.mark.parametrize(
    "path", ["/api/widgets/b", "/api/widgets/b/history", "/api/widgets/b/series", "/events/ops", "/events?widgets=b"]
)
@pytest.mark.gen_test(timeout=20)
async def test_a_401_to_a_script_says_which_scheme_it_wants(servers, path):
    server = await servers.start(config_text())
    reply = await WebClient(server.port).get(path, headers={"Authorization": "Bearer not-a-token-0123456789"})
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Bearer realm="dashboard"'  # RFC 7235
