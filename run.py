#!/usr/bin/env python3
"""The command line: serve (the default), check, migrate."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys

from dashboard.config import ConfigError, load_config

EXIT_CONFIG = 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run.py", description="A live dashboard server.")
    parser.add_argument("command", nargs="?", default="serve", choices=("serve", "check", "migrate"),
                        help="serve the dashboards (default), check the config, or migrate the database")
    parser.add_argument("--config", default="config.toml", help="the configuration file (default: ./config.toml)")
    parser.add_argument("--host", help="listen on this address (overrides [server] host)")
    parser.add_argument("--port", type=int, help="listen on this port (overrides [server] port)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                        help="overrides [server] log_level")
    return parser.parse_args(argv)


def load(args: argparse.Namespace):
    config = load_config(args.config)
    changes = {k: v for k, v in (("host", args.host), ("port", args.port), ("log_level", args.log_level)) if v is not None}
    if changes:
        if "port" in changes and not 0 <= changes["port"] <= 65535:
            raise ConfigError(f"--port: expected a port from 0 to 65535, got {changes['port']}")
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, **changes))
    return config


def setup_logging(level: str) -> None:
    # Under systemd, journald stamps each line itself.
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else \
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load(args)
        from dashboard.sources import build_sources

        build_sources(config)  # validates every source's options
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(config.server.log_level)
    if args.command == "check":
        print(f"{args.config}: ok ({len(config.dashboards)} dashboard(s), {len(config.widgets)} widget(s))")
        return 0
    if args.command == "migrate":
        return asyncio.run(migrate(config))
    from dashboard.main import Server

    try:
        asyncio.run(Server(config).run_until_signalled())
    except OSError as exc:  # the port is taken, the database directory is read-only, ...
        logging.getLogger("dashboard.server").error("cannot start: %s", exc)
        return 1
    return 0


async def migrate(config) -> int:
    from dashboard.store import Store

    store = Store(config.storage.url)
    await store.open(migrate=True)
    await store.close()
    print(f"database at {config.storage.url} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
