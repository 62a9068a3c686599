"""`run.py tail URL|DASHBOARD [--widget ID]... [--since ID] [--json]`: follow an event
stream from a terminal or a script, local or remote.

One line per event on stdout (time, widget, value, state), coloured on a terminal
and plain when piped; with --json one JSON object per event instead, for other
programs. What happens to the connection goes to stderr: connected, reconnecting
(and why, and in how long), and `gap` (the server could not replay what was
missed: current values follow). The connection is the `sse` source's own
(sources/eventstream.py): the project's spec-exact decoder, Last-Event-ID on each
reconnect, 301/302/307/308 followed, the server's `retry:` honoured, and a server
that is restarting waited for rather than given up on.

A read token for a protected dashboard comes from the environment
(DASHBOARD_READ_TOKEN), never from the command line, where `ps` would show it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import unicodedata
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..config import ConfigError, load_config
from ..core.events import Gap, Hello, Reload
from ..core.sse import Event
from ..sources import SourceError
from ..sources.eventstream import EventStream

TOKEN_VARIABLE = "DASHBOARD_READ_TOKEN"
FIRST_RETRY = 3.0  # seconds before the server has said its own `retry:`
IDLE_TIMEOUT = 60.0  # a server sends a keep-alive every 15 s by default
EXIT_CONFIG = 2
# SGR colours: dim time, bold widget, green ok, red error, yellow notices.
DIM, BOLD, GREEN, RED, YELLOW, RESET = "\033[2m", "\033[1m", "\033[32m", "\033[31m", "\033[33m", "\033[0m"
# Characters never written raw to a terminal: controls (ESC among them), format
# characters (bidi overrides), line and paragraph separators, lone surrogates.
HIDDEN = ("Cc", "Cf", "Zl", "Zp", "Cs")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run.py tail",
        description="Follow an event stream: one line per event, reconnecting with Last-Event-ID.",
        epilog=f"A read token for a protected dashboard: set {TOKEN_VARIABLE} (sent as Authorization: Bearer).",
    )
    parser.add_argument(
        "target", metavar="URL|DASHBOARD", help="a stream's URL, or a dashboard id of --config's server"
    )
    parser.add_argument(
        "--widget", action="append", default=[], metavar="ID", help="only this widget (repeat for more)"
    )
    parser.add_argument("--since", metavar="ID", help="start after this event id (as a reconnect would)")
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="default: on a terminal")
    parser.add_argument(
        "--config", default="config.toml", help="where a DASHBOARD's server listens (default: ./config.toml)"
    )
    return parser.parse_args(argv)


def stream_url(args: argparse.Namespace) -> str:
    """The URL to follow; ConfigError for a DASHBOARD the config does not have."""
    if args.target.startswith(("http://", "https://")):
        url = checked_url(args.target)
    else:
        config = load_config(args.config)
        if config.dashboard(args.target) is None:
            known = ", ".join(d.id for d in config.dashboards)
            raise ConfigError(f"{args.config}: no dashboard {args.target!r} (there are: {known})")
        host = config.server.host
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
        if ":" in host:
            host = f"[{host}]"
        url = f"http://{host}:{config.server.port}/events/{args.target}"
    if args.widget:
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "widgets"]
        query.append(("widgets", ",".join(args.widget)))
        url = urlunsplit(parts._replace(query=urlencode(query, safe=",")))
    return url


def checked_url(url: str) -> str:
    """The URL, or ConfigError saying what is wrong with it (a host, a port)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError for one out of range or not a number
    except ValueError as exc:
        raise ConfigError(f"URL {visible(url)!r}: {exc}") from None
    host = parts.hostname or ""
    if not host or any(c.isspace() or unicodedata.category(c) in HIDDEN for c in parts.netloc):
        raise ConfigError(f"URL {visible(url)!r}: expected http(s)://HOST[:PORT]/PATH, with a host and no spaces")
    if port == 0:
        raise ConfigError(f"URL {visible(url)!r}: expected a port from 1 to 65535, got 0")
    return url


def visible(text: str) -> str:
    """The text with nothing a terminal would act on: controls, bidi and line
    separators are shown as escapes, so one event stays one line and cannot
    rewrite the screen."""
    if all(unicodedata.category(c) not in HIDDEN for c in text):
        return text
    out = []
    for c in text:
        if unicodedata.category(c) in HIDDEN:
            out.append(f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "".join(out)


def value_text(value: Any) -> str:
    if isinstance(value, str):
        return visible(value)
    return visible(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


class Printer:
    """Turns events into lines: stdout for samples, stderr for what happens to the stream."""

    def __init__(self, out: TextIO, err: TextIO, *, as_json: bool, colour: bool):
        self.out, self.err = out, err
        self.as_json = as_json
        self.colour = colour
        self.width = 12  # the widget column grows to the longest id seen

    def _paint(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.colour else text

    def notice(self, text: str, code: str = YELLOW) -> None:
        self.err.write(self._paint(code, f"tail: {visible(text)}") + "\n")
        self.err.flush()

    def event(self, event: Event) -> None:
        if event.type == Hello.name:
            return
        if event.type == Gap.name:
            detail = _json_object(event.data)
            self.notice(
                f"gap: the server could not replay what was missed ({detail.get('reason', '?')}); current values follow"
            )
            return
        if event.type == Reload.name:
            self.notice(f"the server asks its pages to reload ({_json_object(event.data).get('reason', '?')})")
            return
        data = _json_object(event.data)
        sample = data if "value" in data else {"widget": event.type, "value": _json_or_text(event.data)}
        if self.as_json:
            record = {"id": int(event.last_event_id) if event.last_event_id.isdigit() else event.last_event_id or None}
            record.update(sample)
            record.setdefault("widget", event.type)
            self.out.write(json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n")
        else:
            self.out.write(self._line(event, sample) + "\n")
        self.out.flush()

    def _line(self, event: Event, sample: dict) -> str:
        ts = sample["ts"] if isinstance(sample.get("ts"), str) else _now()
        widget = visible(str(sample.get("widget") or event.type))
        self.width = max(self.width, len(widget))
        status = sample.get("status", "ok")
        if status == "ok":
            state = self._paint(GREEN, "ok")
        else:
            message = sample.get("message")
            state = self._paint(RED, visible(f"{status}: {message}" if message else str(status)))
        value = value_text(sample.get("value"))
        return f"{self._paint(DIM, visible(ts))}  {self._paint(BOLD, widget.ljust(self.width))}  {value}  {state}"


def _json_object(text: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


async def follow(url: str, printer: Printer, since: str = "") -> int:
    headers = {}
    token = os.environ.get(TOKEN_VARIABLE)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    stream = EventStream(url, headers=headers, connect_timeout=10.0, idle_timeout=IDLE_TIMEOUT, last_event_id=since)
    connected = False

    async def on_event(event: Event) -> None:
        nonlocal connected
        if event.type == Hello.name:
            where = stream.connected_url or url
            printer.notice(f"{'reconnected to' if connected else 'following'} {where}", DIM)
            connected = True
        printer.event(event)

    def on_reconnect(why: str, wait: float) -> None:
        after = f" after event {stream.last_event_id}" if stream.last_event_id else ""
        printer.notice(f"{why}; reconnecting in {wait:g}s{after}")

    try:
        await stream.follow(on_event, delay=FIRST_RETRY, on_reconnect=on_reconnect, while_unreachable=True)
    except SourceError as exc:  # the server answered, and not with a stream: trying again will not help
        printer.notice(f"error: {exc}", RED)
        return 1
    return 0  # not reached: follow() runs until interrupted


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.since is not None and not (args.since.isascii() and args.since.isdigit()):
        print(f"error: --since: expected an event id (digits), got {args.since!r}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        url = stream_url(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    colour = args.color == "always" or (
        args.color == "auto"
        and sys.stdout.isatty()
        and not os.environ.get("NO_COLOR")
        and os.environ.get("TERM") != "dumb"
    )
    printer = Printer(sys.stdout, sys.stderr, as_json=args.json, colour=colour)
    try:
        return asyncio.run(follow(url, printer, args.since or ""))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # piped into `head`, which has seen enough
        # Python flushes stdout once more at exit: let that go nowhere, quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
