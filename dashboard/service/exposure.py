"""What to warn about at start: a server reachable from other machines with
nothing in the way, and a config file with secrets that every local user may read."""

from __future__ import annotations

import os
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


# Where a config holds secrets: (table path, whether every key below it is one).
_SECRET_PLACES = (
    (("api", "tokens"), True),
    (("auth", "secret"), False),
    (("auth", "tokens"), True),
    (("auth", "users"), True),
    (("server", "metrics_token"), False),
)


def _values_at(document: dict, path: tuple[str, ...], every_key: bool) -> Iterator[Any]:
    node: Any = document
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return
        node = node[key]
    if every_key and isinstance(node, dict):
        yield from node.values()
    elif not every_key:
        yield node


def written_secrets(document: dict) -> bool:
    """Whether the file itself holds a secret: a value at a secret's place that is not
    (only) a ${VARIABLE} reference to the environment."""
    for path, every_key in _SECRET_PLACES:
        for value in _values_at(document, path, every_key):
            if isinstance(value, str) and value and "${" not in value:
                return True
    return False


def file_mode_warning(path: str | os.PathLike) -> str | None:
    try:
        mode = os.stat(path).st_mode
        document = tomllib.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None  # the loader has its own say about files it cannot read
    if not mode & stat.S_IROTH or not written_secrets(document):
        return None
    return (
        f"{os.fspath(path)} holds secrets and every user of this machine may read it "
        f"(mode {stat.filemode(mode)}): chmod o-r {os.fspath(path)}, or move the secrets to "
        "environment variables (${NAME})"
    )
