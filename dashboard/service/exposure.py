"""What to warn about at start: a server reachable from other machines with
nothing in the way, and a config file with secrets that every local user may read."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.auth import PUBLIC, is_loopback

DEMO_PUSH_TOKEN = "demo-token-change-me"  # the bundled config.toml's fallback


def network_warning(config) -> str | None:
    """One line when the server listens beyond loopback while public dashboards or the
    demo push token are there for anyone who reaches the port."""
    host = config.server.host
    if is_loopback(host):
        return None
    problems = []
    public = [d.id for d in config.dashboards if getattr(d, "auth", PUBLIC) == PUBLIC]
    if public:
        what = "dashboard" if len(public) == 1 else "dashboards"
        problems.append(
            f"{what} {', '.join(public)} {'is' if len(public) == 1 else 'are'} public "
            '(set auth = "token", "password" or "proxy" on each, see SECURITY.md)'
        )
    if any(token == DEMO_PUSH_TOKEN for token in config.api.tokens.values()):
        problems.append(f'the push API takes the bundled demo token "{DEMO_PUSH_TOKEN}" (set DASHBOARD_TOKEN)')
    if not problems:
        return None
    return f"listening on {host or 'every address'}, not only loopback: " + "; ".join(problems)


# Where a config holds secrets, wherever the table (push, kiosk and read tokens,
# notifiers, sources, the mirror's token): a key that is one by its name; a table whose
# every value is one; a header or environment variable named like one; a notifier's URL
# (a webhook's URL is its secret, an ntfy topic's is its password); and any URL with a
# password in it (storage, hub, sql sources).
_SECRET_KEYS = frozenset({"password", "token", "secret", "metrics_token"})
_SECRET_TABLES = frozenset({"tokens", "users"})
_NAMED_TABLES = frozenset({"headers", "env"})
_SECRET_NAME = re.compile(r"auth|cookie|token|secret|passw|key", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]+@", re.IGNORECASE)


def _written(value: Any) -> bool:
    """A secret written in the file: not empty, not (only) a ${VARIABLE} reference."""
    return isinstance(value, str) and bool(value) and "${" not in value


def _secrets(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The places in a parsed config where a secret is written."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _secrets(item, (*path, str(index)))
        return
    if not isinstance(node, dict):
        if _written(node) and _URL_PASSWORD.match(node):
            yield path
        return
    for key, value in node.items():
        place = (*path, key)
        if key in _SECRET_KEYS and _written(value):
            yield place
        elif key in _SECRET_TABLES and isinstance(value, dict):
            yield from ((*place, name) for name, item in value.items() if _written(item))
        elif key in _NAMED_TABLES and isinstance(value, dict):
            yield from ((*place, name) for name, item in value.items() if _SECRET_NAME.search(name) and _written(item))
        elif key == "url" and path[:1] == ("notifiers",) and _written(value):
            yield place
        else:
            yield from _secrets(value, place)


def written_secrets(document: dict) -> list[str]:
    """Where the file itself holds a secret (see _secrets), rather than taking it from
    the environment: dotted key paths, in file order."""
    return [".".join(place) for place in _secrets(document)]


def file_mode_warning(path: str | os.PathLike) -> str | None:
    try:
        mode = os.stat(path).st_mode
        document = tomllib.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None  # the loader has its own say about files it cannot read
    places = written_secrets(document)
    if not mode & stat.S_IROTH or not places:
        return None
    where = places[0] + (f" and {len(places) - 1} more" if len(places) > 1 else "")
    return (
        f"{os.fspath(path)} holds secrets ({where}) and every user of this machine may read it "
        f"(mode {stat.filemode(mode)}): chmod o-r {os.fspath(path)}, or move the secrets to "
        "environment variables (${NAME})"
    )
