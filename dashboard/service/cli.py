"""The command line: serve (the default), check, migrate, import, hash-password, notify-test, tail.

The installed `dashboard` console script, `python -m dashboard` and run.py (a
checkout) all call main()."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys

from dashboard.config import ConfigError, load_config
from dashboard.config.sections import LISTEN_HOST, listens

EXIT_CONFIG = 2
EXIT_CANNOT_START = 1


def parse_args(argv: list[str], prog: str = "dashboard") -> argparse.Namespace:
    parser = _parser(prog)
    args = parser.parse_intermixed_args(argv)
    if args.command == "tail":  # main() hands `tail ...` to its own parser; here an option came first
        parser.error("tail comes first, with options of its own: tail URL|DASHBOARD [--config FILE] ... (tail --help)")
    given = args.arguments
    args.files = given if args.command == "import" else []
    args.name = given[0] if args.command == "notify-test" and given else None
    if args.command == "import" and not given:
        parser.error("import: expected one or more CSV or NDJSON files")
    if args.command == "notify-test" and len(given) > 1:
        parser.error(f"notify-test takes one notifier name, got {len(given)}")
    if given and args.command not in ("import", "notify-test"):
        parser.error(f"{args.command} takes no files (did you mean: import {' '.join(given)})")
    return args


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="A live dashboard server.")
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=("serve", "check", "migrate", "import", "hash-password", "notify-test", "tail"),
        help="serve the dashboards (default), check the config, migrate the database, import FILE... "
        "(history from CSV or NDJSON), hash-password: read a password from stdin and print its hash "
        "for [auth] users, notify-test NAME: send a test message through one notifier, or tail URL|DASHBOARD: "
        "follow an event stream (run.py tail --help)",
    )
    parser.add_argument(
        "arguments",
        nargs="*",
        metavar="ARG",
        help="import: CSV or NDJSON files, each all or nothing; notify-test: the notifier ([notifiers.<name>])",
    )
    parser.add_argument("--config", default="config.toml", help="the configuration file (default: ./config.toml)")
    parser.add_argument("--host", help="listen on this address (overrides [server] host)")
    parser.add_argument("--port", type=int, help="listen on this port (overrides [server] port)")
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="overrides [server] log_level"
    )
    parser.add_argument(
        "--role",
        choices=("all", "web", "worker"),
        default="all",
        help="all: web and tickers in one process (default); web: pages, streams and API, "
        "no tickers; worker: tickers, and HTTP for /healthz and /metrics only",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="run N processes of this role on one port (SO_REUSEPORT; needs the Redis hub)",
    )
    parser.add_argument(
        "--reuse-port", action="store_true", help="let other processes listen on the same port (SO_REUSEPORT)"
    )
    return parser


def load(args: argparse.Namespace):
    config = load_config(args.config)
    changes = {
        k: v for k, v in (("host", args.host), ("port", args.port), ("log_level", args.log_level)) if v is not None
    }
    if changes:
        if "port" in changes and not 0 <= changes["port"] <= 65535:
            raise ConfigError(f"--port: expected a port from 0 to 65535, got {changes['port']}")
        if "host" in changes and not listens(changes["host"]):
            raise ConfigError(f"--host: {LISTEN_HOST}, got {changes['host']!r}")
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, **changes))
    return config


def setup_logging(level: str) -> None:
    from dashboard.service.logs import LineFormatter
    from dashboard.service.systemd import JournalFormatter, logs_to_journal

    handler = logging.StreamHandler(sys.stderr)
    if logs_to_journal(os.environ, sys.stderr):
        handler.setFormatter(JournalFormatter())  # journald stamps each line itself
    else:
        handler.setFormatter(LineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))


def main(argv: list[str] | None = None, prog: str = "dashboard") -> int:
    """The `dashboard` console script; `prog` is the name --help gives the program."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["tail"]:  # a client, with options of its own (service/tail.py)
        from dashboard.service.tail import main as tail

        return tail(argv[1:])
    args = parse_args(argv, prog)
    if args.command == "hash-password":
        return hash_password(sys.stdin, sys.stdout)
    try:
        config = load(args)
        from dashboard.sources import build_sources

        build_sources(config)  # validates every source's options
        warnings = check_processes(args, config)
        if args.command == "notify-test":
            from dashboard.service.notify_test import check_name

            check_name(config, args.name)
        if args.command == "serve":
            warnings += exposure_warnings(args, config)
    except ConfigError as exc:
        say("error", str(exc))
        return EXIT_CONFIG
    for warning in warnings:
        say("warning", warning)
    setup_logging(config.server.log_level)
    if args.command == "check":
        rules = sum(len(w.alert.on) for w in config.widgets.values() if w.alert is not None)
        alerting = f", {rules} alert rule(s), {len(config.notifiers)} notifier(s)" if rules or config.notifiers else ""
        print(f"{args.config}: ok ({len(config.dashboards)} dashboard(s), {len(config.widgets)} widget(s){alerting})")
        return 0
    if args.command == "notify-test":
        from dashboard.service.notify_test import notify_test

        return notify_test(config, args.name)
    if args.command == "migrate":
        return asyncio.run(migrate(config))
    if args.command == "import":
        from dashboard.service.importing import import_files

        try:
            return asyncio.run(import_files(config, args.files, sys.stdout, sys.stderr))
        except KeyboardInterrupt:  # the file being read was rolled back as the task was cancelled
            below = "\n" if sys.stderr.isatty() else ""  # the progress line and the ^C stay
            print(f"{below}error: import interrupted: the file being imported was not stored", file=sys.stderr)
            return 130
    if args.processes > 1:
        from dashboard.service.supervisor import supervise
        from dashboard.service.systemd import Notifier, watchdog_interval

        return asyncio.run(
            supervise(
                child_argv(args, config),
                args.processes,
                address=(config.server.host, config.server.port),
                notifier=Notifier.from_environ(os.environ),
                watchdog_interval=watchdog_interval(os.environ),
            )
        )
    from dashboard.core.resources import ResourceMissing
    from dashboard.service.server import CannotStart, Server
    from dashboard.service.systemd import Notifier, watchdog_interval
    from dashboard.storage.store import StoreUnavailable

    server = Server(
        config,
        role=args.role,
        reuse_port=args.reuse_port,
        notifier=Notifier.from_environ(os.environ),
        watchdog_interval=watchdog_interval(os.environ),
        config_loader=lambda: load(args),
    )
    try:
        asyncio.run(server.run_until_signalled())
    except (CannotStart, StoreUnavailable, ResourceMissing) as exc:  # the port is taken, the database ...
        return cannot_start(exc)
    return 0


def say(kind: str, text: str) -> None:
    """An "error: ..." or "warning: ..." line on stderr, written before logging is set up;
    under systemd with the journald priority in front, as the log lines have it."""
    from dashboard.service.systemd import logs_to_journal

    priority = {"error": 3, "warning": 4}[kind]
    prefix = f"<{priority}>" if logs_to_journal(os.environ, sys.stderr) else ""
    print(f"{prefix}{kind}: {text}", file=sys.stderr)


def cannot_start(exc: Exception) -> int:
    """One log line, no traceback: what is in the way, where, and what to do; exit 1."""
    logging.getLogger("dashboard.server").error("cannot start: %s", exc)
    return EXIT_CANNOT_START


def exposure_warnings(args: argparse.Namespace, config) -> list[str]:
    from dashboard.service.exposure import file_mode_warning, network_warning

    # A worker serves /healthz and /metrics only: its dashboards are not on its port.
    found = [network_warning(config) if args.role != "worker" else None, file_mode_warning(args.config)]
    return [warning for warning in found if warning]


def hash_password(stdin, stdout) -> int:
    """Print the scrypt hash of a password for [auth] users. From a terminal the password
    is asked twice, without echo; otherwise the first line of stdin is the password."""
    import getpass

    from dashboard.core.auth import PASSWORD_MIN
    from dashboard.core.auth import hash_password as make_hash

    if stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            say("error", "the passwords differ")
            return 1
    else:
        password = stdin.readline().rstrip("\r\n")
    if not password:
        say("error", "empty password")
        return 1
    if len(password) < PASSWORD_MIN:  # the password itself is never echoed
        say("error", f"the password is too short: use at least {PASSWORD_MIN} characters")
        return 1
    print(make_hash(password), file=stdout)
    return 0


def check_processes(args: argparse.Namespace, config) -> list[str]:
    """ConfigError when the role or process count cannot work with this config; warnings."""
    from dashboard.service.roles import ROLES, check_role

    if not 1 <= args.processes <= 64:
        raise ConfigError(f"--processes: expected a number from 1 to 64, got {args.processes}")
    if args.processes > 1 and config.server.port == 0:
        raise ConfigError(
            "--processes: needs a fixed port ([server] port or --port), not 0: "
            "each process would listen on a port of its own"
        )
    return check_role(config, ROLES[args.role], args.processes)


def child_argv(args: argparse.Namespace, config) -> list[str]:
    """The command line of one of --processes N: this role, on the same port, one process."""
    argv = [
        sys.executable,
        "-m",
        "dashboard",
        "serve",
        "--config",
        args.config,
        "--role",
        args.role,
        "--reuse-port",
        "--host",
        config.server.host,
        "--port",
        str(config.server.port),
    ]
    if args.log_level:
        argv += ["--log-level", args.log_level]
    return argv


async def migrate(config) -> int:
    from dashboard.core.resources import ResourceMissing
    from dashboard.storage.store import Store, StoreUnavailable

    store = Store(config.storage.url)
    try:
        await store.open(migrate=True)
    except (StoreUnavailable, ResourceMissing) as exc:
        return cannot_start(exc)
    await store.close()
    print(f"database at {config.storage.url} is up to date")
    return 0
