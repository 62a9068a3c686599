"""Every answer carries the security headers (pages, errors, the API, the stream,
static files); pages need no inline script or style, so the policy allows none;
requests past the size limits are refused before they cost anything."""

from __future__ import annotations

import asyncio
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pytest

from dashboard import __version__
from dashboard.core.resources import resource_dir
from dashboard.web.app import static_tag
from tests.configs import dashboard, push_widgets, widget
from tests.helpers import BASE_CONFIG, StreamClient
from tests.test_auth import AUTH_CONFIG, LOBBY_TOKEN
from tests.webclient import WebClient

ROOT = Path(__file__).resolve().parent.parent

PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)


def assert_common(headers, where: str) -> None:
    assert headers["X-Content-Type-Options"] == "nosniff", where
    assert headers["Referrer-Policy"] == "no-referrer", where
    policy = headers["Content-Security-Policy"]
    assert policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy, where


@pytest.mark.gen_test(timeout=60)
async def test_every_kind_of_answer_carries_the_headers(servers):
    server = await servers.start(AUTH_CONFIG)
    client = WebClient(server.port)
    pages = {
        "/": 200,
        "/d/open": 200,
        "/d/open?kiosk=1": 200,
        "/nowhere": 404,
        "/d/nope": 404,
        "/login": 200,
        "/d/lobby": 401,
        "/d/ops": 303,
        f"/d/lobby?token={LOBBY_TOKEN}": 303,
        "/d/lobby?token=wrong-one": 401,
    }
    for path, status in pages.items():
        reply = await client.get(path)
        assert reply.status == status, (path, reply.text)
        assert_common(reply.headers, path)
        assert reply.headers["Content-Security-Policy"] == PAGE_POLICY, path
        assert reply.headers["X-Frame-Options"] == "SAMEORIGIN", path
    forged = await WebClient(server.port).post_form("/logout", {}, xsrf=False)
    assert forged.status == 403
    assert_common(forged.headers, "xsrf refusal")
    for path, status in {
        "/api/widgets": 200,
        "/api/widgets/a": 200,
        "/api/widgets/nope": 404,
        "/api/widgets/c": 401,
        "/api/widgets/a/history?limit=x": 400,
        "/healthz": 200,
        "/metrics": 200,
    }.items():
        reply = await WebClient(server.port).get(path)
        assert reply.status == status, (path, reply.text)
        assert_common(reply.headers, path)
    push = await client.request("POST", "/api/widgets/a", {"Content-Type": "application/json"}, b'{"value": 1}')
    assert push.status == 401
    assert_common(push.headers, "push refusal")
    static = f"/static/{static_tag(resource_dir('static'))}"
    for path, status in {f"{static}/app.css": 200, f"{static}/page.js": 200, f"{static}/missing.js": 404}.items():
        reply = await client.get(path)
        assert reply.status == status, path
        assert_common(reply.headers, path)
        assert reply.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert (await client.get(f"{static}/page.js")).headers["Content-Type"] in (
        "application/javascript",
        "text/javascript",
    )  # nosniff needs the right type for modules
    stream = await StreamClient.open(server.url("/events/open"))
    assert stream.status == 200
    assert stream.headers["x-content-type-options"] == "nosniff"
    assert stream.headers["content-security-policy"] == PAGE_POLICY
    stream.close()


@pytest.mark.parametrize(
    "sources, policy, frame_options",
    [
        ("""["'none'"]""", "frame-ancestors 'none'", "DENY"),
        ("""["'self'", "https://wall.example.org"]""", "frame-ancestors 'self' https://wall.example.org", None),
        ("""["https:"]""", "frame-ancestors https:", None),
    ],
)
@pytest.mark.gen_test(timeout=60)
async def test_frame_ancestors_is_configurable(servers, sources, policy, frame_options):
    server = await servers.start(BASE_CONFIG.replace('grace = "2s"', f'grace = "2s"\nframe_ancestors = {sources}'))
    for path in ("/d/main", "/nowhere"):
        reply = await WebClient(server.port).get(path)
        assert reply.headers["Content-Security-Policy"].endswith("; " + policy)
        assert reply.headers.get("X-Frame-Options") == frame_options


class InlineFinder(HTMLParser):
    """Markup that a policy without 'unsafe-inline' would block, or that runs script."""

    def __init__(self):
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...>")
            if name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self.problems.append(f"<{tag} {name}={value}>")
        if tag == "style":
            self.problems.append("<style> element")
        if tag == "script" and "src" not in attributes and attributes.get("type") != "application/json":
            self.problems.append("inline <script>")


CONFIG_WITH_EVERYTHING = (
    AUTH_CONFIG
    + dashboard("views", ["t", "l", "s", "g", "m", "k"])
    + push_widgets(t="text", l="list", s="status", g="graph", m="meter")
    + widget("k", "clock")
)


@pytest.mark.gen_test(timeout=60)
async def test_no_page_has_inline_script_or_style(servers):
    server = await servers.start(CONFIG_WITH_EVERYTHING)
    await server.record("t", "<b style='color:red' onclick='alert(1)'>x</b>")
    await server.record("l", [{"label": "<script>alert(1)</script>", "value": 1}])
    await server.record("s", {"state": "down", "detail": "<img src=x onerror=alert(1)>"})
    for value in (1, 2, 3):
        await server.record("g", value)
    await server.record("m", 50)
    client = WebClient(server.port)
    await client.get(f"/d/lobby?token={LOBBY_TOKEN}")
    paths = [
        "/",
        "/d/open",
        "/d/views",
        "/d/views?kiosk=1",
        "/d/lobby",
        "/login",
        "/nowhere",
        "/d/sso",
        "/login?next=%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
    ]
    for path in paths:
        reply = await client.get(path)
        finder = InlineFinder()
        finder.feed(reply.text)
        assert finder.problems == [], (path, finder.problems)
    signed = await client.post_form("/login", {"name": "alice", "password": "wrong", "next": "/"})
    bounced = await WebClient(server.port).get("/d/ops", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
    assert 'http-equiv="refresh"' in bounced.text
    for reply in (signed, bounced):
        finder = InlineFinder()
        finder.feed(reply.text)
        assert finder.problems == []


MODULE_IMPORT = re.compile(r"""^import\s[^;]*?\sfrom\s+"([^"]+)";""", re.M | re.S)


@pytest.mark.gen_test(timeout=30)
async def test_every_module_of_a_page_carries_the_version_in_its_url(servers):
    """page.js imports ./stream.js and the rest: relative imports inherit the path of the
    importing module, so with the version in the path (not a ?v= query) every module a
    page loads is of the same version, and a cached module of another one is never used."""
    server = await servers.start()
    client = WebClient(server.port)
    page = (await client.get("/d/main")).text
    (entry,) = re.findall(r'<script type="module" src="([^"]+)"></script>', page)
    tag = static_tag(resource_dir("static"))
    prefix = f"/static/{tag}/"
    assert entry == prefix + "page.js"
    assert tag.startswith(f"{__version__}-")
    assert re.findall(r'<link rel="stylesheet" href="([^"]+)">', page) == [prefix + "app.css"]
    seen, pending = set(), [entry]
    while pending:
        url = pending.pop()
        seen.add(url)
        reply = await client.get(url)
        assert reply.status == 200, url
        assert reply.headers["Cache-Control"] == "public, max-age=315360000, immutable"
        imports = MODULE_IMPORT.findall(reply.text)
        assert all(name.startswith("./") for name in imports), (url, imports)  # relative: same tag
        pending += [u for u in (urljoin(url, name) for name in imports) if u not in seen]
    assert {url.rsplit("/", 1)[1] for url in seen} == {p.name for p in (ROOT / "static").glob("*.js")}
    assert all(url.startswith(prefix) for url in seen)
    # Another version's modules are not served here, nor modules without a version.
    for other in ("/static/page.js", "/static/0.0.1-0000000000/page.js"):
        assert (await client.get(other)).status == 404, other


def test_the_static_tag_changes_with_any_static_file(tmp_path):
    (tmp_path / "page.js").write_text('import { x } from "./stream.js";\n')
    (tmp_path / "stream.js").write_text("export const x = 1;\n")
    before = static_tag(tmp_path)
    static_tag.cache_clear()
    (tmp_path / "stream.js").write_text("export const x = 2;\n")
    assert static_tag(tmp_path) != before


def test_the_page_scripts_never_parse_values_as_markup():
    for script in sorted((ROOT / "static").glob("*.js")):
        code = script.read_text()
        for sink in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            'setAttribute("on',
            "createContextualFragment",
        ):
            assert sink not in code, f"{script.name} uses {sink}"


# --- size limits -----------------------------------------------------------------------------


async def raw_exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
    except ConnectionError:
        pass  # the server may stop reading (and close) before all was sent
    try:
        return await asyncio.wait_for(reader.read(65536), 10)
    except ConnectionError:
        return b""
    finally:
        writer.close()


@pytest.mark.gen_test(timeout=60)
async def test_headers_past_the_limit_are_refused(servers):
    server = await servers.start(BASE_CONFIG.replace('grace = "2s"', 'grace = "2s"\nmax_header = "4KiB"'))
    big = b"GET /d/main HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 8192 + b"\r\n\r\n"
    answer = await raw_exchange(server.port, big)
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:100]
    fits = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Padding: " + b"a" * 2048 + b"\r\n\r\n"
    assert (await raw_exchange(server.port, fits)).startswith(b"HTTP/1.1 200")


@pytest.mark.gen_test(timeout=60)
async def test_bodies_past_the_limit_are_refused_unread(servers):
    server = await servers.start(AUTH_CONFIG.replace('grace = "2s"', 'grace = "2s"\nmax_body = "4KiB"'))
    head = (
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 1000000\r\n\r\n"
    )
    for path in (b"/login", b"/api/silences", b"/d/open"):  # answered from the head, as JSON, whatever the path
        answer = await raw_exchange(server.port, head.replace(b"/login", path) + b"a" * 8192)
        status, _, rest = answer.partition(b"\r\n")
        headers, _, body = rest.partition(b"\r\n\r\n")
        assert status == b"HTTP/1.1 413 Content Too Large", answer[:100]
        assert b"Content-Type: application/json; charset=utf-8" in headers and b"nosniff" in headers
        assert json.loads(body) == {"error": "body too large: at most 4096 bytes ([server] max_body)"}
    # A length said twice ("n, n", or two headers) is n to Tornado, and so to the limit.
    for lengths in (b"Content-Length: 1000000, 1000000\r\n", b"Content-Length: 1000000\r\nContent-Length: 1000000\r\n"):
        answer = await raw_exchange(server.port, head.replace(b"Content-Length: 1000000\r\n", lengths) + b"a" * 8192)
        assert answer.startswith(b"HTTP/1.1 413 Content Too Large"), answer[:100]
    # Leading zeros count for nothing: this body fits, is read and stored.
    push = (
        b"POST /api/widgets/b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token-0123456789\r\n"
        b"Content-Type: application/json\r\nConnection: close\r\nContent-Length: " + b"0" * 30 + b"12\r\n\r\n"
    )
    answer = await raw_exchange(server.port, push + b'{"value": 1}')
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]
    # Pushes keep their own limit ([api] max_body, 64KiB here), larger than the server's.
    body = b'{"value": "' + b"x" * 16384 + b'"}'
    reply = await WebClient(server.port).request(
        "POST",
        "/api/widgets/b",
        {"Authorization": "Bearer test-token-0123456789", "Content-Type": "application/json"},
        body,
    )
    assert reply.status == 400 and "number" in reply.json()["error"]  # read whole, then refused for its value
    assert (await WebClient(server.port).get("/healthz")).status == 200


FRAMING = "malformed request: expected one Content-Length of digits"
HEAD = "malformed request: expected a request line (method, target, HTTP/1.x) and header lines"


@pytest.mark.parametrize(
    "request_text, error",
    [
        (b"GET / HTTP/9.1\r\nHost: x\r\n\r\n", HEAD),
        (b"GET /\r\nHost: x\r\n\r\n", HEAD),
        (b"GET / HTTP/1.1\r\nHost x\r\n\r\n", HEAD),  # no colon
        (b"POST /api/widgets/b HTTP/1.1\r\nHost: x\r\nX-A: 1\x00\r\n\r\n", HEAD),
        (
            b"GET /api/widgets/a/series?" + b"a=1&" * 1001 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            "malformed request: expected a query of at most 1000 parameters",
        ),
    ]
    + [
        (text, FRAMING)
        for text in [
            b"POST /api/silences HTTP/1.1\r\nHost: x\r\nContent-Length: 12,13\r\n\r\n",
            b"POST /api/silences HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: \xd9\xa1\r\n\r\n",  # an Arabic digit
            b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
            b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"1000\r\n"
            + b"a" * 4096
            + b"\r\n"
            + b"1000\r\n"
            + b"a" * 4096
            + b"\r\n0\r\n\r\n",  # past max_body
            b"POST /api/widgets/b HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
        ]
    ],
)
@pytest.mark.gen_test(timeout=60)
async def test_a_request_that_cannot_be_read_gets_a_whole_json_400(servers, request_text, error, caplog):
    server = await servers.start(AUTH_CONFIG.replace('grace = "2s"', 'grace = "2s"\nmax_body = "4KiB"'))
    answer = await raw_exchange(server.port, request_text)
    status, _, rest = answer.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status == b"HTTP/1.1 400 Bad Request", answer[:100]
    assert b"Content-Type: application/json; charset=utf-8" in headers and b"Connection: close" in headers
    assert json.loads(body)["error"].startswith(error)
    assert not [r for r in caplog.records if r.getMessage().startswith("Malformed HTTP message")]  # counted instead
    assert (await WebClient(server.port).get("/healthz")).status == 200


def test_no_secret_shaped_thing_in_the_templates():
    for template in (ROOT / "templates").glob("*.html"):
        text = template.read_text()
        assert "|safe" not in text.replace('"&#13;"|safe', ""), template.name  # autoescape stays in charge
        assert not re.search(r"autoescape\s+false", text), template.name
