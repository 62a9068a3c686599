"""Each kind of notifier against a real peer on loopback: the exact webhook, Slack,
Mattermost and ntfy bodies at an HTTP receiver; mail through a real SMTP server
(aiosmtpd) with STARTTLS or TLS and a login, parsed as a mail client would; a real
program for the command notifier; and `run.py notify-test NAME`."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import sys
import time
from pathlib import Path

import pytest
import tornado.web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from dashboard.alerts.message import Item, Message, trial_message
from dashboard.alerts.notifiers import NotifyError, build_notifier
from dashboard.config import load_config
from tests.alerting import notifier
from tests.backends import free_port
from tests.configs import dashboard, loopback_server, push_widget
from tests.helpers import write_config
from tests.peers import self_signed_certificate, serving
from tests.process import ROOT

UID = "5f0c6f1e-2a9b-4c3d-8e7f-0123456789ab"
CPU = {
    "id": 7,
    "widget": "cpu",
    "title": "CPU",
    "condition": "crit",
    "severity": "crit",
    "state": "firing",
    "started_at": "2026-11-20T12:00:00.000Z",
    "fired_at": "2026-11-20T12:02:00.000Z",
    "resolved_at": None,
    "value": 95,
    "message": "CPU 95 % is above crit (90 %)",
    "acked_by": None,
    "acked_at": None,
    "silenced": None,
}
DISK = {
    **CPU,
    "id": 8,
    "widget": "disk",
    "title": "Disk free",
    "condition": "warn",
    "severity": "warn",
    "state": "resolved",
    "resolved_at": "2026-11-20T12:30:00.000Z",
    "value": 40,
    "message": "Disk free is back above warn: 40 %",
}
MESSAGE = Message(
    UID,
    (Item("firing", CPU), Item("resolved", DISK)),
    timezone="Europe/Berlin",
    url="https://wall.example.org",
    dashboards={"cpu": "main"},
)
TEXT = (
    "FIRING · CRIT · CPU\n"
    "CPU 95 % is above crit (90 %)\n"
    "since 13:02 20 Nov (Europe/Berlin)\n"
    "https://wall.example.org/d/main\n"
    "\n"
    "RESOLVED · WARN · Disk free\n"
    "Disk free is back above warn: 40 %\n"
    "fired 13:02 20 Nov (Europe/Berlin), resolved 13:30 20 Nov (Europe/Berlin)\n"
    "\n"
    f"notification {UID}"
)


def configured(tmp_path: Path, *notifiers: str):
    text = loopback_server() + dashboard("main", ["cpu"]) + push_widget("cpu", "number") + "".join(notifiers)
    return load_config(write_config(tmp_path, text))


def test_the_text_reads_well_on_a_phone():
    assert MESSAGE.title() == "[CRIT] 2 alerts: 1 firing, 1 resolved"
    assert MESSAGE.text() == TEXT
    assert max(len(line) for line in TEXT.splitlines() if "notification" not in line) <= 80


@pytest.mark.gen_test(timeout=30)
async def test_the_webhook_body_is_the_documented_json(tmp_path, receiver):
    inbox, port = receiver
    config = configured(tmp_path, notifier("hook", "webhook", url=f"http://127.0.0.1:{port}/in?key=1"))
    answer = await build_notifier(config.notifiers["hook"]).send(MESSAGE)
    assert answer == "HTTP 200"
    (got,) = inbox.received
    assert got.path == "/in" and got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Dashboard-Notification"] == UID
    cpu = {key: value for key, value in CPU.items() if key != "silenced"}
    disk = {key: value for key, value in DISK.items() if key != "silenced"}
    assert got.json() == {
        "id": UID,
        "version": 1,
        "status": "firing",
        "severity": "crit",
        "title": "[CRIT] 2 alerts: 1 firing, 1 resolved",
        "text": TEXT,
        "alerts": [
            {"event": "firing", **cpu, "url": "https://wall.example.org/d/main"},
            {"event": "resolved", **disk, "url": None},
        ],
        "sender": "dashboard 0.1.0",
    }


@pytest.mark.gen_test(timeout=30)
async def test_slack_and_mattermost_get_their_own_bodies(tmp_path, receiver):
    inbox, port = receiver
    config = configured(
        tmp_path,
        notifier("slack", "webhook", url=f"http://127.0.0.1:{port}/slack", format="slack"),
        notifier("mm", "webhook", url=f"http://127.0.0.1:{port}/mm", format="mattermost", headers={"X-Team": "ops"}),
    )
    await build_notifier(config.notifiers["slack"]).send(MESSAGE)
    await build_notifier(config.notifiers["mm"]).send(MESSAGE)
    slack, mattermost = inbox.received
    assert slack.json() == {
        "text": "*[CRIT] 2 alerts: 1 firing, 1 resolved*\n\n"
        + TEXT.replace("FIRING · CRIT · CPU", "*FIRING · CRIT · CPU*").replace(
            "RESOLVED · WARN · Disk free", "*RESOLVED · WARN · Disk free*"
        )
    }
    assert mattermost.json() == {
        "text": "#### [CRIT] 2 alerts: 1 firing, 1 resolved\n\n"
        + TEXT.replace("FIRING · CRIT · CPU", "**FIRING · CRIT · CPU**").replace(
            "RESOLVED · WARN · Disk free", "**RESOLVED · WARN · Disk free**"
        ),
        "username": "dashboard",
    }
    assert mattermost.headers["X-Team"] == "ops"


@pytest.mark.gen_test(timeout=30)
async def test_ntfy_gets_its_json_at_the_server_root_with_priority_and_tags(tmp_path, receiver):
    inbox, port = receiver
    config = configured(
        tmp_path,
        notifier(
            "phone", "ntfy", url=f"http://127.0.0.1:{port}/ntfy/ops-alerts", token="tk_secret", priority={"crit": 5}
        ),
    )
    await build_notifier(config.notifiers["phone"]).send(MESSAGE)
    resolved = Message(UID, (Item("resolved", DISK),))
    await build_notifier(config.notifiers["phone"]).send(resolved)
    first, second = inbox.received
    assert first.path == "/ntfy/" and first.headers["Authorization"] == "Bearer tk_secret"
    assert first.json() == {
        "topic": "ops-alerts",
        "title": "[CRIT] 2 alerts: 1 firing, 1 resolved",
        "message": TEXT,
        "priority": 5,
        "tags": ["rotating_light"],
        "click": "https://wall.example.org/d/main",
    }
    assert second.json() == {
        "topic": "ops-alerts",
        "title": "[WARN] Disk free: resolved",
        "message": resolved.text(),
        "priority": 3,
        "tags": ["white_check_mark"],
    }


class SlowHandler(tornado.web.RequestHandler):
    async def post(self) -> None:
        await self.settings["release"].wait()


@pytest.fixture
def slow_peer(io_loop):
    with serving(io_loop, [(r"/.*", SlowHandler)]) as peer:
        yield peer


@pytest.mark.gen_test(timeout=30)
async def test_an_attempt_that_takes_too_long_fails_with_the_reason(tmp_path, slow_peer):
    config = configured(
        tmp_path,
        notifier("slow", "webhook", url=slow_peer.url("/hook/secret-path?token=abc"), timeout="300ms"),
        notifier("refused", "webhook", url="http://127.0.0.1:1/hook/secret"),
    )
    with pytest.raises(NotifyError) as slow:
        await build_notifier(config.notifiers["slow"]).send(MESSAGE)
    assert str(slow.value) == f"no answer from http://127.0.0.1:{slow_peer.port}: timed out"
    with pytest.raises(NotifyError) as refused:
        await build_notifier(config.notifiers["refused"]).send(MESSAGE)
    assert str(refused.value).startswith("cannot reach http://127.0.0.1:1")
    assert "secret" not in str(slow.value) + str(refused.value)  # a webhook's path is its secret


# --- email -----------------------------------------------------------------------------


class Mailbox:
    """aiosmtpd's handler: what the SMTP server accepted."""

    def __init__(self):
        self.envelopes = []
        self.logins = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticator(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((mechanism, auth_data.login, auth_data.password))
        # handled=False: aiosmtpd answers a refusal with its own 535.
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"alerts", b"s3cret pass"), handled=False)


@pytest.fixture
def certificate(tmp_path, monkeypatch):
    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts our CA, as a user would set it up
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def starttls_server(certificate):
    mailbox = Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname="localhost",
        tls_context=certificate,
        require_starttls=True,
        authenticator=mailbox.authenticator,
        auth_required=True,
    )
    controller.start()
    yield mailbox, controller.port
    controller.stop()


@pytest.fixture
def tls_server(certificate):
    mailbox = Mailbox()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), ssl_context=certificate, server_hostname="localhost"
    )
    controller.start()
    yield mailbox, controller.port
    controller.stop()


def email_notifier(port: int, **keys) -> str:
    return notifier(
        "mail",
        "email",
        host="localhost",
        port=port,
        **{
            "username": "alerts",
            "password": "s3cret pass",
            "from": "Dashboard <alerts@example.org>",
            "to": ["oncall@example.org", "Lead <lead@example.org>"],
            **keys,
        },
    )


def parsed(envelope):
    return email.message_from_bytes(envelope.original_content, policy=email.policy.default)


@pytest.mark.gen_test(timeout=30)
async def test_mail_goes_through_starttls_with_a_login_to_every_recipient(tmp_path, starttls_server):
    mailbox, port = starttls_server
    config = configured(tmp_path, email_notifier(port))
    answer = await build_notifier(config.notifiers["mail"]).send(MESSAGE)
    assert answer == "accepted for 2 recipient(s)"
    (envelope,) = mailbox.envelopes
    assert envelope.mail_from == "alerts@example.org"
    assert envelope.rcpt_tos == ["oncall@example.org", "lead@example.org"]
    assert mailbox.logins[0][1:] == (b"alerts", b"s3cret pass")
    mail = parsed(envelope)
    assert mail["Subject"] == "[CRIT] 2 alerts: 1 firing, 1 resolved"
    assert mail["From"] == "Dashboard <alerts@example.org>"
    assert mail["To"] == "oncall@example.org, Lead <lead@example.org>"
    assert mail["Message-ID"] == f"<{UID}@example.org>"  # a mail system drops a repeat by itself
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content().replace("\r\n", "\n").rstrip("\n") == TEXT


@pytest.mark.gen_test(timeout=30)
async def test_mail_goes_over_tls_and_a_wrong_password_says_so(tmp_path, tls_server, starttls_server):
    mailbox, port = tls_server
    config = configured(tmp_path, email_notifier(port, security="tls", username="", password=""))
    await build_notifier(config.notifiers["mail"]).send(MESSAGE)
    assert len(mailbox.envelopes) == 1
    _, starttls_port = starttls_server
    config = configured(tmp_path, email_notifier(starttls_port, password="wrong"))
    with pytest.raises(NotifyError) as refused:
        await build_notifier(config.notifiers["mail"]).send(MESSAGE)
    assert str(refused.value) == "SMTP login as alerts refused: 535"


@pytest.mark.gen_test(timeout=30)
async def test_mail_to_a_server_whose_certificate_is_not_trusted_fails_with_the_reason(
    tmp_path, starttls_server, monkeypatch
):
    _, port = starttls_server
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent")  # the system's CAs only: ours is not among them
    config = configured(tmp_path, email_notifier(port))
    with pytest.raises(NotifyError) as untrusted:
        await build_notifier(config.notifiers["mail"]).send(MESSAGE)
    assert str(untrusted.value).startswith(f"TLS with localhost:{port} failed: CERTIFICATE_VERIFY_FAILED")


# --- command -----------------------------------------------------------------------------

WRITER = "import sys, json; open(sys.argv[1], 'w').write(sys.stdin.read())"


@pytest.mark.gen_test(timeout=30)
async def test_a_command_gets_the_alert_as_json_on_stdin(tmp_path):
    out = tmp_path / "got.json"
    config = configured(
        tmp_path, notifier("page", "command", argv=[sys.executable, "-c", WRITER, str(out)], env={"X": "1"})
    )
    assert await build_notifier(config.notifiers["page"]).send(MESSAGE) == "exit code 0"
    assert json.loads(out.read_text()) == MESSAGE.webhook_json()


@pytest.mark.gen_test(timeout=30)
async def test_a_failing_or_hanging_command_fails_with_the_reason_and_leaves_nothing_running(tmp_path):
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('no route to pager\\n'); sys.exit(3)"]
    pid_file = tmp_path / "grandchild.pid"
    # It starts a grandchild that would outlive it, then hangs.
    hanging = [
        "/bin/sh",
        "-c",
        f"sleep 60 & echo $! > {pid_file}; sleep 60",
    ]
    config = configured(
        tmp_path,
        notifier("failing", "command", argv=failing),
        notifier("hanging", "command", argv=hanging, timeout="500ms"),
        notifier("killed", "command", argv=["/bin/sh", "-c", "kill -TERM $$"]),
    )
    with pytest.raises(NotifyError) as failed:
        await build_notifier(config.notifiers["failing"]).send(MESSAGE)
    assert str(failed.value) == f"{sys.executable} failed: exit code 3: no route to pager"
    with pytest.raises(NotifyError) as killed:
        await build_notifier(config.notifiers["killed"]).send(MESSAGE)
    assert str(killed.value) == "/bin/sh failed: killed by SIGTERM"  # as the command source says it
    with pytest.raises(NotifyError) as hung:
        await build_notifier(config.notifiers["hanging"]).send(MESSAGE)
    assert str(hung.value) == "/bin/sh timed out after 0.5s"
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{grandchild}").exists() and time.monotonic() < deadline:
        status = Path(f"/proc/{grandchild}/stat").read_text().split()[2] if Path(f"/proc/{grandchild}").exists() else ""
        if status == "Z":
            break  # killed, waiting for its parent (init) to reap it
        await asyncio.sleep(0.05)
    alive = Path(f"/proc/{grandchild}/stat").exists() and Path(f"/proc/{grandchild}/stat").read_text().split()[2] != "Z"
    assert not alive


# --- run.py notify-test ----------------------------------------------------------------------


async def run_py(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "run.py",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


@pytest.mark.gen_test(timeout=90)
async def test_notify_test_sends_one_message_and_says_what_happened(tmp_path, receiver):
    inbox, port = receiver
    text = (
        loopback_server()
        + dashboard("main", ["cpu"])
        + push_widget("cpu", "number")
        + notifier("hook", "webhook", url=f"http://127.0.0.1:{port}/hook")
        + notifier("down", "webhook", url="http://127.0.0.1:1/x")
    )
    path = write_config(tmp_path, text)
    code, out, err = await run_py("notify-test", "hook", "--config", str(path))
    assert (code, err) == (0, ""), err
    assert out == f"hook: test message sent (webhook to http://127.0.0.1:{port}/...): HTTP 200\n"
    (got,) = inbox.bodies()
    assert got["status"] == "test" and got["title"] == "Test notification from the dashboard"
    assert got["alerts"][0]["message"].startswith("notifier 'hook' works: this is a test sent at ")

    code, out, _ = await run_py("notify-test", "down", "--config", str(path))
    assert code == 1
    assert out.startswith("down: the test message was not sent (webhook to http://127.0.0.1:1/...): cannot reach")

    code, out, err = await run_py("notify-test", "nope", "--config", str(path))
    assert (code, out) == (2, "")
    assert err == f'error: {path}: notifiers: unknown notifier "nope" (expected one of: hook, down)\n'
    code, _, err = await run_py("notify-test", "--config", str(path))
    assert (code, err) == (2, "error: notify-test: which notifier? (one of: hook, down)\n")


def test_the_test_message_names_the_notifier(tmp_path):
    config = configured(tmp_path, notifier("hook", "webhook", url="http://127.0.0.1:9/x"))
    message = trial_message(config, "hook", 1795176000.0)
    assert message.status == "test"
    assert message.items[0].alert["message"] == "notifier 'hook' works: this is a test sent at 2026-11-20 12:00:00 UTC"
