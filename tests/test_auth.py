"""Viewer authentication: password hashes, sessions, the access rule, each mode
against the real server (pages, streams, the API), and the config that sets it up."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import tornado.httputil
from hypothesis import given
from hypothesis import strategies as st

from dashboard.config import ConfigError, load_config
from dashboard.core import auth
from dashboard.core.auth import Viewer
from dashboard.core.resources import resource_dir
from dashboard.service.exposure import file_mode_warning, network_warning, written_secrets
from dashboard.web.app import static_tag
from dashboard.web.login import safe_next
from dashboard.web.security import REDACTED, SECRET_PARAMETERS, redact_uri
from tests.configs import LOBBY_TOKEN, SECRET, dashboard, loopback_server, push_widgets, table
from tests.helpers import StreamClient, wait_until, write_config
from tests.webclient import WebClient, xsrf_field

ROOT = Path(__file__).resolve().parent.parent

# Made with `python run.py hash-password`.
ALICE_PASSWORD = "correct horse battery"
ALICE_HASH = "scrypt$16384$8$1$VjHUO5H+nDgWuYRH6d1poQ$KEjXyH9+eRbNIRNhfBz7/keLKqUH5Q7fabJeMzzbcqg"
BOB_PASSWORD = "bob password 2"
BOB_HASH = "scrypt$16384$8$1$1lKlbNC7ukr+jvsYfelCHQ$zWUzziCKjvuOgbKmRZ6FvuC2y42FlCja/4AVSJ/mh4s"
HALL_TOKEN = "kiosk-token-hall-0123456789"
PUSH_TOKEN = "test-token-0123456789"

# One dashboard per mode; 127.0.0.2 is the authenticating proxy.
AUTH_CONFIG = (
    loopback_server(grace="2s", trusted_proxies=["127.0.0.2"])
    + table("api", tokens={"test": PUSH_TOKEN})
    + table(
        "auth",
        secret=SECRET,
        session_lifetime="1h",
        tokens={"lobby": LOBBY_TOKEN, "hall": HALL_TOKEN},
        users={"alice": ALICE_HASH, "bob": BOB_HASH},
    )
    + dashboard("open", ["a"])
    + dashboard("lobby", ["b"], auth="token", users=["lobby"])
    + dashboard("ops", ["c"], auth="password")
    + dashboard("boss", ["d"], auth="password", users=["alice"])
    + dashboard("sso", ["e"], auth="proxy", users=["carol@example.org"])
    + push_widgets(a="number", b="number", c="number", d="number", e="number")
)


def with_lifetime(lifetime: str) -> str:
    return AUTH_CONFIG.replace('session_lifetime = "1h"', f'session_lifetime = "{lifetime}"')


async def sign_in(client: WebClient, name: str = "alice", password: str = ALICE_PASSWORD, next_path: str = "/"):
    form = await client.get(f"/login?next={quote(next_path)}")
    assert form.status == 200, form.text
    return await client.post_form("/login", {"name": name, "password": password, "next": next_path})


# --- passwords ------------------------------------------------------------------------------


def test_a_password_hash_verifies_its_password_only():
    encoded = auth.hash_password("hunter2 but longer", n=2**10)
    assert encoded.startswith("scrypt$1024$8$1$")
    assert auth.verify_password("hunter2 but longer", encoded)
    assert not auth.verify_password("hunter2 but longe", encoded)
    assert not auth.verify_password("", encoded)
    assert auth.hash_password("same", n=2**10) != auth.hash_password("same", n=2**10)  # a salt of its own


def test_the_committed_hashes_are_what_hash_password_makes():
    assert auth.verify_password(ALICE_PASSWORD, ALICE_HASH)
    assert not auth.verify_password(BOB_PASSWORD, ALICE_HASH)


def test_new_hashes_cost_what_owasp_asks_and_older_ones_still_verify():
    # OWASP's Password Storage Cheat Sheet: scrypt with N=2^17, r=8, p=1 at least.
    encoded = auth.hash_password("a new password")
    assert encoded.startswith("scrypt$131072$8$1$")
    assert auth.verify_password("a new password", encoded)
    # ALICE_HASH was made at the earlier default, n=2^14: it carries its own cost.
    assert ALICE_HASH.startswith("scrypt$16384$8$1$")
    assert auth.verify_password(ALICE_PASSWORD, ALICE_HASH)


def test_an_unknown_user_is_refused_after_the_same_work():
    assert auth.verify_password("anything", None) is False


@pytest.mark.parametrize(
    "text",
    [
        "",
        "scrypt",
        "bcrypt$16384$8$1$AAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$16384$8$1$salt",
        "scrypt$1000$8$1$AAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",  # n not a power of two
        "scrypt$1048576$64$1$AAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",  # 8 GiB of memory per check
        "scrypt$16384$8$99$AAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$16384$8$1$not base64!$AAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$16384$8$1$AAAA$AAAAAAAAAAAAAAAAAAAAAA",  # a salt of 3 bytes
        "scrypt$-1$8$1$AAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$１６$8$1$AAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",  # fullwidth digits
    ],
)
def test_a_hash_that_is_not_one_is_refused(text):
    with pytest.raises(ValueError):
        auth.parse_password_hash(text)


def test_hash_password_command_reads_stdin_and_prints_a_hash(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "hash-password"],
        input="pass phrase\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )  # needs no config file
    assert result.returncode == 0, result.stderr
    encoded = result.stdout.strip()
    assert auth.verify_password("pass phrase", encoded)
    assert "pass phrase" not in result.stdout + result.stderr
    empty = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "hash-password"],
        input="\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert (empty.returncode, empty.stdout, empty.stderr) == (1, "", "error: empty password\n")


@pytest.mark.parametrize("password", ["x", "seven77"])
def test_hash_password_refuses_a_password_under_8_characters(tmp_path, password):
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "hash-password"],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "error: the password is too short: use at least 8 characters\n"
    assert password not in result.stderr


# --- sessions -----------------------------------------------------------------------------


def _auth_config(tmp_path, text=AUTH_CONFIG):
    return load_config(write_config(tmp_path, text)).auth


def test_a_session_round_trips_and_holds_no_credential(tmp_path):
    config = _auth_config(tmp_path)
    session = auth.new_session(config, auth.PASSWORD, "alice", 1000.0)
    assert session.expires == 1000.0 + 3600
    encoded = auth.encode_session(session)
    assert ALICE_HASH not in encoded and SECRET not in encoded
    assert auth.decode_session(encoded) == session


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"\xff",
        "[]",
        "{}",
        '{"n": "a", "k": "proxy", "e": 1, "f": ""}',
        '{"n": "a", "k": "token", "e": true, "f": ""}',
        "not json",
    ],
)
def test_a_malformed_session_is_none(value):
    assert auth.decode_session(value) is None


def test_a_session_ends_with_its_time_its_credential_or_the_secret(tmp_path):
    config = _auth_config(tmp_path)
    session = auth.new_session(config, auth.TOKEN, "lobby", 1000.0)
    assert auth.session_valid(config, session, 1000.0 + 3599)
    assert not auth.session_valid(config, session, 1000.0 + 3600)
    new_token = _auth_config(tmp_path, AUTH_CONFIG.replace(LOBBY_TOKEN, "kiosk-token-lobby-NEW-0123456"))
    assert not auth.session_valid(new_token, session, 1001.0)
    removed = _auth_config(
        tmp_path, AUTH_CONFIG.replace(f'lobby = "{LOBBY_TOKEN}", ', "").replace('users = ["lobby"]', 'users = ["hall"]')
    )
    assert not auth.session_valid(removed, session, 1001.0)
    new_secret = _auth_config(tmp_path, AUTH_CONFIG.replace(SECRET, SECRET[::-1]))
    assert not auth.session_valid(new_secret, session, 1001.0)
    other = "B" if session.fingerprint[0] == "A" else "A"
    forged = Viewer("lobby", auth.TOKEN, 10**10, other + session.fingerprint[1:])
    assert not auth.session_valid(config, forged, 1001.0)


def test_a_viewer_sees_dashboards_of_its_own_kind_only(tmp_path):
    config = load_config(write_config(tmp_path, AUTH_CONFIG))

    def seen(*viewers):
        return [d.id for d in auth.visible_dashboards(config, {v.kind: v for v in viewers})]

    assert seen() == ["open"]
    assert seen(Viewer("lobby", auth.TOKEN)) == ["open", "lobby"]
    assert seen(Viewer("hall", auth.TOKEN)) == ["open"]
    assert seen(Viewer("bob", auth.PASSWORD)) == ["open", "ops"]
    assert seen(Viewer("alice", auth.PASSWORD)) == ["open", "ops", "boss"]
    assert seen(Viewer("carol@example.org", auth.PROXY)) == ["open", "sso"]
    assert seen(Viewer("alice", auth.PASSWORD), Viewer("carol@example.org", auth.PROXY)) == [
        "open",
        "ops",
        "boss",
        "sso",
    ]


# --- addresses, logs, redirects -----------------------------------------------------------

PROXIES = (auth.parse_network("10.0.0.0/8"), auth.parse_network("::1"))


@pytest.mark.parametrize(
    "peer, forwarded, client",
    [
        ("192.0.2.7", "203.0.113.1", "192.0.2.7"),  # the peer is no proxy: its header counts for nothing
        ("10.0.0.1", None, "10.0.0.1"),
        ("10.0.0.1", "203.0.113.1", "203.0.113.1"),
        ("10.0.0.1", "198.51.100.9, 203.0.113.1", "203.0.113.1"),  # the left one was written by the client
        ("10.0.0.1", "203.0.113.1, 10.0.0.2", "203.0.113.1"),  # past every trusted hop
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),  # all trusted: the farthest
        ("10.0.0.1", "junk, 203.0.113.1", "203.0.113.1"),
        ("10.0.0.1", "203.0.113.1, junk", "10.0.0.1"),  # garbage from the proxy's side: the proxy it is
        ("::1", "2001:db8::5", "2001:db8::5"),
        ("::ffff:10.0.0.1", "203.0.113.1", "203.0.113.1"),  # IPv4 arriving on an IPv6 socket
    ],
)
def test_the_client_address_behind_trusted_proxies(peer, forwarded, client):
    assert auth.client_address(peer, forwarded, PROXIES) == client


def test_without_trusted_proxies_the_peer_is_the_client():
    assert auth.client_address("10.0.0.1", "203.0.113.1", ()) == "10.0.0.1"


@pytest.mark.parametrize(
    "uri, logged",
    [
        ("/d/lobby?token=abc", "/d/lobby?token=[redacted]"),
        ("/d/lobby?kiosk=1&token=abc&x=2", "/d/lobby?kiosk=1&token=[redacted]&x=2"),
        ("/d/lobby?%74oken=abc", "/d/lobby?%74oken=[redacted]"),  # what the handler reads as "token"
        ("/d/lobby?TOKEN=abc#top", "/d/lobby?TOKEN=[redacted]"),  # "#top" is the value, to the handler
        ("/d/lobby?x=1#&token=abc", "/d/lobby?x=1#&token=[redacted]"),
        ("/a?tokens=1", "/a?tokens=1"),
        ("/d/lobby", "/d/lobby"),
        ("/x?token", "/x?token"),
    ],
)
def test_secret_query_values_are_redacted_for_logs(uri, logged):
    assert redact_uri(uri) == logged


QUERY_PART = st.text(st.sampled_from("aeknot_TOKEN%74=#&;+? /\x00\xe9"), max_size=12)


@given(
    st.lists(st.one_of(QUERY_PART, st.builds("{}={}".format, st.sampled_from(sorted(SECRET_PARAMETERS)), QUERY_PART)))
)
def test_no_secret_the_handler_would_read_survives_redaction(parts):
    """Whatever the query, the handler's own parser finds only "[redacted]" under every
    secret name in the URI that is logged."""
    uri = "/d/lobby?" + "&".join(parts)
    _, _, query = redact_uri(uri).partition("?")
    arguments = tornado.httputil.parse_qs_bytes(query, keep_blank_values=True)
    for name, values in arguments.items():
        if name.strip().lower() in SECRET_PARAMETERS:
            assert set(values) <= {REDACTED.encode()}, (uri, name, values)


@pytest.mark.parametrize(
    "target, safe",
    [
        ("/d/ops", "/d/ops"),
        ("/d/ops?kiosk=1", "/d/ops?kiosk=1"),
        (None, "/"),
        ("", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/d/ops\r\nSet-Cookie: x=1", "/"),
        ("javascript:alert(1)", "/"),
    ],
)
def test_login_returns_only_to_a_path_on_this_site(target, safe):
    assert safe_next(target) == safe


# --- the config ---------------------------------------------------------------------------


def test_the_bundled_config_stays_public(bundled_config):
    config = load_config(bundled_config, env={})
    assert {d.auth for d in config.dashboards} == {"public"}
    assert config.server.host == "127.0.0.1"
    assert config.auth.secret == ""


def test_auth_defaults(tmp_path):
    config = load_config(write_config(tmp_path, AUTH_CONFIG))
    assert config.auth.session_lifetime == 3600
    assert config.auth.proxy_header == "X-Forwarded-User"
    assert dict(config.auth.tokens) == {"lobby": LOBBY_TOKEN, "hall": HALL_TOKEN}
    assert [d.users for d in config.dashboards] == [None, ("lobby",), None, ("alice",), ("carol@example.org",)]


def _error(tmp_path, text: str) -> str:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message[len(f"{path}: ") :]


MINI = '[[dashboards]]\nid = "main"\n{dashboard}\nwidgets = ["w"]\n\n[widgets.w]\nview = "number"\nsource = {{ kind = "push" }}\n'


def mini(top: str = "", dashboard: str = "") -> str:
    return top + "\n" + MINI.format(dashboard=dashboard)


GOOD_AUTH = (
    f'[auth]\nsecret = "{SECRET}"\ntokens = {{ lobby = "{LOBBY_TOKEN}" }}\nusers = {{ alice = "{ALICE_HASH}" }}\n'
)

AUTH_ERRORS = [
    (
        "unknown mode",
        mini(dashboard='auth = "ldap"'),
        'dashboards[0].auth: expected one of: public, token, password, proxy, got "ldap"',
    ),
    (
        "no secret for passwords",
        mini(f'[auth]\nusers = {{ alice = "{ALICE_HASH}" }}', 'auth = "password"'),
        'auth.secret: missing (required by dashboards[0]: auth = "password"; a random string of at least 32 '
        'characters, e.g. "${DASHBOARD_SECRET}")',
    ),
    (
        "no auth table at all",
        mini(dashboard='auth = "token"'),
        'dashboards[0].auth: "token" needs kiosk tokens: add [auth] tokens = { lobby = "${LOBBY_TOKEN}" }',
    ),
    (
        "no users",
        mini(f'[auth]\nsecret = "{SECRET}"', 'auth = "password"'),
        'dashboards[0].auth: "password" needs users: add [auth] users = { alice = "<from python run.py hash-password>" }',
    ),
    (
        "proxy without proxies",
        mini(dashboard='auth = "proxy"'),
        'dashboards[0].auth: "proxy" needs the proxy\'s address in [server] trusted_proxies',
    ),
    ("short secret", mini('[auth]\nsecret = "short"'), "auth.secret: too short: use at least 32 characters"),
    (
        "short kiosk token",
        mini('[auth]\ntokens = { lobby = "short-token" }'),
        "auth.tokens.lobby: too short: use at least 16 characters",
    ),
    (
        "kiosk token that pushes",
        mini(f'[api]\ntokens = {{ ci = "{LOBBY_TOKEN}" }}\n' + GOOD_AUTH),
        "auth.tokens.lobby: the same token as another one here or in [api] tokens: use a token of its own",
    ),
    (
        "two screens one token",
        mini(f'[auth]\ntokens = {{ a = "{LOBBY_TOKEN}", b = "{LOBBY_TOKEN}" }}'),
        "auth.tokens.b: the same token as another one here or in [api] tokens: use a token of its own",
    ),
    (
        "bad user name",
        mini(f'[auth]\nusers = {{ "al ice" = "{ALICE_HASH}" }}'),
        'auth.users."al ice": invalid name "al ice": use letters, digits, "_", ".", "@" and "-" only (1-64 characters)',
    ),
    (
        "plain password",
        mini('[auth]\nusers = { alice = "hunter2" }'),
        'auth.users.alice: expected a password hash made by "python run.py hash-password" '
        "(scrypt$n$r$p$salt$key), got a hash it cannot use",
    ),
    (
        "hash not a string",
        mini("[auth]\nusers = { alice = 5 }"),
        'auth.users.alice: expected a password hash made by "python run.py hash-password" '
        "(scrypt$n$r$p$salt$key), got 5",
    ),
    (
        "unknown user",
        mini(GOOD_AUTH, 'auth = "password"\nusers = ["alice", "mallory"]'),
        'dashboards[0].users: unknown name "mallory" (expected one of [auth] users: alice)',
    ),
    (
        "token name on a password dashboard",
        mini(GOOD_AUTH, 'auth = "password"\nusers = ["lobby"]'),
        'dashboards[0].users: unknown name "lobby" (expected one of [auth] users: alice)',
    ),
    (
        "users on a public dashboard",
        mini(GOOD_AUTH, 'users = ["alice"]'),
        'dashboards[0].users: expected no users on a public dashboard (set auth = "token", "password" or "proxy")',
    ),
    (
        "users not a list",
        mini(GOOD_AUTH, 'auth = "password"\nusers = "alice"'),
        'dashboards[0].users: expected an array of strings, got "alice"',
    ),
    (
        "lifetime",
        mini('[auth]\nsession_lifetime = "forever"'),
        'auth.session_lifetime: expected a duration like "5s", "2m" or "1h30m", got "forever"',
    ),
    (
        "lifetime too long",
        mini('[auth]\nsession_lifetime = "500d"'),
        'auth.session_lifetime: expected a duration from "1s" to "400d", got "500d"',
    ),
    (
        "proxy header",
        mini('[auth]\nproxy_header = "X User"'),
        'auth.proxy_header: expected a header name like "X-Forwarded-User", got "X User"',
    ),
    (
        "unknown auth key",
        mini('[auth]\nsecrets = "x"'),
        'auth: unknown key "secrets" (expected one of: secret, session_lifetime, tokens, users, proxy_header, readers)',
    ),
    (
        "trusted proxy",
        mini('[server]\ntrusted_proxies = ["10.0.0.0/8", "nginx"]'),
        'server.trusted_proxies[1]: expected an IP address or network like "10.0.0.0/8", got "nginx"',
    ),
    (
        "frame ancestors",
        mini("""[server]\nframe_ancestors = ["'self'", "https://a.example; script-src *"]"""),
        'server.frame_ancestors[1]: expected "\'self\'", "\'none\'", a scheme like "https:" or a host like '
        '"https://wall.example.org", got "https://a.example; script-src *"',
    ),
    (
        "frame ancestors none with others",
        mini("""[server]\nframe_ancestors = ["'none'", "'self'"]"""),
        "server.frame_ancestors: expected \"'none'\" alone, got it with other sources",
    ),
    (
        "frame ancestors empty",
        mini("[server]\nframe_ancestors = []"),
        "server.frame_ancestors: expected at least one source, got an empty array (use [\"'none'\"])",
    ),
    (
        "metrics token",
        mini('[server]\nmetrics_token = "short"'),
        "server.metrics_token: too short: use at least 8 characters",
    ),
    (
        "rate",
        mini('[api]\nrate = "10 per second"'),
        'api.rate: expected a rate like "10/s", "30/m" or "100/h", got "10 per second"',
    ),
    ("zero rate", mini('[api]\nrate = "0/s"'), 'api.rate: expected a rate like "10/s", "30/m" or "100/h", got "0/s"'),
    ("burst", mini("[api]\nburst = 0"), "api.burst: expected an integer >= 1, got 0"),
    (
        "header limit",
        mini('[server]\nmax_header = "512B"'),
        'server.max_header: expected a size of at least 1KiB, got "512B"',
    ),
]


@pytest.mark.parametrize("name, text, message", AUTH_ERRORS, ids=[case[0] for case in AUTH_ERRORS])
def test_auth_config_errors(tmp_path, name, text, message):
    assert _error(tmp_path, text) == message


def test_secrets_never_appear_in_config_errors(tmp_path):
    for text in (
        mini('[auth]\nsecret = "tiny-secret"'),
        mini('[auth]\ntokens = { a = "tiny-token" }'),
        mini('[server]\nmetrics_token = "tiny"'),
        mini('[auth]\nusers = { a = "scrypt$1$2$3$x$y" }'),
    ):
        message = _error(tmp_path, text)
        assert "tiny" not in message and "scrypt$1" not in message, message


def test_frame_ancestors_rates_and_limits_parse(tmp_path):
    config = load_config(
        write_config(
            tmp_path,
            mini(
                '[server]\nframe_ancestors = ["\'self\'", "https://wall.example.org", "https:"]\nmax_body = "8KiB"\n'
                'max_header = "4KiB"\ntrusted_proxies = ["10.0.0.0/8", "::1"]\n[api]\nrate = "30/m"\nburst = 3'
            ),
        )
    )
    assert config.server.frame_ancestors == ("'self'", "https://wall.example.org", "https:")
    assert (config.server.max_body, config.server.max_header) == (8192, 4096)
    assert [str(n) for n in config.server.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    assert (config.api.rate, config.api.burst) == (0.5, 3)


# --- startup warnings ---------------------------------------------------------------------


def test_no_warning_on_loopback_or_when_nothing_is_exposed(tmp_path, bundled_config):
    bundled = load_config(bundled_config, env={})
    assert network_warning(bundled) is None
    import dataclasses

    closed = load_config(write_config(tmp_path, mini(GOOD_AUTH, 'auth = "password"')))
    closed = dataclasses.replace(closed, server=dataclasses.replace(closed.server, host="0.0.0.0"))
    assert network_warning(closed) is None


def test_a_warning_names_public_dashboards_and_the_demo_token_off_loopback(bundled_config):
    import dataclasses

    bundled = load_config(bundled_config, env={})
    exposed = dataclasses.replace(bundled, server=dataclasses.replace(bundled.server, host="0.0.0.0"))
    assert network_warning(exposed) == (
        'listening on 0.0.0.0, not only loopback: dashboard main is public (set auth = "token", "password" '
        'or "proxy" on each, see SECURITY.md); the push API takes the bundled demo token "demo-token-change-me" '
        "(set DASHBOARD_TOKEN)"
    )
    with_token = load_config(bundled_config, env={"DASHBOARD_TOKEN": "a-real-token-0123456789"})
    with_token = dataclasses.replace(with_token, server=dataclasses.replace(with_token.server, host="::"))
    assert network_warning(with_token).endswith(
        'dashboard main is public (set auth = "token", "password" or "proxy" on each, see SECURITY.md)'
    )


def test_a_world_readable_config_with_written_secrets_is_warned_about(tmp_path):
    path = write_config(tmp_path, AUTH_CONFIG)
    os.chmod(path, 0o644)
    warning = file_mode_warning(path)
    assert warning and "every user of this machine may read it (mode -rw-r--r--)" in warning
    assert "holds secrets (api.tokens.test and 5 more)" in warning  # push token, secret, 2 kiosk tokens, 2 users
    assert SECRET not in warning
    os.chmod(path, 0o640)
    assert file_mode_warning(path) is None
    from_env = write_config(tmp_path, mini('[api]\ntokens = { ci = "${CI_TOKEN}" }'), name="env.toml")
    os.chmod(from_env, 0o644)
    assert file_mode_warning(from_env) is None  # the secret is in the environment, not the file


WRITTEN = "s3cr3t-value-0123456789"


@pytest.mark.parametrize(
    "document",
    [
        {"api": {"tokens": {"ci": WRITTEN}}},
        {"auth": {"secret": WRITTEN}},
        {"auth": {"users": {"alice": WRITTEN}}},
        {"auth": {"readers": {"grafana": {"token": WRITTEN, "dashboards": ["main"]}}}},
        {"server": {"metrics_token": WRITTEN}},
        {"storage": {"url": f"postgresql+asyncpg://dash:{WRITTEN}@db/dash"}},
        {"hub": {"url": f"redis://:{WRITTEN}@127.0.0.1:6379/0"}},
        {"widgets": {"t": {"source": {"kind": "mqtt", "username": "u", "password": WRITTEN}}}},
        {"widgets": {"t": {"source": {"kind": "http_json", "headers": {"Authorization": f"Bearer {WRITTEN}"}}}}},
        {"widgets": {"t": {"source": {"kind": "command", "env": {"API_KEY": WRITTEN}}}}},
        {"widgets": {"t": {"source": {"kind": "sse", "token": WRITTEN}}}},
        {"notifiers": {"ops": {"kind": "webhook", "url": f"https://hooks.example.org/{WRITTEN}"}}},
        {"notifiers": {"phone": {"kind": "ntfy", "url": "${NTFY_URL}", "token": WRITTEN}}},
        {"notifiers": {"mail": {"kind": "email", "username": "a", "password": WRITTEN}}},
        {"notifiers": {"hook": {"kind": "webhook", "url": "${HOOK_URL}", "headers": {"X-Token": WRITTEN}}}},
        {"dashboards": [{"id": "main", "widgets": [], "note": f"https://u:{WRITTEN}@example.org/"}]},
    ],
    ids=lambda document: "/".join(_first_path(document)),
)
def test_a_secret_written_anywhere_a_config_holds_one_counts(document):
    assert written_secrets(document)
    from_env = json.loads(json.dumps(document).replace(WRITTEN, "${FROM_ENV}"))
    assert not written_secrets(from_env)  # the same place, taken from the environment


def _first_path(node) -> list[str]:
    if isinstance(node, dict) and node:
        key = next(iter(node))
        return [key, *_first_path(node[key])]
    return []


def test_settings_that_are_no_secrets_do_not_count():
    document = {
        "server": {"host": "127.0.0.1", "port": 8080},
        "storage": {"url": "sqlite+aiosqlite:///dashboard.db"},
        "hub": {"url": "redis://127.0.0.1:6379/0"},
        "alerts": {"url": "https://wall.example.org"},
        "dashboards": [{"id": "main", "widgets": ["t"], "users": ["alice"]}],
        "widgets": {
            "t": {
                "source": {
                    "kind": "http_json",
                    "url": "https://user@api.example.org:8443/v1",
                    "headers": {"Accept": "application/json"},
                    "env": {"LANG": "C"},
                    "password": "",
                }
            }
        },
    }
    assert not written_secrets(document)


@pytest.mark.gen_test(timeout=90)
async def test_serve_prints_the_warnings_at_start(tmp_path):
    from tests.process import ServerProcess

    process = ServerProcess(tmp_path, AUTH_CONFIG.replace('host = "127.0.0.1"', 'host = "0.0.0.0"'))
    process.config_path.chmod(0o644)
    process.start()
    try:
        await process.ready()
    finally:
        await process.stop()
    warnings = process.log_lines("warning: ")
    assert warnings[0].startswith("warning: listening on 0.0.0.0, not only loopback: dashboard open is public")
    assert warnings[1].startswith(f"warning: {process.config_path} holds secrets")
    assert len(warnings) == 2
    assert SECRET not in process.log() and LOBBY_TOKEN not in process.log()
    check = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "check", "--config", str(process.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (check.returncode, check.stderr) == (0, "")  # `check` judges the file, not where it will run


# --- password mode against the real server ----------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_password_dashboard_sends_strangers_to_the_login_page_and_back(servers):
    server = await servers.start(AUTH_CONFIG)
    client = WebClient(server.port)
    reply = await client.get("/d/ops?kiosk=1")
    assert reply.status == 303
    assert reply.headers["Location"] == "/login?next=%2Fd%2Fops%3Fkiosk%3D1"
    form = await client.get(reply.headers["Location"])
    assert form.status == 200 and 'name="password" type="password"' in form.text
    assert xsrf_field(form.text) and '<input type="hidden" name="next" value="/d/ops?kiosk=1">' in form.text
    assert "_xsrf" in client.jar and "HttpOnly" in form.cookie("_xsrf") and "SameSite=Strict" in form.cookie("_xsrf")
    signed = await client.post_form("/login", {"name": "bob", "password": BOB_PASSWORD, "next": "/d/ops?kiosk=1"})
    assert signed.status == 303 and signed.headers["Location"] == "/d/ops?kiosk=1"
    cookie = signed.cookie("dashboard_session")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP, not through a proxy that says otherwise
    assert BOB_PASSWORD not in cookie and BOB_HASH not in cookie
    page = await client.get("/d/ops")
    assert page.status == 200 and 'id="dashboard-data"' in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert "Signed in as <strong>bob</strong>" in page.text and 'action="/logout"' in page.text


@pytest.mark.gen_test(timeout=60)
async def test_a_user_not_listed_is_refused_with_403(servers):
    server = await servers.start(AUTH_CONFIG)
    client = WebClient(server.port)
    await sign_in(client, "bob", BOB_PASSWORD)
    reply = await client.get("/d/boss")
    assert reply.status == 403 and "bob may not see this dashboard." in reply.text
    other = WebClient(server.port)
    await sign_in(other, "alice", ALICE_PASSWORD)
    assert (await other.get("/d/boss")).status == 200


@pytest.mark.gen_test(timeout=60)
async def test_wrong_passwords_and_unknown_users_get_the_same_answer(servers, caplog):
    caplog.set_level(logging.INFO)
    server = await servers.start(AUTH_CONFIG)
    client = WebClient(server.port)
    wrong = await sign_in(client, "alice", "not the password", "/d/ops")
    unknown = await sign_in(client, "mallory", "not the password", "/d/ops")
    for reply in (wrong, unknown):
        assert reply.status == 401
        assert "Wrong user name or password." in reply.text
        assert "dashboard_session" not in client.jar
    assert "not the password" not in caplog.text
    messages = [r.getMessage() for r in caplog.records if r.name == "dashboard.auth"]
    assert "failed login for user alice from 127.0.0.1" in messages
    assert "failed login for an unknown user name from 127.0.0.1" in messages


@pytest.mark.gen_test(timeout=60)
async def test_login_and_logout_need_the_xsrf_field(servers):
    server = await servers.start(AUTH_CONFIG)
    client = WebClient(server.port)
    await client.get("/login")
    forged = await client.post_form("/login", {"name": "alice", "password": ALICE_PASSWORD}, xsrf=False)
    assert forged.status == 403 and "dashboard_session" not in client.jar
    await sign_in(client)
    assert "dashboard_session" in client.jar
    forged_logout = await client.post_form("/logout", {}, xsrf=False)
    assert forged_logout.status == 403 and "dashboard_session" in client.jar
    assert (await client.get("/d/ops")).status == 200


@pytest.mark.gen_test(timeout=60)
async def test_logout_ends_the_session(servers):
    server = await servers.start(AUTH_CONFIG)
    client = WebClient(server.port)
    await sign_in(client)
    stolen = dict(client.jar)
    out = await client.post_form("/logout", {})
    assert out.status == 303 and out.headers["Location"] == "/login"
    assert "dashboard_session" not in client.jar
    assert (await client.get("/d/ops")).status == 303
    # The cookie itself is still signed: a copy taken before works until it expires, like any
    # bearer of a stateless session (SECURITY.md says so); the browser that signed out has none.
    assert (await WebClient(server.port, jar=stolen).get("/d/ops")).status == 200


@pytest.mark.gen_test(timeout=60)
async def test_login_page_is_absent_without_users(servers):
    server = await servers.start(mini())
    assert (await WebClient(server.port).get("/login")).status == 404


@pytest.mark.gen_test(timeout=60)
async def test_a_forged_or_stale_cookie_opens_nothing(servers):
    server = await servers.start(AUTH_CONFIG)
    client = WebClient(server.port)
    await sign_in(client)
    value = client.jar["dashboard_session"]
    for bad in (value[:-2] + ("AA" if not value.endswith("AA") else "BB"), "2|1:0|10:1|5:dashb|4:e30=|abc", "x"):
        reply = await WebClient(server.port, jar={"dashboard_session": bad}).get("/d/ops")
        assert reply.status == 303, bad
    # The same session signed with another secret: refused as well.
    import tornado.web

    foreign = tornado.web.create_signed_value(
        SECRET[::-1], "dashboard_session", auth.encode_session(Viewer("alice", "password", time.time() + 99, "x"))
    )
    assert (await WebClient(server.port, jar={"dashboard_session": foreign.decode()}).get("/d/ops")).status == 303


@pytest.mark.gen_test(timeout=60)
async def test_the_session_cookie_is_secure_behind_a_trusted_https_proxy_only(servers):
    server = await servers.start(AUTH_CONFIG)
    proxied = WebClient(server.port, source="127.0.0.2", headers={"X-Forwarded-Proto": "https"})
    reply = await sign_in(proxied)
    assert "Secure" in reply.cookie("dashboard_session")
    direct = WebClient(server.port, headers={"X-Forwarded-Proto": "https"})  # 127.0.0.1 is no proxy here
    reply = await sign_in(direct)
    assert "Secure" not in reply.cookie("dashboard_session")


# --- token mode ------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_a_kiosk_link_is_exchanged_for_a_cookie_and_a_clean_address(servers, caplog):
    caplog.set_level(logging.DEBUG)
    server = await servers.start(AUTH_CONFIG)
    client = WebClient(server.port)
    assert (await client.get("/d/lobby")).status == 401
    reply = await client.get(f"/d/lobby?kiosk=1&token={LOBBY_TOKEN}")
    assert reply.status == 303
    assert reply.headers["Location"] == "/d/lobby?kiosk=1"
    assert reply.headers["Cache-Control"] == "no-store"
    cookie = reply.cookie("dashboard_session")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and LOBBY_TOKEN not in cookie
    page = await client.get("/d/lobby?kiosk=1")
    assert page.status == 200 and LOBBY_TOKEN not in page.text
    # A kiosk session is no password session, and the hall's token is not the lobby's.
    assert (await client.get("/d/ops")).status == 303
    hall = WebClient(server.port)
    assert (await hall.get(f"/d/lobby?token={HALL_TOKEN}")).status == 303
    assert (await hall.get("/d/lobby")).status == 403
    assert LOBBY_TOKEN not in caplog.text and HALL_TOKEN not in caplog.text
    access = [r.getMessage() for r in caplog.records if r.name == "tornado.access"]
    assert any("/d/lobby?kiosk=1&token=[redacted]" in line for line in access), access


@pytest.mark.gen_test(timeout=60)
async def test_a_wrong_kiosk_token_is_401_and_never_logged(servers, caplog):
    caplog.set_level(logging.DEBUG)
    server = await servers.start(AUTH_CONFIG)
    guess = "guessed-token-0123456789"
    for path in (f"/d/lobby?token={guess}", f"/?token={guess}", f"/d/open?token={guess}"):
        reply = await WebClient(server.port).get(path)
        assert reply.status == 401 and "This kiosk link is not valid" in reply.text
        assert guess not in reply.text
    assert guess not in caplog.text
    assert all(guess not in str(r.args) for r in caplog.records)


@pytest.mark.gen_test(timeout=60)
async def test_without_kiosk_tokens_a_token_in_the_address_is_ignored(servers, caplog):
    caplog.set_level(logging.DEBUG)
    server = await servers.start(
        loopback_server(grace="2s")
        + table("auth", secret=SECRET, users={"alice": ALICE_HASH})
        + dashboard("open", ["a"])
        + dashboard("ops", ["c"], auth="password")
        + push_widgets(a="number", c="number")
    )
    client = WebClient(server.port)
    for path in ("/d/open?token=x", "/d/open?token=", "/?token=abc", "/w/a?token=x"):
        assert (await client.get(path)).status == 200, path
    assert (await client.get("/d/ops?token=x")).status == 303  # to the login page, as without it
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.gen_test(timeout=60)
async def test_hostile_addresses_log_no_secret_and_no_warning(servers, caplog):
    """Static files, pages and the API alike: a 4xx is one INFO access line, and a
    token in the query never reaches a log line, however the query is written."""
    caplog.set_level(logging.DEBUG)
    server = await servers.start(AUTH_CONFIG)
    secret = "do-not-log-this-0123456789"
    static = f"/static/{static_tag(resource_dir('static'))}"
    client = WebClient(server.port)
    for method, path, status in [
        ("POST", f"{static}/page.js?token={secret}", 405),
        ("DELETE", f"{static}/page.js?token={secret}", 405),
        ("GET", f"{static}/../../pyproject.toml?token={secret}", 403),
        ("GET", f"{static}/%2e%2e/%2e%2e/pyproject.toml?token={secret}", 403),
        ("GET", f"{static}/missing.js?x=1#&token={secret}", 404),
        ("GET", f"/d/lobby?x=1#&token={secret}", 401),
        ("POST", f"/d/open?access_token={secret}", 405),
        ("GET", f"/nowhere?x=%23&token={secret}", 404),
    ]:
        reply = await client.request(method, path)
        assert reply.status == status, (method, path, reply.status)
    assert secret not in caplog.text
    assert all(secret not in str(r.args) for r in caplog.records)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["invalid kiosk token from 127.0.0.1"]  # the one a watcher of failed sign-ins reads


@pytest.mark.gen_test(timeout=60)
async def test_a_kiosk_session_is_renewed_while_the_screen_is_on(servers):
    server = await servers.start(with_lifetime("1h"))
    client = WebClient(server.port)
    await client.get(f"/d/lobby?token={LOBBY_TOKEN}")
    assert (await client.get("/d/lobby")).cookie("dashboard_session") is None  # plenty left: not renewed
    # A session with a quarter of its time left, as the screen would hold after 45 minutes.
    config = server.runtime.config.auth
    old = auth.new_session(config, auth.TOKEN, "lobby", time.time() - 2700)
    import tornado.web

    client.jar["dashboard_session"] = tornado.web.create_signed_value(
        SECRET, "dashboard_session", auth.encode_session(old)
    ).decode()
    reply = await client.get("/d/lobby")
    assert reply.status == 200
    renewed = auth.decode_session(
        tornado.web.decode_signed_value(SECRET, "dashboard_session", client.jar["dashboard_session"])
    )
    assert renewed.expires > old.expires + 2000


# --- proxy mode ------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_the_proxy_header_counts_from_a_trusted_proxy_only(servers):
    server = await servers.start(AUTH_CONFIG)
    carol = {"X-Forwarded-User": "carol@example.org"}
    assert (await WebClient(server.port, source="127.0.0.2").get("/d/sso", carol)).status == 200
    assert (await WebClient(server.port, source="127.0.0.2").get("/d/sso", {"X-Forwarded-User": "dave"})).status == 403
    assert (await WebClient(server.port, source="127.0.0.2").get("/d/sso")).status == 401
    unprintable = {"X-Forwarded-User": "carol\x85@example.org"}  # a next line (NEL) in Latin-1: nobody
    assert (await WebClient(server.port, source="127.0.0.2").get("/d/sso", unprintable)).status == 401
    forged = await WebClient(server.port).get("/d/sso", carol)  # straight from 127.0.0.1: not the proxy
    assert forged.status == 401 and "signing-in proxy" in forged.text


# --- the stream -----------------------------------------------------------------------------


def cookie_header(client: WebClient) -> dict:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in client.jar.items())}


@pytest.mark.gen_test(timeout=60)
async def test_a_stream_for_a_stranger_is_200_with_reload_then_closed(servers):
    server = await servers.start(AUTH_CONFIG)
    for path in ("/events/ops", "/events/lobby", "/events/sso", "/events/boss"):
        stream = await StreamClient.open(server.url(path))
        assert stream.status == 200  # never a 401: an EventSource gives up for good after one
        events = await stream.read_until_closed()
        assert [e.type for e in events] == ["reload"], path
        assert stream.decoder.retry >= 10_000
        stream.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_signed_in_stream_gets_values(servers):
    server = await servers.start(AUTH_CONFIG)
    client = WebClient(server.port)
    await sign_in(client)
    stream = await StreamClient.open(server.url("/events/boss"), headers=cookie_header(client))
    assert (await stream.next_event()).type == "hello"
    await server.record("d", 42)
    event = await stream.next_widget_event()
    assert (event.type, json.loads(event.data)["value"]) == ("d", 42)
    stream.close()
    proxied = await StreamClient.open_from(
        server.url("/events/sso"), local_host="127.0.0.2", headers={"X-Forwarded-User": "carol@example.org"}
    )
    assert (await proxied.next_event()).type == "hello"
    proxied.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_stream_ends_with_reload_when_its_session_expires(servers):
    server = await servers.start(with_lifetime("2s"))
    client = WebClient(server.port)
    await sign_in(client)
    stream = await StreamClient.open(server.url("/events/ops"), headers=cookie_header(client))
    assert (await stream.next_event()).type == "hello"
    events = await stream.read_until_closed(timeout=10)
    assert [e.type for e in events] == ["reload"]
    assert json.loads(events[0].data) == {"reason": "session ended"}
    assert (await client.get("/d/ops")).status == 303  # and the page then goes to the login page


@pytest.mark.gen_test(timeout=60)
async def test_a_stream_ends_when_a_reload_removes_its_user(servers):
    server = await servers.start(AUTH_CONFIG)
    path = server.config_path
    server.server.config_loader = lambda: load_config(path)
    client = WebClient(server.port)
    await sign_in(client, "bob", BOB_PASSWORD)
    ops = await StreamClient.open(server.url("/events/ops"), headers=cookie_header(client))
    assert (await ops.next_event()).type == "hello"
    lobby_client = WebClient(server.port)
    await lobby_client.get(f"/d/lobby?token={LOBBY_TOKEN}")
    lobby = await StreamClient.open(server.url("/events/lobby"), headers=cookie_header(lobby_client))
    assert (await lobby.next_event()).type == "hello"
    # Bob leaves the config; the lobby screen is untouched.
    path.write_text(AUTH_CONFIG.replace(f', bob = "{BOB_HASH}"', ""))
    assert await server.server.reload()
    events = await ops.read_until_closed(timeout=10)
    assert [e.type for e in events] == ["reload"]
    await server.record("b", 7)
    assert (await lobby.next_widget_event()).type == "b"
    lobby.close()


# --- the API ---------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_the_api_shows_each_viewer_its_widgets_only(servers):
    server = await servers.start(AUTH_CONFIG)
    for widget in "abcde":
        await server.record(widget, ord(widget))
    stranger = WebClient(server.port)
    listing = (await stranger.get("/api/widgets")).json()
    assert [w["id"] for w in listing["widgets"]] == ["a"]
    for path in ("/api/widgets/c", "/api/widgets/c/history"):
        reply = await stranger.get(path)
        assert reply.status == 401 and reply.headers["Content-Type"].startswith("application/json")
        assert reply.json() == {"error": "sign in first: this widget is on a dashboard that needs a viewer"}
    assert (await stranger.get("/api/widgets/nope")).status == 404
    bob = WebClient(server.port)
    await sign_in(bob, "bob", BOB_PASSWORD)
    listing = (await bob.get("/api/widgets")).json()
    assert [(w["id"], w["dashboards"]) for w in listing["widgets"]] == [("a", ["open"]), ("c", ["ops"])]
    assert (await bob.get("/api/widgets/c/history")).json()["samples"][0]["value"] == ord("c")
    reply = await bob.get("/api/widgets/d")
    assert reply.status == 403 and reply.json() == {"error": "this widget is on no dashboard you may see"}
    carol = WebClient(server.port, source="127.0.0.2", headers={"X-Forwarded-User": "carol@example.org"})
    assert [w["id"] for w in (await carol.get("/api/widgets")).json()["widgets"]] == ["a", "e"]


@pytest.mark.gen_test(timeout=60)
async def test_pushes_take_bearer_tokens_never_cookies(servers):
    server = await servers.start(AUTH_CONFIG)
    client = WebClient(server.port)
    await sign_in(client)
    body = json.dumps({"value": 1}).encode()
    reply = await client.request("POST", "/api/widgets/c", {"Content-Type": "application/json"}, body)
    assert reply.status == 401
    kiosk = await client.request(
        "POST", "/api/widgets/b", {"Content-Type": "application/json", "Authorization": f"Bearer {LOBBY_TOKEN}"}, body
    )
    assert kiosk.status == 401  # a kiosk token opens a page, it does not push
    assert await server.runtime.store.history("c") == []


# --- /metrics and /healthz -----------------------------------------------------------------

METRICS_TOKEN = "metrics-token-0123456789"


@pytest.mark.gen_test(timeout=60)
async def test_metrics_and_health_details_need_the_metrics_token_when_one_is_set(servers):
    server = await servers.start(
        AUTH_CONFIG.replace('grace = "2s"', f'grace = "2s"\nmetrics_token = "{METRICS_TOKEN}"')
    )
    client = WebClient(server.port)
    bare = await client.get("/healthz")
    assert (bare.status, bare.json()) == (200, {"status": "ok"})
    metrics = await client.get("/metrics")
    assert metrics.status == 401 and metrics.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert metrics.json()["error"].startswith("metrics need Authorization: Bearer")
    wrong = await client.get("/metrics", {"Authorization": "Bearer metrics-token-01234567890"})
    assert wrong.status == 401
    auth_header = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert (await client.get("/metrics", auth_header)).status == 200
    detailed = (await client.get("/healthz", auth_header)).json()
    assert detailed["status"] == "ok" and "database" in detailed and "instance" in detailed


@pytest.mark.gen_test(timeout=60)
async def test_metrics_and_health_stay_open_without_a_metrics_token(servers):
    server = await servers.start(AUTH_CONFIG)
    client = WebClient(server.port)
    assert (await client.get("/metrics")).status == 200
    assert "database" in (await client.get("/healthz")).json()


# --- the index -------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_the_index_lists_only_what_the_viewer_may_open(servers):
    server = await servers.start(AUTH_CONFIG)
    stranger = await WebClient(server.port).get("/")
    assert stranger.status == 200
    assert 'href="/d/open"' in stranger.text and "/d/ops" not in stranger.text and "/d/boss" not in stranger.text
    assert 'href="/login"' in stranger.text
    alice = WebClient(server.port)
    await sign_in(alice)
    listing = (await alice.get("/")).text
    assert all(f'href="/d/{d}"' in listing for d in ("open", "ops", "boss")) and "/d/lobby" not in listing


@pytest.mark.gen_test(timeout=60)
async def test_an_index_of_password_dashboards_only_goes_to_the_login_page(servers):
    text = mini(GOOD_AUTH, 'auth = "password"') + '\n[[dashboards]]\nid = "two"\nauth = "password"\nwidgets = ["w"]\n'
    server = await servers.start(text)
    reply = await WebClient(server.port).get("/")
    assert reply.status == 303 and reply.headers["Location"] == "/login?next=%2F"


@pytest.mark.gen_test(timeout=60)
async def test_the_stream_limit_per_client_counts_the_address_a_trusted_proxy_forwards(servers):
    text = AUTH_CONFIG.replace('grace = "2s"', 'grace = "2s"\nmax_streams_per_ip = 1')
    server = await servers.start(text)
    opened = []

    async def stream(source: str, forwarded: str):
        client = await StreamClient.open_from(
            server.url("/events/open"), local_host=source, headers={"X-Forwarded-For": forwarded}
        )
        opened.append(client)
        try:
            return (await client.next_event()).type == "hello"
        except EOFError:  # turned away: a retry, no event, closed
            return False

    assert await stream("127.0.0.2", "203.0.113.1")
    assert await stream("127.0.0.2", "203.0.113.2")  # another client behind the same proxy
    assert not await stream("127.0.0.2", "198.51.100.1, 203.0.113.1")  # the same client, whatever it adds
    assert await stream("127.0.0.1", "203.0.113.3")  # not from the proxy: 127.0.0.1 itself
    assert not await stream("127.0.0.1", "203.0.113.4")  # its header does not make it someone else
    await wait_until(lambda: len(server.runtime.streams) == 3)
    assert set(server.runtime.streams_per_ip) == {"203.0.113.1", "203.0.113.2", "127.0.0.1"}
    for client in opened:
        client.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_link_from_another_site_is_asked_again_from_this_one(servers):
    server = await servers.start(AUTH_CONFIG)
    cross = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    for path, target in (("/d/lobby?kiosk=1", "/d/lobby?kiosk=1"), ("/d/ops", "/d/ops")):
        reply = await WebClient(server.port).get(path, cross)
        assert reply.status == 200 and reply.headers["Cache-Control"] == "no-store"
        assert f'<meta http-equiv="refresh" content="0; url={target}">' in reply.text
    # Asked from this site, the answer is the usual one: no second bounce.
    assert (await WebClient(server.port).get("/d/lobby", {**cross, "Sec-Fetch-Site": "same-origin"})).status == 401
    assert (await WebClient(server.port).get("/d/ops", {**cross, "Sec-Fetch-Site": "same-origin"})).status == 303
    # A proxy's user comes with every request, cookies or not: nothing to ask again.
    assert (await WebClient(server.port).get("/d/sso", cross)).status == 401
    # A script's request (no navigation) is not bounced either.
    assert (await WebClient(server.port).get("/d/lobby", {**cross, "Sec-Fetch-Mode": "cors"})).status == 401


def test_an_unknown_user_costs_what_a_known_one_costs():
    # Checked against another user's hash (its scrypt parameters), and refused even if it matched.
    cheap = auth.hash_password("pw", n=2**4)
    assert auth.verify_password("pw", None, stand_in=cheap) is False
    assert auth.verify_password("pw", cheap, stand_in=ALICE_HASH) is True
