"""`run.py notify-test NAME`: one test message through one notifier, now, and what
became of it, in one line. Nothing is stored: the server need not run."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

from ..alerts.message import trial_message
from ..alerts.notifiers import NotifyError, build_notifier
from ..config import Config, ConfigError
from ..config.alerts import describe_notifier

EXIT_FAILED = 1


def check_name(config: Config, name: str | None) -> str:
    """The notifier's name; ConfigError (exit 2) when it is missing or unknown."""
    known = ", ".join(config.notifiers) or "none: add a [notifiers.<name>] table"
    if not name:
        raise ConfigError(f"notify-test: which notifier? (one of: {known})")
    if name not in config.notifiers:
        raise ConfigError(f'{config.file}: notifiers: unknown notifier "{name}" (expected one of: {known})')
    return name


def notify_test(config: Config, name: str, out: TextIO = sys.stdout) -> int:
    """Send the test message; 0 when the other side took it, 1 otherwise."""
    notifier_config = config.notifiers[name]
    notifier = build_notifier(notifier_config)
    where = describe_notifier(notifier_config)

    async def send() -> str:
        message = trial_message(config, name, time.time())
        return await asyncio.wait_for(notifier.send(message), notifier_config.timeout * 3 + 1)

    try:
        answer = asyncio.run(send())
    except (NotifyError, TimeoutError) as exc:
        print(f"{name}: the test message was not sent ({where}): {exc or 'timed out'}", file=out)
        return EXIT_FAILED
    except Exception as exc:  # a notifier's own fault: one line still, and never its text (it may hold a secret)
        print(f"{name}: the test message was not sent ({where}): {type(exc).__name__} in the notifier", file=out)
        return EXIT_FAILED
    print(f"{name}: test message sent ({where}): {answer}", file=out)
    return 0
