"""docs/extending.md, run: its three examples (a source kind, a view, an endpoint)
are applied as written to a copy of the project, which is then started as a real
server in a subprocess and checked from outside, the view in Chromium. If the
guide and the code drift apart, this fails."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.browser.browsing import open_live, wait_for_value
from tests.configs import dashboard, loopback_server, table
from tests.helpers import TOKEN, wait_until

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "extending.md"
COPIED = ("dashboard", "templates", "static", "migrations", "run.py")
MARKER = re.compile(r"<!-- example: (\w+), (.*?) -->\n```\w*\n(.*?)```", re.S)


@dataclass
class Example:
    name: str  # source, view or endpoint
    where: str  # "new file: PATH", "insert into: PATH, after: TEXT" (or before:), "config"
    code: str


def examples(name: str) -> list[Example]:
    found = [Example(*match.groups()) for match in MARKER.finditer(GUIDE.read_text())]
    return [example for example in found if example.name == name]


def apply(example: Example, tree: Path) -> None:
    if example.where.startswith("new file: "):
        (tree / example.where.removeprefix("new file: ")).write_text(example.code)
        return
    match = re.fullmatch(r"insert into: (\S+), (after|before): (.*)", example.where)
    assert match, f"docs/extending.md: cannot read the place {example.where!r}"
    path, side, anchor = tree / match[1], match[2], match[3]
    lines = path.read_text().splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines) if line.strip().startswith(anchor.strip())), None)
    assert at is not None, f"docs/extending.md: {match[1]} has no line starting with {anchor!r}"
    lines.insert(at + 1 if side == "after" else at, example.code)
    path.write_text("".join(lines))


def project_with(name: str, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the project with the guide's `name` example applied; and the example's config."""
    tree = tmp_path / "project"
    tree.mkdir()
    for part in COPIED:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, tree / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tree / part)
    config = ""
    for example in examples(name):
        if example.where == "config":
            config += example.code
        else:
            apply(example, tree)
    return tree, config


class CopyServer:
    """run.py of the copied project, serving on a free port; stopped at the end."""

    def __init__(self, tree: Path, config_text: str):
        self.tree = tree
        self.config = tree / "config.toml"
        self.config.write_text(config_text)
        self.log = tree / "server.log"
        with open(self.log, "wb") as log:
            # run.py puts its own directory first on sys.path: the copy is what runs.
            self.process = subprocess.Popen(
                [sys.executable, "run.py", "serve", "--config", str(self.config)],
                cwd=tree,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.port = 0

    async def started(self) -> CopyServer:
        def listening():
            if self.process.poll() is not None:
                raise AssertionError(f"the copy exited with {self.process.returncode}:\n{self.log.read_text()}")
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", self.log.read_text())
            return int(found[1]) if found else None

        self.port = await wait_until(listening, timeout=30, message="the copied project listening")
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def copies():
    started: list[CopyServer] = []

    async def start(tree: Path, config_text: str) -> CopyServer:
        server = CopyServer(tree, config_text)
        started.append(server)
        return await server.started()

    yield start
    for server in started:
        server.stop()


async def get_json(url: str, **kwargs) -> tuple[int, dict]:
    response = await AsyncHTTPClient().fetch(url, raise_error=False, **kwargs)
    return response.code, json.loads(response.body)


def test_the_guide_has_each_example():
    for name in ("source", "view", "endpoint"):
        found = examples(name)
        assert any(e.where == "config" for e in found) or name == "endpoint", name
        assert any(e.where != "config" for e in found), name


@pytest.mark.gen_test(timeout=60)
async def test_the_source_kind_example_runs(tmp_path, copies):
    tree, widget_config = project_with("source", tmp_path)
    (tree / "queue-length.txt").write_text("42\n")
    config = loopback_server() + dashboard("main", ["queue"]) + widget_config
    (tree / "checked.toml").write_text(config.replace('path = "queue-length.txt"', "pth = 1"))
    check = subprocess.run(
        [sys.executable, "run.py", "check", "--config", "checked.toml"], cwd=tree, capture_output=True, text=True
    )
    # The kind is known and reads its options like any other: a typo is one clear line.
    assert check.returncode == 2, check.stderr
    assert check.stderr == "error: checked.toml: widgets.queue.source.path: missing\n"
    server = await copies(tree, config)

    async def shown(expected):
        code, body = await get_json(server.url("/api/widgets/queue"))
        return code == 200 and body["sample"] is not None and body["sample"]["value"] == expected

    await wait_until(lambda: shown(42), timeout=10, message="the file's number on the widget")
    (tree / "queue-length.txt").write_text("7\n")
    await wait_until(lambda: shown(7), timeout=10, message="the file's new number")


@pytest.mark.gen_test(timeout=90)
async def test_the_view_example_renders_and_updates_in_the_page(tmp_path, copies, browser):
    tree, widget_config = project_with("view", tmp_path)
    config = loopback_server() + table("api", tokens={"test": TOKEN}) + dashboard("main", ["progress"]) + widget_config
    server = await copies(tree, config)
    pushed = await AsyncHTTPClient().fetch(
        server.url("/api/widgets/progress"),
        method="POST",
        body=json.dumps({"value": 50}),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert pushed.code == 200
    page, log = await open_live(browser, server.url("/d/main"))
    assert await page.get_attribute("#w-progress [data-role=fill]", "width") == "25.0"  # the first paint
    await AsyncHTTPClient().fetch(
        server.url("/api/widgets/progress"),
        method="POST",
        body=json.dumps({"value": 150}),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    await wait_for_value(page, "progress", "150")
    assert await page.get_attribute("#w-progress [data-role=fill]", "width") == "75.0"  # render_bar
    assert log.problems() == []


@pytest.mark.gen_test(timeout=60)
async def test_the_endpoint_example_answers_with_the_viewer_rules(tmp_path, copies):
    tree, _ = project_with("endpoint", tmp_path)
    config = (
        loopback_server()
        + table("auth", secret="s" * 40, tokens={"lobby": "lobby-token-0123456789"})
        + dashboard("main", ["a"], title="Main")
        + dashboard("lobby", ["a"], auth="token")
        + '\n[widgets.a]\nview = "text"\nsource = { kind = "push" }\n'
    )
    server = await copies(tree, config)
    code, body = await get_json(server.url("/api/dashboards"))
    assert code == 200
    assert body == {"dashboards": [{"id": "main", "title": "Main", "widgets": ["a"]}]}  # lobby needs its token


def test_a_guide_block_that_no_longer_fits_the_code_fails(tmp_path):
    """The check itself can fail: an anchor the code lost is reported, not skipped."""
    (tmp_path / "x.py").write_text("print('hello')\n")
    with pytest.raises(AssertionError, match="has no line starting with"):
        apply(Example("view", "insert into: x.py, after: KINDS = {", "pass\n"), tmp_path)
