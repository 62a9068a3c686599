"""The kinds of notifier: each sends one Message, once, within its timeout, and raises
NotifyError with a reason a person can act on when it could not. Retries, backoff
and grouping belong to the delivery (delivery.py), not here.

- webhook: POST of the documented JSON (message.Message.webhook_json), or of the
  body of a Slack or Mattermost incoming webhook (`format`).
- ntfy: a POST of ntfy's JSON to the server's root, with the topic inside (JSON
  keeps titles in any language intact, where headers would need encoding).
- email: SMTP with STARTTLS or TLS (checked against the system's CA certificates,
  or SSL_CERT_FILE), a login when configured, to every recipient; plain text. The
  notification id is its Message-ID, so a mail system drops a repeat by itself.
- command: a program, given the webhook JSON on its standard input; it runs in a
  process group of its own, all of which is killed on timeout.

Reasons never carry a secret: no URL path or query (a webhook URL is its own
secret), no password, no header value.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Protocol
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.simple_httpclient import HTTPTimeoutError

from .. import __version__
from ..config.alerts import (
    CommandNotifierConfig,
    EmailNotifierConfig,
    NotifierConfig,
    NtfyNotifierConfig,
    WebhookNotifierConfig,
)
from ..core.processes import exit_reason, kill_group, last_line
from .message import Message

STDERR_TAIL = 4096


class NotifyError(Exception):
    """The notification did not go; str() says why."""


class Notifier(Protocol):
    @property
    def config(self) -> NotifierConfig: ...

    async def send(self, message: Message) -> str:
        """Send the message; what the other side answered ("HTTP 200"), or NotifyError."""
        ...


def where(url: str) -> str:
    """A URL as a reason may show it: scheme and host, no path (it may be the secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


async def post_json(url: str, body: object, *, timeout: float, headers: dict[str, str] | None = None) -> str:
    request = HTTPRequest(
        url,
        method="POST",
        body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        headers={"Content-Type": "application/json", "User-Agent": f"dashboard/{__version__}", **(headers or {})},
        connect_timeout=timeout,
        request_timeout=timeout,
        follow_redirects=False,
    )
    try:
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
    except HTTPTimeoutError:
        raise NotifyError(f"no answer from {where(url)}: timed out") from None
    except HTTPClientError as exc:  # with raise_error=False: errors without an answer
        raise NotifyError(f"no answer from {where(url)}: {exc.message or exc.code}") from None
    except OSError as exc:
        raise NotifyError(f"cannot reach {where(url)}: {exc.strerror or exc}") from None
    if not 200 <= response.code < 300:
        raise NotifyError(f"HTTP {response.code} from {where(url)}")
    return f"HTTP {response.code}"


class WebhookNotifier:
    def __init__(self, config: WebhookNotifierConfig):
        self.config = config

    def body(self, message: Message) -> dict[str, object]:
        if self.config.format == "slack":
            return message.slack_json()
        if self.config.format == "mattermost":
            return message.mattermost_json()
        return message.webhook_json()

    async def send(self, message: Message) -> str:
        headers = {**self.config.headers, "X-Dashboard-Notification": message.uid}
        return await post_json(self.config.url, self.body(message), timeout=self.config.timeout, headers=headers)


class NtfyNotifier:
    def __init__(self, config: NtfyNotifierConfig):
        self.config = config

    def endpoint(self) -> tuple[str, str]:
        """The server's root (where JSON is published) and the topic."""
        parts = urlsplit(self.config.url)
        root, _, topic = parts.path.rstrip("/").rpartition("/")
        return f"{parts.scheme}://{parts.netloc}{root}/", topic

    async def send(self, message: Message) -> str:
        root, topic = self.endpoint()
        body = message.ntfy_json(topic, dict(self.config.priority), dict(self.config.tags))
        headers = {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}
        return await post_json(root, body, timeout=self.config.timeout, headers=headers)


class EmailNotifier:
    def __init__(self, config: EmailNotifierConfig):
        self.config = config

    def email(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.config.sender
        mail["To"] = ", ".join(self.config.to)
        mail["Subject"] = message.title()
        mail["Date"] = formatdate(localtime=False)
        domain = parseaddr(self.config.sender)[1].rpartition("@")[2] or "dashboard"
        mail["Message-ID"] = f"<{message.uid}@{domain}>"
        mail["X-Dashboard-Notification"] = message.uid
        mail.set_content(message.text())
        return mail

    async def send(self, message: Message) -> str:
        mail = self.email(message)
        # smtplib blocks: a thread, each of its socket operations bounded by the timeout,
        # and the whole bounded once more, so that a server that trickles cannot hold it.
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._send, mail), self.config.timeout * 3)
        except TimeoutError:
            raise NotifyError(f"SMTP at {self.config.host}:{self.config.port} timed out") from None

    def _send(self, mail: EmailMessage) -> str:
        config = self.config
        context = ssl.create_default_context()
        recipients = [parseaddr(address)[1] for address in config.to]
        try:
            if config.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout, context=context)
            else:
                smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
            with smtp:
                if config.security == "starttls":
                    smtp.starttls(context=context)
                if config.username:
                    smtp.login(config.username, config.password)
                refused = smtp.send_message(mail, to_addrs=recipients)
        except smtplib.SMTPAuthenticationError as exc:
            raise NotifyError(f"SMTP login as {config.username} refused: {exc.smtp_code}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise NotifyError(f"SMTP refused every recipient: {', '.join(exc.recipients)}") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise NotifyError(f"SMTP at {config.host}:{config.port}: {exc}") from None
        except smtplib.SMTPResponseException as exc:
            raise NotifyError(f"SMTP at {config.host}:{config.port} answered {exc.smtp_code}") from None
        except ssl.SSLError as exc:
            raise NotifyError(f"TLS with {config.host}:{config.port} failed: {exc.reason or exc}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyError(f"SMTP at {config.host}:{config.port}: {exc}") from None
        if refused:
            return f"sent; refused: {', '.join(refused)}"
        return f"accepted for {len(recipients)} recipient(s)"


class CommandNotifier:
    def __init__(self, config: CommandNotifierConfig):
        self.config = config

    async def send(self, message: Message) -> str:
        config = self.config
        data = json.dumps(message.webhook_json(), ensure_ascii=False).encode("utf-8") + b"\n"
        try:
            process = await asyncio.create_subprocess_exec(
                *config.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                cwd=config.cwd,
                env={**os.environ, **config.env},
                start_new_session=True,  # its own process group: killed whole on timeout
            )
        except OSError as exc:
            raise NotifyError(f"cannot run {config.argv[0]}: {exc.strerror or exc}") from None
        try:
            _, stderr = await asyncio.wait_for(process.communicate(data), config.timeout)
        except TimeoutError:
            kill_group(process.pid)
            await process.wait()
            raise NotifyError(f"{config.argv[0]} timed out after {config.timeout:g}s") from None
        finally:
            if process.returncode is None:
                kill_group(process.pid)
        kill_group(process.pid)  # anything it left running in its group
        code = process.returncode if process.returncode is not None else -signal.SIGKILL
        if code != 0:
            last = last_line(stderr[-STDERR_TAIL:])
            raise NotifyError(f"{config.argv[0]} failed: {exit_reason(code)}" + (f": {last}" if last else ""))
        return "exit code 0"


def build_notifier(config: NotifierConfig) -> Notifier:
    if isinstance(config, WebhookNotifierConfig):
        return WebhookNotifier(config)
    if isinstance(config, NtfyNotifierConfig):
        return NtfyNotifier(config)
    if isinstance(config, EmailNotifierConfig):
        return EmailNotifier(config)
    if isinstance(config, CommandNotifierConfig):
        return CommandNotifier(config)
    raise ValueError(f"unknown notifier kind {config.kind!r}")
