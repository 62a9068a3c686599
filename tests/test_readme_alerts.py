"""README.md's five-minute alerting example, run as written: its code blocks are taken
from the README and run in a copy of the bundled config.toml. The only changes are the
ports (free ones, not 9000 and 8888) and where python and the scripts are."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tests.backends import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


def example_blocks() -> list[tuple[str, str]]:
    """(language, text) of each code block of the "Five minutes" part of README.md."""
    readme = (ROOT / "README.md").read_text()
    part = readme.split("### Five minutes", 1)[1].split("\n### ", 1)[0]
    blocks = re.finditer(r"\n *```(?P<language>\w+)\n(?P<body>.*?)\n *```", part, re.S)
    return [(block["language"], textwrap.dedent(block["body"])) for block in blocks]


class Example:
    def __init__(self, directory: Path):
        self.directory = directory
        self.hook_port = free_port()
        self.port = free_port()
        self.receiver_log = directory / "receiver.log"
        self.processes: list[subprocess.Popen] = []

    def adapt(self, text: str) -> str:
        return (
            text.replace(".venv/bin/python run.py", f"{sys.executable} {ROOT / 'run.py'}")
            .replace("python3 examples/", f"{sys.executable} {ROOT / 'examples'}/")
            .replace("9000", str(self.hook_port))
            .replace("8888", str(self.port))
        )

    def shell(self, line: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-c", self.adapt(line)], cwd=self.directory, capture_output=True, text=True, timeout=60
        )

    def background(self, line: str, log: Path) -> subprocess.Popen:
        with open(log, "ab") as out:
            process = subprocess.Popen(
                ["bash", "-c", "exec " + self.adapt(line).removesuffix("&").strip()],
                cwd=self.directory,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        return process

    def received(self) -> str:
        return self.receiver_log.read_text() if self.receiver_log.exists() else ""

    def wait_for(self, predicate, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"no {what} after {timeout}s; receiver:\n{self.received()}"
            time.sleep(0.1)

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return json.loads(response.read())

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def example(tmp_path):
    example = Example(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(example.adapt((ROOT / "config.toml").read_text()))  # its port, 8888, made free
    config.chmod(0o600)
    yield example
    example.stop_all()


def test_the_five_minute_example_works_as_written(example):
    blocks = example_blocks()
    assert [language for language, _ in blocks] == ["sh", "toml", "sh", "sh", "sh"]
    (_, receiver), (_, toml), (_, check), (_, run_it), (_, put_back) = blocks

    # 1. the receiver
    example.background(receiver, example.receiver_log)
    wait_for_port(example.hook_port, process=example.processes[0])

    # 2. the config
    with open(example.directory / "config.toml", "a") as config:
        config.write("\n" + example.adapt(toml))

    # 3. check, and a test message
    check_line, test_line = check.splitlines()
    checked = example.shell(check_line)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == "config.toml: ok (1 dashboard(s), 11 widget(s), 2 alert rule(s), 1 notifier(s))\n"
    tested = example.shell(test_line)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout == f"hook: test message sent (webhook to http://127.0.0.1:{example.hook_port}/...): HTTP 204\n"
    example.wait_for(lambda: "Test notification from the dashboard" in example.received(), "test message")

    # 4. lower the line, run the server: the alert fires
    sed, serve = run_it.splitlines()
    assert example.shell(sed).returncode == 0
    server = example.background(serve, example.directory / "server.log")
    example.wait_for(lambda: "] CPU: firing" in example.received(), "firing notification", timeout=90)
    alerts = example.get("/api/alerts?state=firing&widget=cpu")["alerts"]
    assert alerts and alerts[0]["widget"] == "cpu" and " is above " in alerts[0]["message"]

    # 5. put it back, restart: kept, not told again; resolved by the first value under 70 %
    before = example.get("/api/widgets/cpu")["sample"]["id"]
    server.send_signal(signal.SIGINT)  # Ctrl-C
    assert server.wait(30) == 0
    sed, serve = put_back.splitlines()
    assert example.shell(sed).returncode == 0
    example.background(serve, example.directory / "server.log")
    wait_for_port(example.port, timeout=90)

    def first_value():
        sample = example.get("/api/widgets/cpu")["sample"]
        return sample["value"] if sample["id"] > before else None

    deadline = time.monotonic() + 90  # as long as the first start may take on a loaded machine
    while (value := first_value()) is None:
        assert time.monotonic() < deadline, "no new CPU value after the restart"
        time.sleep(0.2)
    if value < 70:
        example.wait_for(lambda: "] CPU: resolved" in example.received(), "resolved notification")
    else:  # this machine is busy: the alert rightly fires on
        assert example.get("/api/alerts?state=firing&widget=cpu")["alerts"]
    assert example.received().count("] CPU: firing") == 1
